//! Hostile inputs, each with SIGTERM arriving in the middle of it: a chat
//! client sending 100,000 lines without reading, 10,000 connections in one
//! burst, 10 MB of whitespace to JSON echo, a datagram storm from spoofed
//! source ports 0 to 1023 (as root, in a network namespace), and a storm of
//! SIGHUPs. Well-behaved clients talk in lock-step all along (two chat clients
//! whose lines are relayed once and in order, a JSON echo client, a UDP echo
//! client, a discovery prober); each must get everything it should, then the
//! documented goodbye, and the real binary must exit 0 within the grace time.
//!
//! The well-behaved clients finish their exchange in flight before SIGTERM is
//! sent (the hostile input goes on), so "everything said before SIGTERM was
//! answered" is exact, not a race.
//!
//! One file a storm; `daemon.rs` and `clients.rs` are what every storm
//! shares, and this file the checkpoints its threads wait at.

#[path = "../common/mod.rs"]
mod common;

mod burst;
mod clients;
mod daemon;
mod flood;
mod sighup;
mod spoofed;
mod whitespace;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

/// Sets its flag when dropped: a thread of hostile input waiting for it or
/// looping on it ends even when the test fails first.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Where the threads of a hostile input wait for the test.
#[derive(Clone, Default)]
struct Checkpoint {
    arrived: Arc<AtomicUsize>,
    go: Arc<AtomicBool>,
}

impl Checkpoint {
    fn arrive_and_wait(&self) {
        self.arrived.fetch_add(1, SeqCst);
        while !self.go.load(SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn reached_by(&self, threads: usize) -> bool {
        self.arrived.load(SeqCst) >= threads
    }

    /// Lets the threads go on, and so does dropping the guard (a failed test).
    fn guard(&self) -> SetOnDrop {
        SetOnDrop(self.go.clone())
    }

    fn open(&self) {
        self.go.store(true, SeqCst);
    }
}

/// Raises this process's open-files limit to the hard limit (and, as root,
/// the hard limit to `needed`); false (with a skip) if it stays below.
fn raise_open_files(needed: u64) -> bool {
    let mut limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if limit < needed && rlimit::Resource::NOFILE.set(needed, needed).is_ok() {
        limit = needed;
    }
    if limit < needed {
        common::skip(format_args!(
            "the open-files hard limit ({limit}) is below {needed}"
        ));
        return false;
    }
    true
}
