//! The daemon core: supervision, reload, start-up failures and signals, both
//! in-process and as the real binary.

mod common;

use std::io;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::{
    Proc, ask, config, start, temp_dir, udp_on, wait_until_async, without_web, write_config,
};
use pinetd::services::{Service, ServiceFuture};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Panics on its first run, fails on its second, then serves quietly.
struct Flaky {
    started: mpsc::UnboundedSender<u32>,
    runs: std::sync::atomic::AtomicU32,
}

impl Service for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }

    fn run(self: Arc<Self>, shutdown: CancellationToken) -> ServiceFuture {
        Box::pin(async move {
            let run = self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let _ = self.started.send(run);
            match run {
                1 => panic!("flaky falls over"),
                2 => Err(io::Error::other("flaky fails")),
                _ => {
                    shutdown.cancelled().await;
                    Ok(())
                }
            }
        })
    }
}

#[tokio::test]
async fn a_failing_service_is_restarted_while_others_keep_serving() {
    let mut daemon = start(config(|_| {}));
    let echo = daemon.addrs("udp_echo")[0];
    let (tx, mut started) = mpsc::unbounded_channel();
    daemon.supervisor().spawn(Arc::new(Flaky {
        started: tx,
        runs: 0.into(),
    }));
    let client = udp_on("127.0.0.1").await;
    for expected in 1..=3 {
        let run = tokio::time::timeout(Duration::from_secs(10), started.recv()).await;
        assert_eq!(run, Ok(Some(expected)), "flaky run {expected}");
        assert_eq!(ask(&client, echo, b"still?").await.unwrap(), b"still?");
    }
    assert_eq!(daemon.supervisor().starts("flaky"), 3);
    assert_eq!(
        daemon.supervisor().starts("udp_echo"),
        1,
        "udp_echo never restarted"
    );
    assert!(daemon.shutdown().await);
}

