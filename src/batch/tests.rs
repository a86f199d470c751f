//! Replies coalesce per peer and stay within their slots; batches and GSO
//! sends make the round trip over loopback.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};

use super::{Datagrams, MAX_PAYLOAD, Replies, enable_gro, gso_refused, gso_supported};

/// Two peers' datagrams in one received-like batch.
fn batch_of(datagrams: &[(&[u8], SocketAddr)]) -> Datagrams {
    let mut batch = Datagrams::new(datagrams.len(), 2048);
    for (payload, to) in datagrams {
        assert!(batch.push(payload, *to));
    }
    batch
}

#[test]
fn replies_coalesce_per_peer_in_order() {
    let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:5001".parse().unwrap();
    let batch = batch_of(&[
        (&[1; 10], a),
        (&[2; 10], a),
        (&[3; 10], b),
        (&[4; 5], a),
        (&[5; 10], a),
        (&[6; 11], b),
        (b"", b),
        (&[7; 1453], b),
    ]);
    let mut plan = Replies::new(true);
    for i in 0..batch.len() {
        plan.add(&batch, i, 0..batch.payload(i).len());
    }
    let messages: Vec<_> = (0..plan.len())
        .map(|m| (plan.peer(m), plan.datagrams(m)))
        .collect();
    // a: 10, 10, then the short 5 closes the message; b: 10, and the
    // longer 11 starts another; an empty datagram and one above the GSO
    // size stand alone.
    assert_eq!(
        messages,
        vec![(a, 3), (b, 1), (a, 1), (b, 1), (b, 1), (b, 1)]
    );

    let mut plain = Replies::new(false);
    for i in 0..batch.len() {
        plain.add(&batch, i, 0..batch.payload(i).len());
    }
    assert_eq!(plain.len(), batch.len(), "one message per datagram");
}

#[test]
fn a_range_outside_its_slot_is_refused() {
    let to: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let batch = batch_of(&[(b"abc", to), (b"def", to)]);
    let mut plan = Replies::new(false);
    assert!(!plan.add(&batch, 0, 0..100_000), "past the buffer");
    assert!(!plan.add(&batch, 0, 0..2049), "into the next slot");
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 3..1;
    assert!(!plan.add(&batch, 0, backwards));
    assert!(!plan.add(&batch, 7, 0..3), "no such slot");
    assert!(plan.is_empty());
    assert!(plan.add(&batch, 1, 0..2048), "the whole slot is fine");
    assert_eq!(plan.len(), 1);
}

#[test]
#[should_panic]
fn a_plan_sent_with_a_smaller_batch_panics_instead_of_reading_past_it() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = socket.local_addr().unwrap();
    let big = batch_of(&[(b"abc", to), (b"def", to)]);
    let mut plan = Replies::new(false);
    assert!(plan.add(&big, 1, 0..2048));
    let mut small = Datagrams::new(1, 16);
    assert!(small.push(b"x", to));
    let _ = plan.send(&mut small, socket.as_fd(), 0);
}

#[test]
fn a_gso_send_arrives_as_datagrams_or_one_gro_slot() {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    if !gso_supported(a.as_fd()) {
        eprintln!("SKIPPED: this kernel has no UDP GSO");
        return;
    }
    let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let gro = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(enable_gro(gro.as_fd()));
    let (to_plain, to_gro) = (plain.local_addr().unwrap(), gro.local_addr().unwrap());
    let batch = batch_of(&[
        (b"abc", to_plain),
        (b"def", to_gro),
        (b"ghi", to_plain),
        (b"jk", to_plain),
        (b"lmn", to_gro),
    ]);
    let mut batch = batch;
    let mut plan = Replies::new(true);
    for i in 0..batch.len() {
        plan.add(&batch, i, 0..batch.payload(i).len());
    }
    assert_eq!(plan.len(), 2);
    assert_eq!(plan.send(&mut batch, a.as_fd(), 0).unwrap(), 2);

    let mut buf = [0u8; 64];
    for want in [&b"abc"[..], b"ghi", b"jk"] {
        let (n, from) = plain.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (want, a.local_addr().unwrap()));
    }
    let mut inbox = Datagrams::new(4, MAX_PAYLOAD);
    assert_eq!(inbox.recv(gro.as_fd()).unwrap(), 1, "one slot");
    let got: Vec<&[u8]> = inbox.datagrams(0).map(|r| &inbox.payload(0)[r]).collect();
    assert_eq!(got, vec![&b"def"[..], b"lmn"]);
}

#[test]
fn a_refused_gso_send_goes_again_one_by_one() {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Without UDP checksums the kernel refuses GSO (EINVAL).
    let off: libc::c_int = 1;
    // SAFETY: a valid fd and a pointer to an int.
    let set = unsafe {
        libc::setsockopt(
            a.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&raw const off).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0);
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = b.local_addr().unwrap();
    let mut batch = batch_of(&[(b"one", to), (b"two", to), (b"six", to)]);
    let mut plan = Replies::new(true);
    for i in 0..batch.len() {
        plan.add(&batch, i, 0..3);
    }
    assert_eq!(plan.len(), 1);
    let refused = plan.send(&mut batch, a.as_fd(), 0).unwrap_err();
    assert!(gso_refused(&refused), "{refused}");
    plan.ungroup(&batch, 0);
    assert!(plan.gso(), "kept for the next batch");
    assert_eq!(plan.len(), 3);
    assert_eq!(plan.send(&mut batch, a.as_fd(), 0).unwrap(), 3);
    let mut buf = [0u8; 8];
    for want in [b"one", b"two", b"six"] {
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], want);
    }
    plan.disable_gso();
    plan.clear();
    for i in 0..batch.len() {
        plan.add(&batch, i, 0..3);
    }
    assert_eq!(plan.len(), 3, "no longer coalesced");
}

#[test]
fn a_batch_round_trip() {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = b.local_addr().unwrap();
    let mut out = Datagrams::new(4, 2048);
    assert!(out.push(b"one", to));
    assert!(out.push("두".as_bytes(), to));
    assert!(out.push(b"", to));
    assert!(!out.push(&[0; 4096], to), "larger than a slot");
    let mut plan = Replies::new(false);
    for i in 0..out.len() {
        plan.add(&out, i, 0..out.payload(i).len());
    }
    assert_eq!(plan.send(&mut out, a.as_fd(), 0).unwrap(), 3);

    let mut inbox = Datagrams::new(8, MAX_PAYLOAD);
    b.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        match inbox.recv(b.as_fd()) {
            Ok(n) => got.extend((0..n).map(|i| (inbox.payload(i).to_vec(), inbox.peer(i)))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    let from = Some(a.local_addr().unwrap());
    assert_eq!(
        got,
        vec![
            (b"one".to_vec(), from),
            ("두".as_bytes().to_vec(), from),
            (vec![], from)
        ]
    );
    assert_eq!(
        inbox.recv(b.as_fd()).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}
