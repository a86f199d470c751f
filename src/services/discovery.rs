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
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug};

use crate::config::{AnnouncerConfig, Config, DiscoveryConfig, TableIn};
use crate::describe::SelfInfo;
use crate::net::{BindError, Sockets, local_addrs};
use crate::observe::Window;
use crate::services::shared::datagram::{Judge, Reach, serve_each, transient};
use crate::services::{BindContext, Reconfigured, Registered, Service, ServiceFuture};
use crate::stats::{Counts, Refusal, ServiceStats};

const NAME: &str = DiscoveryConfig::NAME;

/// Replies waiting for their delay at once; more probes are dropped, counted.
const MAX_PENDING: usize = 1024;

pub struct Discovery {
    sockets: Vec<Arc<UdpSocket>>,
    /// `listen` as configured: a reload that changes it restarts the service.
    listen: Vec<SocketAddr>,
    /// Replaced whole by a reload; each socket's task looks at each probe.
    settings: watch::Sender<Arc<Settings>>,
    info: Arc<SelfInfo>,
    stats: Arc<ServiceStats>,
    /// What the web page sees: probes refused, and answered while watched.
    window: Arc<Window>,
}

/// How the responder answers.
struct Settings {
    config: DiscoveryConfig,
    /// The `ttl` of the description: the announcer's.
    ttl: Duration,
}

impl Settings {
    fn new(config: &Config) -> Arc<Settings> {
        Arc::new(Settings {
            config: config.discovery.clone(),
            ttl: config.announcer.ttl(),
        })
    }

    fn payload(&self, info: &SelfInfo) -> Vec<u8> {
        if !self.config.reply.is_empty() {
            return self.config.reply.clone().into_bytes();
        }
        let mut line = info.describe(self.ttl, info.seq()).into_bytes();
        line.push(b'\n');
        line
    }
}

impl Discovery {
    /// A new judge for `settings`: a reload starts the rate counts afresh.
    fn judge(&self, settings: &Settings) -> Judge {
        let config = &settings.config;
        Judge::new(
            &config.allow,
            config.rate_limit,
            Reach::OnLink,
            self.window.clone(),
        )
    }

    async fn serve(&self, socket: Arc<UdpSocket>) -> io::Result<()> {
        // The probe's content does not matter; a short buffer is enough.
        let mut buf = [0u8; 512];
        let mut reloads = self.settings.subscribe();
        let mut settings = reloads.borrow_and_update().clone();
        let mut judge = self.judge(&settings);
        let mut pending = JoinSet::new();
        loop {
            let (received, peer) = tokio::select! {
                Some(_) = pending.join_next(), if !pending.is_empty() => continue,
                received = socket.recv_from(&mut buf) => match received {
                    Ok(received) => received,
                    Err(e) if transient(&e) => continue,
                    Err(e) => return Err(e),
                },
            };
            if reloads.has_changed().unwrap_or(false) {
                settings = reloads.borrow_and_update().clone();
                judge = self.judge(&settings);
            }
            // On-link senders only, so the reply's size is not judged: the
            // description is built only for a probe that gets it.
            let probe = &buf[..received];
            if !judge.allows(peer, probe, 0, Instant::now()) {
                continue;
            }
            if pending.len() >= MAX_PENDING {
                judge.refuse(peer, Refusal::OverLimit, probe);
                continue;
            }
            let payload = settings.payload(&self.info);
            judge.answered(peer, "probe", probe, &payload);
            let delay = settings.config.max_delay.mul_f64(fastrand::f64());
            let (socket, stats) = (socket.clone(), self.stats.clone());
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

impl Registered for Discovery {
    type Table = DiscoveryConfig;
    const COUNTS: Counts = Counts {
        clients: false,
        messages: "answered",
    };
    /// Its replies carry the announcer's ttl.
    const DEPENDS_ON: &'static [&'static str] = &[AnnouncerConfig::NAME];

    /// Binds with SO_REUSEADDR: every responder on a host hears a broadcast probe.
    fn bind(config: &Config, context: BindContext<'_>) -> Result<Self, BindError> {
        let table = &config.discovery;
        Ok(Self {
            sockets: context.sockets.udp_all(NAME, &table.listen, true)?,
            listen: table.listen.clone(),
            settings: watch::Sender::new(Settings::new(config)),
            info: context.info,
            stats: context.stats,
            window: context.window,
        })
    }
}

impl Service for Discovery {
    fn name(&self) -> &'static str {
        NAME
    }

    fn local_addrs(&self) -> Vec<SocketAddr> {
        local_addrs(&self.sockets)
    }

    /// Takes every key but `listen` in place: the next probe is answered
    /// with the new settings (and the announcer's new ttl).
    fn reconfigure(
        &self,
        config: &Config,
        _sockets: &mut Sockets,
    ) -> Option<Result<Reconfigured, BindError>> {
        if config.discovery.listen != self.listen {
            return None;
        }
        self.settings.send_replace(Settings::new(config));
        Some(Ok(Reconfigured {
            addrs: self.local_addrs(),
            applied: Box::pin(std::future::ready(())),
        }))
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
