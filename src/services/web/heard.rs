//! The Pis heard announcing: the page listens on the announcer's port, as
//! `pinetd listen` does (a shared socket: a student's `pinetd listen` on
//! the Pi still hears them too), and keeps each daemon's latest line until
//! its `ttl` passes. Only senders on this host's networks are heard, each
//! at most a few times a second. It only listens; it never sends.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use crate::describe::Description;
use crate::limit::RateLimiter;
use crate::net::{LocalNets, bind_udp};
use crate::observe::{Observatory, Window};

/// The port announcements go to when the announcer names none.
const ANNOUNCE_PORT: u16 = 37020;
/// Announcements heard a second from one address, at most.
const HEARD_A_SECOND: u32 = 5;
/// A daemon is forgotten at most this long after it was last heard ...
const MAX_TTL: u64 = 3600;
/// ... and a sender of something else after this long.
const OTHER_TTL: Duration = Duration::from_secs(60);

/// Listens until dropped; returns at once if the port cannot be had.
pub async fn hear(observatory: Arc<Observatory>, window: Arc<Window>) {
    let config = observatory.config();
    let port = config
        .announcer
        .to
        .first()
        .map_or(ANNOUNCE_PORT, SocketAddr::port);
    let socket = match bind_udp((Ipv4Addr::UNSPECIFIED, port).into(), true) {
        Ok(socket) => socket,
        Err(e) => {
            info!(port, error = %e, "cannot hear announcements; the page lists no Pis");
            return;
        }
    };
    let mut buf = vec![0u8; 2048];
    let mut nets = LocalNets::new();
    let mut limiter = RateLimiter::new(HEARD_A_SECOND);
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                debug!(error = %e, "hearing announcements");
                continue;
            }
        };
        let now = Instant::now();
        let ip = from.ip().to_canonical();
        if !nets.on_link(ip, now) || !limiter.allow(ip, now) {
            continue;
        }
        let payload = &buf[..len];
        match Description::parse(payload) {
            // As `pinetd listen` prints it, without the sender.
            Some(d) => {
                let (addrs, services) = (d.addrs_text(), d.services_text());
                let line = format!("{}  {addrs}  {services}  seq {}", d.host, d.seq);
                let ttl = Duration::from_secs(d.ttl.clamp(1, MAX_TTL));
                window.heard(&d.instance, from, line.as_bytes(), ttl);
            }
            None => window.heard(&from.to_string(), from, payload, OTHER_TTL),
        }
    }
}
