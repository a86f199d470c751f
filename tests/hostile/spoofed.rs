//! A datagram storm from spoofed source ports 0 to 1023, sent through a
//! raw socket inside a network namespace of the test's own.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::clients::{Talkers, goodbyes};
use crate::common::netns::{self, Netns};
use crate::daemon::{Addrs, Tables, config_text, exits_cleanly};
use crate::{SetOnDrop, raise_open_files};

/// The spoofed datagrams' source address: loopback (on-link, inside
/// discovery's default allow), but not the well-behaved clients' 127.0.0.1,
/// so the per-source rate limits of the two never mix.
const STORM_FROM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

/// The source ports that must never be answered: below 1024, and NFS.
fn bad_ports() -> impl Iterator<Item = u16> {
    (0..1024).chain([2049])
}

/// An IPv4 header and a UDP datagram from `from` to `to`, for a raw socket
/// (the kernel fills in the header checksum and the id).
fn udp_packet(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut packet = vec![0u8; total];
    packet[0] = 0x45; // IPv4, a header of five words
    packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    packet[8] = 64; // TTL
    packet[9] = libc::IPPROTO_UDP as u8;
    packet[12..16].copy_from_slice(&from.ip().octets());
    packet[16..20].copy_from_slice(&to.ip().octets());
    packet[20..22].copy_from_slice(&from.port().to_be_bytes());
    packet[22..24].copy_from_slice(&to.port().to_be_bytes());
    packet[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    // A UDP checksum of zero: none (IPv4 allows it).
    packet[28..].copy_from_slice(payload);
    packet
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => panic!("an IPv4 address: {addr}"),
    }
}

/// Sends spoofed datagrams from every bad port of [`STORM_FROM`] to UDP
/// echo and discovery, round after round until `stop`. After each 64
/// ports, one crafted the same way from `control`'s (good) port: its echo
/// clocks the storm (the daemon has taken what came before it) and shows
/// that such datagrams do reach the daemon. The replies `control` got from
/// echo and from discovery.
fn storm(
    raw: socket2::Socket,
    control: UdpSocket,
    targets: [SocketAddrV4; 2],
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
) -> JoinHandle<[usize; 2]> {
    thread::spawn(move || {
        let good = v4(control.local_addr().unwrap());
        control
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let send = |from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]| {
            let packet = udp_packet(from, to, payload);
            raw.send_to(&packet, &SocketAddr::V4(to).into())
                .expect("a raw send");
        };
        let bad: Vec<u16> = bad_ports().collect();
        let mut answered = [0, 0];
        let mut buf = [0u8; 2048];
        let per_round = bad.chunks(64).count();
        for (n, chunk) in bad.chunks(64).cycle().enumerate() {
            for &port in chunk {
                for to in targets {
                    send(SocketAddrV4::new(STORM_FROM, port), to, b"storm");
                }
            }
            let tag = format!("control {n}");
            for to in targets {
                send(good, to, tag.as_bytes());
            }
            while let Ok((len, from)) = control.recv_from(&mut buf) {
                if from == SocketAddr::V4(targets[1]) {
                    answered[1] += 1;
                } else if from == SocketAddr::V4(targets[0]) {
                    answered[0] += 1;
                    if &buf[..len] == tag.as_bytes() {
                        break;
                    }
                }
            }
            if (n + 1) % per_round == 0 {
                rounds.fetch_add(1, SeqCst);
            }
            if stop.load(SeqCst) {
                return answered;
            }
        }
        unreachable!()
    })
}

/// Datagrams from source ports 0 to 1023 (and 2049) are never answered,
/// however many come (UDP echo and discovery would reflect them to a
/// spoofed victim's privileged service); the well-behaved clients are
/// answered all along, and SIGTERM in the middle of the storm stops the
/// daemon cleanly. All of it inside a network namespace of its own.
#[test]
fn a_datagram_storm_from_spoofed_ports_0_to_1023_is_never_answered() {
    let Some(ns) = netns::prefix().map(|prefix| Netns::add(format!("{prefix}-storm"))) else {
        return;
    };
    if !raise_open_files(2048) {
        return;
    }
    let tables = Tables {
        discovery: Some("max_delay = \"20ms\"\n"),
        ..Tables::default()
    };
    let mut daemon = ns.spawn_daemon(&config_text(tables));
    let addrs = Addrs::read(&mut daemon, true);
    let targets = [v4(addrs.udp), v4(addrs.discovery.unwrap())];
    // Every socket of the test is made inside the namespace: a catcher on
    // each bad port of the spoofed address, where a reply would land.
    let (mut talkers, raw, control, catchers) = ns.enter(move || {
        let catchers: Vec<UdpSocket> = bad_ports()
            .filter(|&port| port != 0)
            .map(|port| {
                let catcher = UdpSocket::bind((STORM_FROM, port)).unwrap();
                catcher.set_nonblocking(true).unwrap();
                catcher
            })
            .collect();
        let raw = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        )
        .unwrap();
        let control = UdpSocket::bind((STORM_FROM, 0)).unwrap();
        (Talkers::start(addrs), raw, control, catchers)
    });
    let (stop, rounds) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let _stop_anyway = SetOnDrop(stop.clone());
    let storm = storm(raw, control, targets, stop.clone(), Arc::clone(&rounds));
    talkers.wait_until("two rounds of the storm", || rounds.load(SeqCst) >= 2);
    talkers.progress();
    let endings = talkers.pause();
    daemon.signal("TERM");
    goodbyes(endings);
    exits_cleanly(&mut daemon);
    stop.store(true, SeqCst);
    let answered = storm.join().unwrap();
    eprintln!(
        "storm: {} rounds of {} spoofed datagrams; crafted control datagrams answered {answered:?}",
        rounds.load(SeqCst),
        2 * bad_ports().count()
    );
    assert!(
        answered.iter().all(|&n| n > 0),
        "crafted datagrams from a good port are answered by echo and discovery: {answered:?}"
    );
    let mut buf = [0u8; 16];
    let answered_bad: Vec<u16> = catchers
        .iter()
        .filter(|catcher| catcher.recv_from(&mut buf).is_ok())
        .map(|catcher| catcher.local_addr().unwrap().port())
        .collect();
    assert!(
        answered_bad.is_empty(),
        "replies to spoofed sources on ports {answered_bad:?}"
    );
}
