//! The chat hub end to end over loopback, with blocking sockets the way the
//! course's clients and netcat use it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::chat::hub;
use common::peer::{Numbered, Peer, numbered_lines};
use common::{Proc, connect_from, wait_until};
use pinetd::config::{Config, OnLag};
use pinetd::daemon::Daemon;

#[test]
fn netcat_lines_and_course_sends_side_by_side() {
    let (_rt, _daemon, addr) = hub(|_| {});
    let mut nc = Peer::connect(addr);
    let mut course = Peer::connect(addr);
    nc.until("joined");
    // The course's client: one send() per message, no newline.
    course.send("안녕하세요 everyone".as_bytes());
    assert_eq!(
        nc.until("안녕").last().unwrap(),
        "[user2] 안녕하세요 everyone\n"
    );
    nc.send(b"hi there\r\n");
    assert_eq!(
        course.until("hi there").last().unwrap(),
        "[user1] hi there\n"
    );
    // Lines sent together arrive in order.
    nc.send(b"one\ntwo\nthree\n");
    let got = course.until("three");
    assert_eq!(
        &got[got.len() - 3..],
        ["[user1] one\n", "[user1] two\n", "[user1] three\n"]
    );
}

#[test]
fn the_sender_never_gets_its_own_message_unless_echo_self() {
    let (_rt, _daemon, addr) = hub(|_| {});
    let mut a = Peer::connect(addr);
    let mut b = Peer::connect(addr);
    a.send(b"mine\n");
    b.until("mine");
    // After a's own line, the next thing a sees is b's line: never its own.
    b.send(b"yours\n");
    let lines = a.until("yours");
    assert!(lines.iter().all(|l| !l.contains("mine")), "{lines:#?}");

    let (_rt, _daemon, addr) = hub(|c| c.chat.echo_self = true);
    let mut a = Peer::connect(addr);
    a.send(b"echo me\n");
    assert_eq!(a.until("echo me").last().unwrap(), "[user1] echo me\n");
}

/// A hub with two clients: `a` (user1), and `b` (user2) whose join `a` has heard.
fn a_and_b() -> (tokio::runtime::Runtime, Daemon, SocketAddr, Peer, Peer) {
    let (rt, daemon, addr) = hub(|_| {});
    let mut a = Peer::connect(addr);
    let b = Peer::connect(addr);
    a.until("user2 joined");
    (rt, daemon, addr, a, b)
}

#[test]
fn joins_close_together_are_told_in_one_line() {
    let (_rt, _daemon, addr) = hub(|_| {});
    let mut a = Peer::connect(addr);
    let _b = Peer::connect(addr);
    let joined = a.until("user2").pop().unwrap();
    assert!(
        joined.starts_with("*** ") && joined.ends_with("user2 joined\n"),
        "{joined}"
    );
}

#[test]
fn nick_renames_and_the_room_is_told() {
    let (_rt, _daemon, _addr, mut a, mut b) = a_and_b();
    b.send(b"/nick syjung\n");
    assert_eq!(
        b.until("you are now").last().unwrap(),
        "*** you are now syjung\n"
    );
    assert_eq!(
        a.until("is now").last().unwrap(),
        "*** user2 is now syjung\n"
    );
}

#[test]
fn a_taken_or_spaced_name_is_refused() {
    let (_rt, _daemon, _addr, mut a, mut b) = a_and_b();
    b.send(b"/nick syjung\n");
    b.until("you are now");
    a.send(b"/nick syjung\n");
    assert_eq!(
        a.until("cannot").last().unwrap(),
        "*** cannot rename: syjung is taken\n"
    );
    a.send(b"/nick two words\n");
    assert!(a.until("cannot").last().unwrap().contains("no spaces"));
}

#[test]
fn who_lists_everyone_online() {
    let (_rt, _daemon, _addr, mut a, mut b) = a_and_b();
    b.send(b"/nick syjung\n");
    b.until("you are now");
    a.send(b"/who\n");
    assert_eq!(
        a.until("online").last().unwrap(),
        "*** online (2): syjung, user1\n"
    );
}

#[test]
fn an_unknown_command_points_to_help() {
    let (_rt, _daemon, addr) = hub(|_| {});
    let mut a = Peer::connect(addr);
    a.send(b"/dance\n");
    assert_eq!(
        a.until("unknown").last().unwrap(),
        "*** unknown command /dance; /help lists them\n"
    );
    a.send(b"/help\n");
    assert!(a.until("commands").last().unwrap().contains("/nick NAME"));
}

/// Exercise 4-3: the client puts "[name] " in front itself.
#[test]
fn a_course_client_naming_itself_takes_that_name() {
    let (_rt, _daemon, addr, mut a, mut b) = a_and_b();
    let mut course = Peer::connect(addr);
    course.send(b"[minsu] hello");
    // It named itself at once: it joins under that name.
    assert_eq!(a.until("minsu"), ["*** minsu joined\n"]);
    assert_eq!(
        a.line().unwrap(),
        "[minsu] hello\n",
        "the name is not doubled"
    );
    course.send(b"[minsu] again");
    assert_eq!(b.until("again").last().unwrap(), "[minsu] again\n");
}

