//! Hubs sharing one room through NATS: a real `nats-server` (Debian's
//! package; the tests skip without it) on a loopback port of its own,
//! stopped by PID, and two or three daemons bridged through it.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::chat::hub;
use common::peer::{Peer, numbered_lines};
use common::{HANG, Proc, temp_dir, write_config};
use pinetd::config::Config;
use pinetd::daemon::Daemon;
use pinetd::describe::Description;

/// A nats-server on 127.0.0.1, killed on drop.
struct Nats {
    server: Proc,
    port: u16,
}

impl Nats {
    /// The server's program, or None (the test is skipped, saying why).
    fn program() -> Option<String> {
        common::program("nats-server", "nats-server")
    }

    /// Starts it on `port` (0: one of the kernel's choosing); ready once it
    /// says where it listens.
    fn start(program: &str, port: u16) -> Nats {
        let port_arg = if port == 0 {
            "-1".to_owned()
        } else {
            port.to_string()
        };
        let mut command = Command::new(program);
        command.args(["-a", "127.0.0.1", "-p", &port_arg, "-m", "0"]);
        let mut server = Proc::spawn(command);
        let line = server.wait_for("Listening for client connections on");
        let port = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Nats { server, port }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (SIGKILL), as a crash or a pulled cable would.
    fn kill(mut self) -> u16 {
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
        self.port
    }
}

/// A hub bridged to `url` on `subject`, in-process on its own runtime.
fn bridged_hub(url: &str, subject: &str) -> (tokio::runtime::Runtime, Daemon, SocketAddr) {
    hub(|c| {
        c.chat.rate_limit = 0;
        c.chat.bridge_url = url.to_owned();
        c.chat.bridge_subject = subject.to_owned();
    })
}

/// A hub and the runtime it runs on.
type Hub = (tokio::runtime::Runtime, Daemon);

/// Two hubs bridged through `nats` on `subject`, two clients on each (a1
/// and a2 on the first, b1 and b2 on the second), the bridge up both ways.
fn two_hubs(nats: &Nats, subject: &str) -> (Hub, Hub, [Peer; 4]) {
    let (ra, a, addr_a) = bridged_hub(&nats.url(), subject);
    let (rb, b, addr_b) = bridged_hub(&nats.url(), subject);
    let mut a1 = Peer::connect(addr_a);
    let a2 = Peer::connect(addr_a);
    let mut b1 = Peer::connect(addr_b);
    let b2 = Peer::connect(addr_b);
    bridged_between(&mut a1, &mut b1, "a-to-b");
    bridged_between(&mut b1, &mut a1, "b-to-a");
    ((ra, a), (rb, b), [a1, a2, b1, b2])
}

/// `from` says numbered probes until `to` hears one: the bridge is up both
/// ways between their hubs (what `to` read up to then is dropped).
fn bridged_between(from: &mut Peer, to: &mut Peer, tag: &str) {
    to.stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + HANG;
    'probing: for n in 0.. {
        assert!(Instant::now() < deadline, "{tag}: the bridge never came up");
        from.send(format!("probe {tag} {n}\n").as_bytes());
        while let Some(line) = to.line() {
            if line.contains(&format!("probe {tag} ")) {
                break 'probing;
            }
        }
    }
    to.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
}

/// Reads `peer`'s lines until it has heard every one of `ends`; returns
/// how often it heard each line (prefix and all), probes and notices aside.
fn heard_until(peer: &mut Peer, ends: &[&str]) -> HashMap<String, u32> {
    let mut heard = HashMap::new();
    let mut waiting: Vec<&str> = ends.to_vec();
    while !waiting.is_empty() {
        let line = peer
            .line()
            .unwrap_or_else(|| panic!("closed or quiet while waiting for {waiting:?}"));
        waiting.retain(|end| !line.contains(end));
        if !line.contains("probe ") && !line.starts_with("***") {
            *heard.entry(line).or_default() += 1;
        }
    }
    heard
}

