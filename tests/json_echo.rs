//! JSON echo end to end over loopback, with plain blocking sockets as the
//! course's clients use: streams of values, exact round-trips, every kind of
//! bad input, limits, idle and shutdown.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Proc, config, start_on_runtime};
use pinetd::config::Config;
use pinetd::daemon::Daemon;

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads until `lines` newlines have arrived (or EOF).
fn read_lines(stream: &mut TcpStream, lines: usize) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 65_536];
    while got.iter().filter(|&&b| b == b'\n').count() < lines {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8(got).unwrap()
}

/// The server closed its side: the next read returns 0.
fn closed(stream: &mut TcpStream) -> bool {
    matches!(stream.read(&mut [0u8; 64]), Ok(0))
}

fn json_daemon(edit: impl FnOnce(&mut Config)) -> (tokio::runtime::Runtime, Daemon, SocketAddr) {
    let (runtime, daemon) = start_on_runtime(config(edit));
    let addr = daemon.addrs("json_echo")[0];
    (runtime, daemon, addr)
}

#[test]
fn course_pattern_one_object_per_send_one_recv_each() {
    let (_rt, _daemon, addr) = json_daemon(|_| {});
    let mut stream = connect(addr);
    for count in 0..10 {
        stream
            .write_all(format!("{{\"name\": \"jung\", \"count\": {count}}}").as_bytes())
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).unwrap();
        let reply: serde_json::Value =
            serde_json::from_slice(&buf[..n]).expect("json.loads parses the reply");
        assert_eq!(reply, serde_json::json!({"name": "jung", "count": count}));
        assert_eq!(
            &buf[..n],
            format!("{{\"name\":\"jung\",\"count\":{count}}}\n").as_bytes()
        );
    }
}

#[test]
fn ndjson_and_concatenated_values_are_all_answered_in_order() {
    let (_rt, _daemon, addr) = json_daemon(|_| {});
    let mut stream = connect(addr);
    let ndjson: String = (0..100).map(|i| format!("{{\"i\": {i}}}\n")).collect();
    stream.write_all(ndjson.as_bytes()).unwrap();
    let expected: String = (0..100).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    assert_eq!(read_lines(&mut stream, 100), expected);

    stream
        .write_all(b"{\"a\":1}{\"b\":2}[3]\"x\"true null{\"c\" : [ ] }")
        .unwrap();
    assert_eq!(
        read_lines(&mut stream, 7),
        "{\"a\":1}\n{\"b\":2}\n[3]\n\"x\"\ntrue\nnull\n{\"c\":[]}\n"
    );
}

#[test]
fn a_value_split_byte_by_byte_is_assembled() {
    let (_rt, _daemon, addr) = json_daemon(|_| {});
    let mut stream = connect(addr);
    let value = br#"{"name": "jung", "list": [1, 2, 3], "nested": {"ok": true}}"#;
    assert!(value.len() >= 50);
    for byte in value.chunks(1) {
        stream.write_all(byte).unwrap();
        // Paced on purpose: each byte a send of its own.
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        read_lines(&mut stream, 1),
        "{\"name\":\"jung\",\"list\":[1,2,3],\"nested\":{\"ok\":true}}\n"
    );
    // A number split over two sends is one number: the server waits 20 ms of
    // quiet for more digits. A busy machine can hold the client between the
    // sends for longer (the server then rightly answers two numbers), so an
    // attempt counts only when the client saw both go out within 5 ms.
    for attempt in 1.. {
        let mut stream = connect(addr);
        let started = Instant::now();
        stream.write_all(b"12").unwrap();
        stream.write_all(b"34 ").unwrap();
        if started.elapsed() < Duration::from_millis(5) {
            assert_eq!(read_lines(&mut stream, 1), "1234\n");
            break;
        }
        assert!(attempt < 50, "never two sends within 5 ms");
    }
}

