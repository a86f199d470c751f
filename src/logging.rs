//! Logging: tracing to stderr, one line per event, with the `service=` and
//! `peer=` fields of the spans. Under journald (JOURNAL_STREAM set) there are
//! no timestamps and no colours, since the journal adds its own.

use std::io::IsTerminal;

use tracing::error;
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
    let registry = tracing_subscriber::registry().with(filter);
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
}