fn once(heard: &HashMap<String, u32>, text: &str) -> bool {
    heard
        .iter()
        .filter(|(line, _)| line.contains(text))
        .map(|(_, n)| *n)
        .sum::<u32>()
        == 1
}

fn never(heard: &HashMap<String, u32>, text: &str) -> bool {
    !heard.keys().any(|line| line.contains(text))
}

#[test]
fn a_line_reaches_every_other_client_on_both_hubs_once_never_its_sender() {
    let Some(program) = Nats::program() else {
        return;
    };
    let nats = Nats::start(&program, 0);
    let (_a, _b, [mut a1, mut a2, mut b1, mut b2]) = two_hubs(&nats, "pinetd.test.once");

    a1.send(b"hello from a1\n");
    b1.send(b"hello from b1\n");
    // Each says its end after its line: one connection keeps a sender's order.
    for (peer, end) in [
        (&mut a1, "end a1"),
        (&mut a2, "end a2"),
        (&mut b1, "end b1"),
        (&mut b2, "end b2"),
    ] {
        peer.send(format!("{end}\n").as_bytes());
    }
    let all = ["end a1", "end a2", "end b1", "end b2"];
    let others = |me: &str| -> Vec<&str> { all.iter().copied().filter(|e| *e != me).collect() };
    let heard_a1 = heard_until(&mut a1, &others("end a1"));
    let heard_a2 = heard_until(&mut a2, &others("end a2"));
    let heard_b1 = heard_until(&mut b1, &others("end b1"));
    let heard_b2 = heard_until(&mut b2, &others("end b2"));
    // A second round: anything echoed or looped back would be in by now.
    for (peer, end) in [
        (&mut a1, "again a1"),
        (&mut a2, "again a2"),
        (&mut b1, "again b1"),
        (&mut b2, "again b2"),
    ] {
        peer.send(format!("{end}\n").as_bytes());
    }
    let again = ["again a1", "again a2", "again b1", "again b2"];
    let more = |me: &str| -> Vec<&str> { again.iter().copied().filter(|e| *e != me).collect() };
    let late = [
        heard_until(&mut a1, &more("again a1")),
        heard_until(&mut a2, &more("again a2")),
        heard_until(&mut b1, &more("again b1")),
        heard_until(&mut b2, &more("again b2")),
    ];
    for heard in &late {
        assert!(never(heard, "hello from"), "heard again later: {heard:#?}");
    }

    assert!(never(&heard_a1, "hello from a1"), "{heard_a1:#?}");
    assert!(once(&heard_a1, "hello from b1"), "{heard_a1:#?}");
    assert!(once(&heard_a2, "hello from a1"), "{heard_a2:#?}");
    assert!(once(&heard_a2, "hello from b1"), "{heard_a2:#?}");
    assert!(never(&heard_b1, "hello from b1"), "{heard_b1:#?}");
    assert!(once(&heard_b1, "hello from a1"), "{heard_b1:#?}");
    assert!(once(&heard_b2, "hello from a1"), "{heard_b2:#?}");
    assert!(once(&heard_b2, "hello from b1"), "{heard_b2:#?}");
    // Formatted by the sender's hub: its prefix and name.
    assert!(
        heard_b2.contains_key("[user1] hello from a1\n"),
        "{heard_b2:#?}"
    );
}

