//! Load tool for fan-out hubs: pinetd's chat (any line hub) or Redis pub/sub,
//! measured the same way, side by side. Only connects to loopback.
//!
//!   chat_load fanout  ADDR --proto line|redis [--clients 1000] [--seconds 5] [--pid PID]... [--stopped N] [--publish-to ADDR]
//!   chat_load latency ADDR --proto line|redis [--clients 100] [--rate 1000] [--seconds 5] [--publish-to ADDR]
//!   chat_load idle    ADDR --proto line|redis [--clients 10000] --pid PID
//!   chat_load firehose ADDR [--clients 100] [--lines 100000] [--stopped N] [--pid PID]
//!
//! fanout: one sender publishes 64-byte messages as fast as the slowest
//! subscriber keeps up (a window of 256 in flight, so nothing is skipped);
//! deliveries/s = messages × subscribers received per second, and with
//! --pid the hub's CPU time per delivery. latency: `rate` messages/s, each
//! stamped, p50/p99/max from send to each subscriber's receipt. idle: RSS
//! of the hub per connected idle client. firehose (line hubs only): one
//! sender writes `lines` numbered lines as fast as the hub reads them, no
//! window; every subscriber reads as fast as it can and checks that it got
//! each line once and in order: lost lines, `*** N messages skipped`
//! notices and the rate are reported (a hub that paces its senders loses
//! none; `--stopped` adds subscribers that never read).
//!
//! With --publish-to, the sender talks to another hub than the subscribers
//! (two pinetd hubs bridged through NATS); --pid may be given for each
//! process whose CPU counts (both hubs and nats-server), and the CPU is then
//! also given per message sent (`ns_per_message`).
//!
//! For pinetd, run the hub with `prefix = ""`, `rate_limit = 0` and a large
//! `queue` and `max_clients` (bench/chat_compare.sh does).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::LocalSet;

const PAYLOAD: usize = 63; // + "\n" = 64 bytes a message on the wire for a line hub
/// How long the hub may take to tell a join (it holds one half a second,
/// so a client that names itself at once joins under that name): the
/// notices come before any count starts.
const JOINS_TOLD: Duration = Duration::from_secs(1);
const WINDOW: u64 = 256;
const CHANNEL: &str = "chat";

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Proto {
    Line,
    Redis,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Fanout,
    Latency,
    Idle,
    Firehose,
}

#[derive(Parser)]
struct Args {
    mode: Mode,
    /// The hub, on loopback.
    #[arg(value_parser = loopback)]
    target: SocketAddr,
    #[arg(long, value_enum, default_value_t = Proto::Line)]
    proto: Proto,
    /// Subscribers (default: 1000 for fanout, 100 for latency, 10000 for idle).
    #[arg(long)]
    clients: Option<usize>,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// latency: messages a second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// The hub's process, for its CPU time and memory; again for every
    /// other process whose CPU counts (memory is the first one's).
    #[arg(long)]
    pid: Vec<u32>,
    /// The hub the sender talks to, if not ADDR (a hub bridged to ADDR's).
    #[arg(long, value_parser = loopback)]
    publish_to: Option<SocketAddr>,
    /// fanout: this many more subscribers that never read.
    #[arg(long, default_value_t = 0)]
    stopped: usize,
    /// firehose: lines the sender writes.
    #[arg(long, default_value_t = 100_000)]
    lines: u64,
}

impl Args {
    fn publisher_target(&self) -> SocketAddr {
        self.publish_to.unwrap_or(self.target)
    }

    /// The CPU ticks of every --pid together.
    fn cpu_ticks(&self) -> Option<u64> {
        if self.pid.is_empty() {
            return None;
        }
        self.pid.iter().map(|&pid| cpu_ticks(pid)).sum()
    }

    fn clients(&self) -> usize {
        self.clients.unwrap_or(match self.mode {
            Mode::Fanout => 1000,
            Mode::Latency | Mode::Firehose => 100,
            Mode::Idle => 10_000,
        })
    }
}

/// ADDR, which must be on loopback: the tool sends nowhere else.
fn loopback(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|e| format!("{e}"))?;
    if !addr.ip().is_loopback() {
        return Err("chat_load only sends to loopback addresses".into());
    }
    Ok(addr)
}

/// A connected subscriber, past the hub's greeting.
async fn subscribe(target: SocketAddr, proto: Proto) -> std::io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    match proto {
        Proto::Line => {
            // The welcome line.
            reader.read_line(&mut line).await?;
        }
        Proto::Redis => {
            reader
                .get_mut()
                .write_all(format!("SUBSCRIBE {CHANNEL}\r\n").as_bytes())
                .await?;
            // *3 $9 subscribe $4 chat :1 — six lines.
            for _ in 0..6 {
                line.clear();
                reader.read_line(&mut line).await?;
            }
        }
    }
    Ok(reader)
}

