//! `pinetd doctor` on the Pi: the config, the unit, the daemon's status,
//! who holds the ports, the firewall, then each enabled service's round
//! trip on every address of every network the Pi is on, and its
//! announcements heard on each network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::firewall;
use super::probe::{self, Heard, ProbeError};
use super::report::{Check, Report};
use super::system::{self, Network};
use crate::client::status::config_of;
use crate::config::{Config, Table};
use crate::control::{self, QueryError};

/// What the daemon said over its control socket: its pid, and whether it
/// runs under systemd.
struct Daemon {
    pid: u32,
    under_systemd: bool,
}

/// Every check on the Pi, of `file` (see [`config_of`]).
pub async fn run(file: Option<&Path>, report: &mut Report) {
    let (config, name) = match config_of(file) {
        Ok((config, name)) => {
            report.add(Check::pass(format!("config {name} is valid")));
            (config, name)
        }
        Err(e) => {
            let name = file.map_or(crate::client::status::PACKAGED_CONFIG.into(), |f| {
                f.display().to_string()
            });
            let first = e.to_string().lines().next().unwrap_or_default().to_owned();
            report.add(Check::fail(
                format!("config {name} has {} problem(s), the first: {first}", e.problems.len()),
                format!(
                    "`pinetd check --config {name}` names them all; fix them, then `sudo systemctl reload pinetd`"
                ),
            ));
            return;
        }
    };
    let daemon = status(&config, &name, report).await;
    let outside = daemon.as_ref().filter(|d| !d.under_systemd).map(|d| d.pid);
    report.extend(system::unit(outside).await);
    let listeners = config.listeners();
    report.extend(system::ports(&listeners, daemon.as_ref().map(|d| d.pid)));
    report.extend(firewall::check(&listeners).await);
    let networks = system::networks();
    let heard = tokio::spawn(listen_for_announcements(config.clone()));
    services(&config, &name, &networks, report).await;
    if let Ok(checks) = heard.await {
        report.extend(checks);
    }
}

