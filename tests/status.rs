//! `pinetd status`: the real binary asks a real daemon over its control
//! socket, and a person (or a script) reads what it prints and its exit code.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Proc, quiet_env, temp_dir, write_config};

/// A daemon on `services` (TOML tables after a `[daemon]` naming its
/// control socket in the test's directory), ready to answer status.
struct Running {
    daemon: Proc,
    config: PathBuf,
    socket: PathBuf,
}

impl Running {
    /// Where `service` listens, from the log read so far.
    fn addr(&self, service: &str) -> SocketAddr {
        let needle = format!("listening service={service} addr=");
        (self.daemon.log.iter())
            .find_map(|line| line.split_once(&needle))
            .and_then(|(_, addr)| addr.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{service} is not listening: {:#?}", self.daemon.log))
    }
}

fn start(name: &str, services: &str) -> Running {
    let dir = temp_dir(name);
    let socket = dir.join("control.sock");
    let text = format!(
        "[daemon]\ncontrol_socket = \"{}\"\n{services}",
        socket.display()
    );
    let config = write_config(&dir, &text);
    let mut daemon = Proc::start(&["--config", config.to_str().unwrap()]);
    daemon.wait_for("pinetd status is served");
    Running {
        daemon,
        config,
        socket,
    }
}

/// The embedded default's services, on ephemeral loopback ports.
const EPHEMERAL: &str = "[chat]\nlisten = \"127.0.0.1:0\"\n\
    [json_echo]\nlisten = \"127.0.0.1:0\"\n\
    [udp_echo]\nlisten = \"127.0.0.1:0\"\n\
    [announcer]\nenabled = false\n\
    [discovery]\nenabled = false\n";

fn status(config: &Path, args: &[&str]) -> Output {
    let mut command = quiet_env(Command::new(env!("CARGO_BIN_EXE_pinetd")));
    command
        .arg("status")
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUNTIME_DIRECTORY");
    command.output().expect("pinetd status runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The row of `service` in the table.
fn row<'a>(stdout: &'a str, service: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(service))
        .unwrap_or_else(|| panic!("no row for {service}:\n{stdout}"))
}

#[test]
fn a_running_daemon_says_what_it_does() {
    let mut running = start("running", EPHEMERAL);
    let addrs: HashMap<&str, SocketAddr> =
        ["chat", "json_echo"].map(|s| (s, running.addr(s))).into();
    let mut alice = TcpStream::connect(addrs["chat"]).unwrap();
    let mut bob = TcpStream::connect(addrs["chat"]).unwrap();
    bob.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut welcome = [0u8; 256];
    let _ = bob.read(&mut welcome).unwrap();
    alice.write_all(b"/nick alice\nhello\n").unwrap();
    let mut json = TcpStream::connect(addrs["json_echo"]).unwrap();
    json.write_all(b"{\"a\": tru}").unwrap();
    json.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = json.read(&mut [0u8; 256]).unwrap();
    common::wait_until("the line is relayed", || {
        let out = status(&running.config, &[]);
        row(&text(&out.stdout), "chat").contains("1 lines")
    });

    let out = status(&running.config, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("pinetd 0.1.0 on "), "{stdout}");
    assert!(stdout.contains("(not under systemd), up "), "{stdout}");
    assert!(
        stdout.contains(&format!("config: {}", running.config.display())),
        "{stdout}"
    );
    let chat = row(&stdout, "chat");
    for part in ["running", "2/1000", "1 lines", &addrs["chat"].to_string()] {
        assert!(chat.contains(part), "{part} in {chat}");
    }
    assert!(row(&stdout, "json_echo").contains("running"), "{stdout}");
    assert!(row(&stdout, "announcer").contains("disabled"), "{stdout}");
    assert!(stdout.contains("json_echo: bad input 1"), "{stdout}");
    assert!(
        stdout.ends_with("ok: every enabled service runs\n"),
        "{stdout}"
    );

    // The same, for a script.
    let out = status(&running.config, &["--json"]);
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["pid"], running.daemon.child.id());
    let chat = &report["services"][0];
    assert_eq!(chat["name"], "chat");
    assert_eq!(chat["clients"], 2);
    assert_eq!(chat["listen"][0], addrs["chat"].to_string());
    drop((alice, bob, json));

    // A problem logged (a reload of a broken file) is among the last shown.
    let broken = format!(
        "[daemon]\ncontrol_socket = \"{}\"\n[chat]\nmax_clients = \"many\"\n",
        running.socket.display()
    );
    std::fs::write(&running.config, broken).unwrap();
    running.daemon.signal("HUP");
    running.daemon.wait_for("reload refused");
    let out = status(&running.config, &[]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("last problems logged:"), "{stdout}");
    assert!(
        text(&out.stderr).contains("has problems (`pinetd check --config "),
        "{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("error  reload refused, the running config stays"),
        "{stdout}"
    );
    drop(running);
}

#[test]
fn a_disabled_service_is_shown_and_is_not_a_failure() {
    let services = EPHEMERAL.replace("[json_echo]\n", "[json_echo]\nenabled = false\n");
    let running = start("disabled", &services);
    let out = status(&running.config, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let json = row(&stdout, "json_echo");
    assert_eq!(
        json.split_whitespace().collect::<Vec<_>>(),
        ["json_echo", "disabled"]
    );
}

#[test]
fn a_service_that_could_not_bind_is_a_failure_with_the_reason() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let mut running = start(
        "unbound",
        &EPHEMERAL.replace("[json_echo]\n", "[json_echo]\nenabled = false\n"),
    );
    // The reloaded file enables JSON echo on a port another program holds.
    let dir = running.config.parent().unwrap().to_owned();
    let enabled = format!(
        "[daemon]\ncontrol_socket = \"{}\"\n{}",
        running.socket.display(),
        EPHEMERAL.replace(
            "[json_echo]\nlisten = \"127.0.0.1:0\"",
            &format!("[json_echo]\nlisten = \"{taken}\"")
        )
    );
    write_config(&dir, &enabled);
    running.daemon.signal("HUP");
    running.daemon.wait_for("keeping its previous settings");
    let out = status(&running.config, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let reason = format!(
        "not ok: json_echo did not take the reloaded config (json_echo: cannot listen on tcp {taken}"
    );
    assert!(stdout.contains(&reason), "{stdout}");
    assert!(stdout.contains("it stays stopped, as it was"), "{stdout}");
    assert!(
        text(&out.stderr).contains("pinetd: not every enabled service runs"),
        "{}",
        text(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&status(&running.config, &["--json"]).stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(
        report["services"][1]["problem"]
            .as_str()
            .unwrap()
            .contains("cannot listen on tcp")
    );

    // Once the port is free, the same file is taken at the next reload.
    drop(holder);
    running.daemon.signal("HUP");
    running.daemon.wait_for(&format!("addr={taken}"));
    let out = status(&running.config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(row(&text(&out.stdout), "json_echo").contains("running"));
}

#[test]
fn with_no_daemon_it_says_so_and_exits_1() {
    let dir = temp_dir("status-none");
    let socket = dir.join("control.sock");
    let _ = std::fs::remove_file(&socket);
    let config = write_config(
        &dir,
        &format!("[daemon]\ncontrol_socket = \"{}\"\n", socket.display()),
    );
    let expected = format!(
        "pinetd: no pinetd answers at {}: it is not running",
        socket.display()
    );
    let out = status(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).starts_with(&expected),
        "{}",
        text(&out.stderr)
    );

    // A socket left behind by a daemon that died: the same.
    let stale = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    drop(stale);
    let out = status(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(&expected),
        "{}",
        text(&out.stderr)
    );

    // A file that serves no status says so.
    let none = write_config(&dir, "[daemon]\ncontrol_socket = \"\"\n");
    let out = status(&none, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("control_socket is \"\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_is_left_alone() {
    let dir = temp_dir("status-stale");
    let socket = dir.join("control.sock");
    let _ = std::fs::remove_file(&socket);
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let text_of = format!(
        "[daemon]\ncontrol_socket = \"{}\"\n{EPHEMERAL}",
        socket.display()
    );
    let config = write_config(&dir, &text_of);
    let mut first = Proc::start(&["--config", config.to_str().unwrap()]);
    first.wait_for("pinetd status is served");
    // A second daemon on the same socket warns and leaves the first's.
    let mut second = Proc::start(&["--config", config.to_str().unwrap()]);
    let warning = second.wait_for("another pinetd answers");
    assert!(warning.contains("WARN"), "{warning}");
    drop(second);
    let out = status(&config, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pid"], first.child.id());
    // The daemon takes its socket away when it stops.
    first.signal("TERM");
    assert_eq!(first.exit_code(Duration::from_secs(10)), Some(0));
    assert!(!socket.exists());
}

#[test]
fn idle_and_hostile_askers_do_not_keep_others_out() {
    let running = start("hostile", EPHEMERAL);
    // Twenty that say nothing, one that sends an unknown request in pieces,
    // one that sends a line longer than any request.
    let idle: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&running.socket).unwrap())
        .collect();
    let mut odd = UnixStream::connect(&running.socket).unwrap();
    odd.write_all(b"sta").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    odd.write_all(b"tux\n").unwrap();
    let mut answer = String::new();
    odd.read_to_string(&mut answer).unwrap();
    assert!(
        answer.contains("unknown request \\\"statux\\\""),
        "{answer}"
    );
    let mut long = UnixStream::connect(&running.socket).unwrap();
    let _ = long.write_all(&[b'x'; 100_000]);
    let out = status(&running.config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A request in pieces is one request.
    let mut pieces = UnixStream::connect(&running.socket).unwrap();
    for piece in ["st", "at", "us\n"] {
        pieces.write_all(piece.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut answer = String::new();
    pieces.read_to_string(&mut answer).unwrap();
    let report: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(report["ok"], true);
    drop(idle);
}

#[test]
fn the_socket_is_for_root_and_the_daemons_group_only() {
    use std::os::unix::fs::PermissionsExt;
    let running = start("mode", EPHEMERAL);
    let mode = std::fs::metadata(&running.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
}
