//! `GET /metrics` as Prometheus and its tools see it: every family and
//! label set there at 0 from the start, the counters rising as clients
//! talk, `promtool check metrics` finding nothing wrong, and a real
//! Prometheus server (Debian's `prometheus`; skipped without it) scraping
//! the daemon and answering a query with the value rising. Everything on
//! 127.0.0.0/8; the server is stopped by PID when the test ends.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::web::{Answer, ask, get, get_with};
use common::{HANG, Proc, config, program, start, temp_dir};
use pinetd::daemon::Daemon;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, sleep};

/// A daemon with every service on 127.0.0.1 (the announcer sending to a
/// socket of the test's), the web page on: the daemon, its page's address,
/// and that socket.
async fn daemon() -> (Daemon, SocketAddr, UdpSocket) {
    let heard = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = heard.local_addr().unwrap();
    let daemon = start(config(|c| {
        c.chat.enabled = true;
        c.web.enabled = true;
        c.discovery.enabled = true;
        c.discovery.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.announcer.enabled = true;
        c.announcer.to = vec![to];
    }));
    let web = daemon.addrs("web")[0];
    (daemon, web, heard)
}

/// Every sample of an exposition in the text format, by name and labels
/// as written (`name{a="b"}`); panics on a line it cannot read.
fn samples(text: &str) -> BTreeMap<String, f64> {
    (text.lines())
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (key, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {line:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("not a value: {line:?}"));
            (key.to_owned(), value)
        })
        .collect()
}

/// `/metrics` as curl gets it: the text format 0.0.4.
async fn metrics(web: SocketAddr) -> (Answer, BTreeMap<String, f64>) {
    let answer = get(web, "/metrics").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let samples = samples(&answer.text());
    (answer, samples)
}

/// The value of `key`; panics, listing what there is, if it is missing.
fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no {key}; there are {:#?}", samples.keys()))
}

/// Polls `/metrics` (ten times a second: the page allows 50 requests a
/// second from one address) until every key has its value; the samples.
/// Panics after [`HANG`], naming those that do not.
async fn poll(web: SocketAddr, expected: &[(String, f64)]) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + HANG;
    loop {
        let (_, samples) = metrics(web).await;
        let wrong: Vec<_> = (expected.iter())
            .filter(|(key, want)| samples.get(key) != Some(want))
            .map(|(key, want)| format!("{key} is {:?}, not {want}", samples.get(key)))
            .collect();
        if wrong.is_empty() {
            return samples;
        }
        assert!(Instant::now() < deadline, "still waiting: {wrong:#?}");
        sleep(Duration::from_millis(100)).await;
    }
}

/// `name{label="value",...}` as the encoder writes it.
fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

const TCP: [&str; 3] = ["chat", "json_echo", "web"];
const CLOSES: [&str; 8] = [
    "client",
    "shutdown",
    "timeout",
    "lagging",
    "bad_input",
    "error",
    "aborted",
    "other",
];
const DATAGRAM_REFUSALS: [&str; 5] = [
    "not_allowed",
    "bad_source",
    "amplification",
    "rate_limited",
    "over_limit",
];

