//! The registry: every service the daemon can run, in start-up order. The
//! daemon knows services only through it, so adding one means its file in
//! `services/`, its table in `config/`, and one line in [`REGISTRY`].

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Config, TableIn};
use crate::net::BindError;
use crate::services::announcer::Announcer;
use crate::services::chat::Chat;
use crate::services::discovery::Discovery;
use crate::services::json_echo::JsonEcho;
use crate::services::udp_echo::UdpEcho;
use crate::services::web::Web;
use crate::services::{BindContext, Registered, Service};
use crate::stats::Counts;

/// Every service, in start-up order.
pub static REGISTRY: [Entry; 6] = [
    Entry::of::<Chat>(),
    Entry::of::<JsonEcho>(),
    Entry::of::<UdpEcho>(),
    Entry::of::<Announcer>(),
    Entry::of::<Discovery>(),
    Entry::of::<Web>(),
];

/// A service bound and ready to run (or running).
pub struct Bound {
    pub service: Arc<dyn Service>,
    /// The addresses it listens on (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
}

/// One service, as the daemon sees it.
pub struct Entry {
    pub name: &'static str,
    pub depends_on: &'static [&'static str],
    pub counts: Counts,
    enabled: fn(&Config) -> bool,
    differs: fn(&Config, &Config) -> bool,
    restore: fn(&mut Config, &Config),
    bind: fn(&Config, BindContext<'_>) -> Result<Bound, BindError>,
}

impl Entry {
    const fn of<S: Registered>() -> Entry {
        Entry {
            name: S::Table::NAME,
            depends_on: S::DEPENDS_ON,
            counts: S::COUNTS,
            enabled: |config| crate::config::Table::enabled(S::Table::of(config)),
            differs: |a, b| S::Table::of(a) != S::Table::of(b),
            restore: |to, from| *S::Table::of_mut(to) = S::Table::of(from).clone(),
            bind: |config, context| {
                let service = S::bind(config, context)?;
                Ok(Bound {
                    addrs: service.local_addrs(),
                    service: Arc::new(service),
                })
            },
        }
    }

    /// The registered service named `name`.
    pub fn named(name: &str) -> Option<&'static Entry> {
        REGISTRY.iter().find(|entry| entry.name == name)
    }

    pub fn enabled(&self, config: &Config) -> bool {
        (self.enabled)(config)
    }

    /// True if a reload from `old` to `new` changes the service: its own
    /// table or one it depends on.
    pub fn changed(&self, old: &Config, new: &Config) -> bool {
        (self.differs)(old, new)
            || self.enabled(new)
                && self
                    .depends_on
                    .iter()
                    .filter_map(|name| Entry::named(name))
                    .any(|entry| (entry.differs)(old, new))
    }

    /// Sets the service's own table in `to` back to its value in `from`.
    pub fn restore(&self, to: &mut Config, from: &Config) {
        (self.restore)(to, from);
    }

    /// Binds the service if its table enables it.
    pub fn bind(
        &self,
        config: &Config,
        context: BindContext<'_>,
    ) -> Result<Option<Bound>, BindError> {
        if !self.enabled(config) {
            return Ok(None);
        }
        (self.bind)(config, context).map(Some)
    }

    /// True if `key` (`table.key`) is one of the service's or of a table it depends on.
    pub fn concerns(&self, key: &str) -> bool {
        let table = key.split('.').next().unwrap_or_default();
        table == self.name || self.depends_on.contains(&table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_one_service_in_the_same_order() {
        let config = Config::default();
        let tables: Vec<&str> = config.tables().iter().map(|t| t.name()).collect();
        let services: Vec<&str> = REGISTRY.iter().map(|e| e.name).collect();
        assert_eq!(tables, services);
        let file = serde_json::to_value(&config).unwrap();
        for name in services {
            assert!(file.get(name).is_some(), "{name} is a table of the file");
        }
        // A reload handles a table before those that depend on it.
        for (i, entry) in REGISTRY.iter().enumerate() {
            for dependency in entry.depends_on {
                let at = REGISTRY.iter().position(|e| e.name == *dependency);
                assert!(
                    at.is_some_and(|at| at < i),
                    "{dependency} before {}",
                    entry.name
                );
            }
        }
    }
}
