//! The announcer: every `interval`, one datagram to each `to` address (with
//! SO_BROADCAST), the daemon's self-description or a fixed `message`.
//!
//! A `to` of the limited broadcast, 255.255.255.255, means every network the
//! Pi is on: Linux sends it out of the default route's interface only, so
//! students on the Pi's other network (its hotspot, say) would hear nothing.
//! It goes out of each interface that is up, IPv4 and broadcast-capable
//! (loopback aside, and only those `interfaces` names if it names any), from
//! a socket bound to the Pi's address there: Linux then sends a limited
//! broadcast out of that address's interface, with it as the source. The
//! limited broadcast, not the interface's directed one, so a receiver whose
//! netmask differs from the Pi's still takes it. The interfaces are read
//! again every tick, so one that comes up is announced on at the next.
//!
//! A send that fails (the Pi's Wi-Fi is not up yet at boot) is logged once,
//! counted and tried again next tick: the service never dies of it.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use if_addrs::{IfAddr, IfOperStatus, Interface};
use tokio::net::UdpSocket;
use tokio::time::{MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{AnnouncerConfig, Config, TableIn, Transport};
use crate::describe::SelfInfo;
use crate::net::{BindError, bind_udp};
use crate::services::{BindContext, Registered, Service, ServiceFuture};
use crate::stats::{Counts, ServiceStats};

const NAME: &str = AnnouncerConfig::NAME;
/// The interface of an explicit `to`, as counted: the one the kernel routes it out of.
const KERNEL_ROUTE: &str = "default";

pub struct Announcer {
    config: AnnouncerConfig,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    info: Arc<SelfInfo>,
    stats: Arc<ServiceStats>,
}

/// A `to` that means every interface.
fn every_interface(to: &SocketAddr) -> bool {
    to.ip() == IpAddr::V4(Ipv4Addr::BROADCAST)
}

impl Announcer {
    /// Binds one sending socket per address family that the explicit `to`
    /// addresses need; the per-interface ones are bound as interfaces appear.
    fn new(
        config: &AnnouncerConfig,
        info: Arc<SelfInfo>,
        stats: Arc<ServiceStats>,
    ) -> Result<Self, BindError> {
        let sender = |needed: bool, addr: SocketAddr| -> Result<Option<UdpSocket>, BindError> {
            if !needed {
                return Ok(None);
            }
            let socket = broadcaster(addr).map_err(|source| BindError {
                service: NAME,
                transport: Transport::Udp,
                addr,
                source,
            })?;
            Ok(Some(socket))
        };
        let explicit = || config.to.iter().filter(|to| !every_interface(to));
        // Counted from 0 from the start: the kernel's choice and the named interfaces.
        if explicit().next().is_some() {
            stats.expect_interface(KERNEL_ROUTE);
        }
        if config.to.iter().any(every_interface) {
            config
                .interfaces
                .iter()
                .for_each(|i| stats.expect_interface(i));
        }
        Ok(Self {
            v4: sender(
                explicit().any(SocketAddr::is_ipv4),
                (Ipv4Addr::UNSPECIFIED, 0).into(),
            )?,
            v6: sender(
                explicit().any(SocketAddr::is_ipv6),
                (Ipv6Addr::UNSPECIFIED, 0).into(),
            )?,
            config: config.clone(),
            info,
            stats,
        })
    }

    fn payload(&self) -> Vec<u8> {
        if !self.config.message.is_empty() {
            return self.config.message.clone().into_bytes();
        }
        let seq = self.info.next_seq();
        let mut line = self.info.describe(self.config.ttl(), seq).into_bytes();
        line.push(b'\n');
        line
    }

    async fn announce(&self, outlets: &mut Outlets, failing: &mut Failing) {
        let payload = self.payload();
        if self.config.to.iter().any(every_interface) {
            outlets.refresh();
        }
        for &to in &self.config.to {
            if every_interface(&to) {
                for (interface, outlet) in &outlets.open {
                    let result = outlet.socket.send_to(&payload, to).await;
                    let to = format!("{to} on {interface}");
                    self.sent(failing, interface, &to, result);
                }
                continue;
            }
            let socket = if to.is_ipv4() { &self.v4 } else { &self.v6 };
            let Some(socket) = socket else { continue };
            let result = socket.send_to(&payload, to).await;
            self.sent(failing, KERNEL_ROUTE, &to.to_string(), result);
        }
    }

    /// Counts a send to `to` out of `interface`, and logs a failure once,
    /// not every tick.
    fn sent(&self, failing: &mut Failing, interface: &str, to: &str, result: io::Result<usize>) {
        self.stats.announced(interface, result.is_ok());
        match result {
            Ok(_) => {
                self.stats.message();
                if failing.iter().any(|(failed, _)| failed == to) {
                    failing.retain(|(failed, _)| failed != to);
                    info!(%to, "announcing again");
                }
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Relaxed);
                if failing.insert((to.to_owned(), e.kind())) {
                    warn!(%to, error = %e, "cannot announce; retrying every interval");
                } else {
                    debug!(%to, error = %e, "cannot announce");
                }
            }
        }
    }
}

