//! The room users expect and the teacher's hand on it, over loopback with
//! blocking sockets: history for a late client, `/msg`, `/me`, and the
//! chat's [`Moderator`] (kick, mute, rename, say) as the web page uses it,
//! through the running daemon's window.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::chat::hub;
use common::peer::Peer;
use common::wait_until;
use pinetd::daemon::Daemon;
use pinetd::observe::Moderator;

/// The chat's moderator, as the web page gets it.
fn moderator(daemon: &Daemon) -> Arc<dyn Moderator> {
    let window = daemon.observatory().window("chat");
    window.moderator().expect("the chat sets its moderator")
}

/// The id the page shows for the client called `name`, once it shows it.
fn id_of(daemon: &Daemon, name: &str) -> u64 {
    let window = daemon.observatory().window("chat");
    let mut id = None;
    wait_until(&format!("{name} on the page"), || {
        id = (window.open().into_iter())
            .find(|c| c.name.as_deref() == Some(name))
            .map(|c| c.id);
        id.is_some()
    });
    id.unwrap()
}

/// The lines a client gets next, up to the answer to a `/who` it sends
/// now, in order; but the joins of others, told when they are due.
fn lines_before_who(peer: &mut Peer) -> Vec<String> {
    peer.send(b"/who\n");
    let mut lines = peer.until("*** online (");
    lines.pop();
    lines.retain(|l| !(l.starts_with("*** ") && l.ends_with(" joined\n")));
    lines
}

/// The last line up to the first that contains `needle`.
fn last_until(peer: &mut Peer, needle: &str) -> String {
    peer.until(needle).pop().unwrap()
}

#[test]
fn a_late_client_gets_exactly_the_last_lines_then_the_live_ones() {
    let (_rt, _daemon, addr) = hub(|c| c.chat.history = 5);
    let mut alice = Peer::connect(addr);
    let mut carol = Peer::connect(addr);
    alice.send(b"/nick alice\n");
    alice.until("you are now");
    for line in ["one", "two", "three"] {
        alice.send(format!("{line}\n").as_bytes());
    }
    alice.send(b"/me waves\n/msg user2 a secret\nfour\n");
    carol.until("[alice] four");
    moderator(&_daemon).say("hello class").unwrap();
    carol.until("*** teacher: hello class");
    // Joins and renames are not kept, nor the private line.
    let mut late = Peer::connect(addr);
    assert_eq!(
        lines_before_who(&mut late),
        [
            "[alice] two\n",
            "[alice] three\n",
            "* alice waves\n",
            "[alice] four\n",
            "*** teacher: hello class\n",
        ]
    );
    // Then the live lines, as any client gets them.
    alice.send(b"five\n");
    assert_eq!(late.until("five"), ["[alice] five\n"]);
}

#[test]
fn history_zero_gives_none_and_a_reload_applies_a_new_length() {
    let (rt, mut daemon, addr) = hub(|c| c.chat.history = 0);
    let mut alice = Peer::connect(addr);
    let mut carol = Peer::connect(addr);
    alice.send(b"one\ntwo\nthree\n");
    carol.until("three");
    let mut late = Peer::connect(addr);
    assert_eq!(lines_before_who(&mut late), Vec::<String>::new());
    // Raised by a reload: lines said from then on are kept.
    let mut config = daemon.config().clone();
    config.chat.history = 2;
    rt.block_on(daemon.reload(config));
    alice.send(b"four\nfive\nsix\n");
    carol.until("six");
    let mut later = Peer::connect(addr);
    assert_eq!(
        lines_before_who(&mut later),
        ["[user1] five\n", "[user1] six\n"]
    );
}

