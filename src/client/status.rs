//! `pinetd status`: asks the daemon running with a config file (over its
//! control socket, on this machine) what it is doing, and prints it for a
//! person, or as JSON for a script.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use thiserror::Error;

use crate::config::{Config, ConfigError};
use crate::control::{self, QueryError};

/// The file the package installs, which the unit runs.
pub const PACKAGED_CONFIG: &str = "/etc/pinetd/pinetd.toml";

/// The last minute of a service's rate is shown (its samples' mean).
const RATE_OVER: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum StatusError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("[daemon] control_socket is \"\" in {0}: that daemon serves no status")]
    NoSocket(String),
    #[error("{0}")]
    Query(#[from] QueryError),
    /// It answered, and not every enabled service runs as configured.
    #[error("not every enabled service runs")]
    NotOk,
}

/// The config a subcommand means: `--config FILE`, else the packaged file
/// if there is one, else the embedded default (and its name, for messages).
pub fn config_of(file: Option<&Path>) -> Result<(Config, String), ConfigError> {
    let packaged = Path::new(PACKAGED_CONFIG);
    match file {
        Some(file) => Ok((Config::load(file)?, file.display().to_string())),
        None if packaged.exists() => Ok((Config::load(packaged)?, PACKAGED_CONFIG.to_owned())),
        None => Ok((Config::default(), "the embedded default".to_owned())),
    }
}

/// Where the daemon of `file` (see [`config_of`]) answers status. A file
/// with problems (being edited) still names its socket: the running daemon
/// is asked anyway, with a warning.
pub fn socket_of(file: Option<&Path>) -> Result<PathBuf, StatusError> {
    let (daemon, name) = match config_of(file) {
        Ok((config, name)) => (config.daemon, name),
        Err(e) => {
            let Some(daemon) = file.and_then(daemon_table) else {
                return Err(e.into());
            };
            let file = file
                .map(Path::display)
                .map(|f| f.to_string())
                .unwrap_or_default();
            eprintln!(
                "pinetd: warning: {file} has problems (`pinetd check --config {file}` names them); asking the daemon anyway"
            );
            (daemon, file)
        }
    };
    daemon.control_socket().ok_or(StatusError::NoSocket(name))
}

/// The `[daemon]` table of a file that may have problems elsewhere.
fn daemon_table(file: &Path) -> Option<crate::config::DaemonConfig> {
    let text = std::fs::read_to_string(file).ok()?;
    let table: toml::Table = text.parse().ok()?;
    match table.get("daemon") {
        Some(daemon) => daemon.clone().try_into().ok(),
        None => Some(crate::config::DaemonConfig::default()),
    }
}

pub async fn main(file: Option<PathBuf>, json: bool) -> Result<(), StatusError> {
    let socket = socket_of(file.as_deref())?;
    let report = control::query(&socket).await?;
    if json {
        println!("{report}");
    } else {
        print!("{}", human(&report, SystemTime::now()));
    }
    if report["ok"].as_bool() == Some(true) {
        Ok(())
    } else {
        Err(StatusError::NotOk)
    }
}

/// The report as a person reads it: who, then one row per service, the
/// refusals, the last problems, and whether all is well.
pub fn human(report: &Value, now: SystemTime) -> String {
    let mut out = String::new();
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let systemd = if report["under_systemd"].as_bool() == Some(true) {
        "under systemd"
    } else {
        "not under systemd"
    };
    let _ = writeln!(
        out,
        "pinetd {} on {}, pid {} ({systemd}), up {} (since {})",
        text(&report["version"]),
        text(&report["host"]),
        report["pid"],
        text(&report["uptime_text"]),
        text(&report["started_at_text"]),
    );
    let config = report["config"].as_str().unwrap_or("the embedded default");
    let _ = writeln!(out, "config: {config}\n");
    let services = report["services"].as_array().map_or(&[][..], Vec::as_slice);
    out.push_str(&table(services));
    refusals(&mut out, services);
    problems(&mut out, report, now);
    let reasons = report["reasons"].as_array().map_or(&[][..], Vec::as_slice);
    if reasons.is_empty() {
        out.push_str("\nok: every enabled service runs\n");
    } else {
        out.push('\n');
        for reason in reasons {
            let _ = writeln!(out, "not ok: {}", text(reason));
        }
    }
    out
}