/// Destinations (and kinds of error) already logged as failing.
type Failing = HashSet<(String, io::ErrorKind)>;

/// A UDP socket on `addr` that may send broadcasts.
fn broadcaster(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = bind_udp(addr, false)?;
    socket.set_broadcast(true)?;
    Ok(socket)
}

/// The sockets the limited broadcast goes out of: one per interface, bound
/// to its (first) IPv4 address.
struct Outlets {
    /// `interfaces` from the config: only these, if any.
    names: Vec<String>,
    open: BTreeMap<String, Outlet>,
    /// Named interfaces not there, and interfaces whose socket would not
    /// bind, already warned about.
    missing: HashSet<String>,
    /// No interface to announce on, already warned about.
    none_warned: bool,
}

struct Outlet {
    addr: Ipv4Addr,
    socket: UdpSocket,
}

impl Outlets {
    fn new(names: &[String]) -> Self {
        Self {
            names: names.to_vec(),
            open: BTreeMap::new(),
            missing: HashSet::new(),
            none_warned: false,
        }
    }

    /// Reads the interfaces, opens an outlet on each new one and closes
    /// those of interfaces gone or down, saying so once each time.
    fn refresh(&mut self) {
        let list = match if_addrs::get_if_addrs() {
            Ok(list) => list,
            Err(e) => {
                debug!(error = %e, "cannot read the interfaces; keeping the last reading");
                return;
            }
        };
        let mut wanted: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
        for interface in &list {
            if let Some(addr) = self.broadcasts_on(interface) {
                wanted.entry(interface.name.clone()).or_insert(addr);
            }
        }
        self.open.retain(|name, outlet| {
            let keep = wanted.get(name) == Some(&outlet.addr);
            if !keep {
                info!(interface = %name, addr = %outlet.addr, "interface gone, down or readdressed; no longer announcing on it");
            }
            keep
        });
        for (name, addr) in wanted {
            if self.open.contains_key(&name) {
                continue;
            }
            match broadcaster((addr, 0).into()) {
                Ok(socket) => {
                    self.missing.remove(&name);
                    info!(interface = %name, %addr, "announcing on interface");
                    self.open.insert(name, Outlet { addr, socket });
                }
                Err(e) => {
                    if self.missing.insert(name.clone()) {
                        warn!(interface = %name, %addr, error = %e, "cannot announce on interface; retrying every interval");
                    }
                }
            }
        }
        for name in &self.names {
            if list.iter().any(|i| &i.name == name) {
                self.missing.remove(name);
            } else if self.missing.insert(name.clone()) {
                warn!(interface = %name, "no such interface (yet); announcing on it once it appears");
            }
        }
        if self.open.is_empty() && !self.none_warned {
            warn!(
                "no interface to announce on (up, IPv4, broadcast-capable, not loopback); retrying every interval"
            );
        }
        self.none_warned = self.open.is_empty();
    }

    /// The address to announce from on `interface`, if it takes the
    /// limited broadcast and the config wants it.
    fn broadcasts_on(&self, interface: &Interface) -> Option<Ipv4Addr> {
        let IfAddr::V4(v4) = &interface.addr else {
            return None;
        };
        // Virtual interfaces may report their state as unknown.
        let up = matches!(
            interface.oper_status,
            IfOperStatus::Up | IfOperStatus::Unknown
        );
        let named = self.names.is_empty() || self.names.contains(&interface.name);
        (up && named && !interface.is_loopback() && v4.broadcast.is_some()).then_some(v4.ip)
    }
}

impl Registered for Announcer {
    type Table = AnnouncerConfig;
    const COUNTS: Counts = Counts {
        clients: false,
        messages: "sent",
    };

    fn bind(config: &Config, context: BindContext<'_>) -> Result<Self, BindError> {
        Announcer::new(&config.announcer, context.info, context.stats)
    }
}

impl Service for Announcer {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Arc<Self>, shutdown: CancellationToken) -> ServiceFuture {
        Box::pin(async move {
            for to in &self.config.to {
                if every_interface(to) {
                    info!(%to, every = ?self.config.interval, interfaces = ?self.config.interfaces, "announcing on every interface");
                } else {
                    info!(%to, every = ?self.config.interval, "announcing");
                }
            }
            let mut ticks = interval(self.config.interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut outlets = Outlets::new(&self.config.interfaces);
            let mut failing = Failing::new();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = ticks.tick() => self.announce(&mut outlets, &mut failing).await,
                }
            }
        })
    }
}
