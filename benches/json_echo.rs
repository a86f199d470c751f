//! JSON echo through the real service over loopback: one connection keeping
//! 8 objects in flight, and a 21 KiB object; criterion reports round-trips
//! and bytes per second. The side-by-side comparison with xinetd and the
//! course's server is bench/json_compare.sh.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pinetd::config::Config;
use pinetd::daemon::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config() -> Config {
    let mut config = Config::default();
    config.chat.enabled = false;
    config.udp_echo.enabled = false;
    config.announcer.enabled = false;
    config.discovery.enabled = false;
    config.json_echo.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config
}

/// Sends `request` and reads until `reply_len` bytes came back.
async fn exchange(stream: &mut TcpStream, request: &[u8], reply_len: usize, buf: &mut [u8]) {
    stream.write_all(request).await.unwrap();
    let mut got = 0;
    while got < reply_len {
        let n = stream.read(buf).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        got += n;
    }
}

fn echo(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (daemon, mut stream) = runtime.block_on(async {
        let daemon = Daemon::start(config()).unwrap();
        let stream = TcpStream::connect(daemon.addrs("json_echo")[0])
            .await
            .unwrap();
        stream.set_nodelay(true).unwrap();
        (daemon, stream)
    });
    let mut buf = vec![0u8; 1 << 20];
    let mut group = c.benchmark_group("json_echo");
    group.measurement_time(Duration::from_secs(5));

    let object = b"{\"name\": \"jung\", \"count\": 3}";
    let window = object.repeat(8);
    let reply_len = 8 * (b"{\"name\":\"jung\",\"count\":3}".len() + 1);
    group.throughput(Throughput::Elements(8));
    group.bench_function("course_object_8_in_flight", |b| {
        b.iter(|| runtime.block_on(exchange(&mut stream, &window, reply_len, &mut buf)))
    });

    let large: String = format!(
        "[{}]",
        (0..1500)
            .map(|i| format!("{{\"n\":{i}.5e3}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_function("object_21k", |b| {
        b.iter(|| {
            runtime.block_on(exchange(
                &mut stream,
                large.as_bytes(),
                large.len() + 1,
                &mut buf,
            ))
        })
    });
    group.finish();
    drop(stream);
    runtime.block_on(daemon.shutdown());
}

criterion_group!(benches, echo);
criterion_main!(benches);
