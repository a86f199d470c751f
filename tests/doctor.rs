//! `pinetd doctor` on a Pi and on a student's machine, two network
//! namespaces on a bridge (as root; skipped, saying so, without root or
//! `ip`): every check passes; then one thing broken at a time (a service
//! disabled, a listener on loopback only, an nftables rule dropping JSON
//! echo's port, the daemon stopped), each giving the right line and fix
//! from both sides. No traffic leaves the namespaces.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Proc;
use common::netns::{Netns, ip_ok};

const PI: &str = "10.77.0.1";

/// A switch and two hosts on it: the Pi (10.77.0.1) and a student (10.77.0.2).
struct Class {
    _switch: Netns,
    pi: Netns,
    student: Netns,
    dir: PathBuf,
}

impl Class {
    /// None (with a message) when this machine cannot build one.
    fn new() -> Option<Class> {
        let prefix = common::netns::prefix()?;
        let switch = Netns::add(format!("{prefix}-sw"));
        ip_ok(&["-n", &switch.name, "link", "add", "br0", "type", "bridge"]);
        ip_ok(&["-n", &switch.name, "link", "set", "br0", "up"]);
        let mut hosts = Vec::new();
        for i in 1..=2 {
            let host = Netns::add(format!("{prefix}-h{i}"));
            let port = format!("v{i}");
            ip_ok(&[
                "link",
                "add",
                "eth0",
                "netns",
                &host.name,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &switch.name,
            ]);
            ip_ok(&[
                "-n",
                &switch.name,
                "link",
                "set",
                &port,
                "master",
                "br0",
                "up",
            ]);
            let cidr = format!("10.77.0.{i}/24");
            ip_ok(&[
                "-n", &host.name, "addr", "add", &cidr, "brd", "+", "dev", "eth0",
            ]);
            ip_ok(&["-n", &host.name, "link", "set", "eth0", "up"]);
            hosts.push(host);
        }
        let student = hosts.pop()?;
        let pi = hosts.pop()?;
        let dir = common::temp_dir(&pi.name);
        Some(Class {
            _switch: switch,
            pi,
            student,
            dir,
        })
    }

    /// The production file, as `config/pinetd.toml` opens it to the LAN,
    /// with `edit` appended to its tables, and this test's control socket.
    fn config(&self, edit: &[(&str, &str)]) -> PathBuf {
        let mut tables = vec![
            (
                "chat",
                "listen = [\"0.0.0.0:9999\", \"[::]:9999\"]".to_owned(),
            ),
            ("json_echo", "listen = [\"0.0.0.0:9000\"]".into()),
            ("udp_echo", "listen = [\"0.0.0.0:20001\"]".into()),
            (
                "announcer",
                "to = [\"255.255.255.255:37020\"]\ninterval = \"500ms\"".into(),
            ),
            (
                "discovery",
                "listen = [\"0.0.0.0:37021\"]\nallow = []\nmax_delay = \"50ms\"".into(),
            ),
            ("web", "enabled = false".into()),
        ];
        for (table, line) in edit {
            let (_, text) = tables.iter_mut().find(|(t, _)| t == table).unwrap();
            // A later key of the same name would be a duplicate: replace it.
            let key = line.split('=').next().unwrap().trim();
            let kept: Vec<&str> = (text.lines())
                .filter(|l| l.split('=').next().unwrap().trim() != key)
                .collect();
            *text = format!("{}\n{line}", kept.join("\n"));
        }
        let socket = self.dir.join("control.sock");
        let mut file = format!(
            "[daemon]\ncontrol_socket = {:?}\n",
            socket.to_str().unwrap()
        );
        for (table, text) in tables {
            file.push_str(&format!("[{table}]\n{text}\n"));
        }
        common::write_config(&self.dir, &file)
    }

    /// The daemon on the Pi with `config`, once it has started.
    fn daemon(&self, config: &Path) -> Proc {
        let mut daemon = Proc::spawn(self.pi.exec(
            env!("CARGO_BIN_EXE_pinetd"),
            &["--config", config.to_str().unwrap()],
        ));
        daemon.wait_for("started");
        daemon
    }

