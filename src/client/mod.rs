//! The client subcommands: small, friendly tools for trying each service.

pub mod chat;
pub mod discover;
pub mod json;
pub mod listen;
pub mod status;
pub mod udp;

use std::io;
use std::net::SocketAddr;

/// Resolves `host` (a name or an address) and `port` to the first address.
pub async fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address found")))
}
