//! Test harness: the daemon in-process on port 0 (readiness is the returned
//! addresses, never a sleep), or the real binary with its `listening` lines.
//! Tests wait on what they can observe (bytes, log lines, counters); a
//! timeout here only guards against a hang, so a busy machine is slow, not red.
#![allow(dead_code)]

pub mod browser;
pub mod chat;
pub mod netns;
pub mod peer;
pub mod web;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pinetd::config::Config;
use pinetd::daemon::Daemon;
use tokio::net::UdpSocket;
use tokio::runtime::Runtime;

/// How long a test waits for something it is sure will happen before it
/// calls it a hang: long enough for a loaded two-core machine.
pub const HANG: Duration = Duration::from_secs(30);

/// The embedded default with every implemented service on 127.0.0.1:0 and the
/// others disabled; `edit` changes what a test needs.
pub fn config(edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    let any = vec!["127.0.0.1:0".parse().unwrap()];
    config.udp_echo.listen = any.clone();
    config.json_echo.listen = any.clone();
    config.chat.listen = any.clone();
    config.chat.enabled = false;
    // Every test client comes from 127.0.0.1: tests of the limit set it.
    config.chat.max_per_source = 0;
    config.json_echo.max_per_source = 0;
    config.announcer.enabled = false;
    config.discovery.enabled = false;
    config.web.enabled = false;
    config.web.listen = any.clone();
    edit(&mut config);
    config
}

pub fn start(config: Config) -> Daemon {
    Daemon::start(config).expect("daemon starts")
}

/// The daemon in-process on a runtime of its own, for tests whose clients
/// block: the runtime, then the daemon.
pub fn start_on_runtime(config: Config) -> (Runtime, Daemon) {
    let runtime = Runtime::new().unwrap();
    let daemon = runtime.block_on(async { start(config) });
    (runtime, daemon)
}

/// A TCP connection from `ip` (any 127.x.y.z is this machine; a port of
/// the kernel's choosing), or why not within `within`.
pub fn try_connect_from(ip: IpAddr, to: SocketAddr, within: Duration) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        None,
    )?;
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    socket.connect_timeout(&to.into(), within)?;
    Ok(socket.into())
}

/// A TCP connection from `ip` ("127.0.0.2"), its reads given up after 5 s.
pub fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let stream = try_connect_from(ip.parse().unwrap(), to, HANG).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// A UDP socket on `ip`, port chosen by the kernel.
pub async fn udp_on(ip: &str) -> UdpSocket {
    UdpSocket::bind((ip, 0)).await.unwrap()
}

/// Sends `msg` and waits up to 5 s for one reply.
pub async fn ask(socket: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    socket.send_to(msg, to).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => {
            assert_eq!(from, to, "reply from the address asked");
            Some(buf[..n].to_vec())
        }
        _ => None,
    }
}