    /// `pinetd doctor --config FILE` on the Pi: its exit code and stdout.
    fn on_pi(&self, config: &Path) -> (Option<i32>, String) {
        run(self.pi.exec(
            env!("CARGO_BIN_EXE_pinetd"),
            &["doctor", "--config", config.to_str().unwrap()],
        ))
    }

    /// `pinetd doctor PI` on the student's machine.
    fn on_student(&self) -> (Option<i32>, String) {
        run(self
            .student
            .exec(env!("CARGO_BIN_EXE_pinetd"), &["doctor", PI]))
    }
}

fn run(mut command: Command) -> (Option<i32>, String) {
    let out = command.output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// The line that starts with `start`, and its fix line if any.
fn line<'a>(out: &'a str, start: &str) -> (&'a str, &'a str) {
    let mut lines = out.lines();
    while let Some(line) = lines.next() {
        if line.starts_with(start) {
            let fix = lines.next().filter(|l| l.starts_with("    fix: "));
            return (line, fix.unwrap_or(""));
        }
    }
    panic!("no line starting with {start:?} in:\n{out}");
}

#[test]
fn every_check_passes_on_a_healthy_pi() {
    let Some(class) = Class::new() else { return };
    let config = class.config(&[]);
    let _daemon = class.daemon(&config);

    let (code, out) = class.on_pi(&config);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains('✗') && !out.contains("\n! "), "{out}");
    line(&out, &format!("✓ config {} is valid", config.display()));
    line(&out, "✓ the daemon answers status (pid ");
    line(&out, "– unit pinetd:");
    line(&out, "✓ no other program holds the ports (");
    for service in ["chat", "json_echo", "udp_echo", "discovery"] {
        line(&out, &format!("✓ {service} answers at 127.0.0.1:"));
        line(&out, &format!("✓ {service} answers at {PI}:"));
    }
    line(
        &out,
        "✓ chat answers at [::1]:9999: a line relayed between two clients",
    );
    line(
        &out,
        "✓ announcements heard on eth0 (10.77.0.1/24), from 10.77.0.1",
    );
    assert!(
        out.contains("all ") && out.contains(" checks pass"),
        "{out}"
    );

    let (code, out) = class.on_student();
    assert_eq!(code, Some(0), "{out}");
    line(&out, &format!("✓ discovery answers at {PI}:37021:"));
    line(
        &out,
        &format!("✓ chat answers at {PI}:9999: a line relayed"),
    );
    line(
        &out,
        &format!("✓ json_echo answers at {PI}:9000: {{\"count\":3,\"name\":\"jung\"}} echoed"),
    );
    line(
        &out,
        &format!("✓ udp_echo answers at {PI}:20001: \"Hello UDP Listener\" answered"),
    );
    line(&out, &format!("✓ announcements from {PI} heard here"));
    assert!(out.contains("the problem is in your program"), "{out}");

    // With no host, from the student's machine: every Pi that answers discovery.
    let (code, out) = run(class
        .student
        .exec(env!("CARGO_BIN_EXE_pinetd"), &["doctor", "--lan"]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!(" at {PI}:\n")), "{out}");
    line(&out, &format!("✓ json_echo answers at {PI}:9000"));
}

#[test]
fn a_disabled_service_fails_on_both_sides() {
    let Some(class) = Class::new() else { return };
    let config = class.config(&[("json_echo", "enabled = false")]);
    let _daemon = class.daemon(&config);

    let (code, out) = class.on_pi(&config);
    assert_eq!(code, Some(1), "{out}");
    let (_, fix) = line(&out, "✗ json_echo is disabled in ");
    assert!(fix.contains("set [json_echo] enabled = true in"), "{fix}");
    line(&out, &format!("✓ chat answers at {PI}:9999"));

    let (code, out) = class.on_student();
    assert_eq!(code, Some(1), "{out}");
    let (_, fix) = line(&out, "✗ json_echo does not run on ");
    assert!(fix.contains("[json_echo] enabled = true"), "{fix}");
    line(&out, &format!("✓ udp_echo answers at {PI}:20001"));
}

