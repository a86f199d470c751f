//! `pinetd doctor HOST` (or `--lan`) on a student's machine: every service
//! of that Pi checked from here, with the course's own messages, so a
//! student learns whether the problem is their program or the network.
//! The Pi's discovery reply says which services run, on which ports and
//! where they can be reached; without one, the course's ports are tried.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::probe::{self, ProbeError};
use super::report::{Check, Report};
use crate::client::discover::{local_broadcasts, scan};
use crate::describe::Description;

/// The course's ports: discovery's, and the services tried when it does not answer.
const DISCOVERY_PORT: u16 = 37021;
const ANNOUNCE_PORT: u16 = 37020;
const COURSE_PORTS: [(&str, u16); 3] = [("chat", 9999), ("json_echo", 9000), ("udp_echo", 20001)];

/// Every check of the Pi at `host` (a name or an address).
pub async fn host(host: &str, report: &mut Report) {
    let ip = match crate::client::resolve(host, DISCOVERY_PORT).await {
        Ok(at) => at.ip(),
        Err(e) => {
            report.add(Check::fail(
                format!("cannot find {host}: {e}"),
                "give the Pi's address (`hostname -I` on the Pi prints it), like `pinetd doctor 192.168.0.23`",
            ));
            return;
        }
    };
    // Announcements are heard while the round trips run.
    let heard = tokio::spawn(probe::announcements(ANNOUNCE_PORT, probe::PATIENCE));
    let description = discovery(ip, report).await;
    services(ip, description.as_ref(), report).await;
    report.add(match heard.await {
        Ok(Ok(heard)) => match heard.iter().find(|h| h.from.ip() == ip && h.description.is_some()) {
            Some(_) => Check::pass(format!("announcements from {ip} heard here on port {ANNOUNCE_PORT}")),
            None => Check::fail(
                format!("no announcement from {ip} heard on port {ANNOUNCE_PORT} within {:?}", probe::PATIENCE),
                "announcements are broadcasts: they reach only the Pi's own networks. Is this machine on the Pi's network (the same Wi-Fi)? On the Pi, `sudo pinetd doctor` checks the announcer; here, a firewall may drop UDP 37020",
            ),
        },
        Ok(Err(e)) => Check::skip(format!("cannot listen for announcements on port {ANNOUNCE_PORT} here: {e}")),
        Err(_) => Check::skip("the announcement listener stopped"),
    });
}

/// Every pinetd that answers discovery on this machine's networks, each checked.
pub async fn lan(report: &mut Report) {
    let to: Vec<SocketAddr> = local_broadcasts()
        .into_iter()
        .map(|b| SocketAddr::from((b, DISCOVERY_PORT)))
        .collect();
    let found = match scan(&to, probe::PATIENCE).await {
        Ok(found) => found,
        Err(e) => {
            report.add(Check::fail(
                format!("cannot look for a Pi: {e}"),
                "give the Pi's address: `pinetd doctor HOST`",
            ));
            return;
        }
    };
    if found.is_empty() {
        let nets: Vec<String> = to.iter().map(|t| t.ip().to_string()).collect();
        report.add(Check::fail(
            format!(
                "no pinetd answered discovery on {} within {:?}",
                nets.join(", "),
                probe::PATIENCE
            ),
            "is the Pi on, and on this network (the same Wi-Fi)? Give its address: `pinetd doctor HOST` (`hostname -I` on the Pi prints it)",
        ));
        return;
    }
    for device in found {
        let name = device.description.as_ref().map_or("?", |d| d.host.as_str());
        report.heading(&format!("{name} at {}:", device.from.ip()));
        host(&device.from.ip().to_string(), report).await;
    }
}