/// A client in a tight request/response loop, the one busy polling serves:
/// every answer right and in order, with polling at its largest budget and
/// off; a close right after an answer ends the connection cleanly.
#[test]
fn a_tight_request_response_loop_is_answered_with_and_without_busy_polling() {
    for budget in [Duration::from_millis(1), Duration::ZERO] {
        let (rt, daemon, addr) = json_daemon(|c| c.json_echo.busy_poll = budget);
        let mut stream = connect(addr);
        let mut buf = [0u8; 256];
        for count in 0..2_000 {
            // Sometimes a value in two parts, the second sent while polled for.
            let value = format!("{{\"name\": \"jung\", \"count\": {count}}}");
            let (head, tail) = value.split_at(if count % 3 == 0 { 7 } else { value.len() });
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(tail.as_bytes()).unwrap();
            let want = format!("{{\"name\":\"jung\",\"count\":{count}}}\n");
            let mut got = Vec::new();
            while got.len() < want.len() {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "closed after {count} answers ({budget:?})");
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(String::from_utf8(got).unwrap(), want, "{budget:?}");
        }
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(closed(&mut stream), "{budget:?}");

        // A second client polled for while another is idle; shutdown stops both.
        let mut quick = connect(addr);
        let mut idle = connect(addr);
        quick.write_all(b"1 ").unwrap();
        assert_eq!(read_lines(&mut quick, 1), "1\n");
        // True: drained before the grace's deadline, nothing aborted.
        assert!(rt.block_on(daemon.shutdown()));
        assert_eq!(
            read_lines(&mut quick, 1),
            "{\"error\":\"server shutting down\"}\n"
        );
        assert_eq!(
            read_lines(&mut idle, 1),
            "{\"error\":\"server shutting down\"}\n"
        );
    }
}

