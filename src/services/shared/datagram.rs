//! What the datagram services share: the order of questions that decides
//! whether a datagram may be answered, and one task per socket.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info};

use crate::limit::RateLimiter;
use crate::net::{BadSource, LocalNets, allowed, bad_source};
use crate::observe::{Event, Shown, Window};
use crate::services::first_failure;
use crate::stats::{Refusal, ServiceStats};

/// Who may be answered, besides the rules every sender meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Any sender, but a reply larger than its request goes only to loopback
    /// (no amplifying a spoofed source).
    Anyone,
    /// Senders on a subnet of this host (or loopback) only: SSDP and mDNS
    /// became reflectors by answering spoofed off-link sources.
    OnLink,
}

/// Decides, per datagram, whether answering it is safe, in one order:
/// `allow`, a bad source, the reach, the sender's rate.
pub struct Judge {
    allow: Vec<IpNet>,
    limiter: RateLimiter,
    nets: LocalNets,
    reach: Reach,
    /// Where refusals are counted and shown.
    stats: Arc<ServiceStats>,
    window: Arc<Window>,
}

impl Judge {
    pub fn new(allow: &[IpNet], rate_limit: u32, reach: Reach, window: Arc<Window>) -> Self {
        Self {
            allow: allow.to_vec(),
            limiter: RateLimiter::new(rate_limit),
            nets: LocalNets::new(),
            reach,
            stats: window.stats.clone(),
            window,
        }
    }

    /// `check` of the datagram `request`, with a refusal counted, logged
    /// and shown.
    pub fn allows(&mut self, peer: SocketAddr, request: &[u8], reply: usize, now: Instant) -> bool {
        match self.check(peer, request.len(), reply, now) {
            Ok(()) => true,
            Err(why) => {
                self.refuse(peer, why, request);
                false
            }
        }
    }

    /// Counts, logs and shows a refusal of the datagram `request`.
    pub fn refuse(&self, peer: SocketAddr, why: Refusal, request: &[u8]) {
        self.stats.refuse(why);
        if crate::logging::peer_line(peer.ip()) {
            info!(%peer, reason = why.name(), "refused");
        }
        if self.window.shows_problem() {
            self.window.record(Event {
                peer: Some(peer),
                kind: "refused",
                input: Some(Shown::new(request)),
                reason: Some(self.words(peer, why)),
                ..Event::default()
            });
        }
    }

    /// Shows an answered datagram (`kind`: `datagram`, `probe`) while a page is open.
    pub fn answered(&self, peer: SocketAddr, kind: &'static str, request: &[u8], reply: &[u8]) {
        if self.window.watched() && self.window.shows_more() {
            self.window.record(Event {
                peer: Some(peer),
                kind,
                input: Some(Shown::new(request)),
                output: Some(Shown::new(reply)),
                ..Event::default()
            });
        }
    }

    /// Why `peer` got no answer, in words a student can act on.
    fn words(&self, peer: SocketAddr, why: Refusal) -> String {
        let ip = peer.ip().to_canonical();
        match why {
            Refusal::NotAllowed => format!("{ip} is not in this service's allow list"),
            Refusal::BadSource => match bad_source(peer, &[]) {
                Some(BadSource::Port(port)) => format!(
                    "source port {port} is below 1024 (or NFS's 2049): pinetd never answers it, as inetd doesn't"
                ),
                Some(BadSource::Address) => format!(
                    "{ip} is a broadcast, multicast or unspecified address: never a real sender"
                ),
                None if self.reach == Reach::OnLink => {
                    format!("{ip} is not on a network of this host: only neighbours are answered")
                }
                None => format!("{ip} is a broadcast address of this host's networks"),
            },
            Refusal::Amplification => format!(
                "the reply would be larger than the datagram: only loopback gets that, not {ip}"
            ),
            Refusal::RateLimited => format!("{ip} sent more than rate_limit datagrams a second"),
            Refusal::OverLimit => "too many answers waiting to be sent".to_owned(),
            other => other.name().to_owned(),
        }
    }

    /// Why a datagram of `request` bytes from `peer` must not get a reply of
    /// `reply` bytes, if it must not.
    pub fn check(
        &mut self,
        peer: SocketAddr,
        request: usize,
        reply: usize,
        now: Instant,
    ) -> Result<(), Refusal> {
        let ip = peer.ip().to_canonical();
        if !allowed(&self.allow, ip) {
            return Err(Refusal::NotAllowed);
        }
        if bad_source(peer, self.nets.broadcasts(now)).is_some() {
            return Err(Refusal::BadSource);
        }
        match self.reach {
            Reach::Anyone if reply > request && !ip.is_loopback() => {
                return Err(Refusal::Amplification);
            }
            Reach::OnLink if !self.nets.on_link(ip, now) => return Err(Refusal::BadSource),
            _ => {}
        }
        if !self.limiter.allow(ip, now) {
            return Err(Refusal::RateLimited);
        }
        Ok(())
    }
}

/// Runs `serve` on each socket, each in its own task, until `shutdown`; the
/// first failure ends them all (and the service, for the supervisor).
pub(crate) async fn serve_each<S, F, Fut>(
    sockets: &[Arc<S>],
    shutdown: &CancellationToken,
    serve: F,
) -> io::Result<()>
where
    F: Fn(Arc<S>) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for socket in sockets {
        tasks.spawn(serve(socket.clone()).in_current_span());
    }
    tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        failed = first_failure(&mut tasks) => failed,
    }
}

/// Receive errors on a UDP socket that concern one datagram, not the socket.
pub(crate) fn transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Arc<Window> {
        let config = crate::config::Config::default();
        crate::observe::Observatory::new(Arc::default(), &config).window("udp_echo")
    }

    fn peer(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn judge(reach: Reach, rate_limit: u32) -> Judge {
        let allow = [
            "127.0.0.0/8".parse().unwrap(),
            "192.0.2.0/24".parse().unwrap(),
        ];
        Judge::new(&allow, rate_limit, reach, window())
    }

    #[test]
    fn refusals_in_order() {
        let now = Instant::now();
        let mut j = judge(Reach::Anyone, 2);
        assert_eq!(
            j.check(peer("10.0.0.1:5000"), 5, 5, now),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            j.check(peer("127.0.0.1:7"), 5, 5, now),
            Err(Refusal::BadSource)
        );
        assert_eq!(
            j.check(peer("192.0.2.7:5000"), 5, 50, now),
            Err(Refusal::Amplification)
        );
        assert_eq!(j.check(peer("127.0.0.1:5000"), 5, 50, now), Ok(()));
        assert_eq!(j.check(peer("127.0.0.1:5000"), 5, 5, now), Ok(()));
        assert_eq!(
            j.check(peer("127.0.0.1:5001"), 5, 5, now),
            Err(Refusal::RateLimited)
        );
        assert_eq!(j.check(peer("192.0.2.7:5000"), 50, 5, now), Ok(()));
    }

    #[test]
    fn on_link_answers_loopback_but_not_a_far_sender() {
        let now = Instant::now();
        let mut j = Judge::new(&[], 0, Reach::OnLink, window());
        // TEST-NET-3 is on no interface of a test machine (the same
        // assumption as net's loopback_is_on_link).
        assert_eq!(
            j.check(peer("203.0.113.9:5000"), 1, 500, now),
            Err(Refusal::BadSource)
        );
        assert_eq!(j.check(peer("127.0.0.1:5000"), 1, 500, now), Ok(()));
    }
}