/// Polls `done` (a counter reaching a value) until it holds, sleeping so the
/// daemon on this runtime can run; panics, naming `what`, after [`HANG`].
pub async fn wait_until_async(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !done() {
        assert!(Instant::now() < deadline, "still waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Polls `done` until it holds, for a test whose clients block; panics,
/// naming `what`, after [`HANG`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !done() {
        assert!(Instant::now() < deadline, "still waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Nothing is waiting on `socket` (call after a later datagram was answered:
/// the server handles one socket's datagrams in order).
pub fn nothing_received(socket: &UdpSocket) -> bool {
    let mut buf = [0u8; 16];
    matches!(socket.try_recv_from(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Writes `text` as `pinetd.toml` in `dir`, through [`without_web`].
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pinetd.toml");
    std::fs::write(&path, without_web(text)).unwrap();
    path
}

/// The whole file `text`, with a last table that disables the web page
/// if it has no `[web]` of its own: its default port (8080) would be
/// shared by every test running at once. The lines of `text` keep their
/// numbers.
pub fn without_web(text: &str) -> String {
    if text.contains("[web]") {
        text.to_owned()
    } else {
        format!("{text}\n[web]\nenabled = false\n")
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pinetd-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The real binary, run as systemd would; killed on drop if still running.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    pub log: Vec<String>,
}

impl Proc {
    pub fn start(args: &[&str]) -> Proc {
        Proc::start_with_env(args, &[])
    }

    /// The real binary on `config`, written to a file for the test named
    /// `name`; that file's path, for edits.
    pub fn on_config(name: &str, config: &str) -> (Proc, PathBuf) {
        let path = write_config(&temp_dir(name), config);
        let proc = Proc::start(&["--config", path.to_str().unwrap()]);
        (proc, path)
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut command = quiet_env(Command::new(env!("CARGO_BIN_EXE_pinetd")));
        command.args(args).envs(env.iter().copied());
        Proc::spawn(command)
    }

    /// Runs `command` (pinetd, or pinetd under `ip netns exec`), stderr read by lines.
    /// Its runtime directory (where it serves `pinetd status` when its file
    /// names no `control_socket`) is one of its own, never `/run/pinetd`.
    pub fn spawn(mut command: Command) -> Proc {
        if !command
            .get_envs()
            .any(|(key, _)| key == "RUNTIME_DIRECTORY")
        {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            command.env("RUNTIME_DIRECTORY", temp_dir(&format!("run{n}")));
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the command runs");
        let stderr = child.stderr.take().unwrap();
        Proc {
            child,
            lines: forward_lines(stderr),
            log: Vec::new(),
        }
    }

    /// Reads stderr until a line contains `needle` (a hang after [`HANG`]); returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(HANG) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Reads the `listening` lines until every service in `services` is bound.
    pub fn addrs(&mut self, services: &[&str]) -> HashMap<String, SocketAddr> {
        let mut addrs = HashMap::new();
        while services.iter().any(|s| !addrs.contains_key(*s)) {
            let line = self.wait_for("listening");
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .map(|v| v.trim_matches('"').to_owned())
            };
            let (Some(service), Some(addr)) = (field("service"), field("addr")) else {
                panic!("unexpected listening line: {line}");
            };
            addrs.insert(service, addr.parse().unwrap());
        }
        addrs
    }

    /// Sends `signal` ("TERM", "HUP", "INT") at once, with no `kill` program in between.
    pub fn signal(&self, signal: &str) {
        let number = match signal {
            "TERM" => libc::SIGTERM,
            "HUP" => libc::SIGHUP,
            "INT" => libc::SIGINT,
            other => panic!("no such signal here: {other}"),
        };
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill has no memory preconditions; the child is not yet
        // reaped (Drop waits for it), so the pid is still ours.
        assert_eq!(unsafe { libc::kill(pid, number) }, 0, "kill -{signal}");
    }

    /// Waits up to `within` for the process to exit; its exit code.
    pub fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(line);
                }
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Without the variables that change how pinetd logs and notifies.
pub fn quiet_env(mut command: Command) -> Command {
    command
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM");
    command
}

fn forward_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Says why (part of) a test is skipped, past the test harness's capture, so
/// `cargo test` shows it even when the test passes. Under
/// `PINETD_REQUIRE_ALL=1` (`.ci/run` sets it: CI installs every program and
/// runs as root) a skip fails the test instead, so nothing passes untried.
pub fn skip(why: std::fmt::Arguments<'_>) {
    if require_all() {
        panic!("cannot skip with PINETD_REQUIRE_ALL set: {why}");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
}

/// Where the outside program `name` is (`/usr/sbin`, `/usr/bin`, else the
/// `PATH`), or None after a [`skip`] naming the Debian `package` to install.
pub fn program(name: &str, package: &str) -> Option<String> {
    let found = ["/usr/sbin", "/usr/bin"]
        .into_iter()
        .map(|dir| format!("{dir}/{name}"))
        .find(|p| Path::new(p).exists())
        .or_else(|| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (!path.is_empty()).then_some(path)
        });
    if found.is_none() {
        skip(format_args!(
            "{name} is not installed (apt-get install {package})"
        ));
    }
    found
}

/// `PINETD_REQUIRE_ALL` is set to anything but "" or "0".
pub fn require_all() -> bool {
    std::env::var("PINETD_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0")
}
