//! The services. Each file owns one service whole: it binds from its config
//! table (through [`Sockets`](crate::net::Sockets), so the caller decides the
//! addresses) and then runs until its shutdown token is cancelled.
//!
//! The supervisor sees only [`Service`]: a name and a `run` future.

pub mod udp_echo;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// What `run` returns: `Ok` once shut down; an error gets the service restarted.
pub type ServiceFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A bound service, ready to run. `run` may be called again after it failed:
/// the sockets stay bound across restarts.
pub trait Service: Send + Sync + 'static {
    /// The config table's name; also the `service=` field of its log lines.
    fn name(&self) -> &'static str;

    /// Serves until `shutdown` is cancelled, then finishes what is in flight.
    fn run(self: Arc<Self>, shutdown: CancellationToken) -> ServiceFuture;
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
