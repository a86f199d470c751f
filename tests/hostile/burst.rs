//! 10,000 connections at once, each from an address of its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::clients::{Talkers, goodbyes};
use crate::common::try_connect_from;
use crate::daemon::{Tables, daemon, exits_cleanly};
use crate::{Checkpoint, raise_open_files};

const BURST: usize = 10_000;
const BURST_THREADS: usize = 4;

/// Connections opened by one thread of the burst, and those that failed
/// before and after its last checkpoint.
#[derive(Default)]
struct Opened {
    opened: usize,
    failed_before: usize,
    failed_after: usize,
}

/// Thread `t` of the burst: its share of connections, each from an address
/// of its own (127.2T.X.Y: max_per_source never refuses them), alternately
/// to chat and JSON echo. The first half are opened and kept, and at
/// `closing` all closed at once; the second half are opened and kept, with
/// `last` a quarter before the end, and closed when the thread ends.
fn burst_thread(
    t: usize,
    targets: [SocketAddr; 2],
    closing: Checkpoint,
    last: Checkpoint,
) -> JoinHandle<Opened> {
    thread::spawn(move || {
        let share = BURST / BURST_THREADS;
        let mut held = Vec::with_capacity(share);
        let mut opened = Opened::default();
        for k in 0..share {
            if k == share / 2 {
                closing.arrive_and_wait();
                held.clear();
            }
            if k == share * 3 / 4 {
                last.arrive_and_wait();
            }
            let from = Ipv4Addr::new(127, 20 + t as u8, (k / 250) as u8, (k % 250) as u8 + 1);
            // Given up after a second (a full backlog drops SYNs): the burst goes on.
            match try_connect_from(from.into(), targets[k % 2], Duration::from_secs(1)) {
                Ok(stream) => {
                    held.push(stream);
                    opened.opened += 1;
                }
                Err(_) if k < share * 3 / 4 => opened.failed_before += 1,
                Err(_) => opened.failed_after += 1,
            }
        }
        opened
    })
}

/// 5,000 connections opened and kept (the hub and JSON echo full, the rest
/// told so), then closed at once (a thousand leaves), then 5,000 more, with
/// SIGTERM arriving three quarters of the way: the clients already in go on
/// talking all along and are told of the shutdown.
#[test]
fn a_burst_of_10000_connections_disturbs_no_client_already_in() {
    if !raise_open_files(BURST as u64 + 1000) {
        return;
    }
    let (mut daemon, addrs) = daemon("hostile-burst", Tables::default());
    let mut talkers = Talkers::start(addrs);
    let (closing, last) = (Checkpoint::default(), Checkpoint::default());
    let _guards = (closing.guard(), last.guard());
    let burst: Vec<_> = (0..BURST_THREADS)
        .map(|t| burst_thread(t, [addrs.chat, addrs.json], closing.clone(), last.clone()))
        .collect();
    talkers.wait_until("5,000 connections", || closing.reached_by(BURST_THREADS));
    talkers.progress();
    closing.open();
    talkers.wait_until("7,500 connections", || last.reached_by(BURST_THREADS));
    talkers.progress();
    let endings = talkers.pause();
    last.open();
    daemon.signal("TERM");
    goodbyes(endings);
    exits_cleanly(&mut daemon);
    let mut total = Opened::default();
    for thread in burst {
        let opened = thread.join().unwrap();
        total.opened += opened.opened;
        total.failed_before += opened.failed_before;
        total.failed_after += opened.failed_after;
    }
    eprintln!(
        "burst: {} connections opened; {} failed before SIGTERM, {} after",
        total.opened, total.failed_before, total.failed_after
    );
}
