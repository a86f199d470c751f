//! Load tool for TCP echo servers (pinetd's JSON echo, xinetd's echo, any
//! server that answers each line with a line of the same length): N
//! connections, each keeping K messages in flight, for a fixed time; reports
//! round-trips per second. Only connects to loopback.
//!
//! cargo run --release --example tcp_load -- ADDR [--conns 10] [--inflight 8] [--seconds 5]
//!
//! The message is the course's demo object, compact, so a JSON echo answers
//! it with exactly its own bytes, as a plain echo does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MESSAGE: &[u8] = b"{\"name\":\"jung\",\"count\":3}\n";

/// Round-trips per second through a TCP echo server.
#[derive(Parser)]
struct Args {
    /// The server, on loopback.
    #[arg(value_parser = loopback)]
    target: SocketAddr,
    #[arg(long, default_value_t = 10)]
    conns: usize,
    #[arg(long, default_value_t = 8)]
    inflight: usize,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

/// ADDR, which must be on loopback: the tool sends nowhere else.
fn loopback(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|e| format!("{e}"))?;
    if !addr.ip().is_loopback() {
        return Err("tcp_load only sends to loopback addresses".into());
    }
    Ok(addr)
}

/// One connection: `inflight` messages outstanding; every batch of replies
/// is answered with as many new messages in one write.
async fn connection(
    target: SocketAddr,
    inflight: usize,
    deadline: Instant,
    done: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    let window = MESSAGE.repeat(inflight);
    stream.write_all(&window).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0usize;
    let mut answered = 0u64;
    while Instant::now() < deadline {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("server closed the connection"));
        }
        bytes += n;
        let replies = bytes / MESSAGE.len();
        bytes %= MESSAGE.len();
        answered += replies as u64;
        if replies > 0 {
            stream.write_all(&window[..replies * MESSAGE.len()]).await?;
        }
    }
    done.fetch_add(answered, Relaxed);
    Ok(())
}

fn main() {
    let args = Args::parse();
    let done = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..args.conns {
            tasks.spawn(connection(
                args.target,
                args.inflight,
                deadline,
                done.clone(),
            ));
        }
        while let Some(result) = tasks.join_next().await {
            if let Ok(Err(e)) = result {
                eprintln!("tcp_load: connection failed: {e}");
            }
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "target={} conns={} inflight={} seconds={:.1} answered={} rtt_per_s={:.0}",
        args.target,
        args.conns,
        args.inflight,
        elapsed,
        done.load(Relaxed),
        done.load(Relaxed) as f64 / elapsed
    );
}
