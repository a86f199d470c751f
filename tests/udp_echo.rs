//! UDP echo end to end over loopback: the course client, every refusal rule,
//! the per-source rate limit, and shutdown while busy.

mod common;

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::{ask, config, nothing_received, start, udp_on, wait_until_async};
use pinetd::batch::{self, Datagrams, MAX_PAYLOAD, Replies};
use pinetd::stats::Refusal;
use tokio::io::Interest;
use tokio::net::UdpSocket;

#[tokio::test]
async fn course_client_gets_its_answer() {
    let daemon = start(config(|_| {}));
    let server = daemon.addrs("udp_echo")[0];
    let client = udp_on("127.0.0.1").await;
    assert_eq!(
        ask(&client, server, b"Hello UDP Listener").await.unwrap(),
        b"Hello UDP Listener"
    );

    // The course server's fixed answer.
    let daemon = start(config(|c| c.udp_echo.reply = "Hello UDP Client".into()));
    let server = daemon.addrs("udp_echo")[0];
    assert_eq!(
        ask(&client, server, b"Hello UDP Listener").await.unwrap(),
        b"Hello UDP Client"
    );
    assert_eq!(daemon.stats().service("udp_echo").messages.load(Relaxed), 1);
}

#[tokio::test]
async fn any_bytes_any_size_intact() {
    let daemon = start(config(|_| {}));
    let server = daemon.addrs("udp_echo")[0];
    let client = udp_on("127.0.0.1").await;
    for msg in [
        "안녕하세요 😀".as_bytes().to_vec(),
        vec![],
        vec![0xff, 0x00, 0x1b, b'['],
        (0..65_507u32).map(|i| i as u8).collect(),
    ] {
        assert_eq!(ask(&client, server, &msg).await.unwrap(), msg);
    }
}

#[tokio::test]
async fn ipv6_listener() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        common::skip(format_args!("no IPv6 loopback here"));
        return;
    }
    let daemon = start(config(|c| {
        c.udp_echo.listen = vec!["[::1]:0".parse().unwrap()]
    }));
    let server = daemon.addrs("udp_echo")[0];
    let client = udp_on("::1").await;
    assert_eq!(ask(&client, server, b"v6").await.unwrap(), b"v6");
}

/// A refused datagram, then a good one from another socket: once the good one
/// is answered, the refused one was handled (same server socket, in order).
async fn assert_refused(bad: &UdpSocket, server: std::net::SocketAddr) {
    bad.send_to(b"ping", server).await.unwrap();
    let good = udp_on("127.0.0.1").await;
    assert_eq!(ask(&good, server, b"probe").await.unwrap(), b"probe");
    assert!(
        nothing_received(bad),
        "{} was answered",
        bad.local_addr().unwrap()
    );
}

#[tokio::test]
async fn reflection_sources_get_nothing() {
    let daemon = start(config(|_| {}));
    let server = daemon.addrs("udp_echo")[0];
    let stats = &daemon.stats().service("udp_echo");

    let mut tried = 0;
    // NFS (2049) needs no privilege; echo (7) and the top privileged port
    // (1023) need root to bind, which CI has.
    for port in [2049, 7, 1023] {
        match UdpSocket::bind(("127.0.0.1", port)).await {
            Ok(source) => {
                assert_refused(&source, server).await;
                tried += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                common::skip(format_args!("source port {port}: binding it needs root"))
            }
            Err(e) => common::skip(format_args!("source port {port}: {e}")),
        }
    }
    assert_eq!(stats.refused(Refusal::BadSource), tried);
}

#[tokio::test]
async fn allow_list_drops_others_unanswered() {
    let daemon = start(config(|c| {
        c.udp_echo.allow = vec!["127.0.0.1/32".parse().unwrap()]
    }));
    let server = daemon.addrs("udp_echo")[0];
    let outsider = udp_on("127.0.0.2").await;
    assert_refused(&outsider, server).await;
    assert_eq!(
        daemon
            .stats()
            .service("udp_echo")
            .refused(Refusal::NotAllowed),
        1
    );
}

#[tokio::test]
async fn a_flood_is_cut_while_another_source_is_answered() {
    const RATE: u32 = 50;
    const FLOOD: usize = 2_000;
    let daemon = start(config(|c| c.udp_echo.rate_limit = RATE));
    let server = daemon.addrs("udp_echo")[0];
    let flooder = udp_on("127.0.0.1").await;
    let started = Instant::now();
    for _ in 0..FLOOD {
        flooder.send_to(b"flood", server).await.unwrap();
    }
    // Another source address is still answered, right after the flood.
    let other = udp_on("127.0.0.2").await;
    assert_eq!(
        ask(&other, server, b"still here?").await.unwrap(),
        b"still here?"
    );

    let mut answered = 0;
    let mut buf = [0u8; 64];
    while flooder.try_recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    // At most the burst plus what the rate earns while the flood lasted.
    let allowance =
        RATE as usize + (started.elapsed().as_secs_f64() * f64::from(RATE)).ceil() as usize;
    assert!(
        answered >= 1 && answered <= allowance,
        "{answered} answered, allowance {allowance}"
    );
    let limited = daemon
        .stats()
        .service("udp_echo")
        .refused(Refusal::RateLimited) as usize;
    assert!(
        limited >= FLOOD - allowance,
        "{limited} counted as rate limited"
    );
}

