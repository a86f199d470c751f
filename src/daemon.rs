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
use crate::observe::Observatory;
use crate::services::BindContext;
use crate::services::registry::{Bound, Entry, REGISTRY};
use crate::stats::Stats;
use crate::supervisor::Supervisor;
use std::sync::atomic::Ordering::Relaxed;

/// How a reload changed a service.
enum Outcome {
    /// It took its new table while running.
    InPlace,
    /// It must be stopped and started on its new table.
    Restart,
    /// Its new table could not be bound: it goes on as it was.
    Kept,
}

pub struct Daemon {
    config: Config,
    sockets: Sockets,
    supervisor: Supervisor,
    bound: HashMap<&'static str, Bound>,
    stats: Arc<Stats>,
    info: Arc<SelfInfo>,
    /// What the services publish for the web page.
    observatory: Arc<Observatory>,
}

impl Daemon {
    /// Binds every enabled service, then starts them all. Needs a tokio runtime.
    pub fn start(config: Config) -> Result<Daemon, BindError> {
        let stats = Arc::new(Stats::default());
        let info = Arc::new(SelfInfo::new());
        let observatory = Arc::new(Observatory::new(stats.clone(), &config));
        let mut sockets = Sockets::default();
        let mut ready = Vec::new();
        for entry in &REGISTRY {
            if let Some(bound) = bind(entry, &config, &mut sockets, &observatory, &info)? {
                ready.push((entry.name, bound));
            }
        }
        tokio::spawn(sample_rates(Arc::downgrade(&observatory)));
        let mut supervisor = Supervisor::new();
        supervisor.report_to(observatory.clone());
        let mut daemon = Daemon {
            config,
            sockets,
            supervisor,
            bound: HashMap::new(),
            stats,
            info,
            observatory,
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
            .set_service(name, &bound.addrs, serves(&self.config, name));
        self.observatory.set_addrs(name, &bound.addrs);
        self.observatory.set_unapplied(name, None);
        self.stats.service(name).running.store(true, Relaxed);
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

    /// What the services publish: for the web page and `pinetd status`.
    pub fn observatory(&self) -> &Arc<Observatory> {
        &self.observatory
    }

    /// Who this daemon is (host name, services), as it describes itself.
    pub fn info(&self) -> &Arc<SelfInfo> {
        &self.info
    }

    /// The supervisor, to add a service of one's own or to ask how often one started.
    pub fn supervisor(&mut self) -> &mut Supervisor {
        &mut self.supervisor
    }

    /// Applies a new (already validated) config to the services whose table
    /// changed: in place where the service can take it, else by a restart.
    /// Returns their names.
    pub async fn reload(&mut self, config: Config) -> Vec<&'static str> {
        let changed: Vec<&'static Entry> = REGISTRY
            .iter()
            .filter(|entry| entry.changed(&self.config, &config))
            .collect();
        let keys = self.config.changed_keys(&config);
        let old = std::mem::replace(&mut self.config, config);
        for &entry in &changed {
            let name = entry.name;
            // Its own keys by name, those of a table it depends on in full.
            let table: Vec<&str> = keys
                .iter()
                .filter(|key| entry.concerns(key))
                .map(|key| {
                    key.strip_prefix(name)
                        .and_then(|k| k.strip_prefix('.'))
                        .unwrap_or(key)
                })
                .collect();
            match self.reconfigure(entry, &old).await {
                Outcome::InPlace => {
                    info!(service = %name, changed = ?table, "config changed; applied in place");
                }
                Outcome::Kept => {}
                Outcome::Restart => {
                    info!(service = %name, changed = ?table, "config changed; restarting");
                    self.restart(entry, &old).await;
                }
            }
        }
        self.sockets.release_unused();
        self.observatory.set_config(&self.config);
        changed.iter().map(|entry| entry.name).collect()
    }

    /// Hands a still-enabled service its new table while it runs.
    async fn reconfigure(&mut self, entry: &'static Entry, old: &Config) -> Outcome {
        let name = entry.name;
        let Some(bound) = self.bound.get_mut(name) else {
            return Outcome::Restart;
        };
        if !entry.enabled(&self.config) {
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
                let allow = serves(&self.config, name);
                self.info.set_service(name, &bound.addrs, allow);
                self.observatory.set_addrs(name, &bound.addrs);
                self.observatory.set_unapplied(name, None);
                reconfigured.applied.await;
                Outcome::InPlace
            }
            // Moving between overlapping addresses (127.0.0.1:P to
            // 0.0.0.0:P) needs the old listener closed first.
            Some(Err(e)) if bound.addrs.iter().any(|a| a.port() == e.addr.port()) => {
                warn!(
                    service = %name,
                    error = %e,
                    "it overlaps a listener of its own; restarting to move it"
                );
                Outcome::Restart
            }
            Some(Err(e)) => {
                error!(service = %name, error = %e, "keeping its previous settings");
                self.observatory
                    .set_unapplied(name, Some(not_applied(&e, "runs on its previous settings")));
                entry.restore(&mut self.config, old);
                Outcome::Kept
            }
        }
    }