/// Every sample that must be there, at 0, before any client comes.
fn zero_from_the_start() -> Vec<String> {
    let mut keys: Vec<String> = [
        "pinetd_chat_lines_relayed_total",
        "pinetd_chat_deliveries_total",
        "pinetd_chat_messages_skipped_total",
        "pinetd_chat_bridge_messages_sent_total",
        "pinetd_chat_bridge_messages_received_total",
        "pinetd_chat_bridge_lines_not_bridged_total",
        "pinetd_json_values_answered_total",
        "pinetd_udp_echo_datagrams_answered_total",
        "pinetd_discovery_probes_answered_total",
        "pinetd_web_pages_open",
    ]
    .map(str::to_owned)
    .to_vec();
    for service in ["chat", "json_echo"] {
        keys.push(key("pinetd_connections", &[("service", service)]));
        let accepted = "pinetd_connections_accepted_total";
        keys.push(key(accepted, &[("service", service)]));
    }
    for service in TCP {
        for reason in ["not_allowed", "full", "per_source"] {
            let labels = [("service", service), ("reason", reason)];
            keys.push(key("pinetd_connections_refused_total", &labels));
        }
        for reason in CLOSES {
            let labels = [("service", service), ("reason", reason)];
            keys.push(key("pinetd_connections_closed_total", &labels));
        }
    }
    for kind in ["bad_input", "too_deep", "over_limit", "timeout"] {
        keys.push(key("pinetd_json_errors_total", &[("kind", kind)]));
    }
    for reason in ["bad_source", "over_limit", "rate_limited"] {
        let name = "pinetd_chat_bridge_messages_refused_total";
        keys.push(key(name, &[("reason", reason)]));
    }
    for reason in DATAGRAM_REFUSALS {
        for name in [
            "pinetd_udp_echo_datagrams_refused_total",
            "pinetd_discovery_probes_refused_total",
        ] {
            keys.push(key(name, &[("reason", reason)]));
        }
    }
    keys.push(key(
        "pinetd_announcements_failed_total",
        &[("interface", "default")],
    ));
    keys
}

