//! 10 MB of whitespace to JSON echo.

use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread::{self, JoinHandle};

use crate::clients::{JsonClient, Talkers, goodbyes};
use crate::daemon::{Tables, daemon, exits_cleanly, peak_memory_kib};

const WHITESPACE: usize = 10 * 1024 * 1024;
/// Eight bytes of whitespace with one newline.
const BLANKS: &[u8; 8] = b"\t  \r\n   ";

/// A JSON client streaming whitespace (after one value) until the
/// connection fails; `sent` counts the bytes.
fn whitespace_stream(client: &mut JsonClient, sent: Arc<AtomicUsize>) -> JoinHandle<()> {
    client.echo("{\"stream\": 1}", "{\"stream\":1}");
    let mut stream = client.stream.try_clone().unwrap();
    thread::spawn(move || {
        let chunk = BLANKS.repeat(8 * 1024);
        while stream.write_all(&chunk).is_ok() {
            sent.fetch_add(chunk.len(), SeqCst);
        }
    })
}

/// Whitespace between values is allowed, so it is passed over as it comes:
/// 10 MB of it cost no memory, the value after it is echoed, and an error
/// after it names the line the client counts. SIGTERM arrives while another
/// client streams whitespace: it gets the error object, then the close.
#[test]
fn ten_megabytes_of_whitespace_to_json_echo_are_passed_over() {
    let (mut daemon, addrs) = daemon("hostile-whitespace", Tables::default());
    let mut talkers = Talkers::start(addrs);
    let peak_before = peak_memory_kib(&daemon);
    let mut client = JsonClient::connect(addrs.json);
    client.echo("{\"before\": 1}", "{\"before\":1}");
    client.send(&BLANKS.repeat(WHITESPACE / BLANKS.len()));
    client.echo("[1, 2]", "[1,2]");
    client.send(b"\n{\"bad\": tru}");
    let line = WHITESPACE / BLANKS.len() + 2;
    assert_eq!(
        client.line(),
        format!(
            "{{\"error\":\"'tru' is not JSON: did you mean true?\",\"line\":{line},\"column\":9}}\n"
        )
    );
    assert_eq!(client.line(), "", "closed after the error object");
    let grown = peak_memory_kib(&daemon).saturating_sub(peak_before);
    eprintln!("json echo: peak memory grew {grown} KiB over 10 MB of whitespace");
    assert!(grown < 4 * 1024, "10 MB of whitespace held: {grown} KiB");

    let mut streaming = JsonClient::connect(addrs.json);
    let sent = Arc::new(AtomicUsize::new(0));
    let stream = whitespace_stream(&mut streaming, sent.clone());
    talkers.wait_until("whitespace streaming", || {
        sent.load(SeqCst) >= 2 * 1024 * 1024
    });
    talkers.progress();
    let endings = talkers.pause();
    daemon.signal("TERM");
    goodbyes(endings);
    // What it sent is unread, so the close may come as a reset.
    assert_eq!(streaming.line(), "{\"error\":\"server shutting down\"}\n");
    let mut rest = String::new();
    match streaming.reader.read_line(&mut rest) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("after the error object: {other:?} {rest:?}"),
    }
    exits_cleanly(&mut daemon);
    stream.join().unwrap();
}