#[tokio::test]
async fn reload_restarts_only_changed_tables_and_keeps_the_port() {
    let mut daemon = start(config(|_| {}));
    let echo = daemon.addrs("udp_echo")[0];
    let client = udp_on("127.0.0.1").await;
    assert_eq!(ask(&client, echo, b"a").await.unwrap(), b"a");

    // Nothing changed: nothing restarted.
    let same = daemon.config().clone();
    assert!(daemon.reload(same.clone()).await.is_empty());
    assert_eq!(daemon.supervisor().starts("udp_echo"), 1);

    // A JSON echo connection open across the reload is not touched.
    let json = daemon.addrs("json_echo")[0];
    let mut conn = tokio::net::TcpStream::connect(json).await.unwrap();
    let exchange = async |conn: &mut tokio::net::TcpStream, value: &[u8]| {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        conn.write_all(value).await.unwrap();
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).await.unwrap();
        buf[..n].to_vec()
    };
    assert_eq!(exchange(&mut conn, b"[1]").await, b"[1]\n");

    let mut changed = same.clone();
    changed.udp_echo.reply = "new reply".into();
    changed.daemon.log = "debug".into();
    assert_eq!(daemon.reload(changed).await, vec!["udp_echo"]);
    assert_eq!(daemon.addrs("udp_echo"), [echo], "same socket, same port");
    assert_eq!(ask(&client, echo, b"a").await.unwrap(), b"new reply");
    assert_eq!(
        exchange(&mut conn, b"[2]").await,
        b"[2]\n",
        "json_echo connection kept"
    );
    assert_eq!(daemon.supervisor().starts("json_echo"), 1);

    // Disabled by a reload: the socket is closed.
    let mut off = daemon.config().clone();
    off.udp_echo.enabled = false;
    assert_eq!(daemon.reload(off).await, vec!["udp_echo"]);
    assert!(daemon.addrs("udp_echo").is_empty());
    assert!(!daemon.supervisor().is_running("udp_echo"));
    assert!(
        std::net::UdpSocket::bind(echo).is_ok(),
        "the port was released"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn reload_that_cannot_bind_keeps_the_old_settings() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut daemon = start(config(|_| {}));
    let echo = daemon.addrs("udp_echo")[0];
    let mut moved = daemon.config().clone();
    moved.udp_echo.listen = vec![taken.local_addr().unwrap()];
    moved.udp_echo.reply = "moved".into();
    daemon.reload(moved).await;
    assert_eq!(daemon.addrs("udp_echo"), [echo]);
    let client = udp_on("127.0.0.1").await;
    assert_eq!(ask(&client, echo, b"old").await.unwrap(), b"old");
    assert_eq!(daemon.config().udp_echo.reply, "");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_json_connection_in_a_tight_loop_survives_reloads_of_its_table() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut daemon = start(config(|_| {}));
    let json = daemon.addrs("json_echo")[0];
    let conn = tokio::net::TcpStream::connect(json).await.unwrap();
    // Answers so far; the loop goes on until told the reloads are over.
    let answered = Arc::new(AtomicUsize::new(0));
    let reloaded = Arc::new(AtomicBool::new(false));
    let asking = tokio::spawn({
        let (answered, reloaded) = (answered.clone(), reloaded.clone());
        async move {
            let (read, mut write) = conn.into_split();
            let mut lines = BufReader::new(read).lines();
            for i in 0.. {
                if i >= 3000 && reloaded.load(SeqCst) {
                    break;
                }
                write
                    .write_all(format!("{{\"n\": {i}}}").as_bytes())
                    .await
                    .unwrap();
                let answer = lines.next_line().await.unwrap();
                assert_eq!(answer.as_deref(), Some(format!("{{\"n\":{i}}}").as_str()));
                answered.fetch_add(1, SeqCst);
            }
        }
    });
    let second: std::net::SocketAddr = "127.0.0.2:0".parse().unwrap();
    let edits: [&dyn Fn(&mut pinetd::config::Config); 5] = [
        &|c| c.json_echo.max_message_bytes = 1000,
        &|c| c.json_echo.idle_timeout = Duration::from_secs(5),
        &|c| c.json_echo.listen.push(second),
        &|c| c.json_echo.max_clients = 10,
        &|c| c.json_echo.listen.retain(|&l| l != second),
    ];
    for edit in edits {
        let mut next = daemon.config().clone();
        edit(&mut next);
        assert_eq!(daemon.reload(next).await, ["json_echo"]);
        // A hundred more answers after each reload: it lands mid-loop.
        let after = answered.load(SeqCst) + 100;
        wait_until_async("answers after a reload", || answered.load(SeqCst) >= after).await;
    }
    reloaded.store(true, SeqCst);
    asking.await.expect("every answer came, in order");
    assert_eq!(
        daemon.supervisor().starts("json_echo"),
        1,
        "never restarted"
    );
    // A new connection takes the new limit.
    let mut big = tokio::net::TcpStream::connect(json).await.unwrap();
    big.write_all(format!("\"{}\"", "x".repeat(2000)).as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    BufReader::new(big).read_line(&mut reply).await.unwrap();
    assert!(reply.contains("\"error\""), "{reply}");
    daemon.shutdown().await;
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pinetd"));
    command.env_remove("RUST_LOG");
    command
}

const LOCAL: &str = "[chat]\nenabled = false\n[json_echo]\nenabled = false\n[announcer]\nenabled = false\n[discovery]\nenabled = false\n[udp_echo]\nlisten = \"127.0.0.1:0\"\n";

#[test]
fn a_taken_port_fails_start_up_naming_service_and_address() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = temp_dir("taken");
    let path = write_config(
        &dir,
        &format!(
            "[udp_echo]\nlisten = \"{addr}\"\n[discovery]\nenabled = false\n[chat]\nenabled = false\n[json_echo]\nenabled = false\n"
        ),
    );
    let out = binary().arg("--config").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pinetd: udp_echo: cannot listen on udp {addr}: Address already in use"
        )),
        "{stderr}"
    );
}

#[test]
fn an_invalid_file_fails_start_up_with_every_problem() {
    let dir = temp_dir("invalid");
    let path = write_config(&dir, "[udp_echo]\nrate = 5\n\n[chat]\nmax_clients = 0\n");
    let out = binary().arg("--config").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(":2:1: udp_echo.rate: unknown field `rate`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(":5:15: chat.max_clients: 0 is out of range"),
        "{stderr}"
    );
}

