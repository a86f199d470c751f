//! Logging: tracing to stderr, one line per event, with the `service=` and
//! `peer=` fields of the spans. Under journald (JOURNAL_STREAM set) there are
//! no timestamps and no colours, since the journal adds its own.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use tracing::{error, info};

use crate::limit::{RateLimiter, TokenBucket};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

/// Changes the level on reload, unless RUST_LOG fixed it.
pub struct LogLevel {
    handle: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

impl LogLevel {
    pub fn set(&self, filter: &str) {
        if self.from_env {
            return;
        }
        if let Ok(filter) = EnvFilter::builder().parse(quiet_libraries(filter)) {
            let _ = self.handle.reload(filter);
        }
    }
}

/// The NATS client logs every connection attempt and event (at info, and an
/// error for each client it gives up on); the bridge logs what matters, once
/// per outage, so the client is silent unless the filter names it
/// (`async_nats=debug`).
fn quiet_libraries(filter: &str) -> String {
    if filter.contains("async_nats") {
        filter.to_owned()
    } else {
        format!("{filter},async_nats=off")
    }
}

/// Installs the subscriber; `default` is the filter unless RUST_LOG is set.
pub fn init(default: &str) -> LogLevel {
    let env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let from_env = env.is_some();
    let filter = env
        .and_then(|v| EnvFilter::builder().parse(v).ok())
        .unwrap_or_else(|| EnvFilter::builder().parse_lossy(quiet_libraries(default)));
    let (filter, handle) = reload::Layer::new(filter);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(!journald && std::io::stderr().is_terminal());
    // Warnings and errors are kept too, for `pinetd status`.
    let registry = (tracing_subscriber::registry().with(filter)).with(crate::problems::Problems);
    if journald {
        registry.with(layer.without_time()).init();
    } else {
        registry.with(layer).init();
    }
    // A panic becomes one log line; the supervisor then restarts the service.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        error!(
            location = location.as_deref().unwrap_or("?"),
            "panic: {message}"
        );
    }));
    LogLevel { handle, from_env }
}

/// Lines about one peer at `info` (a connection, its end, a refusal, bad
/// input): at most this many a second per source address, in bursts as
/// large...
const PEER_LINES_PER_SOURCE: u32 = 10;
/// ...and this many a second in all, so a flood from many sources costs a
/// few lines a second too.
const PEER_LINES: u32 = 50;

/// The budget of lines about peers: see [`peer_line`].
struct PeerLines {
    per_source: RateLimiter,
    all: TokenBucket,
    /// Lines not logged since the last one that was.
    unlogged: u64,
}

static PEER_BUDGET: LazyLock<Mutex<PeerLines>> = LazyLock::new(|| {
    Mutex::new(PeerLines {
        per_source: RateLimiter::new(PEER_LINES_PER_SOURCE),
        all: TokenBucket::new(PEER_LINES, Instant::now()),
        unlogged: 0,
    })
});

/// Whether a line about `peer` may be logged at `info` now: a class of
/// thirty is logged in full, a flood in a few lines a second. After lines
/// were left out, says how many first.
pub fn peer_line(peer: IpAddr) -> bool {
    if !tracing::enabled!(tracing::Level::INFO) {
        return false;
    }
    let now = Instant::now();
    let mut budget = PEER_BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    let source = crate::net::source_of(peer);
    if !budget.per_source.allow(source, now) || !budget.all.try_take(now) {
        budget.unlogged += 1;
        return false;
    }
    let unlogged = std::mem::take(&mut budget.unlogged);
    drop(budget);
    if unlogged > 0 {
        info!(
            unlogged,
            "lines about peers left out (a few a second per source)"
        );
    }
    true
}

/// Bad input as a short quoted excerpt: at most 32 characters, control
/// characters escaped, never more of what a student typed.
pub fn excerpt(bytes: &[u8]) -> String {
    const SHOWN: usize = 32;
    let text = String::from_utf8_lossy(bytes);
    let mut shown: String = text
        .chars()
        .take(SHOWN)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > SHOWN {
        shown.push('…');
    }
    format!("\"{shown}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nats_client_is_held_to_warnings_unless_named() {
        assert_eq!(quiet_libraries("info"), "info,async_nats=off");
        assert_eq!(
            quiet_libraries("pinetd=debug"),
            "pinetd=debug,async_nats=off"
        );
        assert_eq!(
            quiet_libraries("info,async_nats=debug"),
            "info,async_nats=debug"
        );
        for filter in ["info", "debug,tokio=warn"] {
            assert!(EnvFilter::builder().parse(quiet_libraries(filter)).is_ok());
        }
    }

    #[test]
    fn an_excerpt_is_short_quoted_and_escaped() {
        assert_eq!(excerpt(b"{\"a\": 1,}"), "\"{\\\"a\\\": 1,}\"");
        assert_eq!(excerpt(b"\x1b[2J\n"), "\"\\u{1b}[2J\\n\"");
        let long = excerpt("é".repeat(100).as_bytes());
        assert_eq!(long.chars().count(), 32 + 3);
    }
}