/// How one message looks on a subscriber's socket.
fn frame_len(proto: Proto) -> usize {
    match proto {
        Proto::Line => PAYLOAD + 1,
        Proto::Redis => {
            format!(
                "*3\r\n$7\r\nmessage\r\n${}\r\n{CHANNEL}\r\n${PAYLOAD}\r\n",
                CHANNEL.len()
            )
            .len()
                + PAYLOAD
                + 2
        }
    }
}

/// A publishing connection: lines, or PUBLISH commands (whose replies are read and dropped).
struct Publisher {
    stream: TcpStream,
    proto: Proto,
    out: Vec<u8>,
}

impl Publisher {
    async fn connect(target: SocketAddr, proto: Proto) -> std::io::Result<Publisher> {
        let stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        let mut publisher = Publisher {
            stream,
            proto,
            out: Vec::new(),
        };
        if proto == Proto::Line {
            let mut greeting = [0u8; 256];
            let _ = publisher.stream.read(&mut greeting).await?;
        }
        Ok(publisher)
    }

    fn push(&mut self, payload: &[u8]) {
        match self.proto {
            Proto::Line => {
                self.out.extend_from_slice(payload);
                self.out.push(b'\n');
            }
            Proto::Redis => {
                self.out
                    .extend_from_slice(format!("PUBLISH {CHANNEL} ").as_bytes());
                self.out.extend_from_slice(payload);
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        // Redis answers each PUBLISH; keep its replies from piling up.
        if self.proto == Proto::Redis {
            let mut sink = [0u8; 64 * 1024];
            while let Ok(n) = self.stream.try_read(&mut sink) {
                if n == 0 {
                    break;
                }
            }
        }
        Ok(())
    }
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn fanout(args: &Args) -> std::io::Result<()> {
    // Connected, subscribed, and never read again.
    let mut stopped = Vec::new();
    for _ in 0..args.stopped {
        stopped.push(subscribe(args.target, args.proto).await?);
    }
    let received: Rc<Vec<Cell<u64>>> = Rc::new((0..args.clients()).map(|_| Cell::new(0)).collect());
    let frame = frame_len(args.proto);
    for i in 0..args.clients() {
        let mut reader = subscribe(args.target, args.proto).await?;
        let received = received.clone();
        tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut bytes = 0u64;
            // Whatever the BufReader already holds counts too.
            let held = reader.buffer().len() as u64;
            bytes += held;
            reader.consume(held as usize);
            loop {
                match reader.get_mut().read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        bytes += n as u64;
                        received[i].set(bytes / frame as u64);
                    }
                }
            }
        });
    }
    let mut publisher = Publisher::connect(args.publisher_target(), args.proto).await?;
    // Let the joins be told before counting.
    tokio::time::sleep(JOINS_TOLD).await;
    let base: Vec<u64> = received.iter().map(Cell::get).collect();
    let payload = vec![b'x'; PAYLOAD];
    let cpu_before = args.cpu_ticks();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        let slowest = received
            .iter()
            .zip(&base)
            .map(|(r, b)| r.get() - b)
            .min()
            .unwrap_or(sent);
        if sent.saturating_sub(slowest) >= WINDOW {
            tokio::task::yield_now().await;
            continue;
        }
        for _ in 0..64 {
            publisher.push(&payload);
        }
        sent += 64;
        publisher.flush().await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let delivered: u64 = received.iter().zip(&base).map(|(r, b)| r.get() - b).sum();
    let per_s = delivered as f64 / elapsed;
    let cpu = match (cpu_before, args.cpu_ticks()) {
        (Some(a), Some(b)) => {
            let hz = 100.0; // USER_HZ on Linux
            let seconds = (b - a) as f64 / hz;
            // The messages every subscriber got, of those sent.
            let messages = delivered / args.clients().max(1) as u64;
            format!(
                " hub_cpu_s={seconds:.2} hub_ns_per_delivery={:.0} ns_per_message={:.0}",
                seconds * 1e9 / delivered.max(1) as f64,
                seconds * 1e9 / messages.max(1) as f64
            )
        }
        _ => String::new(),
    };
    let rss = args
        .pid
        .first()
        .copied()
        .and_then(rss_kib)
        .map(|k| format!(" hub_rss_kib={k}"))
        .unwrap_or_default();
    println!(
        "mode=fanout clients={} stopped={} seconds={elapsed:.1} sent={sent} delivered={delivered} deliveries_per_s={per_s:.0}{cpu}{rss}",
        args.clients(),
        args.stopped
    );
    drop(stopped);
    Ok(())
}