#[test]
fn check_validates_without_running() {
    let root = env!("CARGO_MANIFEST_DIR");
    for file in ["config/local.toml", "config/pinetd.toml"] {
        let out = binary()
            .args(["check", "--config", &format!("{root}/{file}")])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
    }
    let dir = temp_dir("check");
    let path = write_config(
        &dir,
        "[announcer]\ninterval = \"0s\"\nto = \"255.255.255.255:70000\"\n",
    );
    let out = binary()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(":2:12: announcer.interval: must be longer than zero"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains(":3:6: announcer.to: \"255.255.255.255:70000\": port 70000 is out of range"),
        "{stderr}"
    );
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    let missing = binary()
        .args(["check", "--config", "/nonexistent/pinetd.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

#[test]
fn sigterm_drains_and_exits_zero_within_the_grace() {
    let config = format!("[daemon]\nshutdown_grace = \"2s\"\n{LOCAL}");
    let (mut daemon, _) = Proc::on_config("sigterm", &config);
    let echo = daemon.addrs(&["udp_echo"])["udp_echo"];
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send_to(b"hi", echo).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(client.recv(&mut buf).unwrap(), 2);

    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(common::HANG), Some(0), "{:#?}", daemon.log);
    assert!(
        daemon.log.iter().any(|l| l.contains("shutting down")),
        "{:#?}",
        daemon.log
    );
    // Within the grace: stopped, and nothing aborted at its deadline.
    assert!(
        daemon.log.iter().any(|l| l.ends_with("INFO stopped")),
        "{:#?}",
        daemon.log
    );
    assert!(
        !daemon.log.iter().any(|l| l.contains("not finished within")),
        "{:#?}",
        daemon.log
    );
}

#[test]
fn sighup_reloads_changed_tables_and_refuses_a_broken_file() {
    let (mut daemon, path) = Proc::on_config("sighup", LOCAL);
    let echo = daemon.addrs(&["udp_echo"])["udp_echo"];
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    let mut ask = |msg: &[u8]| {
        client.send_to(msg, echo).unwrap();
        let n = client.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(ask(b"one"), "one");

    std::fs::write(
        &path,
        without_web(&format!("{LOCAL}reply = \"reloaded\"\n")),
    )
    .unwrap();
    daemon.signal("HUP");
    let line = daemon.wait_for("reloaded");
    assert!(line.contains("changed=[\"udp_echo\"]"), "{line}");
    assert!(line.contains("keys=[\"udp_echo.reply\"]"), "{line}");
    assert_eq!(ask(b"two"), "reloaded");
    // The daemon's own keys are named too.
    std::fs::write(
        &path,
        without_web(&format!(
            "[daemon]\nlog = \"info,async_nats=warn\"\n{LOCAL}reply = \"reloaded\"\n"
        )),
    )
    .unwrap();
    daemon.signal("HUP");
    let line = daemon.wait_for("reloaded");
    assert!(line.contains("keys=[\"daemon.log\"]"), "{line}");

    std::fs::write(&path, without_web(&format!("{LOCAL}reply = 42\n"))).unwrap();
    daemon.signal("HUP");
    let line = daemon.wait_for("reload refused");
    assert!(line.contains("udp_echo.reply"), "{line}");
    assert_eq!(ask(b"three"), "reloaded", "the running config stays");

    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
}

#[test]
fn udp_client_prints_the_reply_or_times_out() {
    let (mut daemon, _) = Proc::on_config("udp-client", LOCAL);
    let echo = daemon.addrs(&["udp_echo"])["udp_echo"];
    let port = echo.port().to_string();
    let out = binary()
        .args(["udp", "127.0.0.1", &port, "hello"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(&format!("reply from {echo} in")));
    // Without a message, the course's.
    let out = binary().args(["udp", "localhost", &port]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello UDP Listener\n");

    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
    // Nothing listens there now: the kernel says so at once, long before
    // the timeout.
    let out = binary()
        .args(["udp", "127.0.0.1", &port, "--timeout", "1h"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("pinetd: nothing listens on {echo}: the host answered \"port unreachable\"\n")
    );
    // A program that listens and never answers: the timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let out = binary()
        .args(["udp", "127.0.0.1", &silent_addr.port().to_string()])
        .args(["--timeout", "200ms"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("pinetd: no reply from {silent_addr} within 200ms\n")
    );
    let usage = binary().args(["udp", "127.0.0.1"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("Usage: pinetd udp"));
}

/// A socket standing in for systemd's NOTIFY_SOCKET.
fn notify_socket(dir: &std::path::Path) -> (std::os::unix::net::UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (socket, path)
}

#[test]
fn tells_systemd_ready_reloading_and_stopping_with_live_status() {
    let dir = temp_dir("notify");
    let path = write_config(&dir, LOCAL);
    let (notify, notify_path) = notify_socket(&dir);
    let next = || {
        let mut buf = [0u8; 4096];
        let n = notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut daemon = Proc::start_with_env(
        &["--config", path.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("JOURNAL_STREAM", "8:1234"),
        ],
    );
    let echo = daemon.addrs(&["udp_echo"])["udp_echo"];
    let ready = next();
    assert!(
        ready.starts_with("READY=1\nSTATUS=udp_echo 0 answered, refused 0"),
        "{ready:?}"
    );

    // After an answer, the STATUS line counts it.
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send_to(b"count me", echo).unwrap();
    client.recv(&mut [0u8; 16]).unwrap();
    // STATUS= lines keep coming; one soon counts the answer.
    let mut status = next();
    while !status.starts_with("STATUS=udp_echo 1 answered") {
        assert!(
            status.starts_with("STATUS=udp_echo 0 answered"),
            "{status:?}"
        );
        status = next();
    }

    daemon.signal("HUP");
    let mut seen = next();
    while seen.starts_with("STATUS=") {
        seen = next();
    }
    assert!(seen.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{seen:?}");
    let mut seen = next();
    while seen.starts_with("STATUS=") {
        seen = next();
    }
    assert!(seen.starts_with("READY=1"), "{seen:?}");

    daemon.signal("TERM");
    let mut seen = next();
    while seen.starts_with("STATUS=") {
        seen = next();
    }
    assert!(seen.starts_with("STOPPING=1"), "{seen:?}");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
    // Under journald: no timestamps, no colours.
    let line = daemon
        .log
        .iter()
        .find(|l| l.contains("shutting down"))
        .unwrap();
    assert!(line.starts_with(" INFO shutting down"), "{line:?}");
}

#[test]
fn pings_the_watchdog_when_systemd_asks() {
    let dir = temp_dir("watchdog");
    let path = write_config(&dir, LOCAL);
    let (notify, notify_path) = notify_socket(&dir);
    // WatchdogSec=200ms: a ping at least every 100 ms.
    let mut daemon = Proc::start_with_env(
        &["--config", path.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    daemon.wait_for("started");
    let mut pings = 0;
    let started = std::time::Instant::now();
    while pings < 3 {
        // Other notifications (STATUS=) keep coming: a guard against a hang.
        assert!(started.elapsed() < common::HANG, "no watchdog pings");
        let mut buf = [0u8; 4096];
        let n = notify.recv(&mut buf).expect("a notification");
        if buf[..n].trim_ascii() == b"WATCHDOG=1" {
            pings += 1;
        }
    }
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
}

/// At the default `info`, the journal tells an operator each connection and
/// its end with the reason, each refusal by a limit and each bad input,
/// naming the peer; a flood from one address costs a few lines a second.
#[test]
fn the_log_tells_connections_refusals_and_bad_input_within_a_budget() {
    use std::io::{Read, Write};
    let dir = temp_dir("peer-log");
    let path = write_config(
        &dir,
        "[chat]\nlisten = \"127.0.0.1:0\"\nmax_per_source = 2\n[json_echo]\nlisten = \"127.0.0.1:0\"\n\
         [udp_echo]\nenabled = false\n[announcer]\nenabled = false\n[discovery]\nenabled = false\n",
    );
    let mut daemon = Proc::start(&["--config", path.to_str().unwrap()]);
    let addrs = daemon.addrs(&["chat", "json_echo"]);
    let (chat, json) = (addrs["chat"], addrs["json_echo"]);
    // The newcomer is told how to try it.
    let hint = daemon.wait_for("try:");
    assert!(
        hint.contains(&format!("try: nc 127.0.0.1 {}", chat.port())),
        "{hint}"
    );
    // Each part from an address of its own (127.0.0.N): the budget is per source.
    let from = |n: u8, to: std::net::SocketAddr| {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let local = std::net::SocketAddr::from(([127, 0, 0, n], 0));
        socket.bind(&local.into()).unwrap();
        socket.connect(&to.into()).unwrap();
        let stream = std::net::TcpStream::from(socket);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    };

    let mut client = from(2, chat);
    let me = client.local_addr().unwrap();
    let line = daemon.wait_for("connected");
    assert!(
        line.contains(&format!("peer={me}")) && line.contains("service=chat"),
        "{line}"
    );
    client.write_all(b"bye\n").unwrap();
    let line = daemon.wait_for("closed");
    assert!(
        line.contains("reason=\"said bye\"") && line.contains(&format!("peer={me}")),
        "{line}"
    );

    // Bad JSON: the error and where, the peer, and why it closed.
    let mut student = from(3, json);
    let me = student.local_addr().unwrap();
    student.write_all(b"{\"a\": 1,}\n").unwrap();
    let mut answer = String::new();
    student.read_to_string(&mut answer).unwrap();
    let line = daemon.wait_for("bad input");
    assert!(
        line.contains(&format!("peer={me}")) && line.contains("line=1"),
        "{line}"
    );
    let line = daemon.wait_for("closed");
    assert!(line.contains("reason=\"bad input\""), "{line}");

    // A refusal by a limit.
    let _held: Vec<_> = (0..2).map(|_| from(4, chat)).collect();
    let mut third = from(4, chat);
    let _ = third.read_to_string(&mut String::new());
    let line = daemon.wait_for("refused: too many from this source");
    assert!(line.contains("max_per_source=2"), "{line}");

    // A flood of bad input from one address: a few lines a second.
    let before = daemon.log.len();
    let started = Instant::now();
    for _ in 0..300 {
        let mut flood = from(5, json);
        flood.write_all(b"nope\n").unwrap();
        let _ = flood.read_to_end(&mut Vec::new());
    }
    let flooded = started.elapsed();
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
    let about_peers = daemon.log[before..]
        .iter()
        .filter(|l| l.contains("peer=") || l.contains("left out"))
        .count();
    // 10 at once, then 10 a second (and a "left out" line each time).
    let budget = 20 + 20 * (flooded.as_secs() as usize + 1);
    assert!(about_peers <= budget, "{about_peers} lines in {flooded:?}");
}

/// The status line counts what a person means per service: JSON values
/// answered, bad JSON as refused, announcements as sent (not "messages").
#[tokio::test]
async fn the_status_line_counts_per_service_and_bad_json_as_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let daemon = start(config(|c| c.announcer.enabled = false));
    let json = daemon.addrs("json_echo")[0];
    let mut good = tokio::net::TcpStream::connect(json).await.unwrap();
    good.write_all(b"[1, 2]\n").await.unwrap();
    good.read_exact(&mut [0u8; 6]).await.unwrap();
    let mut bad = tokio::net::TcpStream::connect(json).await.unwrap();
    bad.write_all(b"{'a': 1}\n").await.unwrap();
    let _ = bad.read_to_end(&mut Vec::new()).await;
    let stats = daemon.stats().clone();
    wait_until_async("bad JSON counted", || {
        stats.to_string().ends_with("refused 1 (bad input 1)")
    })
    .await;
    let status = stats.to_string();
    assert!(status.contains("json_echo 1 clients 1 values"), "{status}");
    assert!(!status.contains("announcer"), "not running: {status}");
    daemon.shutdown().await;
}
