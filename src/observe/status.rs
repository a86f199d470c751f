//! The daemon as it runs, in one object: version, uptime, and each service
//! with its addresses, clients against its limit, its rate and refusals,
//! and whether it runs as its table says. The page's cards, its
//! `/api/v1/status` and `pinetd status` all show this one.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::Observatory;
use crate::config::Table;
use crate::stats::Refusal;

/// Unix seconds, with their fraction.
pub fn seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// RFC 3339, UTC, to the second.
pub fn time_text(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Like `2m 3s`, to the second.
pub fn duration_text(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// One service.
#[derive(Serialize)]
pub struct ServiceStatus {
    pub name: &'static str,
    pub enabled: bool,
    pub running: bool,
    pub transport: Option<&'static str>,
    pub listen: Vec<String>,
    pub clients: Option<u64>,
    pub max_clients: Option<u64>,
    pub messages: u64,
    pub messages_name: &'static str,
    pub errors: u64,
    pub refused: serde_json::Map<String, serde_json::Value>,
    pub rate: Rate,
    /// Why it does not run as its table says (failing and waiting to
    /// restart, or its reloaded table could not be bound); null when it does.
    pub problem: Option<String>,
}

#[derive(Serialize)]
pub struct Rate {
    pub interval_seconds: u64,
    /// Messages a second, oldest first.
    pub per_second: Vec<f64>,
}

/// The whole daemon.
#[derive(Serialize)]
pub struct Status {
    pub version: &'static str,
    pub host: String,
    pub now: f64,
    pub started_at: f64,
    pub started_at_text: String,
    pub uptime_seconds: f64,
    pub uptime_text: String,
    pub services: Vec<ServiceStatus>,
    /// Every enabled service runs as its table says.
    pub ok: bool,
    /// When not, why, one line each.
    pub reasons: Vec<String>,
}

impl Status {
    /// Now, of the daemon whose observatory this is, on `host`.
    pub fn of(observatory: &Observatory, host: &str) -> Status {
        let config = observatory.config();
        let tables = serde_json::to_value(&*config).unwrap_or_default();
        let now = SystemTime::now();
        let started = observatory.started();
        let up = now.duration_since(started).unwrap_or_default();
        let services = (config.tables().into_iter())
            .map(|table| service(observatory, table, &tables))
            .collect();
        let reasons = observatory.reasons();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            host: host.to_owned(),
            now: seconds(now),
            started_at: seconds(started),
            started_at_text: time_text(started),
            uptime_seconds: up.as_secs_f64(),
            uptime_text: duration_text(up),
            services,
            ok: reasons.is_empty(),
            reasons,
        }
    }
}

fn service(
    observatory: &Observatory,
    table: &dyn Table,
    tables: &serde_json::Value,
) -> ServiceStatus {
    let name = table.name();
    let stats = observatory.stats().service(name);
    let counts = stats.counts();
    let running = table.enabled() && stats.running.load(Relaxed);
    let bound = observatory.addrs(name);
    // Where it listens, or would if it ran; nowhere while disabled.
    let listen = match (bound.is_empty(), table.listen()) {
        (false, _) => bound,
        (true, Some((_, addrs))) if table.enabled() => addrs.to_vec(),
        (true, _) => Vec::new(),
    };
    let refused = Refusal::ALL
        .iter()
        .map(|why| (why.key().to_owned(), stats.refused(*why).into()))
        .collect();
    let (interval, per_second) = observatory.rates(name);
    ServiceStatus {
        name,
        enabled: table.enabled(),
        running,
        transport: table.listen().map(|(transport, _)| transport.name()),
        listen: listen.iter().map(ToString::to_string).collect(),
        clients: counts.clients.then(|| stats.clients.load(Relaxed)),
        max_clients: tables[name]["max_clients"].as_u64(),
        messages: stats.messages.load(Relaxed),
        messages_name: counts.messages,
        errors: stats.errors.load(Relaxed),
        refused,
        rate: Rate {
            interval_seconds: interval.as_secs(),
            per_second,
        },
        problem: observatory.problem(name),
    }
}
