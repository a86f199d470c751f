//! The services. Each one owns its service whole (a file, or the chat's
//! folder): it binds from its config table (through
//! [`Sockets`](crate::net::Sockets), so the caller decides the addresses)
//! and then runs until its shutdown token is cancelled. [`shared`] is the
//! plumbing they have in common; [`registry`] is the one place that names
//! them all.
//!
//! The supervisor sees only [`Service`]: a name and a `run` future; the
//! daemon binds each through [`Registered`].
//!
//! A reload reaches a running connection one way in every service that
//! takes it in place: the service's table travels in a `watch` of
//! `Arc<...>` made at bind, which [`Service::reconfigure`] sends to, and a
//! connection reads it when it starts (JSON echo), before each thing it
//! does (chat) or at each datagram (discovery); the others restart.

pub mod announcer;
pub mod chat;
pub mod discovery;
pub mod json_echo;
pub mod registry;
pub mod shared;
pub mod udp_echo;
pub mod web;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TableIn};
use crate::describe::SelfInfo;
use crate::net::{BindError, Sockets};
use crate::observe::{Observatory, Window};
use crate::stats::{Counts, ServiceStats};

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

/// What a service is given to bind with.
pub struct BindContext<'a> {
    /// The daemon's sockets: one on an address bound before is reused.
    pub sockets: &'a mut Sockets,
    /// The service's own counters.
    pub stats: Arc<ServiceStats>,
    /// What the daemon says about itself.
    pub info: Arc<SelfInfo>,
    /// What the service shows the web page.
    pub window: Arc<Window>,
    /// Every service's window (the web page reads them).
    pub observatory: Arc<Observatory>,
}

/// A service the daemon can run from its table.
pub trait Registered: Service + Sized {
    type Table: TableIn;
    /// The other tables whose values the service uses: a reload that changes
    /// one of them changes the service too.
    const DEPENDS_ON: &'static [&'static str] = &[];
    /// What its counters count, for the status line.
    const COUNTS: Counts;

    /// Binds from `config` (its own table and those it depends on).
    fn bind(config: &Config, context: BindContext<'_>) -> Result<Self, BindError>;
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