#[test]
fn numbers_strings_and_unicode_round_trip_exactly() {
    let (_rt, _daemon, addr) = json_daemon(|_| {});
    let mut stream = connect(addr);
    let cases = [
        (
            r#"{"name": "안녕하세요", "emoji": "😀"}"#,
            r#"{"name":"안녕하세요","emoji":"😀"}"#,
        ),
        ("1e308", "1e308"),
        ("-0", "-0"),
        ("18446744073709551617", "18446744073709551617"),
        ("[1.50, 2E-3, -12.0e+5]", "[1.50,2E-3,-12.0e+5]"),
        (
            r#""tab\t quote\" back\\ \u00e9 \ud83d\ude00""#,
            r#""tab\t quote\" back\\ \u00e9 \ud83d\ude00""#,
        ),
        (r#"{"k": 1, "k": 2, "a": 0}"#, r#"{"k":1,"k":2,"a":0}"#),
    ];
    for (input, want) in cases {
        stream.write_all(input.as_bytes()).unwrap();
        stream.write_all(b"\n").unwrap();
        assert_eq!(read_lines(&mut stream, 1), format!("{want}\n"), "{input}");
    }
}

#[test]
fn malformed_json_gets_one_error_object_then_close_and_others_go_on() {
    let (_rt, daemon, addr) = json_daemon(|_| {});
    let mut bystander = connect(addr);
    let mut bad = connect(addr);
    bad.write_all(b"{\"ok\": 1}\n{\"bad\": tru }").unwrap();
    assert_eq!(
        read_lines(&mut bad, 2),
        "{\"ok\":1}\n{\"error\":\"'tru' is not JSON: did you mean true?\",\"line\":2,\"column\":9}\n"
    );
    assert!(closed(&mut bad));
    bystander.write_all(b"[\"still here\"]").unwrap();
    assert_eq!(read_lines(&mut bystander, 1), "[\"still here\"]\n");

    let mut invalid_utf8 = connect(addr);
    invalid_utf8.write_all(b"\"\xff\xfe\"").unwrap();
    assert!(
        read_lines(&mut invalid_utf8, 1)
            .starts_with("{\"error\":\"invalid UTF-8 in a string: byte 0xFF")
    );
    let mut cut_short = connect(addr);
    cut_short.write_all(b"{\"a\": [1, 2").unwrap();
    cut_short.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        read_lines(&mut cut_short, 1),
        "{\"error\":\"unclosed '[' from line 1, column 7: the input ended without ']}'\",\"line\":1,\"column\":11}\n"
    );
    assert_eq!(
        daemon
            .stats()
            .service("json_echo")
            .messages
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

/// A student's mistakes get words about JSON rather than the parser's,
/// with the line and column they count: Python's `str(dict)` sent as the
/// course client sends (one `sendall()`, no newline), a trailing comma in
/// a pretty-printed object (pointing at the comma), and Python's `True`
/// arriving in two sends.
#[test]
fn a_students_mistake_gets_words_that_teach() {
    let (_rt, _daemon, addr) = json_daemon(|_| {});
    let mut python_dict = connect(addr);
    python_dict
        .write_all(b"{'name': 'jung', 'count': 3}")
        .unwrap();
    assert_eq!(
        read_lines(&mut python_dict, 1),
        "{\"error\":\"single quotes are not JSON: a key must be in double quotes\",\"line\":1,\"column\":2}\n"
    );
    assert!(closed(&mut python_dict));

    let mut pretty = connect(addr);
    pretty
        .write_all(b"{\"ok\": 1}\n{\n  \"name\": \"jung\",\n  \"count\": 3,\n}")
        .unwrap();
    assert_eq!(
        read_lines(&mut pretty, 2),
        "{\"ok\":1}\n{\"error\":\"trailing comma before '}': remove the ','\",\"line\":4,\"column\":13}\n"
    );
    assert!(closed(&mut pretty));

    let mut split = connect(addr);
    split.write_all(b"{\"name\": \"jung\", \"ok\": Tr").unwrap();
    // The gap between the two sends is what is tested.
    std::thread::sleep(Duration::from_millis(5));
    split.write_all(b"ue}").unwrap();
    let reply = read_lines(&mut split, 1);
    // A busy machine may hold the second send past the 20 ms the server
    // waits for the rest of a word: then `Tr` is answered as it stands.
    assert!(
        [
            "{\"error\":\"Python's True is not JSON: write true\",\"line\":1,\"column\":24}\n",
            "{\"error\":\"'Tr' is not JSON: did you mean true?\",\"line\":1,\"column\":24}\n",
        ]
        .contains(&reply.as_str()),
        "{reply}"
    );
}

#[test]
fn oversize_value_is_refused_before_it_is_buffered() {
    let (_rt, _daemon, addr) = json_daemon(|c| c.json_echo.max_message_bytes = 1024);
    let mut stream = connect(addr);
    // 1 KiB fits.
    let fits = format!("\"{}\"", "x".repeat(1022));
    stream.write_all(fits.as_bytes()).unwrap();
    assert_eq!(read_lines(&mut stream, 1), format!("{fits}\n"));
    // One byte over, unfinished: refused without waiting for the rest.
    stream
        .write_all(format!("[\"{}", "y".repeat(1023)).as_bytes())
        .unwrap();
    assert_eq!(
        read_lines(&mut stream, 1),
        "{\"error\":\"value larger than max_message_bytes (1024)\",\"line\":1,\"column\":1025}\n"
    );
    assert!(closed(&mut stream));
}

#[test]
fn deep_nesting_is_refused_not_crashed_on() {
    let (_rt, _daemon, addr) = json_daemon(|c| c.json_echo.max_message_bytes = 1 << 20);
    let mut stream = connect(addr);
    let _ = stream.write_all(&vec![b'['; 100_000]);
    assert_eq!(
        read_lines(&mut stream, 1),
        "{\"error\":\"nesting deeper than 128\",\"line\":1,\"column\":129}\n"
    );
    let mut next = connect(addr);
    next.write_all(b"[[[]]]").unwrap();
    assert_eq!(read_lines(&mut next, 1), "[[[]]]\n");
}

#[test]
fn a_silent_client_is_closed_after_the_idle_timeout() {
    let (_rt, _daemon, addr) =
        json_daemon(|c| c.json_echo.idle_timeout = Duration::from_millis(300));
    let mut stream = connect(addr);
    let started = Instant::now();
    assert_eq!(
        read_lines(&mut stream, 1),
        "{\"error\":\"idle timeout, closing\"}\n"
    );
    assert!(closed(&mut stream));
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn peers_outside_allow_are_closed_at_accept() {
    let (_rt, daemon, addr) =
        json_daemon(|c| c.json_echo.allow = vec!["127.0.0.2/32".parse().unwrap()]);
    let mut stream = connect(addr);
    let _ = stream.write_all(b"{}");
    let mut buf = [0u8; 16];
    assert!(
        matches!(stream.read(&mut buf), Ok(0) | Err(_)),
        "closed without an answer"
    );
    assert_eq!(
        daemon
            .stats()
            .service("json_echo")
            .refused(pinetd::stats::Refusal::NotAllowed),
        1
    );
}

#[test]
fn shutdown_while_a_client_is_mid_value() {
    let (runtime, daemon, addr) = json_daemon(|_| {});
    let mut stream = connect(addr);
    stream.write_all(b"{\"done\": 1} {\"half\": [1, ").unwrap();
    assert_eq!(read_lines(&mut stream, 1), "{\"done\":1}\n");
    // The timeout only guards against a hang; true: drained within the grace.
    let clean =
        runtime.block_on(async { tokio::time::timeout(common::HANG, daemon.shutdown()).await });
    assert_eq!(clean, Ok(true));
    assert_eq!(
        read_lines(&mut stream, 1),
        "{\"error\":\"server shutting down\"}\n"
    );
    assert!(closed(&mut stream));
}

const JSON_ONLY: &str = "[chat]\nenabled = false\n[udp_echo]\nenabled = false\n[announcer]\nenabled = false\n[discovery]\nenabled = false\n[json_echo]\nlisten = \"127.0.0.1:0\"\n";

#[test]
fn sigterm_while_a_client_is_mid_value() {
    let (mut daemon, _) = Proc::on_config("json-sigterm", JSON_ONLY);
    let addr = daemon.addrs(&["json_echo"])["json_echo"];
    let mut stream = connect(addr);
    stream.write_all(b"[1] {\"half\": ").unwrap();
    assert_eq!(read_lines(&mut stream, 1), "[1]\n");
    daemon.signal("TERM");
    assert_eq!(
        read_lines(&mut stream, 1),
        "{\"error\":\"server shutting down\"}\n"
    );
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
}

#[test]
fn json_client_through_a_pipe() {
    let (mut daemon, _) = Proc::on_config("json-client", JSON_ONLY);
    let port = daemon.addrs(&["json_echo"])["json_echo"].port().to_string();
    let run = |args: &[&str], input: &[u8]| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pinetd"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The client may exit before reading it (a refused connection).
        let _ = child.stdin.take().unwrap().write_all(input);
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(
        &["json", "127.0.0.1", &port],
        "{\"a\": 1}\n[1, 2]\n\"안녕\" 7".as_bytes(),
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "{\"a\":1}\n[1,2]\n\"안녕\"\n7\n")
    );
    let (code, out, _) = run(&["json", "localhost", &port, "--count", "2"], b"");
    assert_eq!(
        (code, out.as_str()),
        (
            Some(0),
            "{\"name\":\"jung\",\"count\":1}\n{\"name\":\"jung\",\"count\":2}\n"
        )
    );
    let (code, _, err) = run(&["json", "127.0.0.1", &port], b"{\"a\": nope}");
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "pinetd: the server refused the input: unquoted text 'nope': a string must be in double quotes (line 1, column 7)\n"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
    let (code, _, err) = run(&["json", "127.0.0.1", &port], b"{}");
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with(&format!(
            "pinetd: cannot connect to 127.0.0.1:{port}: Connection refused"
        )),
        "{err}"
    );
}