#[test]
fn bye_and_quit_leave_and_the_room_is_told() {
    let (_rt, _daemon, addr, mut a, mut b) = a_and_b();
    let mut course = Peer::connect(addr);
    course.send(b"[minsu] hello");
    a.until("[minsu] hello");
    course.send(b"bye");
    assert_eq!(course.until("bye").last().unwrap(), "*** bye\n");
    assert!(course.closed());
    assert_eq!(a.until("left").last().unwrap(), "*** minsu left\n");
    b.send(b"/quit\n");
    assert!(b.until("bye").last().unwrap().contains("bye"));
}

#[test]
fn nobody_hears_from_a_client_before_hearing_it_joined() {
    let (_rt, _daemon, addr) = hub(|_| {});
    let mut a = Peer::connect(addr);
    let mut b = Peer::connect(addr);
    // Named at once: it joins under that name, and its join is told
    // before its first words, not after the grace a join is held for.
    b.send(b"/nick kim\nhello\n");
    let lines = a.until("hello");
    assert_eq!(lines, ["*** kim joined\n", "[kim] hello\n"]);
}

/// `pinetd chat --name bob`: the room hears `bob joined`, never
/// `user2 joined` then `user2 is now bob`.
#[test]
fn a_client_that_names_itself_at_once_joins_under_that_name() {
    let (_rt, _daemon, addr, mut a, _b) = a_and_b();
    let mut bob = TcpStream::connect(addr).unwrap();
    bob.write_all(b"/nick bob\n").unwrap();
    let lines = a.until("joined");
    assert_eq!(lines, ["*** bob joined\n"]);
    // Named later, it is a rename the room is told of.
    let mut c = Peer::connect(addr);
    a.until("user4 joined");
    c.send(b"/nick carol\n");
    assert_eq!(a.until("carol"), ["*** user4 is now carol\n"]);
}

/// Clients joining together hear one notice of the others; none is told
/// of its own join, and one who left before its join was told is not
/// announced at all.
#[test]
fn joins_told_together_name_the_others_never_oneself_or_the_gone() {
    let (_rt, _daemon, addr) = hub(|_| {});
    // Connected at once (within the half second a join is held for),
    // before any of them reads its welcome; one leaves at once.
    let streams: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut peers: Vec<Peer> = streams.into_iter().map(Peer::with_stream).collect();
    let gone = peers.remove(3);
    let gone_name = gone.name.clone();
    drop(gone);
    let names: Vec<String> = peers.iter().map(|p| p.name.clone()).collect();
    for peer in &mut peers {
        let mut others: Vec<&str> = (names.iter())
            .filter(|n| **n != peer.name)
            .map(String::as_str)
            .collect();
        others.sort();
        let notice = peer.until("joined");
        assert_eq!(notice.len(), 1, "{notice:?}");
        let mut told: Vec<&str> = notice[0]
            .trim_start_matches("*** ")
            .trim_end_matches(" joined\n")
            .split([',', ' '])
            .filter(|w| !w.is_empty() && *w != "and")
            .collect();
        told.sort();
        assert_eq!(told, others, "{} heard {notice:?}", peer.name);
    }
    // Nobody heard of the one who left before its join was told.
    let mut everyone = names.clone();
    everyone.sort();
    peers[0].send(b"/who\n");
    let who = peers[0].until("online").pop().unwrap();
    assert_eq!(who, format!("*** online (4): {}\n", everyone.join(", ")));
    peers[3].send(b"done\n");
    let heard = peers[1].until("done");
    assert!(heard.iter().all(|l| !l.contains(&gone_name)), "{heard:?}");
}

#[test]
fn prefix_can_be_empty_for_clients_that_name_themselves() {
    let (_rt, _daemon, addr) = hub(|c| c.chat.prefix = String::new());
    let mut a = Peer::connect(addr);
    let mut b = Peer::connect(addr);
    b.send(b"[syjung] hello");
    assert_eq!(a.until("hello").last().unwrap(), "[syjung] hello\n");
}

#[test]
fn hostile_bytes_are_never_relayed_raw() {
    let (_rt, _daemon, addr) = hub(|_| {});
    let mut a = Peer::connect(addr);
    let mut b = Peer::connect(addr);
    b.send(b"\x1b[2J\x1b]0;pwned\x07clear\xff\xfe\x9b tab\there\n");
    let line = a.until("clear").pop().unwrap();
    assert_eq!(
        line,
        "[user2] \u{fffd}[2J\u{fffd}]0;pwned\u{fffd}clear\u{fffd}\u{fffd}\u{fffd} tab\there\n"
    );
    assert!(!line.bytes().any(|c| c < 0x20 && c != b'\t' && c != b'\n'));
}