async fn latency(args: &Args) -> std::io::Result<()> {
    let epoch = Instant::now();
    // Sized up front: a growing Vec would copy itself mid-run and show up as latency.
    let expected = (args.clients() as f64 * args.rate as f64 * (args.seconds + 1.0)) as usize;
    let samples: Rc<std::cell::RefCell<Vec<u64>>> =
        Rc::new(std::cell::RefCell::new(Vec::with_capacity(expected)));
    let counting = Rc::new(Cell::new(false));
    for _ in 0..args.clients() {
        let mut reader = subscribe(args.target, args.proto).await?;
        let (samples, counting) = (samples.clone(), counting.clone());
        tokio::task::spawn_local(async move {
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                // "t=<nanos since epoch>_xxx": a line hub's line, or Redis's payload line.
                let stamp = line.strip_prefix("t=").and_then(|l| l.split('_').next());
                let sent = stamp.and_then(|s| s.parse::<u64>().ok());
                if let Some(sent) = sent.filter(|_| counting.get()) {
                    let now = epoch.elapsed().as_nanos() as u64;
                    samples.borrow_mut().push(now.saturating_sub(sent));
                }
            }
        });
    }
    let mut publisher = Publisher::connect(args.publisher_target(), args.proto).await?;
    tokio::time::sleep(JOINS_TOLD).await;
    counting.set(true);
    let every = Duration::from_secs_f64(1.0 / args.rate as f64);
    let mut ticks = tokio::time::interval(every);
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    while Instant::now() < deadline {
        ticks.tick().await;
        // No spaces: Redis's inline PUBLISH splits arguments on them.
        let stamp = format!("t={}_", epoch.elapsed().as_nanos());
        let mut payload = stamp.into_bytes();
        payload.resize(PAYLOAD, b'x');
        publisher.push(&payload);
        publisher.flush().await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut all = samples.borrow().clone();
    all.sort_unstable();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "mode=latency clients={} rate={} samples={} p50_us={:.0} p99_us={:.0} max_us={:.0}",
        args.clients(),
        args.rate,
        all.len(),
        pick(0.50) as f64 / 1e3,
        pick(0.99) as f64 / 1e3,
        all.last().copied().unwrap_or(0) as f64 / 1e3
    );
    Ok(())
}

async fn idle(args: &Args) -> std::io::Result<()> {
    let pid = args
        .pid
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("idle needs --pid"))?;
    let before = rss_kib(pid).unwrap_or(0);
    let mut held = Vec::with_capacity(args.clients());
    let started = Instant::now();
    for _ in 0..args.clients() {
        held.push(subscribe(args.target, args.proto).await?);
    }
    let connected_in = started.elapsed();
    // Let the join notices go out and settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut buf = vec![0u8; 64 * 1024];
    for reader in &mut held {
        while let Ok(n) = reader.get_mut().try_read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
    let after = rss_kib(pid).unwrap_or(0);
    println!(
        "mode=idle clients={} connected_in={:.1?} rss_before_kib={before} rss_after_kib={after} bytes_per_client={:.0}",
        args.clients(),
        connected_in,
        (after.saturating_sub(before)) as f64 * 1024.0 / args.clients() as f64
    );
    Ok(())
}

/// What one firehose subscriber saw.
#[derive(Default)]
struct Seen {
    /// The next line number it expects.
    next: u64,
    /// Lines it got, in order.
    got: u64,
    /// Lines it never got (gaps), and lines out of order or twice.
    lost: u64,
    disorder: u64,
    /// Skip notices, and the messages they said were skipped.
    notices: u64,
    skipped: u64,
    /// When it got the last line.
    done: Option<Instant>,
    /// The longest time between two reads of its socket once lines came.
    max_gap: Duration,
}

impl Seen {
    fn line(&mut self, line: &str, last: u64) {
        if let Some(count) = line
            .strip_prefix("*** ")
            .and_then(|l| l.strip_suffix(" messages skipped"))
        {
            self.notices += 1;
            self.skipped += count.parse::<u64>().unwrap_or(0);
            return;
        }
        // "NNNNNNNNNN_xxx": the line's number.
        let Some(n) = line.split('_').next().and_then(|n| n.parse::<u64>().ok()) else {
            return; // join notices and the like
        };
        if n < self.next {
            self.disorder += 1;
            return;
        }
        self.lost += n - self.next;
        self.got += 1;
        self.next = n + 1;
        if n == last {
            self.done = Some(Instant::now());
        }
    }
}

