//! UDP echo (RFC 862): each datagram answered from its source address, with
//! the same bytes or a fixed `reply`, and never a reflector: sources that
//! cannot be real senders get nothing, replies are never larger than the
//! request (but to loopback), and each source address is rate-limited.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::batch::{self, Datagrams, MAX_PAYLOAD, Replies};
use crate::config::{Config, TableIn, UdpEchoConfig};
use crate::net::{BindError, local_addrs};
use crate::observe::Window;
use crate::services::shared::datagram::{Judge, Reach, serve_each, transient};
use crate::services::{BindContext, Registered, Service, ServiceFuture};
use crate::stats::{Counts, ServiceStats};

const NAME: &str = UdpEchoConfig::NAME;

/// Datagrams taken from the socket in one call.
const BATCH: usize = 32;

pub struct UdpEcho {
    config: UdpEchoConfig,
    sockets: Vec<Arc<UdpSocket>>,
    stats: Arc<ServiceStats>,
    /// What the web page sees: refusals, and datagrams while watched.
    window: Arc<Window>,
}

impl UdpEcho {
    fn stats(&self) -> &ServiceStats {
        &self.stats
    }

    /// Answers batches: every datagram waiting is taken in one call, judged,
    /// and the replies go out in one call; the socket is never drained of
    /// more than one batch before answering. Bursts from one peer arrive
    /// as one slot (GRO) and go back as one message (GSO) where the kernel
    /// can.
    async fn serve(&self, socket: &UdpSocket) -> io::Result<()> {
        let gro = batch::enable_gro(socket.as_fd());
        let gso = batch::gso_supported(socket.as_fd());
        debug!(gro, gso, "segmentation offload");
        let mut batch = Datagrams::new(BATCH, MAX_PAYLOAD);
        let mut judge = Judge::new(
            &self.config.allow,
            self.config.rate_limit,
            Reach::Anyone,
            self.window.clone(),
        );
        let mut replies = Replies::new(gso);
        let fixed = self.config.reply.as_bytes();
        loop {
            let received = socket
                .async_io(Interest::READABLE, || batch.recv(socket.as_fd()))
                .await;
            match received {
                Ok(_) => {}
                Err(e) if transient(&e) => {
                    debug!(error = %e, "receive failed");
                    continue;
                }
                Err(e) => return Err(e),
            }
            plan(&mut batch, &mut judge, fixed, &mut replies, Instant::now());
            self.send_all(socket, &mut batch, &mut replies).await;
        }
    }

    async fn send_all(&self, socket: &UdpSocket, batch: &mut Datagrams, replies: &mut Replies) {
        let mut sent = 0;
        while sent < replies.len() {
            let result = socket
                .async_io(Interest::WRITABLE, || {
                    replies.send(batch, socket.as_fd(), sent)
                })
                .await;
            match result {
                Ok(n) => {
                    let datagrams: usize = (sent..sent + n).map(|m| replies.datagrams(m)).sum();
                    self.stats().messages.fetch_add(datagrams as u64, Relaxed);
                    sent += n;
                }
                Err(e) if replies.datagrams(sent) > 1 => {
                    if batch::gso_refused(&e) {
                        info!(peer = %replies.peer(sent), error = %e, "the kernel refused a coalesced (GSO) reply; replies go one by one from now on");
                        replies.disable_gso();
                    } else {
                        debug!(peer = %replies.peer(sent), error = %e, "coalesced reply failed; trying each datagram");
                    }
                    replies.ungroup(batch, sent);
                }
                Err(e) => {
                    // The first reply of the rest could not go out; skip just it.
                    debug!(peer = %replies.peer(sent), error = %e, "reply failed");
                    sent += 1;
                }
            }
        }
    }
}

/// Plans the replies to a received batch: each datagram the judge allows
/// gets its own bytes back, or `fixed` when that is not empty (written over
/// its slot). Replaces what `replies` held.
pub fn plan(
    batch: &mut Datagrams,
    judge: &mut Judge,
    fixed: &[u8],
    replies: &mut Replies,
    now: Instant,
) {
    replies.clear();
    for i in 0..batch.len() {
        let Some(peer) = batch.peer(i) else { continue };
        let payload = batch.payload(i);
        if !fixed.is_empty() {
            let answered = batch
                .datagrams(i)
                .filter(|d| judge.allows(peer, &payload[d.clone()], fixed.len(), now))
                .count();
            if answered > 0 {
                judge.answered(peer, "datagram", payload, fixed);
            }
            if answered > 0 && batch.set_repeated(i, fixed, answered) {
                for k in 0..answered {
                    replies.add(batch, i, k * fixed.len()..(k + 1) * fixed.len());
                }
            }
            continue;
        }
        for datagram in batch.datagrams(i) {
            let bytes = &payload[datagram.clone()];
            if judge.allows(peer, bytes, bytes.len(), now) {
                judge.answered(peer, "datagram", bytes, bytes);
                replies.add(batch, i, datagram);
            }
        }
    }
}

impl Registered for UdpEcho {
    type Table = UdpEchoConfig;
    const COUNTS: Counts = Counts {
        clients: false,
        messages: "answered",
    };

    fn bind(config: &Config, context: BindContext<'_>) -> Result<Self, BindError> {
        let config = &config.udp_echo;
        let stats = context.stats;
        let sockets = context.sockets.udp_all(NAME, &config.listen, false)?;
        Ok(Self {
            config: config.clone(),
            sockets,
            stats,
            window: context.window,
        })
    }
}

impl Service for UdpEcho {
    fn name(&self) -> &'static str {
        NAME
    }

    fn local_addrs(&self) -> Vec<SocketAddr> {
        local_addrs(&self.sockets)
    }

    fn run(self: Arc<Self>, shutdown: CancellationToken) -> ServiceFuture {
        Box::pin(async move {
            serve_each(&self.sockets, &shutdown, |socket| {
                let me = self.clone();
                async move { me.serve(&socket).await }
            })
            .await
        })
    }
}