    /// Stops a service and starts it again on its new table.
    async fn restart(&mut self, entry: &'static Entry, old: &Config) {
        let name = entry.name;
        self.supervisor
            .stop(name, self.config.daemon.shutdown_grace)
            .await;
        self.bound.remove(name);
        self.info.set_service(name, &[], &[]);
        self.observatory.set_addrs(name, &[]);
        self.stats.service(name).running.store(false, Relaxed);
        // Sockets on unchanged addresses are reused, so they keep their port
        // and never close; a new address may overlap one of the old ones.
        let (config, observatory, info) = (&self.config, &self.observatory, &self.info);
        let rebound = bind(entry, config, &mut self.sockets, observatory, info).or_else(|_| {
            let mut aside = self.sockets.take_unused();
            // Its old sockets on a port it now binds elsewhere on (0.0.0.0:P
            // to 127.0.0.1:P) are closed, not set aside: the kernel refuses
            // the new address while they are open.
            let ports: Vec<u16> = (config.listeners().iter())
                .filter(|l| l.service == name)
                .map(|l| l.addr.port())
                .collect();
            aside.close_ports(name, &ports);
            let retried = bind(entry, config, &mut self.sockets, observatory, info);
            if retried.is_err() {
                self.sockets.put_back(aside);
            }
            retried
        });
        match rebound {
            Ok(Some(bound)) => self.run(name, bound),
            Ok(None) => {}
            Err(e) => self.keep_old(entry, old, e),
        }
    }

    /// A reloaded table that cannot bind: its old settings go on serving.
    fn keep_old(&mut self, entry: &'static Entry, old: &Config, e: BindError) {
        let name = entry.name;
        error!(service = %name, error = %e, "keeping its previous settings");
        let was = if entry.enabled(old) {
            "runs on its previous settings"
        } else {
            "stays stopped, as it was"
        };
        let why = not_applied(&e, was);
        entry.restore(&mut self.config, old);
        // Its old table, but the tables it depends on as they are now.
        let config = &self.config;
        match bind(
            entry,
            config,
            &mut self.sockets,
            &self.observatory,
            &self.info,
        ) {
            Ok(Some(bound)) => self.run(name, bound),
            Ok(None) => {}
            Err(e) => error!(service = %name, error = %e, "the service is stopped"),
        }
        // After run(), which clears it.
        self.observatory.set_unapplied(name, Some(why));
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

/// Samples every service's rate while the observatory lives.
async fn sample_rates(observatory: std::sync::Weak<Observatory>) {
    let every = crate::observe::SAMPLE_EVERY;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        let now = tick.tick().await;
        let Some(observatory) = observatory.upgrade() else {
            return;
        };
        observatory.sample_rates(now - last);
        last = now;
    }
}

/// Why a reloaded table is not what runs, for `/healthz` and `pinetd status`.
fn not_applied(e: &BindError, instead: &str) -> String {
    format!("did not take the reloaded config ({e}); it {instead}")
}

/// Binds one service if its table enables it.
fn bind(
    entry: &Entry,
    config: &Config,
    sockets: &mut Sockets,
    observatory: &Arc<Observatory>,
    info: &Arc<SelfInfo>,
) -> Result<Option<Bound>, BindError> {
    let context = BindContext {
        sockets,
        stats: (observatory.stats()).service_counting(entry.name, entry.counts),
        info: info.clone(),
        window: observatory.window(entry.name),
        observatory: observatory.clone(),
    };
    entry.bind(config, context)
}

/// The peers service `name` serves (its `allow`).
fn serves<'a>(config: &'a Config, name: &str) -> &'a [ipnet::IpNet] {
    (config.tables().into_iter())
        .find(|table| table.name() == name)
        .map_or(&[], |table| table.serves())
}
