//! Load tool for UDP echo servers: N senders, each keeping K datagrams in
//! flight, for a fixed time; reports round-trips per second and loss. Works
//! against any echo-like server (pinetd, the course's Python listener, xinetd).
//!
//! cargo run --release --example udp_load -- ADDR [--senders 10] [--inflight 8] [--seconds 5] [--size 18] [--gso]
//!
//! With `--gso` each sender sends its new requests as one UDP GSO message
//! (the kernel cuts it into datagrams, as a QUIC client does) and takes its
//! replies with GRO; the server sees the same datagrams either way.
//!
//! All senders share one thread; each sends its replies' worth of new requests
//! in one `sendmmsg`, so the tool costs the machine little and the server is
//! what is measured. A window with no reply for 200 ms counts as lost and is
//! sent again. Only sends to loopback.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use clap::Parser;
use pinetd::batch::{self, Datagrams, MAX_PAYLOAD, Replies};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// A request unanswered this long counts as lost.
const LOSS_AFTER: Duration = Duration::from_millis(200);
/// After the run, how long replies still in flight are waited for.
const DRAIN_FOR: Duration = Duration::from_millis(300);

#[derive(Parser)]
struct Args {
    /// The server, on loopback.
    #[arg(value_parser = loopback)]
    target: SocketAddr,
    #[arg(long, default_value_t = 10)]
    senders: usize,
    #[arg(long, default_value_t = 8)]
    inflight: usize,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Bytes a datagram.
    #[arg(long, default_value_t = 18)]
    size: usize,
    /// Send each window as one UDP GSO message; take replies with GRO.
    #[arg(long)]
    gso: bool,
}

/// ADDR, which must be on loopback: the tool sends nowhere else.
fn loopback(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|e| format!("{e}"))?;
    if !addr.ip().is_loopback() {
        return Err("udp_load only sends to loopback addresses".into());
    }
    Ok(addr)
}

#[derive(Default)]
struct Totals {
    sent: AtomicU64,
    answered: AtomicU64,
    lost: AtomicU64,
}

/// One sender: its own socket, `inflight` requests always outstanding. Each
/// batch of replies is answered with as many new requests in one call.
async fn sender(args: Arc<Args>, deadline: Instant, totals: Arc<Totals>) -> std::io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(args.target).await?;
    if args.gso && !(batch::enable_gro(socket.as_fd()) && batch::gso_supported(socket.as_fd())) {
        return Err(std::io::Error::other(
            "--gso: this kernel has no UDP GSO/GRO",
        ));
    }
    let mut requests = Datagrams::new(args.inflight, args.size.max(1));
    let payload = vec![b'x'; args.size.max(1)];
    while requests.push(&payload, args.target) {}
    let mut plan = Replies::new(args.gso);
    let mut replies = Datagrams::new(args.inflight, MAX_PAYLOAD);
    let (mut sent, mut answered, mut lost) = (0u64, 0u64, 0u64);
    let mut outstanding = args.inflight;
    send(&socket, &mut requests, &mut plan, args.inflight).await?;
    sent += args.inflight as u64;
    loop {
        let wait = if Instant::now() < deadline {
            LOSS_AFTER
        } else {
            DRAIN_FOR
        };
        let received = timeout(
            wait,
            socket.async_io(Interest::READABLE, || replies.recv(socket.as_fd())),
        )
        .await;
        match received {
            Ok(Ok(slots)) => {
                let n: usize = (0..slots).map(|i| replies.datagrams(i).count()).sum();
                answered += n as u64;
                outstanding -= n;
                if Instant::now() < deadline {
                    send(&socket, &mut requests, &mut plan, n).await?;
                    sent += n as u64;
                    outstanding += n;
                } else if outstanding == 0 {
                    break;
                }
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(std::io::Error::other(
                    "connection refused: is the server running?",
                ));
            }
            Ok(Err(e)) => return Err(e),
            Err(_) if Instant::now() < deadline => {
                // The window went quiet: count it lost and refill it.
                lost += outstanding as u64;
                send(&socket, &mut requests, &mut plan, outstanding).await?;
                sent += outstanding as u64;
            }
            Err(_) => {
                lost += outstanding as u64;
                break;
            }
        }
    }
    totals.sent.fetch_add(sent, Relaxed);
    totals.answered.fetch_add(answered, Relaxed);
    totals.lost.fetch_add(lost, Relaxed);
    Ok(())
}

/// Sends the first `n` requests: one message each, or one GSO message.
async fn send(
    socket: &UdpSocket,
    requests: &mut Datagrams,
    plan: &mut Replies,
    n: usize,
) -> std::io::Result<()> {
    plan.clear();
    for i in 0..n {
        plan.add(requests, i, 0..requests.payload(i).len());
    }
    let mut done = 0;
    while done < plan.len() {
        done += socket
            .async_io(Interest::WRITABLE, || {
                plan.send(requests, socket.as_fd(), done)
            })
            .await?;
    }
    Ok(())
}

fn main() {
    let args = Arc::new(Args::parse());
    let totals = Arc::new(Totals::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    runtime.block_on(async {
        let mut senders = tokio::task::JoinSet::new();
        for _ in 0..args.senders {
            senders.spawn(sender(args.clone(), deadline, totals.clone()));
        }
        while let Some(done) = senders.join_next().await {
            if let Ok(Err(e)) = done {
                eprintln!("udp_load: sender failed: {e}");
            }
        }
    });
    let elapsed = deadline.duration_since(started).as_secs_f64();
    let (sent, answered, lost) = (
        totals.sent.load(Relaxed),
        totals.answered.load(Relaxed),
        totals.lost.load(Relaxed),
    );
    println!(
        "target={} senders={} inflight={} gso={} seconds={:.1} sent={sent} answered={answered} lost={lost} loss={:.2}% rtt_per_s={:.0} load_cpu={:.0}%",
        args.target,
        args.senders,
        args.inflight,
        args.gso,
        elapsed,
        100.0 * lost as f64 / sent.max(1) as f64,
        answered as f64 / elapsed,
        100.0 * own_cpu_seconds() / started.elapsed().as_secs_f64()
    );
}

/// This process's CPU time so far: when it nears the wall time, the load
/// tool, not the server, is what limits the round-trips.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
