//! The daemon: describe, bind, run. [`Daemon::start`] binds every enabled
//! service's listeners first (so a port clash fails start-up, naming service
//! and address), then hands each to the supervisor. A reload applies each
//! changed table in place where its service can take it (keeping every
//! connection), and restarts the others; a shutdown drains within the grace
//! time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::config::Config;
use crate::describe::SelfInfo;
use crate::net::{BindError, Sockets};
use crate::services::Service;
use crate::services::announcer::{self, Announcer};
use crate::services::chat::{self, Chat};
use crate::services::discovery::{self, Discovery};
use crate::services::json_echo::{self, JsonEcho};
use crate::services::udp_echo::{self, UdpEcho};
use crate::stats::Stats;
use crate::supervisor::Supervisor;

/// Every service table, in start-up order.
pub const SERVICES: [&str; 5] = ["chat", "json_echo", "udp_echo", "announcer", "discovery"];

/// How a reload changed a service.
enum Outcome {
    /// It took its new table while running.
    InPlace,
    /// It must be stopped and started on its new table.
    Restart,
    /// Its new table could not be bound: it goes on as it was.
    Kept,
}

/// A service bound and ready to run (or running).
struct Bound {
    service: Arc<dyn Service>,
    addrs: Vec<SocketAddr>,
}

pub struct Daemon {
    config: Config,
    sockets: Sockets,
    supervisor: Supervisor,
    bound: HashMap<&'static str, Bound>,
    stats: Arc<Stats>,
    info: Arc<SelfInfo>,
}

impl Daemon {
    /// Binds every enabled service, then starts them all. Needs a tokio runtime.
    pub fn start(config: Config) -> Result<Daemon, BindError> {
        let stats = Arc::new(Stats::default());
        let info = Arc::new(SelfInfo::new());
        let mut sockets = Sockets::default();
        let mut ready = Vec::new();
        for name in SERVICES {
            if let Some(bound) = bind(name, &config, &mut sockets, &stats, &info)? {
                ready.push((name, bound));
            }
        }
        let mut daemon = Daemon {
            config,
            sockets,
            supervisor: Supervisor::new(),
            bound: HashMap::new(),
            stats,
            info,
        };
        for (name, bound) in ready {
            daemon.run(name, bound);
        }
        Ok(daemon)
    }

    fn run(&mut self, name: &'static str, bound: Bound) {
        for addr in &bound.addrs {
            info!(service = %name, %addr, "listening");
        }
        self.info
            .set_service(name, bound.addrs.first().map(SocketAddr::port));
        self.supervisor.spawn(bound.service.clone());
        self.bound.insert(name, bound);
    }

    /// The addresses a service is bound to (port 0 resolved); empty if not running.
    pub fn addrs(&self, service: &str) -> &[SocketAddr] {
        self.bound.get(service).map_or(&[], |b| b.addrs.as_slice())
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The supervisor, to add a service of one's own or to ask how often one started.
    pub fn supervisor(&mut self) -> &mut Supervisor {
        &mut self.supervisor
    }

    /// Applies a new (already validated) config to the services whose table
    /// changed: in place where the service can take it, else by a restart.
    /// Returns their names.
    pub async fn reload(&mut self, config: Config) -> Vec<&'static str> {
        let changed: Vec<&'static str> = SERVICES
            .into_iter()
            .filter(|name| table_differs(name, &self.config, &config))
            .collect();
        let keys = self.config.changed_keys(&config);
        let old = std::mem::replace(&mut self.config, config);
        for &name in &changed {
            let table: Vec<&str> = keys
                .iter()
                .filter_map(|key| key.strip_prefix(name)?.strip_prefix('.'))
                .collect();
            match self.reconfigure(name, &old).await {
                Outcome::InPlace => {
                    info!(service = %name, changed = ?table, "config changed; applied in place");
                }
                Outcome::Kept => {}
                Outcome::Restart => {
                    info!(service = %name, changed = ?table, "config changed; restarting");
                    self.restart(name, &old).await;
                }
            }
        }
        self.sockets.release_unused();
        changed
    }

    /// Hands a still-enabled service its new table while it runs.
    async fn reconfigure(&mut self, name: &'static str, old: &Config) -> Outcome {
        let Some(bound) = self.bound.get_mut(name) else {
            return Outcome::Restart;
        };
        if !enabled(name, &self.config) {
            return Outcome::Restart;
        }
        match bound.service.reconfigure(&self.config, &mut self.sockets) {
            None => Outcome::Restart,
            Some(Ok(reconfigured)) => {
                for addr in reconfigured
                    .addrs
                    .iter()
                    .filter(|a| !bound.addrs.contains(a))
                {
                    info!(service = %name, %addr, "listening");
                }
                bound.addrs = reconfigured.addrs;
                self.info
                    .set_service(name, bound.addrs.first().map(SocketAddr::port));
                reconfigured.applied.await;
                Outcome::InPlace
            }
            // Moving between overlapping addresses (127.0.0.1:P to
            // 0.0.0.0:P) needs the old listener closed first.
            Some(Err(e)) if bound.addrs.iter().any(|a| a.port() == e.addr.port()) => {
                warn!(service = %name, "{e}: it overlaps a listener of its own; restarting to move it");
                Outcome::Restart
            }
            Some(Err(e)) => {
                error!(service = %name, "{e}; keeping its previous settings");
                set_table(name, &mut self.config, old);
                Outcome::Kept
            }
        }
    }

