//! The announcer and the discovery responder on loopback (127.255.255.255
//! reaches every socket on this machine bound to the port), with the
//! `listen` and `discover` clients. The real LAN is in tests/netns.rs.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::{config, start, start_on_runtime, wait_until_async};
use pinetd::config::Config;
use pinetd::describe::Description;
use pinetd::stats::Refusal;
use tokio::net::UdpSocket;

const LOOPBACK_BROADCAST: [u8; 4] = [127, 255, 255, 255];

/// Only the LAN services, discovery on a kernel-chosen port.
fn lan(edit: impl FnOnce(&mut Config)) -> Config {
    config(|c| {
        c.udp_echo.enabled = false;
        c.json_echo.enabled = false;
        c.announcer.enabled = false;
        c.discovery.enabled = true;
        c.discovery.listen = vec!["0.0.0.0:0".parse().unwrap()];
        edit(c);
    })
}

async fn recv(socket: &UdpSocket, within: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(within, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

#[tokio::test]
async fn announcements_reach_a_listener_on_the_loopback_broadcast() {
    let listener = UdpSocket::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let daemon = start(lan(|c| {
        c.json_echo.enabled = true;
        c.announcer.enabled = true;
        c.announcer.interval = Duration::from_millis(100);
        c.announcer.to = vec![SocketAddr::from((LOOPBACK_BROADCAST, port))];
    }));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let (payload, _) = recv(&listener, Duration::from_secs(5))
            .await
            .expect("an announcement");
        assert!(payload.ends_with(b"\n"), "one JSON line");
        seen.push(Description::parse(&payload).expect("pinetd's description"));
    }
    let first = &seen[0];
    assert_eq!(first.pinetd, 1);
    assert_eq!(first.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(first.ttl, 1, "3 × 100ms, at least 1 s");
    assert_eq!(
        first.services["json_echo"],
        daemon.addrs("json_echo")[0].port()
    );
    assert_eq!(
        first.services["discovery"],
        daemon.addrs("discovery")[0].port()
    );
    assert!(!first.services.contains_key("announcer"));
    // Each service is named where it can be reached: JSON echo on
    // loopback only, discovery (on 0.0.0.0) on the host's addresses.
    assert_eq!(
        first.reach["json_echo"],
        [std::net::IpAddr::from([127, 0, 0, 1])]
    );
    assert!(!first.reach["discovery"].is_empty());
    assert!(first.addrs.iter().all(|a| !a.is_unspecified()));
    assert!(seen.iter().all(|d| d.instance == first.instance));
    assert_eq!(seen[1].seq, first.seq + 1);
    assert_eq!(seen[2].seq, first.seq + 2);
    assert!(daemon.stats().service("announcer").messages.load(Relaxed) >= 3);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_fixed_message_is_announced_as_is() {
    let listener = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let daemon = start(lan(|c| {
        c.announcer.enabled = true;
        c.announcer.interval = Duration::from_millis(50);
        c.announcer.message = "here I am".into();
        c.announcer.to = vec![listener.local_addr().unwrap()];
    }));
    assert_eq!(
        recv(&listener, Duration::from_secs(5)).await.unwrap().0,
        b"here I am"
    );
    daemon.shutdown().await;
}

/// Probes `port` on the loopback broadcast from `socket`; the first `count`
/// replies (a hang after [`common::HANG`]).
async fn probe(socket: &UdpSocket, port: u16, count: usize) -> Vec<Vec<u8>> {
    socket.set_broadcast(true).unwrap();
    socket
        .send_to(
            b"who is there?",
            SocketAddr::from((LOOPBACK_BROADCAST, port)),
        )
        .await
        .unwrap();
    let mut replies = Vec::new();
    while replies.len() < count {
        let Some((payload, _)) = recv(socket, common::HANG).await else {
            panic!("{} of {count} replies came", replies.len());
        };
        replies.push(payload);
    }
    replies
}

/// Nothing is waiting on `socket`.
fn nothing_waiting(socket: &UdpSocket) -> bool {
    socket.try_recv_from(&mut [0u8; 16]).is_err()
}

#[tokio::test]
async fn the_course_caller_finds_the_daemon() {
    let daemon = start(lan(|_| {}));
    let port = daemon.addrs("discovery")[0].port();
    let stats = daemon.stats().service("discovery");
    let caller = UdpSocket::bind("0.0.0.0:0").await.unwrap();
    let replies = probe(&caller, port, 1).await;
    // One reply: the daemon counts one sent (just after sending it), and no other came.
    wait_until_async("the reply counted", || stats.messages.load(Relaxed) >= 1).await;
    assert_eq!(stats.messages.load(Relaxed), 1, "one reply");
    assert!(nothing_waiting(&caller), "one reply");
    let description = Description::parse(&replies[0]).unwrap();
    assert_eq!(description.services["discovery"], port);
    // Within the course caller's one-second wait: the delay is at most max_delay.
    assert!(daemon.config().discovery.max_delay < Duration::from_secs(1));
    daemon.shutdown().await;
}

#[tokio::test]
async fn several_responders_share_one_port() {
    let first = start(lan(|_| {}));
    let port = first.addrs("discovery")[0].port();
    let second = start(lan(|c| {
        c.discovery.listen = vec![SocketAddr::from(([0, 0, 0, 0], port))]
    }));
    let caller = UdpSocket::bind("0.0.0.0:0").await.unwrap();
    let replies = probe(&caller, port, 2).await;
    let mut instances: Vec<String> = replies
        .iter()
        .map(|payload| Description::parse(payload).unwrap().instance)
        .collect();
    instances.sort();
    instances.dedup();
    assert_eq!(instances.len(), 2, "both daemons answered: {replies:?}");
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn replies_are_spread_over_max_delay() {
    let daemon = start(lan(|c| {
        c.discovery.max_delay = Duration::from_millis(300);
        c.discovery.rate_limit = 0;
        c.discovery.reply = "me".into();
    }));
    let port = daemon.addrs("discovery")[0].port();
    let mut times = Vec::new();
    for _ in 0..20 {
        let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sent = Instant::now();
        caller.send_to(b"?", ("127.0.0.1", port)).await.unwrap();
        let (payload, _) = recv(&caller, Duration::from_secs(5))
            .await
            .expect("a reply");
        assert_eq!(payload, b"me");
        times.push(sent.elapsed());
    }
    let (min, max) = (times.iter().min().unwrap(), times.iter().max().unwrap());
    // Uniform over [0, 300 ms]: 20 draws all within 60 ms of each other is
    // a one-in-10^12 event.
    assert!(
        *max - *min > Duration::from_millis(60),
        "not spread: {times:?}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn refusals_are_counted_and_unanswered() {
    let daemon = start(lan(|c| {
        c.discovery.rate_limit = 3;
        c.discovery.max_delay = Duration::ZERO;
    }));
    let port = daemon.addrs("discovery")[0].port();
    let stats = daemon.stats().service("discovery").clone();
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let started = Instant::now();
    for _ in 0..10 {
        caller.send_to(b"?", ("127.0.0.1", port)).await.unwrap();
    }
    // Each probe is either answered (counted once sent) or refused.
    wait_until_async("every probe judged", || {
        stats.messages.load(Relaxed) + stats.refused_total() == 10
    })
    .await;
    // The burst of 3, plus what the rate earned while they were judged.
    let allowance = 3 + (started.elapsed().as_secs_f64() * 3.0).ceil() as usize;
    let mut answered = 0;
    while answered < stats.messages.load(Relaxed) {
        assert!(
            recv(&caller, common::HANG).await.is_some(),
            "a counted reply came"
        );
        answered += 1;
    }
    assert!(nothing_waiting(&caller), "only the counted replies came");
    assert!(
        (1..=allowance).contains(&(answered as usize)),
        "{answered} answered, allowance {allowance}"
    );
    assert!(stats.refused(Refusal::RateLimited) as usize >= 10usize.saturating_sub(allowance));

    // Outside `allow` (the default is loopback only; here just 127.0.0.2).
    let picky = start(lan(|c| {
        c.discovery.allow = vec!["127.0.0.2/32".parse().unwrap()]
    }));
    let port = picky.addrs("discovery")[0].port();
    let outsider = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    outsider.send_to(b"?", ("127.0.0.1", port)).await.unwrap();
    let insider = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    insider.send_to(b"?", ("127.0.0.1", port)).await.unwrap();
    assert!(recv(&insider, common::HANG).await.is_some());
    assert!(recv(&outsider, Duration::from_millis(300)).await.is_none());
    assert_eq!(
        picky
            .stats()
            .service("discovery")
            .refused(Refusal::NotAllowed),
        1
    );
    daemon.shutdown().await;
    picky.shutdown().await;
}

#[tokio::test]
async fn shutdown_while_a_delayed_reply_is_pending() {
    // A delay of up to a day (far past the 5 s grace): the reply is pending.
    let daemon = start(lan(|c| {
        c.discovery.max_delay = Duration::from_secs(24 * 3600);
        c.discovery.rate_limit = 1;
    }));
    let port = daemon.addrs("discovery")[0].port();
    let stats = daemon.stats().service("discovery");
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // The probes after the first are over the rate limit: once one of them
    // is counted, the first was taken (one socket, read in order).
    for _ in 0..3 {
        caller.send_to(b"?", ("127.0.0.1", port)).await.unwrap();
    }
    wait_until_async("a probe refused", || {
        stats.refused(Refusal::RateLimited) >= 1
    })
    .await;
    assert!(
        stats.refused_total() < 3,
        "the first probe was taken, not refused"
    );
    // True: drained within the grace, so it did not wait for the delay.
    assert!(daemon.shutdown().await, "shutdown waited for the delay");
    assert_eq!(stats.messages.load(Relaxed), 0, "the reply was dropped");
    assert!(recv(&caller, Duration::from_millis(300)).await.is_none());
}

fn pinetd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pinetd"));
    command.env_remove("RUST_LOG");
    command
}

#[test]
fn discover_prints_a_table_or_json_and_honours_require() {
    let (runtime, daemon) = start_on_runtime(lan(|c| c.json_echo.enabled = true));
    let port = daemon.addrs("discovery")[0].port().to_string();
    let args = [
        "discover",
        "--to",
        "127.255.255.255",
        "--port",
        &port,
        "--timeout",
        "700ms",
    ];
    let out = pinetd().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("HOST")
            && lines[0].contains("ADDRESSES")
            && lines[0].ends_with("REPLY")
    );
    assert_eq!(lines.len(), 2, "one device: {stdout}");
    assert!(lines[1].contains(&format!("discovery {port}")), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 device(s) answered within 700ms"));

    let out = pinetd().args(args).args(["--json"]).output().unwrap();
    let description =
        Description::parse(String::from_utf8_lossy(&out.stdout).trim().as_bytes()).unwrap();
    assert_eq!(
        description.services["json_echo"],
        daemon.addrs("json_echo")[0].port()
    );

    let out = pinetd()
        .args(args)
        .args(["--require", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("pinetd: 1 device(s) answered within 700ms, 2 required")
    );
    runtime.block_on(daemon.shutdown());
}

#[test]
fn listen_prints_announcements_and_survives_garbage() {
    let mut child = pinetd()
        .args(["listen", "--port", "0", "--count", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    let to = ("127.0.0.1", port);
    let sender = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let from = sender.local_addr().unwrap();
    sender.send_to(b"not json at all\x1b[2J", to).unwrap();
    sender.send_to(b"", to).unwrap();
    sender.send_to(&vec![b'x'; 65_507], to).unwrap();
    let announcement =
        r#"{"pinetd":1,"host":"pi","instance":"abc","services":{"chat":9999},"seq":7}"#;
    sender.send_to(announcement.as_bytes(), to).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(lines[0], format!("{from}  not json at all\\u{{1b}}[2J"));
    assert_eq!(lines[1], format!("{from}"));
    assert_eq!(lines[2].len(), from.to_string().len() + 2 + 65_507);
    assert_eq!(lines[3], format!("{from}  pi  -  chat 9999  seq 7"));
}

/// The embedded default listens on loopback only: its description names
/// 127.0.0.1 for every service, never the host's LAN addresses, where a
/// student would find nothing listening.
#[test]
fn a_daemon_on_loopback_advertises_loopback_only() {
    let (runtime, daemon) = start_on_runtime(config(|c| {
        c.chat.enabled = true;
        c.discovery.enabled = true;
        c.discovery.listen = vec!["127.0.0.1:0".parse().unwrap()];
    }));
    let discovery = daemon.addrs("discovery")[0];
    let probe = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    probe.send_to(b"DISCOVER", discovery).unwrap();
    let mut buf = [0u8; 4096];
    let n = probe.recv(&mut buf).expect("a discovery reply");
    let description = Description::parse(&buf[..n]).expect("a description");
    let loopback = [std::net::IpAddr::from([127, 0, 0, 1])];
    assert_eq!(description.addrs, loopback);
    for service in ["chat", "json_echo", "udp_echo", "discovery"] {
        assert_eq!(description.reach[service], loopback, "{service}");
    }
    // `pinetd discover` shows the same.
    let out = pinetd()
        .args(["discover", "--to", "127.0.0.1", "--port"])
        .arg(discovery.port().to_string())
        .args(["--timeout", "700ms"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout.lines().nth(1).expect("one device");
    let columns: Vec<&str> = row.split("  ").filter(|c| !c.is_empty()).collect();
    assert_eq!(columns[2].trim(), "127.0.0.1", "{stdout}");
    runtime.block_on(daemon.shutdown());
}
