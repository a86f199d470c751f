//! The announcer: every `interval`, one datagram to each `to` address (with
//! SO_BROADCAST), the daemon's self-description or a fixed `message`. A send
//! that fails (the Pi's Wi-Fi is not up yet at boot) is logged once, counted
//! and tried again next tick: the service never dies of it.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::net::UdpSocket;
use tokio::time::{MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{AnnouncerConfig, Config, TableIn, Transport};
use crate::describe::SelfInfo;
use crate::net::{BindError, bind_udp};
use crate::services::registry::{BindContext, Registered};
use crate::services::{Service, ServiceFuture};
use crate::stats::ServiceStats;

const NAME: &str = AnnouncerConfig::NAME;

pub struct Announcer {
    config: AnnouncerConfig,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    info: Arc<SelfInfo>,
    stats: Arc<ServiceStats>,
}

impl Announcer {
    /// Binds one sending socket per address family that `to` needs.
    pub fn bind(
        config: &AnnouncerConfig,
        info: Arc<SelfInfo>,
        stats: Arc<ServiceStats>,
    ) -> Result<Self, BindError> {
        let sender = |needed: bool, addr: SocketAddr| -> Result<Option<UdpSocket>, BindError> {
            if !needed {
                return Ok(None);
            }
            let socket = bind_udp(addr, false)
                .and_then(|s| s.set_broadcast(true).map(|()| s))
                .map_err(|source| BindError {
                    service: NAME,
                    transport: Transport::Udp,
                    addr,
                    source,
                })?;
            Ok(Some(socket))
        };
        Ok(Self {
            v4: sender(
                config.to.iter().any(SocketAddr::is_ipv4),
                (Ipv4Addr::UNSPECIFIED, 0).into(),
            )?,
            v6: sender(
                config.to.iter().any(SocketAddr::is_ipv6),
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

    async fn announce(&self, failing: &mut HashSet<(SocketAddr, io::ErrorKind)>) {
        let payload = self.payload();
        for &to in &self.config.to {
            let socket = if to.is_ipv4() { &self.v4 } else { &self.v6 };
            let Some(socket) = socket else { continue };
            match socket.send_to(&payload, to).await {
                Ok(_) => {
                    self.stats.message();
                    if failing.iter().any(|(failed, _)| *failed == to) {
                        failing.retain(|(failed, _)| *failed != to);
                        info!(%to, "announcing again");
                    }
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Relaxed);
                    // Once per destination and kind of error, not every tick.
                    if failing.insert((to, e.kind())) {
                        warn!(%to, error = %e, "cannot announce; retrying every interval");
                    } else {
                        debug!(%to, error = %e, "cannot announce");
                    }
                }
            }
        }
    }
}

impl Registered for Announcer {
    type Table = AnnouncerConfig;

    fn bind(config: &Config, context: BindContext<'_>) -> Result<Self, BindError> {
        Announcer::bind(&config.announcer, context.info, context.stats)
    }
}

impl Service for Announcer {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Arc<Self>, shutdown: CancellationToken) -> ServiceFuture {
        Box::pin(async move {
            for to in &self.config.to {
                info!(%to, every = ?self.config.interval, "announcing");
            }
            let mut ticks = interval(self.config.interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut failing = HashSet::new();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = ticks.tick() => self.announce(&mut failing).await,
                }
            }
        })
    }
}