#[tokio::test]
async fn shutdown_while_busy_is_prompt() {
    let daemon = start(config(|c| c.udp_echo.rate_limit = 0));
    let server = daemon.addrs("udp_echo")[0];
    let flood = tokio::spawn(async move {
        let socket = udp_on("127.0.0.1").await;
        for _ in 0..20_000 {
            if socket.send_to(&[0u8; 512], server).await.is_err() {
                break;
            }
        }
    });
    // The timeout only guards against a hang; true: drained within the grace.
    let clean = tokio::time::timeout(common::HANG, daemon.shutdown()).await;
    assert_eq!(clean, Ok(true), "shutdown finishes within the grace");
    // The socket is closed: nothing answers any more.
    let client = udp_on("127.0.0.1").await;
    client.send_to(b"anyone?", server).await.unwrap();
    let mut buf = [0u8; 16];
    let reply = tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf)).await;
    assert!(!matches!(reply, Ok(Ok(_))), "answered after shutdown");
    flood.abort();
}

/// Sends `datagrams` to `to` as one UDP GSO message, the way a QUIC client
/// sends a burst; false (after saying so) where the kernel has no GSO.
fn send_burst(socket: &UdpSocket, to: SocketAddr, datagrams: &[&[u8]]) -> bool {
    if !batch::gso_supported(socket.as_fd()) {
        common::skip(format_args!("this kernel has no UDP GSO"));
        return false;
    }
    let mut burst = Datagrams::new(datagrams.len(), 2048);
    let mut plan = Replies::new(true);
    for (i, d) in datagrams.iter().enumerate() {
        assert!(burst.push(d, to));
        plan.add(&burst, i, 0..d.len());
    }
    assert_eq!(plan.len(), 1, "one GSO message");
    assert_eq!(plan.send(&mut burst, socket.as_fd(), 0).unwrap(), 1);
    true
}

/// The `count` datagrams the server sent back, and how many receive slots
/// they came in; once they are in, nothing more may be waiting (the server
/// answers a burst in order, all at once).
async fn receive(socket: &UdpSocket, count: usize) -> (Vec<Vec<u8>>, usize) {
    let mut inbox = Datagrams::new(8, MAX_PAYLOAD);
    let (mut got, mut slots) = (Vec::new(), 0);
    while got.len() < count {
        let received = tokio::time::timeout(
            common::HANG,
            socket.async_io(Interest::READABLE, || inbox.recv(socket.as_fd())),
        )
        .await;
        let Ok(n) = received else {
            panic!("{} of {count} datagrams came back", got.len());
        };
        let n = n.unwrap();
        slots += n;
        for i in 0..n {
            got.extend(inbox.datagrams(i).map(|r| inbox.payload(i)[r].to_vec()));
        }
    }
    assert!(nothing_received(socket), "more than {count} came back");
    (got, slots)
}

#[tokio::test]
async fn a_gso_burst_comes_back_as_the_same_datagrams() {
    let daemon = start(config(|_| {}));
    let server = daemon.addrs("udp_echo")[0];
    // A plain client sees each datagram on its own, in order.
    let client = udp_on("127.0.0.1").await;
    let burst: [&[u8]; 3] = [b"0123456789", "가나다.".as_bytes(), b"short"];
    if !send_burst(&client, server, &burst) {
        return;
    }
    let (got, _) = receive(&client, burst.len()).await;
    assert_eq!(got, burst.map(<[u8]>::to_vec));

    // A client taking GRO gets the replies coalesced too: 40 datagrams in
    // fewer receive slots than datagrams.
    let client = udp_on("127.0.0.1").await;
    assert!(batch::enable_gro(client.as_fd()));
    let many: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 100]).collect();
    let refs: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
    assert!(send_burst(&client, server, &refs));
    let (got, slots) = receive(&client, many.len()).await;
    assert_eq!(got, many);
    assert!(slots < 40, "{slots} slots: the replies were not coalesced");
    assert_eq!(
        daemon.stats().service("udp_echo").messages.load(Relaxed),
        43
    );
}

#[tokio::test]
async fn each_datagram_of_a_burst_counts_against_the_rate_limit() {
    const RATE: u32 = 5;
    let daemon = start(config(|c| c.udp_echo.rate_limit = RATE));
    let server = daemon.addrs("udp_echo")[0];
    let client = udp_on("127.0.0.1").await;
    let burst = [&b"flood"[..]; 60];
    let stats = daemon.stats().service("udp_echo");
    let started = Instant::now();
    if !send_burst(&client, server, &burst) {
        return;
    }
    // Each datagram is either answered (counted once sent) or refused.
    wait_until_async("the whole burst judged", || {
        stats.messages.load(Relaxed) + stats.refused_total() == 60
    })
    .await;
    // The burst allowance, plus what the rate earned while it was judged.
    let allowance =
        RATE as usize + (started.elapsed().as_secs_f64() * f64::from(RATE)).ceil() as usize;
    let (got, _) = receive(&client, stats.messages.load(Relaxed) as usize).await;
    assert!(
        (1..=allowance).contains(&got.len()),
        "{} answered, allowance {allowance}",
        got.len()
    );
    assert_eq!(stats.refused(Refusal::RateLimited) as usize, 60 - got.len());
}

#[tokio::test]
async fn a_fixed_reply_answers_each_datagram_of_a_burst() {
    let daemon = start(config(|c| c.udp_echo.reply = "Hello UDP Client".into()));
    let server = daemon.addrs("udp_echo")[0];
    let client = udp_on("127.0.0.1").await;
    let burst = [&b"Hello UDP Listener"[..]; 4];
    if !send_burst(&client, server, &burst) {
        return;
    }
    let (got, _) = receive(&client, burst.len()).await;
    assert_eq!(got, vec![b"Hello UDP Client".to_vec(); 4]);
}
