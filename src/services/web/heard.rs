//! The Pis heard announcing: the page listens on the announcer's port, as
//! `pinetd listen` does (a shared socket: a student's `pinetd listen` on
//! the Pi still hears them too), and keeps each sender's latest line. It
//! only listens; it never sends.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tracing::{debug, info};

use crate::describe::Description;
use crate::net::bind_udp;
use crate::observe::{Observatory, Window};

/// The port announcements go to when the announcer names none.
const ANNOUNCE_PORT: u16 = 37020;

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
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, from)) => {
                let payload = &buf[..len];
                match Description::parse(payload) {
                    // As `pinetd listen` prints it, without the sender.
                    Some(d) => {
                        let (addrs, services) = (d.addrs_text(), d.services_text());
                        let line = format!("{}  {addrs}  {services}  seq {}", d.host, d.seq);
                        window.heard(from, line.as_bytes());
                    }
                    None => window.heard(from, payload),
                }
            }
            Err(e) => debug!(error = %e, "hearing announcements"),
        }
    }
}
