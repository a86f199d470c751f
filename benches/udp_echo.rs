//! UDP echo round-trips through the real service over loopback: one client
//! keeping 8 datagrams in flight, in batches of 8, sent one datagram each or
//! as one UDP GSO message (criterion reports round-trips per second). The side-by-side comparison with the course's
//! Python listener is bench/udp_compare.sh.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pinetd::batch::{self, Datagrams, MAX_PAYLOAD, Replies};
use pinetd::config::Config;
use pinetd::daemon::Daemon;
use tokio::io::Interest;
use tokio::net::UdpSocket;

const IN_FLIGHT: usize = 8;

fn config() -> Config {
    let mut config = Config::default();
    config.chat.enabled = false;
    config.json_echo.enabled = false;
    config.announcer.enabled = false;
    config.discovery.enabled = false;
    config.udp_echo.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.udp_echo.rate_limit = 0;
    config
}

/// Sends a window of requests (as planned in `plan`) and waits for all
/// their replies.
async fn window(
    socket: &UdpSocket,
    requests: &mut Datagrams,
    plan: &mut Replies,
    replies: &mut Datagrams,
) {
    let mut sent = 0;
    while sent < plan.len() {
        sent += socket
            .async_io(Interest::WRITABLE, || {
                plan.send(requests, socket.as_fd(), sent)
            })
            .await
            .unwrap();
    }
    let mut answered = 0;
    while answered < IN_FLIGHT {
        let slots = socket
            .async_io(Interest::READABLE, || replies.recv(socket.as_fd()))
            .await
            .unwrap();
        answered += (0..slots)
            .map(|i| replies.datagrams(i).count())
            .sum::<usize>();
    }
}

fn round_trips(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (daemon, server): (Daemon, SocketAddr) = runtime.block_on(async {
        let daemon = Daemon::start(config()).unwrap();
        let server = daemon.addrs("udp_echo")[0];
        (daemon, server)
    });
    let mut group = c.benchmark_group("udp_echo");
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.measurement_time(Duration::from_secs(5));
    for gso in [false, true] {
        let socket = runtime.block_on(UdpSocket::bind("127.0.0.1:0")).unwrap();
        if gso && !(batch::gso_supported(socket.as_fd()) && batch::enable_gro(socket.as_fd())) {
            eprintln!("udp_echo: this kernel has no UDP GSO/GRO; the GSO bench is skipped");
            continue;
        }
        let mut requests = Datagrams::new(IN_FLIGHT, 64);
        while requests.push(b"Hello UDP Listener", server) {}
        let mut plan = Replies::new(gso);
        for i in 0..IN_FLIGHT {
            plan.add(&requests, i, 0..requests.payload(i).len());
        }
        let mut replies = Datagrams::new(IN_FLIGHT, MAX_PAYLOAD);
        let name = if gso {
            "round_trips_8_in_flight_gso"
        } else {
            "round_trips_8_in_flight"
        };
        group.bench_function(name, |b| {
            b.iter(|| runtime.block_on(window(&socket, &mut requests, &mut plan, &mut replies)))
        });
    }
    group.finish();
    runtime.block_on(daemon.shutdown());
}

criterion_group!(benches, round_trips);
criterion_main!(benches);