/// Lines `[user1] NNNNNNN`, ten a write, a write a millisecond (a steady
/// stream, not a flood that starves the machine), until `stop` or a
/// million, then `end`; how many were written is in `written`.
fn send_numbered(mut stream: TcpStream, stop: Arc<AtomicBool>, written: Arc<AtomicU64>) {
    let mut n = 0u64;
    while !stop.load(Relaxed) && n < 1_000_000 {
        let lines: String = (n..n + 10).map(|n| format!("{n:07}\n")).collect();
        if stream.write_all(lines.as_bytes()).is_err() {
            return;
        }
        n += 10;
        written.store(n, Relaxed);
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = stream.write_all(b"end\n");
}

#[test]
fn a_client_joining_while_another_sends_gets_every_line_once() {
    const HISTORY: u64 = 50;
    let (_rt, daemon, addr) = hub(|c| {
        c.chat.history = HISTORY as u32;
        c.chat.rate_limit = 0;
    });
    let window = daemon.observatory().window("chat");
    let sender = Peer::connect(addr);
    let (stop, written) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let thread = {
        let (stream, stop, written) = (
            sender.stream.try_clone().unwrap(),
            stop.clone(),
            written.clone(),
        );
        std::thread::spawn(move || send_numbered(stream, stop, written))
    };
    // The room has said well over the history (its first line is the
    // sender's join): the late client joins in the middle of the stream.
    wait_until("lines said", || window.room_lines() > 3 * HISTORY);
    let said_before = window.room_lines() - 1;
    let mut late = Peer::connect(addr);
    let said_after = window.room_lines() - 1;
    wait_until("more lines", || written.load(Relaxed) > said_after + 200);
    stop.store(true, Relaxed);
    let mut numbers = Vec::new();
    for line in late.until("] end") {
        if let Some(n) = line
            .strip_prefix("[user1] ")
            .and_then(|n| n.trim().parse::<u64>().ok())
        {
            numbers.push(n);
        }
    }
    thread.join().unwrap();
    // Lines first..: each once, in order, none missed, to the last.
    let first = numbers[0];
    let want: Vec<u64> = (first..first + numbers.len() as u64).collect();
    assert_eq!(numbers, want, "every line once, in order");
    assert_eq!(numbers.len() as u64, written.load(Relaxed) - first);
    // It joined when the room had said `first + HISTORY` of them.
    let joined_at = first + HISTORY;
    assert!(
        (said_before..=said_after).contains(&joined_at),
        "history from {first}: joined between {said_before} and {said_after}"
    );
}

#[test]
fn msg_reaches_one_client_alone_and_the_sender_is_told() {
    let (_rt, daemon, addr) = hub(|_| {});
    let mut alice = Peer::connect(addr);
    let mut bob = Peer::connect(addr);
    let mut carol = Peer::connect(addr);
    alice.send(b"/nick alice\n");
    alice.until("you are now");
    bob.send(b"/nick bob\n");
    bob.until("you are now");
    alice.send("/msg bob 안녕 bob\n".as_bytes());
    assert_eq!(last_until(&mut alice, "→ bob"), "[you → bob] 안녕 bob\n");
    assert_eq!(last_until(&mut bob, "→ you"), "[alice → you] 안녕 bob\n");
    alice.send(b"/msg zed hello?\n/msg bob\n/msg alice me\n");
    assert_eq!(
        last_until(&mut alice, "nobody"),
        "*** nobody called zed is here; /who lists who is\n"
    );
    assert_eq!(
        last_until(&mut alice, "usage"),
        "*** usage: /msg NAME text\n"
    );
    assert!(last_until(&mut alice, "that is you").starts_with("*** that is you"));
    // The third client hears the public line after it, and never the private one.
    alice.send(b"public\n");
    let heard = carol.until("[alice] public");
    assert!(heard.iter().all(|l| !l.contains("안녕")), "{heard:#?}");
    let window = daemon.observatory().window("chat");
    let room: Vec<_> = window.room(100).into_iter().map(|l| l.lines).collect();
    assert!(
        room.iter()
            .all(|l| !String::from_utf8_lossy(l).contains("안녕"))
    );
}

#[test]
fn me_is_relayed_as_an_action_and_help_lists_both() {
    let (_rt, _daemon, addr) = hub(|_| {});
    let mut alice = Peer::connect(addr);
    let mut bob = Peer::connect(addr);
    alice.send(b"/me waves to everyone\n/me\n");
    assert_eq!(
        bob.until("waves").last().unwrap(),
        "* user1 waves to everyone\n"
    );
    assert!(last_until(&mut alice, "usage").starts_with("*** usage: /me text"));
    alice.send(b"/help\n");
    let help = alice.until("commands").pop().unwrap();
    assert!(
        help.contains("/msg NAME text") && help.contains("/me text"),
        "{help}"
    );
}

#[test]
fn msg_and_me_each_cost_one_message_of_the_allowance() {
    let (_rt, _daemon, addr) = hub(|c| c.chat.rate_limit = 10);
    let mut alice = Peer::connect(addr);
    let mut bob = Peer::connect(addr);
    let started = Instant::now();
    let burst: String = (0..20)
        .map(|i| format!("/msg user2 p{i}\n/me m{i}\n"))
        .collect();
    alice.send(burst.as_bytes());
    let got = bob.until("* user1 m19");
    let private = got
        .iter()
        .filter(|l| l.starts_with("[user1 → you] p"))
        .count();
    let actions = got.iter().filter(|l| l.starts_with("* user1 m")).count();
    assert_eq!((private, actions), (20, 20), "nothing lost: {got:#?}");
    // 10 at once, then 10 a second: 40 take about three seconds.
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_kicked_client_is_told_and_closed_after_its_lines_are_relayed() {
    // One line a second: what the hub has read of bob waits for his allowance.
    let (_rt, daemon, addr) = hub(|c| c.chat.rate_limit = 1);
    let mut alice = Peer::connect(addr);
    let mut bob = Peer::connect(addr);
    let id = id_of(&daemon, "user2");
    bob.send(b"before one\nbefore two\nbefore three\n");
    // The hub has them (the first is relayed; only a line it has not
    // received yet could be lost to a kick).
    alice.until("[user2] before one");
    moderator(&daemon).kick(id).unwrap();
    assert_eq!(
        bob.until("removed").last().unwrap(),
        "*** removed by the teacher\n"
    );
    assert!(bob.closed());
    let heard = alice.until("user2 left");
    let said: Vec<_> = heard.iter().filter(|l| l.starts_with("[user2]")).collect();
    assert_eq!(said, ["[user2] before two\n", "[user2] before three\n"]);
    let gone = moderator(&daemon).kick(id).unwrap_err();
    assert!(gone.contains("no client"), "{gone}");
}

#[test]
fn a_muted_client_reads_but_is_refused_until_its_time_ends() {
    let (_rt, daemon, addr) = hub(|_| {});
    let mut alice = Peer::connect(addr);
    let mut bob = Peer::connect(addr);
    let id = id_of(&daemon, "user2");
    moderator(&daemon)
        .mute(id, Duration::from_millis(300))
        .unwrap();
    let told = last_until(&mut bob, "muted you for 1 second");
    assert!(told.starts_with("*** the teacher muted"), "{told}");
    bob.send(b"refused\n/msg user1 refused too\n/me refused\n");
    for _ in 0..3 {
        let refusal = bob.until("you are muted").pop().unwrap();
        assert!(refusal.ends_with("more; not sent\n"), "{refusal}");
    }
    // It still reads.
    alice.send(b"to everyone\n");
    bob.until("to everyone");
    // When the mute ends, it is told so, unasked; then its lines go.
    let ended = bob.until("*** your mute has ended").pop().unwrap();
    assert_eq!(ended, "*** your mute has ended; you can talk again\n");
    bob.send(b"ping\n");
    let heard = alice.until("[user2] ping");
    assert!(heard.iter().all(|l| !l.contains("refused")), "{heard:#?}");
    // A long mute (longer than any clock counts), lifted by hand.
    let teacher = moderator(&daemon);
    teacher.mute(id, Duration::MAX).unwrap();
    bob.until(&format!("muted you for {} seconds", u64::MAX));
    bob.send(b"still muted\n");
    bob.until("you are muted");
    teacher.mute(id, Duration::ZERO).unwrap();
    bob.until("lifted your mute");
    bob.send(b"free again\n");
    alice.until("[user2] free again");
}

#[test]
fn a_renamed_client_and_the_room_are_told_and_the_page_shows_it() {
    let (_rt, daemon, addr) = hub(|_| {});
    let mut alice = Peer::connect(addr);
    let mut bob = Peer::connect(addr);
    let teacher = moderator(&daemon);
    let (a, b) = (id_of(&daemon, "user1"), id_of(&daemon, "user2"));
    bob.send(b"hi\n");
    alice.until("[user2] hi");
    assert_eq!(teacher.rename(b, "kind"), Ok("user2".into()));
    assert_eq!(
        bob.until("renamed you").last().unwrap(),
        "*** the teacher renamed you to kind\n"
    );
    assert_eq!(
        alice.until("renamed").last().unwrap(),
        "*** the teacher renamed user2 to kind\n"
    );
    assert_eq!(id_of(&daemon, "kind"), b);
    bob.send(b"hello again\n");
    assert_eq!(alice.until("again").last().unwrap(), "[kind] hello again\n");
    // Refused like /nick: taken, spaced; and an id not here.
    assert_eq!(teacher.rename(a, "kind"), Err("kind is taken".into()));
    assert!(
        teacher
            .rename(a, "two words")
            .unwrap_err()
            .contains("no spaces")
    );
    assert!(
        teacher
            .rename(999, "x")
            .unwrap_err()
            .contains("no client 999")
    );
}

#[test]
fn the_teacher_says_a_line_to_the_room_and_bad_lines_are_refused() {
    let (_rt, daemon, addr) = hub(|c| c.chat.max_line_bytes = 64);
    let mut alice = Peer::connect(addr);
    let mut bob = Peer::connect(addr);
    let teacher = moderator(&daemon);
    teacher.say("please stop the loops").unwrap();
    for peer in [&mut alice, &mut bob] {
        assert_eq!(
            peer.until("teacher:").last().unwrap(),
            "*** teacher: please stop the loops\n"
        );
    }
    for bad in ["", "  ", "two\nlines", "bell\x07", &"x".repeat(65)] {
        assert!(teacher.say(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_history_over_a_thousand_is_an_error_naming_file_line_and_key() {
    let text = "[chat]\nhistory = 1001\n";
    let error = pinetd::config::Config::parse(text, "test.toml").unwrap_err();
    assert_eq!(
        error.to_string(),
        "test.toml:2:11: chat.history: 1001 is out of range (0 to 1000)"
    );
    let config = pinetd::config::Config::parse("[chat]\nhistory = 1000\n", "test.toml");
    assert_eq!(config.unwrap().chat.history, 1000);
}

/// The course's client, unchanged: it prints whatever one `recv(2048)`
/// returns, and sends each message with one `send()` and no newline.
#[test]
fn the_course_client_gets_the_history_as_ordinary_text_and_still_talks() {
    let (_rt, _daemon, addr) = hub(|c| c.chat.history = 3);
    let mut alice = Peer::connect(addr);
    let mut carol = Peer::connect(addr);
    alice.send(b"one\ntwo\nthree\nfour\n");
    carol.until("four");
    let mut course = TcpStream::connect(addr).unwrap();
    course.set_read_timeout(Some(common::HANG)).unwrap();
    let mut printed = String::new();
    while !printed.contains("[user1] four\n") {
        let mut buf = [0u8; 2048];
        let n = std::io::Read::read(&mut course, &mut buf).unwrap();
        assert!(n > 0, "closed; printed {printed:?}");
        printed.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    assert!(printed.starts_with("*** welcome"), "{printed}");
    let history = "[user1] two\n[user1] three\n[user1] four\n";
    assert!(
        printed.contains(history) && !printed.contains("one"),
        "{printed}"
    );
    course.write_all(b"[minsu] hello").unwrap();
    assert_eq!(last_until(&mut alice, "hello"), "[minsu] hello\n");
}

/// A nats-server on a loopback port of the kernel's choosing, stopped by
/// PID when dropped (as in tests/bridge.rs); None when it is not installed.
fn nats_server() -> Option<(common::Proc, String)> {
    let program = common::program("nats-server", "nats-server")?;
    let mut command = std::process::Command::new(program);
    command.args(["-a", "127.0.0.1", "-p", "-1", "-m", "0"]);
    let mut server = common::Proc::spawn(command);
    let line = server.wait_for("Listening for client connections on");
    let port = line.rsplit(':').next().unwrap().trim().to_owned();
    Some((server, format!("nats://127.0.0.1:{port}")))
}

/// `from` says probes until `to` hears one: the bridge is up that way.
fn bridged(from: &mut Peer, to: &mut Peer) {
    to.stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + common::HANG;
    'probing: for n in 0.. {
        assert!(Instant::now() < deadline, "the bridge never came up");
        from.send(format!("probe {n}\n").as_bytes());
        while let Some(line) = to.line() {
            if line.contains("probe ") {
                break 'probing;
            }
        }
    }
    (to.stream)
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
}

#[test]
fn the_teachers_line_and_me_cross_the_bridge_and_private_lines_do_not() {
    let Some((_nats, url)) = nats_server() else {
        return;
    };
    let bridged_hub = || {
        hub(|c| {
            c.chat.bridge_url = url.clone();
            c.chat.bridge_subject = "room.test".into();
        })
    };
    let ((_ra, a, addr_a), (_rb, _b, addr_b)) = (bridged_hub(), bridged_hub());
    let mut alice = Peer::connect(addr_a);
    let mut bob = Peer::connect(addr_b);
    bridged(&mut alice, &mut bob);
    bob.send(b"/nick bob\n");
    bob.until("you are now");
    alice.send(b"/msg bob secret\n/me waves\n");
    assert_eq!(
        last_until(&mut alice, "nobody"),
        "*** nobody called bob is here (private lines reach this hub only); /who lists who is\n"
    );
    moderator(&a).say("hello both rooms").unwrap();
    let heard = bob.until("*** teacher: hello both rooms");
    assert!(heard.contains(&"* user1 waves\n".to_owned()), "{heard:#?}");
    assert!(heard.iter().all(|l| !l.contains("secret")), "{heard:#?}");
    // What crossed is in the other room's history too.
    let mut late = Peer::connect(addr_b);
    let history = lines_before_who(&mut late);
    let tail = &history[history.len() - 2..];
    assert_eq!(tail, ["* user1 waves\n", "*** teacher: hello both rooms\n"]);
}

#[test]
fn a_private_line_obeys_max_line_bytes() {
    let (_rt, _daemon, addr) = hub(|c| c.chat.max_line_bytes = 32);
    let mut alice = Peer::connect(addr);
    let mut bob = Peer::connect(addr);
    alice.send(format!("/msg user2 {}\n", "x".repeat(100)).as_bytes());
    assert_eq!(
        last_until(&mut alice, "cut"),
        "*** your line was longer than 32 bytes and was cut\n"
    );
    let cut = format!("[user1 → you] {}\n", "x".repeat(32 - "/msg user2 ".len()));
    assert_eq!(last_until(&mut bob, "→ you"), cut);
}

/// Private lines to a client that reads nothing pile up to a bound, then
/// its senders are told; the room goes on.
#[test]
fn private_lines_to_a_client_that_never_reads_are_refused_once_it_is_full() {
    let (_rt, _daemon, addr) = hub(|c| c.chat.rate_limit = 0);
    let mut alice = Peer::connect(addr);
    let _deaf = Peer::stingy(addr);
    let mut carol = Peer::connect(addr);
    let line = format!("/msg user2 {}\n", "z".repeat(4000));
    let mut refused = false;
    for _ in 0..1000 {
        alice.send(line.as_bytes());
        alice.send(b"/who\n");
        let answers = alice.until("*** online (");
        if answers.iter().any(|l| l.contains("user2 is not reading")) {
            refused = true;
            break;
        }
    }
    assert!(refused, "never refused");
    alice.send(b"the room goes on\n");
    carol.until("[user1] the room goes on");
}