/// One row per service, columns aligned.
fn table(services: &[Value]) -> String {
    let mut rows = vec![
        [
            "service",
            "state",
            "clients",
            "messages",
            "per second",
            "refused",
            "listen",
        ]
        .map(String::from),
    ];
    for service in services {
        rows.push(row(service));
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:width$}  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn row(service: &Value) -> [String; 7] {
    let enabled = service["enabled"].as_bool() == Some(true);
    let running = service["running"].as_bool() == Some(true);
    let state = match (enabled, running, service["problem"].is_string()) {
        (false, _, _) => "disabled",
        (true, true, false) => "running",
        (true, true, true) => "running, see below",
        (true, false, true) => "failing",
        (true, false, false) => "not running",
    };
    let name = service["name"].as_str().unwrap_or("?").to_owned();
    if !enabled {
        return [
            name,
            state.into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
        ];
    }
    let clients = match (service["clients"].as_u64(), service["max_clients"].as_u64()) {
        (Some(n), Some(max)) => format!("{n}/{max}"),
        (Some(n), None) => n.to_string(),
        _ => "-".into(),
    };
    let messages = format!(
        "{} {}",
        service["messages"],
        service["messages_name"].as_str().unwrap_or("")
    );
    let refused: u64 =
        (service["refused"].as_object()).map_or(0, |r| r.values().filter_map(Value::as_u64).sum());
    let listen = (service["listen"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    [
        name,
        state.into(),
        clients,
        messages,
        format!("{:.1}", rate(&service["rate"])),
        refused.to_string(),
        if listen.is_empty() {
            "-".into()
        } else {
            listen
        },
    ]
}

/// The mean rate over the last minute's samples.
fn rate(rate: &Value) -> f64 {
    let every = rate["interval_seconds"].as_u64().unwrap_or(2).max(1);
    let samples = (RATE_OVER.as_secs() / every).max(1) as usize;
    let per_second: Vec<f64> = (rate["per_second"].as_array())
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let last = &per_second[per_second.len().saturating_sub(samples)..];
    if last.is_empty() {
        0.0
    } else {
        last.iter().sum::<f64>() / last.len() as f64
    }
}

/// Each service's refusals by reason, where it has any.
fn refusals(out: &mut String, services: &[Value]) {
    let mut lines = Vec::new();
    for service in services {
        let Some(refused) = service["refused"].as_object() else {
            continue;
        };
        let reasons: Vec<String> = (refused.iter())
            .filter_map(|(why, n)| n.as_u64().filter(|n| *n > 0).map(|n| (why, n)))
            .map(|(why, n)| format!("{} {n}", why.replace('_', " ")))
            .collect();
        if !reasons.is_empty() {
            let name = service["name"].as_str().unwrap_or("?");
            lines.push(format!("  {name}: {}", reasons.join(", ")));
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(out, "\nrefused, by reason:\n{}", lines.join("\n"));
    }
}

/// The last problems logged, each with how long ago.
fn problems(out: &mut String, report: &Value, now: SystemTime) {
    let problems = report["problems"].as_array().map_or(&[][..], Vec::as_slice);
    if problems.is_empty() {
        out.push_str("\nno problems logged\n");
        return;
    }
    out.push_str("\nlast problems logged:\n");
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    for problem in problems.iter().rev().take(10).rev() {
        let ago =
            Duration::from_secs((now - problem["at"].as_f64().unwrap_or(now)).max(0.0) as u64);
        let _ = writeln!(
            out,
            "  {} ago  {:5}  {}",
            humantime::format_duration(ago),
            problem["level"].as_str().unwrap_or("?"),
            problem["text"].as_str().unwrap_or("?"),
        );
    }
}