/// Whether the daemon answers `status`, and says every service runs.
async fn status(config: &Config, name: &str, report: &mut Report) -> Option<Daemon> {
    let Some(socket) = config.daemon.control_socket() else {
        report.add(Check::fail(
            format!("[daemon] control_socket is \"\" in {name}: the daemon answers no status"),
            format!("remove control_socket from {name} (the default is /run/pinetd/control.sock), then `sudo systemctl restart pinetd`"),
        ));
        return None;
    };
    let answer = match control::query(&socket).await {
        Ok(answer) => answer,
        Err(e) => {
            let fix = match &e {
                QueryError::Denied(_) => "run it as root: `sudo pinetd doctor`".to_owned(),
                _ => format!(
                    "start it: `sudo systemctl start pinetd` (or `pinetd --config {name}`); `journalctl -u pinetd -n 50` says why it stopped"
                ),
            };
            report.add(Check::fail(
                format!("the daemon does not answer status: {e}"),
                fix,
            ));
            return None;
        }
    };
    let daemon = Daemon {
        pid: answer["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0),
        under_systemd: answer["under_systemd"].as_bool() == Some(true),
    };
    let up = answer["uptime_text"].as_str().unwrap_or("?");
    let reasons: Vec<&str> = (answer["reasons"].as_array())
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if reasons.is_empty() {
        report.add(Check::pass(format!(
            "the daemon answers status (pid {}, up {up}): every enabled service runs",
            daemon.pid
        )));
    } else {
        report.add(Check::fail(
            format!(
                "the daemon (pid {}) answers, but: {}",
                daemon.pid,
                reasons.join("; ")
            ),
            "`sudo pinetd status` shows its last problems, `journalctl -u pinetd` all of them",
        ));
    }
    if let Some(check) = another_file(&answer, name) {
        report.add(check);
    }
    Some(daemon)
}

/// The warning for a daemon that runs another file than the one checked.
fn another_file(answer: &Value, name: &str) -> Option<Check> {
    let runs = answer["config"].as_str().unwrap_or("the embedded default");
    let same = |a: &str, b: &str| {
        a == b
            || std::fs::canonicalize(a)
                .ok()
                .is_some_and(|a| std::fs::canonicalize(b).ok() == Some(a))
    };
    if !same(runs, name) {
        return Some(Check::warn(
            format!("the daemon runs {runs}, not {name}: these checks are of {name}"),
            format!("`sudo pinetd doctor --config {runs}` checks what runs"),
        ));
    }
    None
}

/// Each service: enabled, reachable by students, and a round trip on
/// every address it listens on.
async fn services(config: &Config, name: &str, networks: &[Network], report: &mut Report) {
    let mut asks = Vec::new();
    for table in config.tables() {
        let service = table.name();
        if !probe::CHECKED.contains(&service) && service != "announcer" {
            continue;
        }
        if !table.enabled() {
            report.add(disabled(service, name));
            continue;
        }
        let Some((_, listen)) = table.listen() else {
            continue;
        };
        if let Some(check) = unreachable_by_students(table, listen, name, networks) {
            report.add(check);
        }
        let reply = (service == "udp_echo" && !config.udp_echo.reply.is_empty())
            .then(|| config.udp_echo.reply.clone());
        for at in targets(listen, networks) {
            asks.push((service, at, reply.clone()));
        }
    }
    for (service, at, result) in probe::round_trips(asks).await {
        report.add(match result {
            Ok(what) => Check::pass(format!("{service} answers at {at}: {what}")),
            Err(e) => Check::fail(format!("{service} at {at}: {e}"), fix(service, &e)),
        });
    }
}

fn disabled(service: &str, name: &str) -> Check {
    if service == "web" {
        return Check::skip("web (the class's page) is disabled, not checked");
    }
    Check::fail(
        format!("{service} is disabled in {name}: students cannot use it"),
        format!("set [{service}] enabled = true in {name}, then `sudo systemctl reload pinetd`"),
    )
}

/// The warning for a service that students cannot reach: on loopback
/// alone, or serving loopback peers alone (`allow`).
fn unreachable_by_students(
    table: &dyn Table,
    listen: &[SocketAddr],
    name: &str,
    networks: &[Network],
) -> Option<Check> {
    let service = table.name();
    let on = match system::names(networks) {
        names if names.is_empty() => "other machines".to_owned(),
        names => format!("students on {names}"),
    };
    if listen.iter().all(|a| a.ip().is_loopback()) {
        let at: Vec<String> = listen.iter().map(ToString::to_string).collect();
        let port = listen.first().map_or(0, SocketAddr::port);
        return Some(Check::warn(
            format!(
                "{on} cannot reach {service}: it listens on {} only",
                at.join(" ")
            ),
            format!(
                "set [{service}] listen = [\"0.0.0.0:{port}\", \"[::]:{port}\"] in {name}, then `sudo systemctl reload pinetd`"
            ),
        ));
    }
    let allow = table.serves();
    if !allow.is_empty() && allow.iter().all(|net| net.network().is_loopback()) {
        return Some(Check::warn(
            format!("{on} cannot reach {service}: its allow is loopback only"),
            format!(
                "set [{service}] allow = [] in {name} (its default allows loopback only), then `sudo systemctl reload pinetd`"
            ),
        ));
    }
    None
}

/// Where a service on `listen` is reached: a wildcard listener on each
/// address of its family and on loopback; another on its own address.
fn targets(listen: &[SocketAddr], networks: &[Network]) -> Vec<SocketAddr> {
    let mut at = Vec::new();
    for addr in listen {
        if !addr.ip().is_unspecified() {
            if !at.contains(addr) {
                at.push(*addr);
            }
            continue;
        }
        let loopback: IpAddr = match addr.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
        let on_networks = (networks.iter())
            .filter(|n| n.ip.is_ipv4() == addr.is_ipv4())
            .map(|n| SocketAddr::new(n.ip, addr.port()));
        for one in std::iter::once(SocketAddr::new(loopback, addr.port())).chain(on_networks) {
            if !at.contains(&one) {
                at.push(one);
            }
        }
    }
    at
}

/// How long to listen for announcements: two intervals, so one is sure
/// to come, and at least [`probe::PATIENCE`].
fn announce_wait(interval: Duration) -> Duration {
    (interval * 2 + Duration::from_millis(200)).clamp(probe::PATIENCE, Duration::from_secs(12))
}

/// The announcer's lines: one per network its `to` reaches.
async fn listen_for_announcements(config: Config) -> Vec<Check> {
    let announcer = &config.announcer;
    if !announcer.enabled {
        return Vec::new();
    }
    let wait = announce_wait(announcer.interval);
    let mut checks = Vec::new();
    for to in &announcer.to {
        let heard = match probe::announcements(to.port(), wait).await {
            Ok(heard) => heard,
            Err(e) => {
                checks.push(Check::fail(
                    format!("cannot listen for announcements on port {}: {e}", to.port()),
                    "another program holds the port without SO_REUSEPORT: find it with `sudo ss -ulpn`",
                ));
                continue;
            }
        };
        checks.extend(heard_on(to, &announcer.interfaces, &heard, wait));
    }
    checks
}

/// Whether announcements sent to `to` were heard on each network it means.
fn heard_on(to: &SocketAddr, names: &[String], heard: &[Heard], wait: Duration) -> Vec<Check> {
    let pinetd = |h: &&Heard| h.description.is_some();
    let broadcast = to.ip() == IpAddr::V4(Ipv4Addr::BROADCAST);
    let networks: Vec<Network> = system::networks()
        .into_iter()
        .filter(|n| match to.ip() {
            _ if broadcast => {
                n.broadcast.is_some() && (names.is_empty() || names.contains(&n.name))
            }
            IpAddr::V4(ip) => n.broadcast == Some(ip),
            IpAddr::V6(_) => false,
        })
        .collect();
    if networks.is_empty() {
        // Loopback, or one address: any announcement heard will do.
        return vec![match heard.iter().find(pinetd) {
            Some(h) => Check::pass(format!(
                "announcements to {to} heard (from {})",
                h.from.ip()
            )),
            None => no_announcement(format!("to {to}"), wait),
        }];
    }
    networks
        .iter()
        .map(|network| {
            let on = format!("on {} ({}/{})", network.name, network.ip, network.prefix);
            match heard
                .iter()
                .filter(pinetd)
                .find(|h| network.holds(h.from.ip()))
            {
                Some(h) => Check::pass(format!("announcements heard {on}, from {}", h.from.ip())),
                None => no_announcement(on, wait),
            }
        })
        .collect()
}

fn no_announcement(where_: String, wait: Duration) -> Check {
    Check::fail(
        format!("no announcement heard {where_} within {wait:?}"),
        "check [announcer] to (\"255.255.255.255:37020\" reaches every network) and interfaces; `journalctl -u pinetd` says whether a send failed",
    )
}

/// The fix for a failed round trip on the Pi itself.
fn fix(service: &str, e: &ProbeError) -> String {
    match e {
        ProbeError::Refused => format!(
            "nothing listens there: is the daemon running (see above)? `sudo pinetd status` shows where {service} listens"
        ),
        ProbeError::Timeout(_) => "no answer: a firewall drops it (see the firewall line), or the daemon is stuck: `journalctl -u pinetd`".into(),
        ProbeError::Unreachable(_) => "this address is not up: `ip addr` shows the Pi's addresses".into(),
        ProbeError::Wrong(_) => format!(
            "another program answers on {service}'s port, or {service} is misconfigured: `sudo ss -tulpn` names who listens"
        ),
        ProbeError::Io(_) => "`journalctl -u pinetd` may say more".into(),
    }
}