#[test]
fn joins_leaves_and_who_cross_naming_the_hub() {
    let Some(program) = Nats::program() else {
        return;
    };
    let nats = Nats::start(&program, 0);
    let (ra, a, addr_a) = bridged_hub(&nats.url(), "pinetd.test.notices");
    let (_rb, _b, addr_b) = bridged_hub(&nats.url(), "pinetd.test.notices");
    let mut a1 = Peer::connect(addr_a);
    let mut b1 = Peer::connect(addr_b);
    bridged_between(&mut a1, &mut b1, "a-to-b");
    bridged_between(&mut b1, &mut a1, "b-to-a");

    let mut a2 = Peer::connect(addr_a);
    a2.send(b"/nick alice\n");
    a2.until("you are now alice");
    let host = hostname::get().unwrap().to_string_lossy().into_owned();
    // Named at once: it joins under that name, here and there.
    assert_eq!(
        b1.until(&format!("joined on {host}")).last().unwrap(),
        &format!("*** alice joined on {host}\n")
    );
    a2.send(b"/nick alicia\n");
    assert_eq!(
        b1.until("is now alicia").last().unwrap(),
        &format!("*** alice is now alicia on {host}\n")
    );
    a2.send(b"bye\n");
    assert_eq!(
        b1.until("left on").last().unwrap(),
        &format!("*** alicia left on {host}\n")
    );
    // /who: the local clients, then how many are on the other hubs.
    b1.send(b"/who\n");
    let who = b1.until("other hub");
    let who = &who[who.len() - 2..];
    assert_eq!(who[0], "*** online (1): user1\n");
    assert_eq!(
        who[1],
        format!("*** and 1 more on 1 other hub: {host} (1)\n")
    );
    // A hub that stops says so: its clients are gone from the room.
    assert!(ra.block_on(a.shutdown()), "hub a drains");
    assert_eq!(
        b1.until("its hub stopped").last().unwrap(),
        &format!("*** 1 left on {host} (its hub stopped)\n")
    );
    b1.send(b"/who\n");
    assert_eq!(
        b1.until("online").last().unwrap(),
        "*** online (1): user1\n"
    );
    b1.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let after = b1.line().unwrap_or_default();
    assert!(!after.contains("other hub"), "{after:?}");
}

#[test]
fn a_thousand_lines_each_way_cross_in_order_once_each() {
    let Some(program) = Nats::program() else {
        return;
    };
    let nats = Nats::start(&program, 0);
    let (_a, _b, [mut a1, mut a2, mut b1, mut b2]) = two_hubs(&nats, "pinetd.test.order");

    let burst = |who: &str| -> Vec<u8> {
        (0..1000)
            .flat_map(|n| format!("{who} {n:04}\n").into_bytes())
            .chain(format!("{who} done\n").into_bytes())
            .collect()
    };
    // At full speed, both ways at once, each in one write.
    a1.send(&burst("from-a"));
    b1.send(&burst("from-b"));
    for (peer, other) in [(&mut b2, "from-a"), (&mut a2, "from-b")] {
        let mut next = 0;
        loop {
            let line = peer.line().expect("the burst arrives");
            let Some(rest) = line.strip_prefix(&format!("[user1] {other} ")) else {
                continue;
            };
            if rest == "done\n" {
                break;
            }
            assert_eq!(rest, format!("{next:04}\n"), "in order, once each");
            next += 1;
        }
        assert_eq!(next, 1000);
    }
}

#[test]
fn with_nats_killed_each_room_goes_on_and_bridges_again_once_it_is_back() {
    let Some(program) = Nats::program() else {
        return;
    };
    let nats = Nats::start(&program, 0);
    let ((_ra, a), _b, [mut a1, mut a2, mut b1, mut b2]) = two_hubs(&nats, "pinetd.test.outage");

    let port = nats.kill();
    // Each local room works; what is said meanwhile is counted, not bridged.
    let deadline = Instant::now() + HANG;
    for n in 0.. {
        a1.send(format!("away {n}\n").as_bytes());
        assert!(
            a2.until("away ")
                .last()
                .unwrap()
                .contains(&format!("away {n}\n"))
        );
        if a.stats().to_string().contains("not bridged") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never counted as not bridged: {}",
            a.stats()
        );
        // Polls the count; each turn also checks that the local room still works.
        std::thread::sleep(Duration::from_millis(50));
    }
    b1.send(b"local on b\n");
    b2.until("local on b");

    let nats = Nats::start(&program, port);
    assert_eq!(nats.port, port);
    bridged_between(&mut a1, &mut b1, "back-a-to-b");
    bridged_between(&mut b1, &mut a1, "back-b-to-a");
    a1.send(b"after a1\nend a1\n");
    b1.send(b"after b1\nend b1\n");
    a2.send(b"end a2\n");
    b2.send(b"end b2\n");
    let heard_a2 = heard_until(&mut a2, &["end a1", "end b1", "end b2"]);
    let heard_b2 = heard_until(&mut b2, &["end a1", "end b1", "end a2"]);
    // Nothing twice: not the lines said during the outage, not those after.
    for heard in [&heard_a2, &heard_b2] {
        assert!(heard.values().all(|&n| n == 1), "{heard:#?}");
    }
    assert!(once(&heard_a2, "after b1") && once(&heard_b2, "after a1"));
}

