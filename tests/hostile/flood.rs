//! A chat client sending 100,000 lines without reading.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread::{self, JoinHandle};

use crate::Checkpoint;
use crate::clients::{Talkers, goodbyes};
use crate::daemon::{Tables, daemon, exits_cleanly};

const FLOOD_LINES: usize = 100_000;

/// A chat client that sends `flood-0` … `flood-99999` and reads nothing,
/// waiting at `halfway` (if given) after half of them; what its sends came to.
fn flooder(addr: SocketAddr, halfway: Option<Checkpoint>) -> JoinHandle<io::Result<()>> {
    let mut stream = TcpStream::connect(addr).unwrap();
    thread::spawn(move || {
        let lines = |range: std::ops::Range<usize>| -> String {
            range.map(|i| format!("flood-{i}\n")).collect()
        };
        let half = FLOOD_LINES / 2;
        stream.write_all(lines(0..half).as_bytes())?;
        if let Some(halfway) = halfway {
            halfway.arrive_and_wait();
        }
        stream.write_all(lines(half..FLOOD_LINES).as_bytes())
    })
}

/// Flood lines the two chat clients heard.
fn heard(floods: &[Arc<AtomicUsize>; 2]) -> [usize; 2] {
    [floods[0].load(SeqCst), floods[1].load(SeqCst)]
}

/// With the default settings the flooder is read 100 lines a second (TCP
/// pushes back on it, nothing is cut): SIGTERM finds most of its lines unsent.
#[test]
fn a_chat_client_sending_100000_lines_without_reading_is_slowed_and_harms_nobody() {
    let (mut daemon, addrs) = daemon("hostile-flood", Tables::default());
    let mut talkers = Talkers::start(addrs);
    let flood = flooder(addrs.chat, None);
    let floods = talkers.floods.clone();
    // Past its first second's allowance (100 lines): read at the rate limit now.
    talkers.wait_until("flood lines", || {
        floods.iter().all(|heard| heard.load(SeqCst) >= 150)
    });
    talkers.progress();
    let endings = talkers.pause();
    daemon.signal("TERM");
    goodbyes(endings);
    exits_cleanly(&mut daemon);
    let heard = heard(&floods);
    assert!(
        heard.iter().all(|&n| n < FLOOD_LINES),
        "SIGTERM came in the middle of the flood: {heard:?}"
    );
    // Its sends fail once the daemon is gone (or all sat in its kernel buffer).
    let _ = flood.join().unwrap();
}

/// Without a rate limit the hub reads the flood as fast as it comes, and
/// both readers get every line, in order, none skipped; SIGTERM arrives
/// while the second half is on its way.
#[test]
fn a_chat_flood_without_a_rate_limit_reaches_everyone_whole() {
    let tables = Tables {
        chat: "rate_limit = 0\n",
        ..Tables::default()
    };
    let (mut daemon, addrs) = daemon("hostile-flood-unlimited", tables);
    let mut talkers = Talkers::start(addrs);
    let halfway = Checkpoint::default();
    let _guard = halfway.guard();
    let flood = flooder(addrs.chat, Some(halfway.clone()));
    let floods = talkers.floods.clone();
    talkers.wait_until("the first half of the flood", || {
        floods
            .iter()
            .all(|heard| heard.load(SeqCst) >= FLOOD_LINES / 2)
    });
    talkers.progress();
    let endings = talkers.pause();
    halfway.open();
    daemon.signal("TERM");
    goodbyes(endings);
    exits_cleanly(&mut daemon);
    eprintln!(
        "flood lines heard before the goodbye: {:?} of {FLOOD_LINES}",
        heard(&floods)
    );
    let _ = flood.join().unwrap();
}
