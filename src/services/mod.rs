//! The services. Each file owns one service whole: it binds from its config
//! table (through [`Sockets`](crate::net::Sockets), so the caller decides the
//! addresses) and then runs until its shutdown token is cancelled.
//!
//! The supervisor sees only [`Service`]: a name and a `run` future.

pub mod accept;
pub mod announcer;
pub mod bridge;
pub mod chat;
pub mod datagram;
pub mod discovery;
pub mod json_echo;
pub mod registry;
pub mod udp_echo;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::net::{BindError, Sockets};

/// What `run` returns: `Ok` once shut down; an error gets the service restarted.
pub type ServiceFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A bound service, ready to run. `run` may be called again after it failed:
/// the sockets stay bound across restarts.
pub trait Service: Send + Sync + 'static {
    /// The config table's name; also the `service=` field of its log lines.
    fn name(&self) -> &'static str;

    /// The addresses it listens on (port 0 resolved); none for a service that only sends.
    fn local_addrs(&self) -> Vec<SocketAddr> {
        Vec::new()
    }

    /// Serves until `shutdown` is cancelled, then finishes what is in flight.
    fn run(self: Arc<Self>, shutdown: CancellationToken) -> ServiceFuture;

    /// Takes its changed (still enabled) table while running, keeping every
    /// connection: binds what is new, then hands the settings over. None if
    /// this service must be restarted to change; an error changes nothing.
    fn reconfigure(
        &self,
        _config: &Config,
        _sockets: &mut Sockets,
    ) -> Option<Result<Reconfigured, BindError>> {
        None
    }
}

/// A table applied in place.
pub struct Reconfigured {
    /// The service's addresses now.
    pub addrs: Vec<SocketAddr>,
    /// Resolves once the running service has taken the new settings.
    pub applied: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Waits for the first of a service's tasks to fail: its error, or its panic
/// passed on so the supervisor sees it; Ok once all have ended.
pub(crate) async fn first_failure(tasks: &mut JoinSet<io::Result<()>>) -> io::Result<()> {
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(io::Error::other(e)),
        }
    }
    Ok(())
}