#[test]
fn with_nats_absent_at_start_the_daemon_is_ready_and_bridges_once_it_appears() {
    let Some(program) = Nats::program() else {
        return;
    };
    // A port nobody listens on, for now.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let dir = temp_dir("bridge-absent");
    let path = write_config(
        &dir,
        &format!(
            "[json_echo]\nenabled = false\n[udp_echo]\nenabled = false\n[announcer]\nenabled = false\n[discovery]\nenabled = false\n[chat]\nlisten = \"127.0.0.1:0\"\nbridge_url = \"{url}\"\nbridge_subject = \"pinetd.test.absent\"\n"
        ),
    );
    let notify_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&notify_path);
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(HANG)).unwrap();
    let mut daemon = Proc::start_with_env(
        &["--config", path.to_str().unwrap()],
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    let addr_a = daemon.addrs(&["chat"])["chat"];
    let mut buf = [0u8; 4096];
    let n = notify.recv(&mut buf).expect("READY=1 with NATS away");
    assert!(
        buf[..n].starts_with(b"READY=1"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    daemon.wait_for("NATS is not reachable");
    // The room works locally meanwhile.
    let mut a1 = Peer::connect(addr_a);
    let mut a2 = Peer::connect(addr_a);
    a1.send(b"alone for now\n");
    a2.until("alone for now");

    // An outage of a few reconnect attempts (100, 200, 400, 800 ms apart)...
    // The wait is what is tested: no attempt can be seen from here, and
    // each failed one must stay out of the log.
    std::thread::sleep(Duration::from_millis(1500));
    let _nats = Nats::start(&program, port);
    let (_rb, _b, addr_b) = bridged_hub(&url, "pinetd.test.absent");
    daemon.wait_for("connected to NATS; the room is bridged");
    // ... is logged once, and the NATS client's own chatter not at all.
    let outage: Vec<&String> = daemon
        .log
        .iter()
        .filter(|l| l.contains("NATS") || l.contains("nats"))
        .collect();
    assert_eq!(
        outage
            .iter()
            .filter(|l| l.contains("not reachable"))
            .count(),
        1,
        "{outage:#?}"
    );
    assert!(
        daemon
            .log
            .iter()
            .all(|l| !l.contains("event:") && !l.contains("IO error")),
        "{:#?}",
        daemon.log
    );
    let mut b1 = Peer::connect(addr_b);
    bridged_between(&mut a1, &mut b1, "a-to-b");
    bridged_between(&mut b1, &mut a1, "b-to-a");
    b1.send(b"hello a\n");
    a2.until("hello a");
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(HANG), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reload_moves_the_bridge_without_dropping_anyone_and_discovery_names_the_room() {
    let Some(program) = Nats::program() else {
        return;
    };
    let nats = Nats::start(&program, 0);
    let (_ra, _a, addr_a) = bridged_hub(&nats.url(), "pinetd.test.room1");
    let (runtime, mut b, addr_b) = hub(|c| {
        c.chat.rate_limit = 0;
        c.chat.bridge_url = nats.url();
        c.chat.bridge_subject = "pinetd.test.room2".into();
        c.discovery.enabled = true;
        c.discovery.listen = vec!["127.0.0.1:0".parse().unwrap()];
    });
    let discovery = b.addrs("discovery")[0];
    let described = || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket.send_to(b"DISCOVER", discovery).unwrap();
        let mut buf = [0u8; 2048];
        let n = socket.recv(&mut buf).expect("a discovery reply");
        Description::parse(&buf[..n]).expect("a description")
    };
    assert_eq!(described().room.as_deref(), Some("pinetd.test.room2"));
    assert!(described().services_text().contains("chat"));

    let mut a1 = Peer::connect(addr_a);
    let mut b1 = Peer::connect(addr_b);
    let mut b2 = Peer::connect(addr_b);
    // Different rooms: b2 hears b1, never a1.
    a1.send(b"only in room1\n");
    b1.send(b"only in room2\n");
    b2.until("only in room2");

    let mut moved = b.config().clone();
    moved.chat.bridge_subject = "pinetd.test.room1".into();
    assert_eq!(runtime.block_on(b.reload(moved)), ["chat"]);
    bridged_between(&mut a1, &mut b1, "a-to-b");
    a1.send(b"now in one room\n");
    let lines = b2.until("now in one room");
    assert!(
        lines.iter().all(|l| !l.contains("only in room1")),
        "{lines:#?}"
    );
    // Nobody was dropped: b1 and b2 still talk.
    b1.send(b"still here\n");
    b2.until("still here");
    assert_eq!(described().room.as_deref(), Some("pinetd.test.room1"));
    // Off: the description says no room.
    let mut off = b.config().clone();
    off.chat.bridge_url = String::new();
    runtime.block_on(b.reload(off));
    let deadline = Instant::now() + HANG;
    while described().room.is_some() {
        assert!(
            Instant::now() < deadline,
            "the room stays in the description"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw NATS client: publishes what it likes on a subject.
struct RawNats {
    stream: std::net::TcpStream,
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl RawNats {
    fn connect(port: u16) -> RawNats {
        use std::io::{BufRead, Write};
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(HANG)).unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut info = String::new();
        reader.read_line(&mut info).unwrap();
        assert!(info.starts_with("INFO"), "{info:?}");
        let mut raw = RawNats { stream, reader };
        raw.stream
            .write_all(b"CONNECT {\"verbose\":false,\"headers\":true}\r\n")
            .unwrap();
        raw.sync();
        raw
    }

    /// HPUB with `headers` (the whole block, `NATS/1.0` line and blank line included).
    fn publish(&mut self, subject: &str, headers: &[u8], payload: &[u8]) {
        self.publish_unsynced(subject, headers, payload);
        self.sync();
    }

    /// Publishes, not waiting for the server to have taken it.
    fn publish_unsynced(&mut self, subject: &str, headers: &[u8], payload: &[u8]) {
        use std::io::Write;
        let mut message = format!(
            "HPUB {subject} {} {}\r\n",
            headers.len(),
            headers.len() + payload.len()
        )
        .into_bytes();
        message.extend_from_slice(headers);
        message.extend_from_slice(payload);
        message.extend_from_slice(b"\r\n");
        self.stream.write_all(&message).unwrap();
    }

    /// PING, PONG: the server has taken everything before.
    fn sync(&mut self) {
        use std::io::{BufRead, Write};
        self.stream.write_all(b"PING\r\n").unwrap();
        let mut line = String::new();
        while !line.starts_with("PONG") {
            line.clear();
            assert!(
                self.reader.read_line(&mut line).unwrap() > 0,
                "server closed"
            );
            assert!(!line.starts_with("-ERR"), "{line:?}");
        }
    }
}

/// A daemon whose chat room is bridged on `subject`, with `tune` applied.
fn bridged_daemon(
    nats: &Nats,
    subject: &str,
    tune: impl FnOnce(&mut Config),
) -> (tokio::runtime::Runtime, Daemon) {
    let (runtime, daemon, _) = hub(|c| {
        c.chat.bridge_url = nats.url();
        c.chat.bridge_subject = subject.into();
        tune(c);
    });
    (runtime, daemon)
}

fn say_headers(hub: &str) -> Vec<u8> {
    format!("NATS/1.0\r\nPinetd-Hub: {hub}\r\nPinetd-Host: evil\r\nPinetd-Kind: say\r\nPinetd-Online: 18446744073709551615\r\n\r\n").into_bytes()
}

#[test]
fn what_arrives_from_nats_is_cleaned_limited_and_cannot_stop_the_bridge() {
    let Some(program) = Nats::program() else {
        return;
    };
    let nats = Nats::start(&program, 0);
    let subject = "pinetd.test.hostile";
    let (_runtime, a) = bridged_daemon(&nats, subject, |c| c.chat.bridge_rate_limit = 50);
    let (_rb, _b, addr_b) = bridged_hub(&nats.url(), subject);
    let mut a1 = Peer::connect(a.addrs("chat")[0]);
    let mut b1 = Peer::connect(addr_b);
    bridged_between(&mut b1, &mut a1, "b-to-a");
    let chat = a.stats().service("chat");
    let refused = |why| chat.refused(why);

    let mut raw = RawNats::connect(nats.port);
    // Control characters reach nobody's terminal.
    raw.publish(
        subject,
        &say_headers("evil1"),
        b"[evil] hi\x1b[2J\x07\xff\n",
    );
    assert_eq!(
        a1.until("[evil] hi").last().unwrap(),
        "[evil] hi\u{fffd}[2J\u{fffd}\u{fffd}\n"
    );
    // /who: a hub claiming u64::MAX clients counts as a million.
    a1.send(b"/who\n");
    assert_eq!(
        a1.until("other hub").last().unwrap(),
        &format!(
            "*** and 1000001 more on 2 other hubs: evil (1000000), {} (1)\n",
            hostname::get().unwrap().to_string_lossy()
        )
    );
    // Too big: dropped whole, counted.
    let over = refused(pinetd::stats::Refusal::OverLimit);
    raw.publish(subject, &say_headers("evil2"), &vec![b'x'; 20_000]);
    // More lines than bridge_rate_limit: the rest are dropped, counted.
    let flood: Vec<u8> = (0..200)
        .flat_map(|n| format!("flood {n}\n").into_bytes())
        .collect();
    raw.publish(subject, &say_headers("evil3"), &flood);
    raw.publish(subject, &say_headers("evil4"), b"after the flood\n");
    let lines = a1.until("flood");
    assert!(lines.iter().all(|l| !l.starts_with("xxxx")), "{lines:#?}");
    let deadline = Instant::now() + HANG;
    while refused(pinetd::stats::Refusal::RateLimited) < 100 {
        assert!(Instant::now() < deadline, "the flood is not rate limited");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(refused(pinetd::stats::Refusal::OverLimit), over + 1);

    // A header block the client cannot parse drops its connection: it
    // reconnects, and the room is bridged again.
    raw.publish(subject, b"NATS/1.0\r\nGarbage\r\n\r\n", b"x");
    raw.publish(subject, b"NATS/1.0\r\nPinetd-Host: \xff\r\n\r\n", b"x");
    bridged_between(&mut b1, &mut a1, "b-to-a-again");
    bridged_between(&mut a1, &mut b1, "a-to-b-again");
}

#[test]
fn lines_from_other_hubs_are_paced_and_no_reader_that_keeps_up_is_skipped() {
    let Some(program) = Nats::program() else {
        return;
    };
    let nats = Nats::start(&program, 0);
    let subject = "pinetd.test.firehose";
    let (_runtime, a) = bridged_daemon(&nats, subject, |c| {
        c.chat.bridge_rate_limit = 0;
        c.chat.queue = 64;
        c.chat.max_per_source = 0;
    });
    let addr = a.addrs("chat")[0];
    let mut raw = RawNats::connect(nats.port);
    let mut readers: Vec<Peer> = (0..100).map(|_| Peer::connect(addr)).collect();
    // 100 readers, so the fan-out is what cannot keep up with NATS.
    // Up once the first reader hears a probe from the far hub.
    readers[0]
        .stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + HANG;
    'probing: for n in 0.. {
        assert!(Instant::now() < deadline, "the bridge never came up");
        raw.publish(
            subject,
            &say_headers("far"),
            format!("probe {n}\n").as_bytes(),
        );
        while let Some(line) = readers[0].line() {
            if line.starts_with("probe ") {
                break 'probing;
            }
        }
    }
    readers[0]
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let threads: Vec<_> = readers
        .into_iter()
        .map(|mut reader| std::thread::spawn(move || reader.numbered("[far] ", 49_999)))
        .collect();
    // 50,000 lines in messages of 200 (12.8 KB, under the 16 KiB a
    // message may hold), at full speed.
    let lines = numbered_lines("[far] ", 50_000);
    for message in lines.chunks(64 * 200) {
        raw.publish_unsynced(subject, &say_headers("far"), message);
    }
    raw.sync();
    for (i, thread) in threads.into_iter().enumerate() {
        let seen = thread.join().unwrap();
        assert!(seen.every_line(50_000), "reader {i}: {seen:?}");
    }
}

#[test]
fn a_nats_server_that_never_reads_slows_neither_the_room_nor_shutdown() {
    use std::io::{BufRead, Write};
    // Says hello as NATS does, answers the client's first PING, then reads nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (test_over, held) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .write_all(b"INFO {\"server_id\":\"stalled\",\"version\":\"2.9.10\",\"proto\":1,\"headers\":true,\"max_payload\":1048576}\r\n")
            .unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 && !line.starts_with("PING") {
            line.clear();
        }
        stream.write_all(b"PONG\r\n").unwrap();
        // Held open, unread, until the test ends (and drops `test_over`).
        let _ = held.recv();
        drop(stream);
    });
    let (runtime, daemon, addr) = hub(|c| {
        c.chat.rate_limit = 0;
        c.chat.bridge_url = format!("nats://127.0.0.1:{port}");
    });
    let mut talker = Peer::connect(addr);
    let mut listener = Peer::connect(addr);
    // 8 MB of lines: far more than NATS takes when it reads nothing.
    let burst: Vec<u8> = (0..100_000)
        .flat_map(|n| format!("line {n:06} {}\n", "x".repeat(64)).into_bytes())
        .collect();
    let writer = std::thread::spawn(move || {
        talker.send(&burst);
        talker.send(b"the end\n");
        talker
    });
    // The room gets every line, however stuck the bridge is.
    let mut next = 0;
    loop {
        let line = listener.line().expect("the room goes on");
        if line.contains("the end") {
            break;
        }
        if let Some(rest) = line.strip_prefix("[user1] line ") {
            assert!(rest.starts_with(&format!("{next:06} ")), "{line:?}");
            next += 1;
        }
    }
    assert_eq!(next, 100_000);
    let _talker = writer.join().unwrap();
    assert!(
        daemon.stats().to_string().contains("not bridged"),
        "{}",
        daemon.stats()
    );
    // And shutdown is not held up by it.
    let grace = daemon.shutdown_grace();
    let started = Instant::now();
    assert!(
        runtime.block_on(daemon.shutdown()),
        "drained within the grace"
    );
    assert!(started.elapsed() < grace, "took {:?}", started.elapsed());
    drop(test_over);
    drop(server);
}

#[test]
fn what_is_said_as_a_hub_starts_crosses_once_it_is_connected() {
    let Some(program) = Nats::program() else {
        return;
    };
    let nats = Nats::start(&program, 0);
    let subject = "pinetd.test.early";
    let (_rb, _b, addr_b) = bridged_hub(&nats.url(), subject);
    let (_rc, _c, addr_c) = bridged_hub(&nats.url(), subject);
    let mut b1 = Peer::connect(addr_b);
    let mut c1 = Peer::connect(addr_c);
    bridged_between(&mut c1, &mut b1, "c-to-b");
    // Hub a says its first words before its bridge can have connected.
    let (_ra, _a, addr_a) = bridged_hub(&nats.url(), subject);
    let mut a1 = Peer::connect(addr_a);
    a1.send(b"the very first words\n");
    let host = hostname::get().unwrap().to_string_lossy().into_owned();
    let lines = b1.until("the very first words");
    assert!(
        lines.contains(&format!("*** user1 joined on {host}\n")),
        "{lines:#?}"
    );
}
