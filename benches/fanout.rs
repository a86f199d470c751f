//! Chat fan-out through the real hub over loopback: one sender, 10, 100 and
//! 1000 subscribers, 64-byte messages; criterion reports deliveries (messages
//! × subscribers) per second. The side-by-side comparison with Redis pub/sub
//! is bench/chat_compare.sh.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pinetd::config::Config;
use pinetd::daemon::Daemon;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Messages per iteration; each is 63 bytes and a newline.
const BURST: u64 = 64;

fn config() -> Config {
    let mut config = Config::default();
    config.json_echo.enabled = false;
    config.udp_echo.enabled = false;
    config.announcer.enabled = false;
    config.discovery.enabled = false;
    config.chat.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.chat.prefix = String::new();
    config.chat.rate_limit = 0;
    config.chat.queue = 4096;
    config.chat.max_clients = 5000;
    // Every subscriber comes from 127.0.0.1.
    config.chat.max_per_source = 0;
    config
}

/// Subscribers counting the bytes they receive, and a notify when one advances.
struct Room {
    received: Arc<Vec<AtomicU64>>,
    progress: Arc<Notify>,
    sender: TcpStream,
}

async fn room(addr: SocketAddr, clients: usize) -> Room {
    let received: Arc<Vec<AtomicU64>> = Arc::new((0..clients).map(|_| AtomicU64::new(0)).collect());
    let progress = Arc::new(Notify::new());
    for i in 0..clients {
        let mut reader = BufReader::new(TcpStream::connect(addr).await.unwrap());
        let mut welcome = String::new();
        reader.read_line(&mut welcome).await.unwrap();
        let (received, progress) = (received.clone(), progress.clone());
        tokio::spawn(async move {
            let mut stream = reader.into_inner();
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                received[i].fetch_add(n as u64, Relaxed);
                progress.notify_one();
            }
        });
    }
    let mut sender = TcpStream::connect(addr).await.unwrap();
    let mut welcome = [0u8; 256];
    let _ = sender.read(&mut welcome).await.unwrap();
    // Let the join notices go by before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Room {
        received,
        progress,
        sender,
    }
}

impl Room {
    /// Sends a burst and waits until every subscriber has all of it.
    async fn burst(&mut self, lines: &[u8]) {
        let targets: Vec<u64> = self
            .received
            .iter()
            .map(|r| r.load(Relaxed) + lines.len() as u64)
            .collect();
        self.sender.write_all(lines).await.unwrap();
        while self
            .received
            .iter()
            .zip(&targets)
            .any(|(r, t)| r.load(Relaxed) < *t)
        {
            self.progress.notified().await;
        }
    }
}

fn fanout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let daemon = runtime.block_on(async { Daemon::start(config()).unwrap() });
    let addr = daemon.addrs("chat")[0];
    let line = format!("{}\n", "x".repeat(63));
    let lines = line.repeat(BURST as usize).into_bytes();
    let mut group = c.benchmark_group("chat_fanout");
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(20);
    for clients in [10usize, 100, 1000] {
        let mut room = runtime.block_on(room(addr, clients));
        group.throughput(Throughput::Elements(BURST * clients as u64));
        group.bench_with_input(BenchmarkId::new("deliveries", clients), &clients, |b, _| {
            b.iter(|| runtime.block_on(room.burst(&lines)))
        });
    }
    group.finish();
    runtime.block_on(daemon.shutdown());
}

criterion_group!(benches, fanout);
criterion_main!(benches);
