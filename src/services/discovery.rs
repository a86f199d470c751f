//! The discovery responder: any datagram on its port is answered, to the
//! sender only, with the daemon's self-description (or a fixed `reply`),
//! after a random delay up to `max_delay` so fifty Pis don't answer in the
//! same millisecond. Only senders on a local subnet or loopback are answered
//! (SSDP and mDNS became DDoS reflectors by answering spoofed off-link
//! sources), within `allow`, and at most `rate_limit` times a second each.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug};

use crate::config::DiscoveryConfig;
use crate::describe::SelfInfo;
use crate::limit::RateLimiter;
use crate::net::{BindError, LocalNets, Sockets, allowed, bad_source, local_addrs};
use crate::services::{Service, ServiceFuture, serve_each, transient};
use crate::stats::{Refusal, ServiceStats};

pub const NAME: &str = "discovery";

/// Replies waiting for their delay at once; more probes are dropped, counted.
const MAX_PENDING: usize = 1024;

pub struct Discovery {
    config: DiscoveryConfig,
    sockets: Vec<Arc<UdpSocket>>,
    info: Arc<SelfInfo>,
    /// The `ttl` of the description: the announcer's, 3 × its interval.
    ttl: Duration,
    stats: Arc<ServiceStats>,
}

impl Discovery {
    /// Binds with SO_REUSEADDR: every responder on a host hears a broadcast probe.
    pub fn bind(
        config: &DiscoveryConfig,
        ttl: Duration,
        sockets: &mut Sockets,
        info: Arc<SelfInfo>,
        stats: Arc<ServiceStats>,
    ) -> Result<Self, BindError> {
        let sockets = sockets.udp_all(NAME, &config.listen, true)?;
        Ok(Self {
            config: config.clone(),
            sockets,
            info,
            ttl,
            stats,
        })
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        local_addrs(&self.sockets)
    }

    fn payload(&self) -> Vec<u8> {
        if !self.config.reply.is_empty() {
            return self.config.reply.clone().into_bytes();
        }
        let mut line = self.info.describe(self.ttl, self.info.seq()).into_bytes();
        line.push(b'\n');
        line
    }

    async fn serve(&self, socket: Arc<UdpSocket>) -> io::Result<()> {
        // The probe's content does not matter; a short buffer is enough.
        let mut buf = [0u8; 512];
        let mut limiter = RateLimiter::new(self.config.rate_limit);
        let mut nets = LocalNets::new();
        let mut pending = JoinSet::new();
        loop {
            let (_, peer) = tokio::select! {
                Some(_) = pending.join_next(), if !pending.is_empty() => continue,
                received = socket.recv_from(&mut buf) => match received {
                    Ok(received) => received,
                    Err(e) if transient(&e) => continue,
                    Err(e) => return Err(e),
                },
            };
            let now = Instant::now();
            let ip = peer.ip().to_canonical();
            let refusal = if !allowed(&self.config.allow, ip) {
                Some(Refusal::NotAllowed)
            } else if bad_source(peer, nets.broadcasts(now)).is_some() || !nets.on_link(ip, now) {
                Some(Refusal::BadSource)
            } else if !limiter.allow(ip, now) {
                Some(Refusal::RateLimited)
            } else if pending.len() >= MAX_PENDING {
                Some(Refusal::OverLimit)
            } else {
                None
            };
            if let Some(why) = refusal {
                self.stats.refuse(why);
                debug!(%peer, reason = why.name(), "refused");
                continue;
            }
            let delay = self.config.max_delay.mul_f64(fastrand::f64());
            let (payload, socket, stats) = (self.payload(), socket.clone(), self.stats.clone());
            pending.spawn(
                async move {
                    sleep(delay).await;
                    match socket.send_to(&payload, peer).await {
                        Ok(_) => stats.message(),
                        Err(e) => debug!(%peer, error = %e, "reply failed"),
                    }
                }
                .in_current_span(),
            );
        }
    }
}

impl Service for Discovery {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Arc<Self>, shutdown: CancellationToken) -> ServiceFuture {
        Box::pin(async move {
            // Replies still waiting for their delay are dropped with the tasks.
            serve_each(&self.sockets, &shutdown, |socket| {
                let me = self.clone();
                async move { me.serve(socket).await }
            })
            .await
        })
    }
}