async fn firehose(args: &Args) -> std::io::Result<()> {
    if args.proto != Proto::Line {
        return Err(std::io::Error::other("firehose is for line hubs"));
    }
    let mut stopped = Vec::new();
    for _ in 0..args.stopped {
        stopped.push(subscribe(args.target, args.proto).await?);
    }
    let last = args.lines.saturating_sub(1);
    let seen: Rc<Vec<std::cell::RefCell<Seen>>> =
        Rc::new((0..args.clients()).map(|_| Default::default()).collect());
    let progress = Rc::new(Cell::new(Instant::now()));
    for i in 0..args.clients() {
        let mut reader = subscribe(args.target, args.proto).await?;
        let (seen, progress) = (seen.clone(), progress.clone());
        tokio::task::spawn_local(async move {
            let mut line = String::new();
            let mut last_read = Instant::now();
            loop {
                line.clear();
                // The socket is read when the buffer is empty: how long since the last time.
                let reads = reader.buffer().is_empty();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                progress.set(Instant::now());
                let mut seen = seen[i].borrow_mut();
                if reads && seen.got > 0 {
                    seen.max_gap = seen.max_gap.max(last_read.elapsed());
                }
                if reads {
                    last_read = Instant::now();
                }
                seen.line(line.trim_end(), last);
                if seen.done.is_some() {
                    return;
                }
            }
        });
    }
    let mut publisher = Publisher::connect(args.target, args.proto).await?;
    // Let the joins be told first.
    tokio::time::sleep(JOINS_TOLD).await;
    let cpu_before = args.cpu_ticks();
    let started = Instant::now();
    let mut payload = Vec::with_capacity(PAYLOAD);
    for n in 0..args.lines {
        payload.clear();
        payload.extend_from_slice(format!("{n:010}_").as_bytes());
        payload.resize(PAYLOAD, b'x');
        publisher.push(&payload);
        if publisher.out.len() >= 64 * 1024 {
            publisher.flush().await?;
        }
    }
    publisher.flush().await?;
    let sent_in = started.elapsed();
    // Until every subscriber has the last line, or none got anything for 3 s.
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if seen.iter().all(|s| s.borrow().done.is_some())
            || progress.get().elapsed() > Duration::from_secs(3)
        {
            break;
        }
    }
    let finished = seen
        .iter()
        .filter_map(|s| s.borrow().done)
        .max()
        .unwrap_or_else(Instant::now);
    let elapsed = finished.duration_since(started).as_secs_f64();
    let sum = |f: &dyn Fn(&Seen) -> u64| seen.iter().map(|s| f(&s.borrow())).sum::<u64>();
    let (got, notices, skipped, disorder) = (
        sum(&|s| s.got),
        sum(&|s| s.notices),
        sum(&|s| s.skipped),
        sum(&|s| s.disorder),
    );
    // Gaps, and the tail that never came.
    let lost = sum(&|s| s.lost + (last + 1 - s.next.min(last + 1)));
    let unfinished = sum(&|s| u64::from(s.done.is_none()));
    for (i, s) in seen.iter().enumerate() {
        let s = s.borrow();
        if s.lost > 0 || s.done.is_none() {
            eprintln!(
                "subscriber {i}: got {} next {} lost {} in gaps, {} notices saying {} skipped",
                s.got, s.next, s.lost, s.notices, s.skipped
            );
        }
    }
    let expected = args.lines * args.clients() as u64;
    let max_gap = seen
        .iter()
        .map(|s| s.borrow().max_gap)
        .max()
        .unwrap_or_default();
    let cpu = match (cpu_before, args.cpu_ticks()) {
        (Some(a), Some(b)) => format!(
            " hub_ns_per_delivery={:.0}",
            (b - a) as f64 / 100.0 * 1e9 / got.max(1) as f64
        ),
        _ => String::new(),
    };
    println!(
        "mode=firehose clients={} stopped={} lines={} seconds={elapsed:.2} sent_in={:.2} delivered={got} expected={expected} lost={lost} lost_pct={:.2} skip_notices={notices} skipped={skipped} disorder={disorder} unfinished={unfinished} max_read_gap_ms={:.0} lines_per_s={:.0} deliveries_per_s={:.0}{cpu}",
        args.clients(),
        args.stopped,
        args.lines,
        sent_in.as_secs_f64(),
        lost as f64 * 100.0 / expected.max(1) as f64,
        max_gap.as_secs_f64() * 1e3,
        args.lines as f64 / elapsed,
        got as f64 / elapsed,
    );
    drop(stopped);
    Ok(())
}

fn main() {
    let args = Args::parse();
    // Every client is a descriptor: take all the hard limit allows.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = LocalSet::new();
    let result = local.block_on(&runtime, async {
        match args.mode {
            Mode::Fanout => fanout(&args).await,
            Mode::Latency => latency(&args).await,
            Mode::Idle => idle(&args).await,
            Mode::Firehose => firehose(&args).await,
        }
    });
    runtime.shutdown_background();
    if let Err(e) = result {
        eprintln!("chat_load: {e}");
        std::process::exit(1);
    }
}