/// Every family of `samples` has its HELP in `text`, and is typed a
/// counter exactly when its name ends in `_total`.
fn every_family_is_described(text: &str, samples: &BTreeMap<String, f64>) {
    for name in samples.keys().map(|k| k.split('{').next().unwrap()) {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
        let typed = format!("# TYPE {name} counter");
        assert_eq!(text.contains(&typed), name.ends_with("_total"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_and_label_set_is_there_at_zero_from_the_start() {
    let (daemon, web, _heard) = daemon().await;
    let (answer, samples) = metrics(web).await;
    let content_type = answer.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for key in zero_from_the_start() {
        assert_eq!(value(&samples, &key), 0.0, "{key}");
    }
    let version = format!(
        "pinetd_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&samples, &version), 1.0);
    let started = value(&samples, "pinetd_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && started > now - 600.0,
        "{started} vs {now}"
    );
    for service in [
        "chat",
        "json_echo",
        "udp_echo",
        "announcer",
        "discovery",
        "web",
    ] {
        let running = key("pinetd_service_running", &[("service", service)]);
        assert_eq!(value(&samples, &running), 1.0, "{running}");
    }
    // This request is the web's first client.
    let web_now = key("pinetd_connections", &[("service", "web")]);
    assert_eq!(value(&samples, &web_now), 1.0);
    assert!(value(&samples, "pinetd_web_requests_total") >= 1.0);
    every_family_is_described(&answer.text(), &samples);
    // Prometheus asks for OpenMetrics, and gets it.
    let accept = [("Accept", "application/openmetrics-text;version=1.0.0")];
    let open = get_with(web, "/metrics", &accept).await;
    let content_type = open.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(
        open.text()
            .contains("# TYPE pinetd_chat_lines_relayed counter\n")
    );
    assert!(open.text().ends_with("# EOF\n"));
    daemon.shutdown().await;
}

/// Two chat clients; the first says `lines` lines. Returns both streams.
async fn chat_talks(chat: SocketAddr, lines: usize) -> (TcpStream, TcpStream) {
    let mut speaker = TcpStream::connect(chat).await.unwrap();
    let listener = TcpStream::connect(chat).await.unwrap();
    for n in 0..lines {
        speaker
            .write_all(format!("hello {n}\n").as_bytes())
            .await
            .unwrap();
    }
    (speaker, listener)
}

/// Three chat lines (the speaker and a listener stay), two JSON values
/// answered (that client stays) and one error, a datagram echoed, a probe
/// answered, an announcement heard on `heard`.
async fn some_of_everything(
    daemon: &Daemon,
    heard: &UdpSocket,
) -> (TcpStream, TcpStream, TcpStream) {
    let (chat, json) = (daemon.addrs("chat")[0], daemon.addrs("json_echo")[0]);
    let (udp, discovery) = (daemon.addrs("udp_echo")[0], daemon.addrs("discovery")[0]);
    let (speaker, listener) = chat_talks(chat, 3).await;
    let mut values = TcpStream::connect(json).await.unwrap();
    values
        .write_all(br#"{"name": "jung", "count": 3} [1, 2]"#)
        .await
        .unwrap();
    let mut answered = vec![0u8; 64];
    let _ = values.read(&mut answered).await.unwrap();
    let mut wrong = TcpStream::connect(json).await.unwrap();
    wrong.write_all(b"{\"name\": jung}").await.unwrap();
    let mut told = Vec::new();
    let _ = wrong.read_to_end(&mut told).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert!(
        common::ask(&socket, udp, b"Hello UDP Listener")
            .await
            .is_some()
    );
    assert!(
        common::ask(&socket, discovery, b"who is there")
            .await
            .is_some()
    );
    let mut announcement = [0u8; 2048];
    heard.recv_from(&mut announcement).await.unwrap();
    (speaker, listener, values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_rise_as_clients_talk() {
    let (daemon, web, heard) = daemon().await;
    let (mut speaker, listener, values) = some_of_everything(&daemon, &heard).await;
    speaker.write_all(b"bye\n").await.unwrap();
    let closed = |service, reason| {
        let labels = [("service", service), ("reason", reason)];
        key("pinetd_connections_closed_total", &labels)
    };
    let of = |name, service| key(name, &[("service", service)]);
    let expected = [
        ("pinetd_chat_lines_relayed_total".to_owned(), 3.0),
        (of("pinetd_connections_accepted_total", "chat"), 2.0),
        (of("pinetd_connections_accepted_total", "json_echo"), 2.0),
        (of("pinetd_connections", "chat"), 1.0),
        (of("pinetd_connections", "json_echo"), 1.0),
        (closed("chat", "client"), 1.0),
        (closed("json_echo", "bad_input"), 1.0),
        ("pinetd_json_values_answered_total".to_owned(), 2.0),
        (
            key("pinetd_json_errors_total", &[("kind", "bad_input")]),
            1.0,
        ),
        ("pinetd_udp_echo_datagrams_answered_total".to_owned(), 1.0),
        ("pinetd_discovery_probes_answered_total".to_owned(), 1.0),
    ];
    let samples = poll(web, &expected).await;
    // Each of the three lines went to the one other client (and notices to both).
    assert!(value(&samples, "pinetd_chat_deliveries_total") >= 3.0);
    let sent = key(
        "pinetd_announcements_sent_total",
        &[("interface", "default")],
    );
    assert!(value(&samples, &sent) >= 1.0);
    drop((listener, values));
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_by_service_and_reason() {
    let daemon = start(config(|c| {
        c.chat.enabled = true;
        c.chat.allow = vec!["127.0.0.2/32".parse().unwrap()];
        c.udp_echo.allow = vec!["127.0.0.2/32".parse().unwrap()];
        c.web.enabled = true;
    }));
    let (web, chat, udp) = (
        daemon.addrs("web")[0],
        daemon.addrs("chat")[0],
        daemon.addrs("udp_echo")[0],
    );
    let mut refused = TcpStream::connect(chat).await.unwrap();
    let mut nothing = Vec::new();
    let _ = refused.read_to_end(&mut nothing).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(b"Hello UDP Listener", udp).await.unwrap();
    let labels = [("service", "chat"), ("reason", "not_allowed")];
    let expected = [
        (key("pinetd_connections_refused_total", &labels), 1.0),
        (
            key("pinetd_connections_accepted_total", &[("service", "chat")]),
            0.0,
        ),
        (
            key(
                "pinetd_udp_echo_datagrams_refused_total",
                &[("reason", "not_allowed")],
            ),
            1.0,
        ),
        ("pinetd_udp_echo_datagrams_answered_total".to_owned(), 0.0),
    ];
    poll(web, &expected).await;
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_wrong() {
    let Some(promtool) = program("promtool", "prometheus") else {
        return;
    };
    let (daemon, web, _heard) = daemon().await;
    // With some of everything counted, so no family is only zeros.
    let chat = daemon.addrs("chat")[0];
    let _talking = chat_talks(chat, 2).await;
    poll(web, &[("pinetd_chat_lines_relayed_total".to_owned(), 2.0)]).await;
    let (answer, _) = metrics(web).await;
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check.stdin.take().unwrap().write_all(&answer.body).unwrap();
    let out = check.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool: {said}\n{}", answer.text());
    assert_eq!(said.trim(), "", "promtool has something to say");
    daemon.shutdown().await;
}

/// A Prometheus server on a loopback port, scraping one target every
/// second; killed (by PID) and its files removed when dropped.
struct Prometheus {
    server: Proc,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts it scraping `target`; ready once `/-/ready` answers 200. A
    /// port taken between finding it free and binding it is tried again.
    async fn start(program: &str, target: SocketAddr) -> Prometheus {
        for attempt in 0.. {
            let dir = temp_dir(&format!("prometheus{attempt}"));
            let config = format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: pinetd\n    static_configs:\n      - targets: ['{target}']\n"
            );
            let file = dir.join("prometheus.yml");
            std::fs::write(&file, config).unwrap();
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut command = Command::new(program);
            command.args([
                &format!("--config.file={}", file.display()),
                &format!("--storage.tsdb.path={}", dir.join("data").display()),
                &format!("--web.listen-address={addr}"),
            ]);
            let mut server = Prometheus {
                server: Proc::spawn(command),
                addr,
                dir,
            };
            if server.ready().await {
                return server;
            }
            assert!(
                attempt < 3,
                "prometheus never started: {:?}",
                server.server.log
            );
        }
        unreachable!()
    }

    /// Waits for `/-/ready`; false if the server exited first (its port taken).
    async fn ready(&mut self) -> bool {
        let deadline = Instant::now() + HANG;
        loop {
            if self.server.child.try_wait().unwrap().is_some() {
                return false;
            }
            if self.get("/-/ready").await.is_some_and(|a| a.status == 200) {
                return true;
            }
            assert!(Instant::now() < deadline, "prometheus not ready");
            sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get(&self, path: &str) -> Option<Answer> {
        let stream = TcpStream::connect(self.addr).await.ok()?;
        ask(stream, self.addr, path, &[]).await.ok()
    }

    /// The value of the instant vector `query` (one series), once it has one.
    async fn query(&self, query: &str) -> Option<f64> {
        let answer = self.get(&format!("/api/v1/query?query={query}")).await?;
        let body: Value = serde_json::from_slice(&answer.body).ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Polls `query` until `done` holds of its value; that value.
    async fn until(&self, query: &str, done: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + HANG * 2;
        loop {
            if let Some(value) = self.query(query).await.filter(|v| done(*v)) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never said {query} as awaited"
            );
            sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_server_scrapes_the_lines_rising() {
    let Some(program) = program("prometheus", "prometheus") else {
        return;
    };
    let (daemon, web, _heard) = daemon().await;
    let prometheus = Prometheus::start(&program, web).await;
    // Scraped, and at 0, before anyone talks.
    let lines = "pinetd_chat_lines_relayed_total";
    assert_eq!(prometheus.until(lines, |_| true).await, 0.0);
    assert_eq!(prometheus.until("up", |up| up == 1.0).await, 1.0);
    let chat = daemon.addrs("chat")[0];
    let _talking = chat_talks(chat, 5).await;
    assert_eq!(prometheus.until(lines, |n| n >= 5.0).await, 5.0);
    let delivered = "pinetd_chat_deliveries_total";
    assert!(prometheus.until(delivered, |n| n >= 5.0).await >= 5.0);
    drop(prometheus);
    daemon.shutdown().await;
}