#[test]
fn a_listener_on_loopback_only_is_unreachable_for_students() {
    let Some(class) = Class::new() else { return };
    let config = class.config(&[("chat", "listen = \"127.0.0.1:9999\"")]);
    let _daemon = class.daemon(&config);

    let (code, out) = class.on_pi(&config);
    assert_eq!(code, Some(1), "a warning is not a pass: {out}");
    let (_, fix) = line(
        &out,
        "! students on eth0 cannot reach chat: it listens on 127.0.0.1:9999 only",
    );
    assert!(
        fix.contains("set [chat] listen = [\"0.0.0.0:9999\", \"[::]:9999\"]"),
        "{fix}"
    );
    line(&out, "✓ chat answers at 127.0.0.1:9999");
    assert!(!out.contains(&format!("chat answers at {PI}")), "{out}");

    let (code, out) = class.on_student();
    assert_eq!(code, Some(1), "{out}");
    let (_, fix) = line(
        &out,
        &format!("✗ chat cannot be reached at {PI}: the Pi says it listens on 127.0.0.1 only"),
    );
    assert!(fix.contains("listen = [\"0.0.0.0:9999\"]"), "{fix}");
    line(&out, &format!("✓ json_echo answers at {PI}:9000"));
}

#[test]
fn a_firewall_dropping_json_echo_is_found() {
    let Some(class) = Class::new() else { return };
    if Command::new("nft").arg("--version").output().is_err() {
        common::skip(format_args!(
            "`nft` is not installed (apt-get install nftables)"
        ));
        return;
    }
    let config = class.config(&[]);
    let _daemon = class.daemon(&config);
    let nft = |args: &[&str]| {
        let out = class.pi.exec("nft", args).output().unwrap();
        assert!(out.status.success(), "nft {args:?}: {out:?}");
    };
    nft(&["add", "table", "inet", "filter"]);
    nft(&[
        "add",
        "chain",
        "inet",
        "filter",
        "input",
        "{ type filter hook input priority 0; policy accept; }",
    ]);
    nft(&[
        "add", "rule", "inet", "filter", "input", "tcp", "dport", "9000", "drop",
    ]);

    let (code, out) = class.on_pi(&config);
    assert_eq!(code, Some(1), "{out}");
    let (text, fix) = line(&out, "✗ firewall: nftables inet filter input rule handle ");
    assert!(
        text.ends_with("drops port 9000/tcp (json_echo): nobody can reach it"),
        "{text}"
    );
    assert!(
        fix.contains("sudo nft delete rule inet filter input handle"),
        "{fix}"
    );
    let (_, fix) = line(
        &out,
        &format!("✗ json_echo at {PI}:9000: no answer within 2s"),
    );
    assert!(fix.contains("firewall"), "{fix}");
    line(&out, &format!("✓ chat answers at {PI}:9999"));

    let (code, out) = class.on_student();
    assert_eq!(code, Some(1), "{out}");
    let (_, fix) = line(
        &out,
        &format!("✗ json_echo at {PI}:9000: no answer within 2s"),
    );
    assert!(fix.contains("a firewall drops it"), "{fix}");
    line(&out, &format!("✓ udp_echo answers at {PI}:20001"));
}

#[test]
fn a_stopped_daemon_fails_every_round_trip() {
    let Some(class) = Class::new() else { return };
    let config = class.config(&[]);
    let mut daemon = class.daemon(&config);
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(common::HANG), Some(0));

    let (code, out) = class.on_pi(&config);
    assert_eq!(code, Some(1), "{out}");
    let (_, fix) = line(
        &out,
        "✗ the daemon does not answer status: no pinetd answers at ",
    );
    assert!(fix.contains("sudo systemctl start pinetd"), "{fix}");
    let (_, fix) = line(
        &out,
        &format!("✗ chat at {PI}:9999: refused: nothing listens there"),
    );
    assert!(fix.contains("is the daemon running"), "{fix}");
    line(&out, "✗ no announcement heard on eth0 (10.77.0.1/24)");

    let (code, out) = class.on_student();
    assert_eq!(code, Some(1), "{out}");
    line(&out, &format!("✗ discovery at {PI}:37021: refused"));
    let (_, fix) = line(&out, &format!("✗ chat at {PI}:9999: refused"));
    assert!(fix.contains("the daemon is stopped"), "{fix}");
    line(&out, &format!("✗ json_echo at {PI}:9000: refused"));
    line(&out, &format!("✗ no announcement from {PI}"));
}
