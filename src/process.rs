//! The daemon as a process: start, tell systemd, then wait for signals.
//! SIGTERM/SIGINT drain within the grace time and exit 0 (a second one exits
//! at once); SIGHUP reloads the config file, keeping the running config when
//! the new one is invalid.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rlimit::Resource;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::{Instant, MissedTickBehavior, interval, interval_at};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::control::{Answer, Control, Report};
use crate::daemon::Daemon;
use crate::logging::LogLevel;
use crate::notify;

/// How often systemd's STATUS= line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// The exit code when a second signal cuts the drain short (128 + SIGINT, as shells do).
const FORCED_EXIT: u8 = 130;

struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for SIGTERM or SIGINT.
    async fn stop_requested(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Runs the daemon until a signal stops it; `path` is re-read on SIGHUP.
pub async fn run(path: Option<PathBuf>, config: Config, log: LogLevel) -> ExitCode {
    // Installed before binding, so a signal during start-up is not lost.
    let signals = Signals::new().and_then(|s| Ok((s, signal(SignalKind::hangup())?)));
    let (mut signals, mut hangup) = match signals {
        Ok(signals) => signals,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let open_files = raise_open_files_limit();
    let mut config = config;
    fit_open_files(&mut config, open_files);
    let mut daemon = match Daemon::start(config) {
        Ok(daemon) => daemon,
        Err(e) => {
            eprintln!("pinetd: {e}");
            return ExitCode::FAILURE;
        }
    };
    info!(version = env!("CARGO_PKG_VERSION"), "started");
    if let Some(hint) = try_hint(&daemon) {
        info!("try: {hint}");
    }
    let mut control = serve_control(&daemon, path.as_deref(), None);
    notify::ready(&daemon.stats().to_string());

    let mut status = interval_at(Instant::now() + STATUS_EVERY, STATUS_EVERY);
    status.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let watchdog_every = notify::watchdog_interval();
    let mut watchdog = interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    loop {
        tokio::select! {
            _ = signals.stop_requested() => break,
            _ = hangup.recv() => {
                reload(&mut daemon, path.as_ref(), &log, open_files).await;
                control = serve_control(&daemon, path.as_deref(), control);
            }
            _ = status.tick(), if notify::enabled() => notify::status(&daemon.stats().to_string()),
            _ = watchdog.tick(), if watchdog_every.is_some() => notify::watchdog(),
        }
    }

    info!(grace = ?daemon.shutdown_grace(), "shutting down");
    notify::stopping();
    tokio::select! {
        // Stragglers past the grace are aborted and logged: still a clean stop.
        _ = daemon.shutdown() => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        _ = signals.stop_requested() => {
            warn!("second signal: exiting now");
            ExitCode::from(FORCED_EXIT)
        }
    }
}

/// Serves `pinetd status` at the config's control socket, or says why
/// not; `serving` is the socket served so far, kept if its path is the same.
fn serve_control(
    daemon: &Daemon,
    file: Option<&Path>,
    serving: Option<Control>,
) -> Option<Control> {
    let at = daemon.config().daemon.control_socket();
    if let Some(serving) = serving {
        if Some(serving.path()) == at.as_deref() {
            return Some(serving);
        }
        info!(path = %serving.path().display(), "no longer serving status there");
    }
    let at = at?;
    let observatory = daemon.observatory().clone();
    let info = daemon.info().clone();
    let file = file.map(|f| std::path::absolute(f).unwrap_or_else(|_| f.to_owned()));
    let answer: Answer = Arc::new(move || {
        let report = Report::of(&observatory, info.host(), file.as_deref());
        serde_json::to_string(&report).unwrap_or_default()
    });
    match Control::serve(&at, answer) {
        Ok(control) => {
            info!(path = %at.display(), "pinetd status is served");
            Some(control)
        }
        Err(e @ crate::control::ServeError::Io { .. }) => {
            warn!(
                "{e}; pinetd status cannot reach this daemon (set [daemon] control_socket to a path this user may write)"
            );
            None
        }
        Err(e) => {
            warn!("{e}");
            None
        }
    }
}

/// The open-files limit the daemon runs with: the hard limit, to which it
/// raises the soft one. `pinetd check` judges a file by it too.
pub fn open_files_limit() -> u64 {
    Resource::NOFILE.get_hard().unwrap_or(u64::MAX)
}

/// Every client is a file descriptor: take all the hard limit allows (the
/// unit sets it), not the soft 1024 a shell usually gives. Returns the limit
/// now in force.
fn raise_open_files_limit() -> u64 {
    let Ok((soft, hard)) = Resource::NOFILE.get() else {
        return u64::MAX;
    };
    if soft >= hard {
        return soft;
    }
    match Resource::NOFILE.set(hard, hard) {
        Ok(()) => {
            info!(from = soft, to = hard, "raised the open files limit");
            hard
        }
        Err(_) => soft,
    }
}

/// Lowers `max_clients` to fit `limit`, saying so once.
fn fit_open_files(config: &mut Config, limit: u64) {
    if let Some(warning) = config.fit_open_files(limit) {
        warn!("{warning}");
    }
}

async fn reload(daemon: &mut Daemon, path: Option<&PathBuf>, log: &LogLevel, open_files: u64) {
    let Some(path) = path else {
        warn!("SIGHUP: running on the embedded default, there is no file to reload");
        return;
    };
    notify::reloading();
    match Config::load(path) {
        Ok(mut config) => {
            fit_open_files(&mut config, open_files);
            log.set(&config.daemon.log);
            // Every key, [daemon]'s too (`log`, `shutdown_grace`: both
            // apply from now on), beside the services it touched.
            let keys = daemon.config().changed_keys(&config);
            let changed = daemon.reload(config).await;
            info!(?changed, ?keys, file = %path.display(), "reloaded");
        }
        Err(e) => {
            for line in e.to_string().lines() {
                error!(error = %line, "reload refused, the running config stays");
            }
        }
    }
    notify::ready(&daemon.stats().to_string());
}

/// How to try the daemon from this machine, for its first minute with a
/// newcomer: `nc 127.0.0.1 9999` for the chat, else the first TCP or UDP
/// service there is.
fn try_hint(daemon: &Daemon) -> Option<String> {
    let local = |addr: &SocketAddr| match addr.ip() {
        ip if ip.is_unspecified() && addr.is_ipv4() => {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => *addr,
    };
    let first = |service: &str| daemon.addrs(service).first().map(local);
    if let Some(at) = first("chat") {
        return Some(format!(
            "nc {} {}   (the chat; /help lists its commands)",
            at.ip(),
            at.port()
        ));
    }
    if let Some(at) = first("json_echo") {
        return Some(format!(
            "echo '{{\"hello\": [1, 2]}}' | nc -q1 {} {}",
            at.ip(),
            at.port()
        ));
    }
    first("udp_echo").map(|at| format!("pinetd udp {} {} hello", at.ip(), at.port()))
}