#[test]
fn a_megabyte_without_newline_is_cut_and_harms_nobody() {
    let (_rt, daemon, addr) = hub(|c| c.chat.max_line_bytes = 4096);
    let mut a = Peer::connect(addr);
    let mut flood = Peer::connect(addr);
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        flood.send(&chunk);
    }
    flood.send(b"\nafter the flood\n");
    let told = flood.until("was cut");
    assert_eq!(
        told.last().unwrap(),
        "*** your line was longer than 4096 bytes and was cut\n"
    );
    let got = a.until("after the flood");
    let relayed: Vec<&String> = got.iter().filter(|l| l.starts_with("[user2]")).collect();
    assert_eq!(relayed.len(), 2, "the cut line once, then the next line");
    assert_eq!(relayed[0].len(), "[user2] ".len() + 4096 + 1);
    a.send(b"still fine\n");
    assert_eq!(
        flood.until("still fine").last().unwrap(),
        "[user1] still fine\n"
    );
    assert_eq!(
        daemon
            .stats()
            .service("chat")
            .clients
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[test]
fn one_too_many_is_told_the_hub_is_full() {
    let (_rt, _daemon, addr) = hub(|c| c.chat.max_clients = 2);
    let _a = Peer::connect(addr);
    let _b = Peer::connect(addr);
    let mut extra = TcpStream::connect(addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = String::new();
    extra.read_to_string(&mut got).unwrap();
    assert_eq!(got, "*** the hub is full, try again later\n");
}

/// 50 clients chat while one never reads; the others get every line.
fn stopped_reader(on_lag: OnLag) -> (Vec<String>, bool) {
    let (_rt, _daemon, addr) = hub(|c| {
        c.chat.queue = 64;
        c.chat.on_lag = on_lag;
        c.chat.rate_limit = 0;
        c.chat.write_timeout = Duration::from_secs(60);
    });
    let mut stopped = Peer::stingy(addr);
    let mut peers: Vec<Peer> = (0..50).map(|_| Peer::connect(addr)).collect();
    let line = format!("{}\n", "m".repeat(1000));
    for round in 0..100 {
        for (i, peer) in peers.iter_mut().enumerate().take(5) {
            peer.send(format!("r{round} p{i} {line}").as_bytes());
        }
        // Everyone keeps up, but for the stopped one (p4 hears p3 last).
        for (i, peer) in peers.iter_mut().enumerate() {
            peer.until(&format!("r{round} p{} ", if i == 4 { 3 } else { 4 }));
        }
    }
    // The stopped reader now reads what it was sent: skips, or the end.
    let mut seen = Vec::new();
    let mut closed = false;
    let deadline = Instant::now() + common::HANG;
    while Instant::now() < deadline {
        match stopped.line() {
            Some(line) if line.contains("r99 p4") => break,
            Some(line) => seen.push(line),
            None => {
                closed = true;
                break;
            }
        }
    }
    (
        seen.into_iter().filter(|l| l.starts_with("***")).collect(),
        closed,
    )
}

#[test]
fn a_stopped_reader_skips_while_the_others_get_everything() {
    let (notices, closed) = stopped_reader(OnLag::Skip);
    assert!(!closed);
    assert!(
        notices.iter().any(|l| l.ends_with("messages skipped\n")),
        "{notices:#?}"
    );
}

#[test]
fn a_stopped_reader_is_disconnected_under_on_lag_disconnect() {
    let (notices, closed) = stopped_reader(OnLag::Disconnect);
    assert!(closed, "{notices:#?}");
}

#[test]
fn a_fast_sender_is_slowed_not_cut() {
    let (_rt, _daemon, addr) = hub(|c| c.chat.rate_limit = 50);
    let mut a = Peer::connect(addr);
    let mut fast = Peer::connect(addr);
    let started = Instant::now();
    let burst: String = (0..150).map(|i| format!("n{i}\n")).collect();
    fast.send(burst.as_bytes());
    let got = a.until("n149");
    let relayed = got.iter().filter(|l| l.starts_with("[user2] n")).count();
    assert_eq!(relayed, 150, "nothing lost");
    // 50 at once, then 50 a second: at least about two seconds.
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

const CHAT_ONLY: &str = "[json_echo]\nenabled = false\n[udp_echo]\nenabled = false\n[announcer]\nenabled = false\n[discovery]\nenabled = false\n[chat]\nlisten = \"127.0.0.1:0\"\n";

#[test]
fn sigterm_tells_every_client_before_closing() {
    let (mut daemon, _) = Proc::on_config("chat-sigterm", CHAT_ONLY);
    let addr = daemon.addrs(&["chat"])["chat"];
    let mut peers: Vec<Peer> = (0..5).map(|_| Peer::connect(addr)).collect();
    daemon.signal("TERM");
    for peer in &mut peers {
        assert_eq!(
            peer.until("shutting down").last().unwrap(),
            "*** server shutting down\n"
        );
        assert!(peer.closed());
    }
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
}

#[test]
fn pinetd_chat_through_a_pipe() {
    let (mut daemon, _) = Proc::on_config("chat-client", CHAT_ONLY);
    let addr = daemon.addrs(&["chat"])["chat"];
    let mut watcher = Peer::connect(addr);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pinetd"))
        .args([
            "chat",
            "127.0.0.1",
            &addr.port().to_string(),
            "--name",
            "syjung",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .unwrap()
                .write_all("hello\n안녕\nbye\n".as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.starts_with("*** welcome to pinetd chat, you are user2"),
        "{stdout}"
    );
    assert!(stdout.contains("*** you are now syjung\n"), "{stdout}");
    assert!(stdout.ends_with("*** bye\n"), "{stdout}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "*** connection closed\n"
    );
    let got = watcher.until("안녕");
    assert_eq!(
        &got[got.len() - 2..],
        ["[syjung] hello\n", "[syjung] 안녕\n"]
    );

    let usage = std::process::Command::new(env!("CARGO_BIN_EXE_pinetd"))
        .arg("chat")
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("Usage: pinetd chat <HOST> <PORT>"));
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_second_signal_exits_at_once() {
    let config = CHAT_ONLY.replace("[chat]\n", "[chat]\nrate_limit = 0\nqueue = 100000\n");
    let config = format!("[daemon]\nshutdown_grace = \"30s\"\n{config}");
    let (mut daemon, _) = Proc::on_config("chat-second-signal", &config);
    let addr = daemon.addrs(&["chat"])["chat"];
    // A client that reads nothing, its buffers full: its goodbye cannot be
    // written, so the drain waits on it.
    let _stopped = Peer::stingy(addr);
    let mut talker = Peer::connect(addr);
    let line = format!("{}\n", "z".repeat(4000));
    for _ in 0..500 {
        talker.send(line.as_bytes());
    }
    talker.send(b"/who\n");
    talker.until("online");
    daemon.signal("TERM");
    daemon.wait_for("shutting down");
    daemon.signal("TERM");
    // 130, not the drain's 0: it exited before the drain was done.
    assert_eq!(
        daemon.exit_code(common::HANG),
        Some(130),
        "{:#?}",
        daemon.log
    );
    assert!(
        daemon
            .log
            .iter()
            .any(|l| l.contains("second signal: exiting now")),
        "{:#?}",
        daemon.log
    );
    assert!(
        !daemon.log.iter().any(|l| l.ends_with("INFO stopped")),
        "the drain finished first: {:#?}",
        daemon.log
    );
}

/// A raw client that sends and never reads: a script, a paused terminal.
fn deaf(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Reads lines from `peer` until `count` of them contain ` s0-` (a test
/// sender's lines, whatever the prefix), or none comes for 10 s; those lines.
fn relayed(peer: &mut Peer, count: usize) -> Vec<String> {
    peer.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    while got.len() < count {
        match peer.line() {
            Some(line) if from_a_test_sender(&line) => got.push(line),
            Some(_) => {}
            None => break,
        }
    }
    got
}

/// Fills the room with `lines` lines of 3 KB from `talker`: enough to leave
/// a client that reads nothing with its buffers full and its output waiting.
fn make_noise(talker: &mut Peer, lines: usize) {
    let noise = format!("noise {}\n", "n".repeat(3000));
    for _ in 0..lines {
        talker.send(noise.as_bytes());
    }
}

/// What `reader` hears until `who` leaves: the test senders' lines, the
/// other lines but noise, and whether `who` left (before 5 s of silence).
fn until_left(reader: &mut Peer, who: &str) -> (Vec<String>, Vec<String>, bool) {
    let (mut sent, mut others) = (Vec::new(), Vec::new());
    while let Some(line) = reader.line() {
        if from_a_test_sender(&line) {
            sent.push(line);
        } else if line.contains(&format!("{who} left")) {
            return (sent, others, true);
        } else if !line.contains("noise") {
            others.push(line);
        }
    }
    (sent, others, false)
}

/// `PREFIX sN-I ...`: a line of test sender N.
fn from_a_test_sender(line: &str) -> bool {
    line.split_once(' ')
        .and_then(|(_, text)| text.strip_prefix('s')?.split_once('-'))
        .is_some_and(|(sender, _)| sender.parse::<usize>().is_ok())
}

/// Every line from `senders` arrived once, whole, in each sender's order.
fn assert_all_in_order(got: &[String], senders: usize, lines: usize, body: &str) {
    let mut next = vec![0usize; senders];
    for line in got {
        let text = line.split_once("] ").map(|(_, t)| t).unwrap_or(line);
        let parsed = text
            .strip_suffix(&format!(" {body}\n"))
            .and_then(|t| t.strip_prefix('s'))
            .and_then(|t| t.split_once('-'))
            .and_then(|(s, i)| Some((s.parse::<usize>().ok()?, i.parse::<usize>().ok()?)));
        let Some((sender, index)) = parsed else {
            panic!("spliced or foreign line: {line:?}");
        };
        assert_eq!(index, next[sender], "sender {sender} out of order or twice");
        next[sender] += 1;
    }
    assert_eq!(next, vec![lines; senders], "lines missing");
}

#[test]
fn senders_that_never_read_have_every_line_relayed() {
    let (_rt, _daemon, addr) = hub(|c| {
        c.chat.rate_limit = 0;
        c.chat.write_timeout = Duration::from_secs(60);
    });
    let mut reader = Peer::connect(addr);
    let body = "x".repeat(90);
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let mut stream = deaf(addr);
            let body = body.clone();
            std::thread::spawn(move || {
                for i in 0..5000 {
                    stream
                        .write_all(format!("s{s}-{i} {body}\n").as_bytes())
                        .unwrap();
                }
                stream
            })
        })
        .collect();
    let got = relayed(&mut reader, 20_000);
    assert_all_in_order(&got, 4, 5000, &body);
    drop(senders);
}

#[test]
fn a_sender_dropped_for_not_reading_has_its_lines_relayed_first() {
    const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
    // Its output stops moving at the earliest once the noise begins, so it
    // cannot be dropped before WRITE_TIMEOUT from then: an attempt whose
    // lines were not all sent by that time (a busy machine) proves nothing,
    // as the hub may rightly have dropped it first, and is made again.
    for attempt in 1.. {
        let (_rt, _daemon, addr) = hub(|c| {
            c.chat.rate_limit = 0;
            c.chat.write_timeout = WRITE_TIMEOUT;
        });
        let mut reader = Peer::connect(addr);
        let mut talker = Peer::connect(addr);
        let mut deaf = Peer::stingy(addr);
        reader.until("joined");
        // The room is busy: the deaf client's buffers fill, its output waits.
        let noise_began = Instant::now();
        make_noise(&mut talker, 200);
        let body = "y".repeat(50);
        // Its lines trickle in while its output waits, unread; then it stops
        // sending and is dropped a second after its output stopped moving.
        let sent_all = (0..60).all(|i| {
            let lines: String = (i * 5..i * 5 + 5)
                .map(|k| format!("s0-{k} {body}\n"))
                .collect();
            // Paced on purpose: its lines trickle in while its output waits.
            std::thread::sleep(Duration::from_millis(2));
            deaf.stream.write_all(lines.as_bytes()).is_ok()
        });
        if noise_began.elapsed() >= WRITE_TIMEOUT {
            assert!(
                attempt < 10,
                "never sent its lines within {WRITE_TIMEOUT:?}"
            );
            continue;
        }
        assert!(sent_all, "dropped while sending");
        let (got, others, left) = until_left(&mut reader, "user3");
        assert!(left, "the deaf client was dropped: {others:#?}");
        assert_all_in_order(&got, 1, 300, &body);
        assert!(deaf.closed(), "its connection was closed");
        break;
    }
}

#[test]
fn a_line_sent_in_pieces_arrives_whole_while_the_course_client_still_flushes() {
    let (_rt, _daemon, addr) = hub(|c| {
        c.chat.rate_limit = 0;
        c.chat.flush_after = Duration::from_millis(50);
    });
    let mut reader = Peer::connect(addr);
    let mut slow = Peer::connect(addr);
    let busy = Peer::connect(addr);
    let mut course = Peer::connect(addr);
    reader.until("joined");
    slow.send(b"hello\n");
    reader.until("hello");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise = {
        let stop = stop.clone();
        let mut stream = busy.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = stream.write_all(b"busy busy busy\n");
                // Paced on purpose: a busy room, not a flood.
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    for i in 0..8 {
        for piece in [format!("line {i} "), "second piece ".into(), "end\n".into()] {
            slow.send(piece.as_bytes());
            // The pause is what is tested: each piece alone, past flush_after.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    noise.join().unwrap();
    course.send(b"no newline here");
    let got: Vec<String> = reader
        .until("no newline here")
        .into_iter()
        .filter(|l| !l.contains("busy"))
        .collect();
    let lines: Vec<&String> = got.iter().filter(|l| l.starts_with("[user2]")).collect();
    let want: Vec<String> = (0..8)
        .map(|i| format!("[user2] line {i} second piece end\n"))
        .collect();
    assert_eq!(lines, want.iter().collect::<Vec<_>>());
    assert_eq!(got.last().unwrap(), "[user4] no newline here\n");
    drop(busy);
}

#[test]
fn max_clients_counts_every_listener() {
    let (_rt, daemon, _) = hub(|c| {
        c.chat.max_clients = 4;
        c.chat.listen = vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.2:0".parse().unwrap(),
        ];
    });
    let addrs = daemon.addrs("chat").to_vec();
    assert_eq!(addrs.len(), 2);
    let _peers: Vec<Peer> = (0..4).map(|i| Peer::connect(addrs[i % 2])).collect();
    for addr in &addrs {
        let mut extra = TcpStream::connect(addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = String::new();
        extra.read_to_string(&mut got).unwrap();
        assert_eq!(got, "*** the hub is full, try again later\n");
    }
}

#[test]
fn one_address_over_max_per_source_is_told_while_another_joins() {
    let (_rt, _daemon, addr) = hub(|c| c.chat.max_per_source = 2);
    let _a = Peer::with_stream(connect_from("127.0.0.1", addr));
    let _b = Peer::with_stream(connect_from("127.0.0.1", addr));
    let mut third = connect_from("127.0.0.1", addr);
    let mut got = String::new();
    third.read_to_string(&mut got).unwrap();
    assert_eq!(
        got,
        "*** too many connections from your address, try again later\n"
    );
    let mut other = Peer::with_stream(connect_from("127.0.0.2", addr));
    other.send(b"/who\n");
    assert!(other.until("online").last().unwrap().contains("(3)"));
}

#[test]
fn two_clients_talk_through_five_reloads() {
    let (rt, mut daemon, addr) = hub(|c| c.chat.rate_limit = 0);
    let mut a = Peer::connect(addr);
    let mut b = Peer::connect(addr);
    a.until("joined");
    let body = "z".repeat(40);
    let mut sender = a.stream.try_clone().unwrap();
    let talk = {
        let body = body.clone();
        std::thread::spawn(move || {
            for i in 0..800 {
                sender
                    .write_all(format!("s0-{i} {body}\n").as_bytes())
                    .unwrap();
                // Paced on purpose: the lines span all five reloads.
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // After each reload, b hears 40 lines more before the next one.
    let mut heard = Vec::new();
    let mut reload = |daemon: &mut Daemon, edit: &dyn Fn(&mut Config)| {
        let mut next = daemon.config().clone();
        edit(&mut next);
        let changed = rt.block_on(daemon.reload(next));
        assert_eq!(changed, ["chat"]);
        heard.extend(relayed(&mut b, 40));
    };
    let second: SocketAddr = "127.0.0.2:0".parse().unwrap();
    reload(&mut daemon, &|c| c.chat.rate_limit = 1000);
    reload(&mut daemon, &|c| c.chat.prefix = "<{name}> ".into());
    reload(&mut daemon, &|c| c.chat.max_line_bytes = 100);
    reload(&mut daemon, &|c| c.chat.listen.push(second));
    let added = *daemon.addrs("chat").last().unwrap();
    assert_eq!(added.ip(), second.ip());
    let mut c = Peer::connect(added);
    reload(&mut daemon, &|c| c.chat.listen.retain(|&l| l != second));
    talk.join().unwrap();

    // Every line, once, in order, whatever the prefix was when it was relayed.
    let rest = relayed(&mut b, 800 - heard.len());
    let got: Vec<String> = heard
        .into_iter()
        .chain(rest)
        .map(|l| l.split_once(' ').map(|(_, t)| format!("[x] {t}")).unwrap())
        .collect();
    assert_all_in_order(&got, 1, 800, &body);
    // The new settings hold for everyone, and the client that came in
    // through the removed listener is still in the room.
    a.send(format!("{}\n", "w".repeat(150)).as_bytes());
    assert_eq!(
        a.until("cut").last().unwrap(),
        "*** your line was longer than 100 bytes and was cut\n"
    );
    assert_eq!(
        b.until("www").last().unwrap(),
        &format!("<user1> {}\n", "w".repeat(100))
    );
    assert_eq!(
        c.until("www").last().unwrap(),
        &format!("<user1> {}\n", "w".repeat(100))
    );
    assert!(
        TcpStream::connect(added).is_err(),
        "the removed listener is closed"
    );
    c.send(b"from the old listener\n");
    assert_eq!(
        b.until("old listener").last().unwrap(),
        "<user3> from the old listener\n"
    );
    assert_eq!(daemon.supervisor().starts("chat"), 1, "never restarted");
}

#[test]
fn sighup_applies_chat_settings_without_dropping_anyone() {
    let (mut daemon, path) = Proc::on_config("chat-sighup", CHAT_ONLY);
    let addr = daemon.addrs(&["chat"])["chat"];
    let mut a = Peer::connect(addr);
    let mut b = Peer::connect(addr);
    a.until("joined");
    std::fs::write(
        &path,
        common::without_web(&CHAT_ONLY.replace(
            "[chat]\n",
            "[chat]\nrate_limit = 20\nprefix = \"{name}: \"\n",
        )),
    )
    .unwrap();
    daemon.signal("HUP");
    let line = daemon.wait_for("config changed");
    assert!(
        line.contains("applied in place") && line.contains("prefix") && line.contains("rate_limit"),
        "{line}"
    );
    b.send(b"after the reload\n");
    assert_eq!(
        a.until("after").last().unwrap(),
        "user2: after the reload\n"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
}

/// Waits (a hang after [`common::HANG`]) until the kernel has nothing of
/// `stream`'s left to send.
fn wait_until_sent(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + common::HANG;
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ writes one int, the bytes not yet sent.
        let ok = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) } == 0;
        if !ok || queued == 0 || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_client_that_resets_has_every_line_it_sent_relayed() {
    let (_rt, _daemon, addr) = hub(|c| c.chat.rate_limit = 0);
    let mut reader = Peer::connect(addr);
    let mut talker = Peer::connect(addr);
    let deaf = Peer::stingy(addr);
    reader.until("joined");
    // Its output is stuck behind the room's noise when it sends and resets.
    make_noise(&mut talker, 100);
    let body = "r".repeat(60);
    let mut stream = deaf.stream;
    for i in 0..500 {
        stream
            .write_all(format!("s0-{i} {body}\n").as_bytes())
            .unwrap();
    }
    stream.write_all(b"an unterminated tail").unwrap();
    // A reset throws away what is still in the sender's own queue: reset
    // once everything has reached the hub.
    wait_until_sent(&stream);
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
    drop(deaf.reader);
    let (got, others, left) = until_left(&mut reader, "user3");
    assert!(left);
    assert_all_in_order(&got, 1, 500, &body);
    assert!(
        others.contains(&"[user3] an unterminated tail\n".to_owned()),
        "{others:#?}"
    );
}

#[test]
fn a_rate_limited_sender_that_closes_has_every_line_relayed() {
    let (_rt, _daemon, addr) = hub(|c| c.chat.rate_limit = 20);
    let mut reader = Peer::connect(addr);
    let mut talker = Peer::connect(addr);
    let mut script = Peer::connect(addr);
    reader.until("joined");
    let body = "q".repeat(30);
    let lines: String = (0..60).map(|i| format!("s0-{i} {body}\n")).collect();
    script.send(lines.as_bytes());
    drop(script);
    // The room goes on talking, so the hub writes to the closed client.
    let chatter = std::thread::spawn(move || {
        for i in 0..12 {
            talker.send(format!("chatter {i}\n").as_bytes());
            // Paced on purpose: the room talks all through the 3 s the script's lines take.
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let got = relayed(&mut reader, 60);
    chatter.join().unwrap();
    assert_all_in_order(&got, 1, 60, &body);
}

#[test]
fn a_dropped_flooder_cannot_flood_the_room() {
    let (_rt, _daemon, addr) = hub(|c| c.chat.write_timeout = Duration::from_secs(1));
    let mut reader = Peer::connect(addr);
    let mut writer = Peer::connect(addr);
    let flooder = Peer::stingy(addr);
    reader.until("joined");
    // The reader and the writer read all the time, as people do.
    let reading = std::thread::spawn(move || {
        let (mut got, mut floods) = (Vec::new(), 0);
        while got.len() < 60 {
            match reader.line() {
                Some(line) if line.contains(" s0-") => got.push(line),
                Some(line) if line.ends_with("] x\n") => floods += 1,
                Some(line) => assert!(!line.contains("skipped"), "{line}"),
                None => break,
            }
        }
        (got, floods)
    });
    let mut draining = writer.stream.try_clone().unwrap();
    std::thread::spawn(move || std::io::copy(&mut draining, &mut std::io::sink()));
    // The room's noise leaves the flooder's output stuck: it is dropped.
    make_noise(&mut writer, 100);
    let mut stream = flooder.stream;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let flood = std::thread::spawn(move || {
        let burst = "x\n".repeat(4096);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            if stream.write_all(burst.as_bytes()).is_err() {
                break;
            }
        }
    });
    let body = "w".repeat(20);
    for i in 0..60 {
        writer.send(format!("s0-{i} {body}\n").as_bytes());
        // Paced on purpose: the lines spread over the 4 s of the flood.
        std::thread::sleep(Duration::from_millis(40));
    }
    flood.join().unwrap();
    let (got, floods) = reading.join().unwrap();
    assert_all_in_order(&got, 1, 60, &body);
    // Read at 100 lines/s until dropped, then at most its receive buffer.
    assert!(floods < 150_000, "{floods} flood lines relayed");
}

#[test]
fn reloads_during_a_connection_storm_leave_the_hub_accepting() {
    let (rt, mut daemon, _) = hub(|c| {
        c.chat.listen = vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.2:0".parse().unwrap(),
        ];
    });
    let addrs = daemon.addrs("chat").to_vec();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let storm: Vec<_> = (0..4)
        .map(|_| {
            let (stop, made, addrs) = (stop.clone(), made.clone(), addrs.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for addr in &addrs {
                        if let Ok(s) = TcpStream::connect_timeout(addr, Duration::from_millis(200))
                        {
                            held.push(s);
                            made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    if held.len() > 200 {
                        held.clear();
                    }
                }
            })
        })
        .collect();
    let both = daemon.config().clone();
    let mut one = both.clone();
    one.chat.listen.truncate(1);
    for round in 0..10 {
        let next = if round % 2 == 0 {
            one.clone()
        } else {
            both.clone()
        };
        rt.block_on(daemon.reload(next));
        // The storm goes on under each config before the next reload.
        let after = made.load(std::sync::atomic::Ordering::Relaxed) + 100;
        wait_until("100 connections more", || {
            made.load(std::sync::atomic::Ordering::Relaxed) >= after
        });
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in storm {
        thread.join().unwrap();
    }
    // Every listener of the last config serves newcomers.
    for addr in daemon.addrs("chat").to_vec() {
        let mut peer = Peer::connect(addr);
        peer.send(b"/who\n");
        peer.until("online");
    }
    assert!(rt.block_on(daemon.shutdown()), "drained within the grace");
}

/// One sender (rate_limit = 0) sends `lines` numbered lines as fast as the
/// hub reads them while `readers` read as fast as they can, beside
/// `stopped` clients that never read: what each reader saw, and what each
/// stopped client finds once it reads.
fn firehose(
    queue: u32,
    on_lag: OnLag,
    readers: usize,
    stopped: usize,
    lines: u64,
) -> (Vec<Numbered>, Vec<Numbered>) {
    let (_rt, _daemon, addr) = hub(|c| {
        c.chat.queue = queue;
        c.chat.on_lag = on_lag;
        c.chat.rate_limit = 0;
        c.chat.max_per_source = 0;
        c.chat.write_timeout = Duration::from_secs(60);
    });
    let mut sender = Peer::connect(addr);
    let mut idle: Vec<Peer> = (0..stopped).map(|_| Peer::stingy(addr)).collect();
    // Every reader has its welcome before the first line, so it hears them all.
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let mut reader = Peer::connect(addr);
            std::thread::spawn(move || reader.numbered("[user1] ", lines - 1))
        })
        .collect();
    // Joins are told half a second after each connection: all of them
    // before the burst, so every line a stopped client skips is numbered.
    heard_joins(&mut sender, stopped + readers);
    let burst = numbered_lines("", lines);
    let writer = std::thread::spawn(move || {
        sender.send(&burst);
        sender
    });
    let seen: Vec<Numbered> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let _sender = writer.join().unwrap();
    let stopped_seen = idle
        .iter_mut()
        .map(|peer| peer.numbered("[user1] ", lines - 1))
        .collect();
    (seen, stopped_seen)
}

/// Reads `peer` until it has heard `count` joins told, however coalesced
/// (`*** a, b, c, d, e and 95 others joined`).
fn heard_joins(peer: &mut Peer, count: usize) {
    let mut heard = 0;
    while heard < count {
        let lines = peer.until(" joined\n");
        let notice = lines.last().unwrap();
        let names = notice
            .trim_start_matches("*** ")
            .trim_end_matches(" joined\n");
        heard += match names.rsplit_once(" and ") {
            Some((first, last)) => {
                let others = last
                    .strip_suffix(" others")
                    .map(|n| n.parse::<usize>().unwrap());
                first.split(", ").count() + others.unwrap_or(1)
            }
            None => 1,
        };
    }
}

fn every_line_in_order(seen: &[Numbered], lines: u64) {
    for (i, reader) in seen.iter().enumerate() {
        assert!(
            reader.every_line(lines),
            "reader {i} of {}: {reader:?}",
            seen.len()
        );
    }
}

#[test]
fn a_busy_room_paces_its_sender_and_skips_no_reader_that_keeps_up() {
    let (seen, _) = firehose(64, OnLag::Skip, 100, 0, 100_000);
    every_line_in_order(&seen, 100_000);
}

#[test]
fn a_stopped_reader_in_a_busy_room_skips_and_the_others_get_everything() {
    let (seen, stopped) = firehose(64, OnLag::Skip, 100, 1, 100_000);
    every_line_in_order(&seen, 100_000);
    // It reads at last: the oldest lines, a notice of what it missed, the newest.
    let stopped = &stopped[0];
    assert!(!stopped.closed, "{stopped:?}");
    assert!(!stopped.skip_notices.is_empty(), "{stopped:?}");
    assert!(stopped.lost > 0 && stopped.got > 0, "{stopped:?}");
    // The notices count lines, every one it missed and no more.
    assert_eq!(stopped.noticed(), stopped.lost, "{stopped:?}");
}

#[test]
fn a_stopped_reader_in_a_busy_room_is_dropped_under_on_lag_disconnect() {
    let (seen, stopped) = firehose(64, OnLag::Disconnect, 100, 1, 100_000);
    every_line_in_order(&seen, 100_000);
    assert!(stopped[0].closed, "{:?}", stopped[0]);
}

/// `echo /who | nc -q1 HOST 9999`, or a script that sends and then
/// `shutdown(SHUT_WR)`: what it asked for still comes, then the end.
#[test]
fn a_client_that_half_closes_still_gets_its_answer() {
    let (_rt, _daemon, addr) = hub(|_| {});
    for _ in 0..20 {
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.write_all(b"/who\n").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = String::new();
        client.read_to_string(&mut got).expect("the hub closes");
        assert!(got.starts_with("*** welcome"), "{got:?}");
        // The one before may still be leaving: it is the answer that counts.
        assert!(got.contains("\n*** online ("), "{got:?}");
    }
}

/// Lines of others already queued for a client that half-closes (its
/// socket took none of them yet) are written before the hub closes.
#[test]
fn a_half_closed_client_gets_the_lines_queued_for_it() {
    let (_rt, _daemon, addr) = hub(|c| {
        c.chat.rate_limit = 0;
        c.chat.queue = 4096;
    });
    let mut closing = Peer::stingy(addr);
    let mut talker = Peer::connect(addr);
    let mut reader = Peer::connect(addr);
    closing.until("user3 joined");
    const LINES: u64 = 2000;
    talker.send(&numbered_lines("n", LINES));
    assert!(reader.numbered("[user2] n", LINES - 1).every_line(LINES));
    closing.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let seen = closing.numbered("[user2] n", LINES - 1);
    assert!(seen.every_line(LINES), "{seen:?}");
    assert!(closing.closed());
}