    /// Stops a service and starts it again on its new table.
    async fn restart(&mut self, name: &'static str, old: &Config) {
        self.supervisor
            .stop(name, self.config.daemon.shutdown_grace)
            .await;
        self.bound.remove(name);
        self.info.set_service(name, None);
        // Sockets on unchanged addresses are reused, so they keep their port
        // and never close; a new address may overlap one of the old ones.
        let rebound = bind(
            name,
            &self.config,
            &mut self.sockets,
            &self.stats,
            &self.info,
        )
        .or_else(|_| {
            let aside = self.sockets.take_unused();
            let retried = bind(
                name,
                &self.config,
                &mut self.sockets,
                &self.stats,
                &self.info,
            );
            if retried.is_err() {
                self.sockets.put_back(aside);
            }
            retried
        });
        match rebound {
            Ok(Some(bound)) => self.run(name, bound),
            Ok(None) => {}
            Err(e) => self.keep_old(name, old, e),
        }
    }

    /// A reloaded table that cannot bind: its old settings go on serving.
    fn keep_old(&mut self, name: &'static str, old: &Config, e: BindError) {
        error!(service = %name, "{e}; keeping its previous settings");
        set_table(name, &mut self.config, old);
        match bind(name, old, &mut self.sockets, &self.stats, &self.info) {
            Ok(Some(bound)) => self.run(name, bound),
            Ok(None) => {}
            Err(e) => error!(service = %name, "{e}; the service is stopped"),
        }
    }

    /// Stops every service within `[daemon] shutdown_grace`; true if all
    /// finished in time.
    pub async fn shutdown(mut self) -> bool {
        let grace = self.config.daemon.shutdown_grace;
        let left = self.supervisor.shutdown(grace).await;
        if !left.is_empty() {
            warn!(?left, ?grace, "not finished within the grace time; aborted");
        }
        left.is_empty()
    }

    pub fn shutdown_grace(&self) -> Duration {
        self.config.daemon.shutdown_grace
    }
}

/// Binds one service if its table enables it.
fn bind(
    name: &'static str,
    config: &Config,
    sockets: &mut Sockets,
    stats: &Arc<Stats>,
    info: &Arc<SelfInfo>,
) -> Result<Option<Bound>, BindError> {
    let bound = match name {
        chat::NAME if config.chat.enabled => {
            let service = Chat::bind(&config.chat, sockets, stats.chat.clone())?;
            Bound {
                addrs: service.local_addrs(),
                service: Arc::new(service),
            }
        }
        announcer::NAME if config.announcer.enabled => {
            let service =
                Announcer::bind(&config.announcer, info.clone(), stats.announcer.clone())?;
            Bound {
                addrs: Vec::new(),
                service: Arc::new(service),
            }
        }
        discovery::NAME if config.discovery.enabled => {
            let ttl = config.announcer.interval * 3;
            let service = Discovery::bind(
                &config.discovery,
                ttl,
                sockets,
                info.clone(),
                stats.discovery.clone(),
            )?;
            Bound {
                addrs: service.local_addrs(),
                service: Arc::new(service),
            }
        }
        json_echo::NAME if config.json_echo.enabled => {
            let service = JsonEcho::bind(&config.json_echo, sockets, stats.json_echo.clone())?;
            Bound {
                addrs: service.local_addrs(),
                service: Arc::new(service),
            }
        }
        udp_echo::NAME if config.udp_echo.enabled => {
            let service = UdpEcho::bind(&config.udp_echo, sockets, stats.udp_echo.clone())?;
            Bound {
                addrs: service.local_addrs(),
                service: Arc::new(service),
            }
        }
        // Disabled in its table.
        _ => return Ok(None),
    };
    Ok(Some(bound))
}

fn enabled(name: &str, config: &Config) -> bool {
    match name {
        "chat" => config.chat.enabled,
        "json_echo" => config.json_echo.enabled,
        "udp_echo" => config.udp_echo.enabled,
        "announcer" => config.announcer.enabled,
        "discovery" => config.discovery.enabled,
        _ => false,
    }
}

fn table_differs(name: &str, a: &Config, b: &Config) -> bool {
    match name {
        "chat" => a.chat != b.chat,
        "json_echo" => a.json_echo != b.json_echo,
        "udp_echo" => a.udp_echo != b.udp_echo,
        "announcer" => a.announcer != b.announcer,
        "discovery" => a.discovery != b.discovery,
        _ => false,
    }
}

fn set_table(name: &str, to: &mut Config, from: &Config) {
    match name {
        "chat" => to.chat = from.chat.clone(),
        "json_echo" => to.json_echo = from.json_echo.clone(),
        "udp_echo" => to.udp_echo = from.udp_echo.clone(),
        "announcer" => to.announcer = from.announcer.clone(),
        "discovery" => to.discovery = from.discovery.clone(),
        _ => {}
    }
}