/// The discovery round trip: the Pi's description, if it answers.
async fn discovery(ip: IpAddr, report: &mut Report) -> Option<Description> {
    let at = SocketAddr::new(ip, DISCOVERY_PORT);
    match probe::discovery(at).await {
        Ok(description) => {
            report.add(Check::pass(format!(
                "discovery answers at {at}: {} (pinetd {}), running {}",
                description.host,
                description.version,
                description.services_text()
            )));
            Some(description)
        }
        Err(e) => {
            report.add(Check::fail(
                format!("discovery at {at}: {e}"),
                format!(
                    "{} (the course's ports are tried below)",
                    fix("discovery", ip, &e)
                ),
            ));
            None
        }
    }
}

/// Each service the Pi says it runs (or the course's, when it said
/// nothing): reachable from here, and a round trip.
async fn services(ip: IpAddr, description: Option<&Description>, report: &mut Report) {
    let ports: BTreeMap<&str, u16> = match description {
        Some(d) => probe::CHECKED
            .iter()
            .filter(|s| **s != "discovery")
            .filter_map(|s| Some((*s, *d.services.get(*s)?)))
            .collect(),
        None => COURSE_PORTS.into_iter().collect(),
    };
    let mut asks = Vec::new();
    for service in probe::CHECKED.iter().filter(|s| **s != "discovery") {
        let Some(&port) = ports.get(service) else {
            if *service != "web" && description.is_some() {
                report.add(not_running(service, description));
            }
            continue;
        };
        if let Some(reach) = description.and_then(|d| d.reach.get(*service)) {
            if !reach.contains(&ip) {
                report.add(not_here(service, port, ip, reach));
                continue;
            }
        }
        asks.push((*service, SocketAddr::new(ip, port), None));
    }
    for (service, at, result) in probe::round_trips(asks).await {
        report.add(match result {
            Ok(what) => Check::pass(format!("{service} answers at {at}: {what}")),
            Err(e) => Check::fail(format!("{service} at {at}: {e}"), fix(service, ip, &e)),
        });
    }
}

fn not_running(service: &str, description: Option<&Description>) -> Check {
    let host = description.map_or("the Pi", |d| d.host.as_str());
    Check::fail(
        format!("{service} does not run on {host}"),
        format!(
            "on the Pi: set [{service}] enabled = true in /etc/pinetd/pinetd.toml, then `sudo systemctl reload pinetd`; `sudo pinetd doctor` there says more"
        ),
    )
}

fn not_here(service: &str, port: u16, ip: IpAddr, reach: &[IpAddr]) -> Check {
    let at: Vec<String> = reach.iter().map(ToString::to_string).collect();
    Check::fail(
        format!(
            "{service} cannot be reached at {ip}: the Pi says it listens on {} only",
            at.join(" ")
        ),
        format!(
            "on the Pi: set [{service}] listen = [\"0.0.0.0:{port}\"] (and allow = [] for discovery) in /etc/pinetd/pinetd.toml, then `sudo systemctl reload pinetd`"
        ),
    )
}

/// The fix for a failed round trip from a student's machine.
fn fix(service: &str, ip: IpAddr, e: &ProbeError) -> String {
    match e {
        ProbeError::Refused => format!(
            "nothing listens on {service}'s port at {ip}: the daemon is stopped, {service} is off or listens on loopback only; `sudo pinetd doctor` on the Pi says which"
        ),
        ProbeError::Timeout(_) => format!(
            "nothing came back: a firewall drops it (on the Pi, `sudo pinetd doctor` checks its firewall; or this machine's own), or {ip} is not the Pi's address"
        ),
        ProbeError::Unreachable(_) => format!(
            "this machine has no way to {ip}: is it on the Pi's network (the same Wi-Fi)? `ip route` shows where it can go"
        ),
        ProbeError::Wrong(_) => {
            format!("something else answers there: is {ip} the Pi? `sudo pinetd doctor` on the Pi")
        }
        ProbeError::Io(_) => "`sudo pinetd doctor` on the Pi may say more".into(),
    }
}

/// Not a problem with the network: the words for a student whose checks all pass.
pub const ALL_WELL: &str =
    "the Pi and the network are fine: if your program still fails, the problem is in your program";
