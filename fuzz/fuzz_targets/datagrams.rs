//! Datagrams from anyone: UDP echo's judge and reply planner (what `sendmmsg`
//! would send, with GRO slots and GSO messages), and the parsers of the
//! clients that read announcements and discovery replies off a LAN.
//!
//! - Nothing panics.
//! - A reply is never larger than the request it answers unless that came
//!   from loopback; every planned message is one GSO can send.
//! - Printed output holds no control character but the newline ending a line.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use pinetd::batch::{Datagrams, Replies};
use pinetd::client::discover::{Device, table};
use pinetd::client::listen::{describe_line, printable};
use pinetd::config::Config;
use pinetd::describe::Description;
use pinetd::observe::Observatory;
use pinetd::services::shared::datagram::{Judge, Reach};
use pinetd::services::udp_echo::plan;
use pinetd::stats::Stats;

const SLOT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    printed(data);
    let _ = echo(&mut Unstructured::new(data));
});

/// The whole input as an announcement or a discovery reply.
fn printed(payload: &[u8]) {
    let from = SocketAddr::from(([192, 168, 0, 23], 37020));
    assert_printable(&describe_line(from, payload));
    assert_printable(&printable(payload));
    let device = Device {
        from,
        rtt: Duration::from_millis(3),
        description: Description::parse(payload),
        raw: printable(payload),
    };
    for line in table(&[device]).lines() {
        assert_printable(line);
    }
}

fn assert_printable(line: &str) {
    assert!(
        !line.chars().any(char::is_control),
        "a control character in {line:?}"
    );
}

/// One received batch, judged and planned.
fn echo(u: &mut Unstructured<'_>) -> Result<()> {
    let gso = u.arbitrary()?;
    let fixed: Vec<u8> = if u.ratio(1, 4)? {
        let len = u.int_in_range(1..=64)?;
        u.bytes(len)?.to_vec()
    } else {
        Vec::new()
    };
    let rate_limit = u.int_in_range(0..=8)?;
    let slots = u.int_in_range(1..=32)?;
    let mut batch = Datagrams::new(slots, SLOT);
    for i in 0..slots {
        let peer = peer(u)?;
        let len = u.int_in_range(0..=SLOT)?.min(u.len());
        if !batch.push(u.bytes(len)?, peer) {
            break;
        }
        if u.ratio(1, 4)? {
            batch.set_segment_size(i, u.int_in_range(1..=2048)?);
        }
    }
    // Where refusals are shown: a window of its own, as the daemon gives each service.
    let window =
        Observatory::new(Arc::new(Stats::default()), &Config::default()).window("udp_echo");
    let mut judge = Judge::new(&[], rate_limit, Reach::Anyone, window);
    let requests: Vec<(SocketAddr, Vec<Vec<u8>>)> = (0..batch.len())
        .filter_map(|i| {
            let peer = batch.peer(i)?;
            let payload = batch.payload(i);
            Some((
                peer,
                batch.datagrams(i).map(|d| payload[d].to_vec()).collect(),
            ))
        })
        .collect();
    let mut replies = Replies::new(gso);
    plan(&mut batch, &mut judge, &fixed, &mut replies, Instant::now());
    check(&batch, &replies, &requests, &fixed);
    Ok(())
}

fn peer(u: &mut Unstructured<'_>) -> Result<SocketAddr> {
    let ip = match u.int_in_range(0..=3)? {
        0 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        1 => IpAddr::V4(Ipv4Addr::from(u.arbitrary::<u32>()?)),
        2 => IpAddr::V6(Ipv6Addr::from(u.arbitrary::<u128>()?)),
        _ => IpAddr::V6(Ipv4Addr::from(u.arbitrary::<u32>()?).to_ipv6_mapped()),
    };
    Ok(SocketAddr::new(ip, u.arbitrary()?))
}

/// The plan against the requests: each peer's replies are its requests in
/// order (echo), or copies of `fixed` no larger than requests (unless the
/// peer is loopback), in messages GSO can send.
fn check(
    batch: &Datagrams,
    replies: &Replies,
    requests: &[(SocketAddr, Vec<Vec<u8>>)],
    fixed: &[u8],
) {
    let mut sent: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    for m in 0..replies.len() {
        let datagrams: Vec<&[u8]> = replies.message_datagrams(batch, m).collect();
        assert_eq!(datagrams.len(), replies.datagrams(m));
        if datagrams.len() > 1 {
            let size = replies.segment_size(m);
            let (last, rest) = datagrams.split_last().expect("more than one");
            assert!(rest.iter().all(|d| d.len() == size) && last.len() <= size && !last.is_empty());
            assert!(size <= 1452 && datagrams.len() <= 64);
        }
        sent.extend(datagrams.iter().map(|d| (replies.peer(m), d.to_vec())));
    }
    let mut peers: Vec<SocketAddr> = requests.iter().map(|(p, _)| *p).collect();
    peers.sort();
    peers.dedup();
    for peer in peers {
        let asked: Vec<&Vec<u8>> = requests
            .iter()
            .filter(|(p, _)| *p == peer)
            .flat_map(|(_, d)| d)
            .collect();
        let got: Vec<&Vec<u8>> = sent
            .iter()
            .filter(|(p, _)| *p == peer)
            .map(|(_, d)| d)
            .collect();
        assert!(got.len() <= asked.len(), "more replies than requests");
        if fixed.is_empty() {
            // Echoes are a subsequence of the requests: in order, none made up.
            let mut asked = asked.iter();
            for reply in &got {
                assert!(
                    asked.any(|a| a == reply),
                    "an echo of nothing asked, or out of order"
                );
            }
        } else {
            assert!(got.iter().all(|d| d.as_slice() == fixed));
        }
        if !peer.ip().to_canonical().is_loopback() {
            // Largest replies against largest requests: none larger.
            let mut asked: Vec<usize> = asked.iter().map(|d| d.len()).collect();
            let mut got: Vec<usize> = got.iter().map(|d| d.len()).collect();
            asked.sort_unstable_by(|a, b| b.cmp(a));
            got.sort_unstable_by(|a, b| b.cmp(a));
            for (reply, request) in got.iter().zip(&asked) {
                assert!(
                    reply <= request,
                    "a {reply}-byte reply to {peer} for {request} bytes"
                );
            }
        }
    }
}
