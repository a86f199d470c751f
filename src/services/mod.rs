//! The services. Each file owns one service whole: it binds from its config
//! table (through [`Sockets`](crate::net::Sockets), so the caller decides the
//! addresses) and then runs until its shutdown token is cancelled.
//!
//! The supervisor sees only [`Service`]: a name and a `run` future.

pub mod announcer;
pub mod chat;
pub mod discovery;
pub mod json_echo;
pub mod udp_echo;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span, warn};

use crate::net::allowed;
use crate::stats::{Refusal, ServiceStats};

/// After an accept error (out of file descriptors, say), wait this long.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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

/// How a TCP service takes its connections.
#[derive(Clone)]
pub(crate) struct Accept {
    pub allow: Vec<IpNet>,
    /// Connections served at once (per listener); one more is sent `full`
    /// and closed.
    pub max: usize,
    pub full: Bytes,
    pub stats: Arc<ServiceStats>,
}

impl Accept {
    /// Adds to `tasks` an accept loop (see `run`) for each of `listeners`.
    pub fn spawn_each<F, Fut>(
        &self,
        tasks: &mut JoinSet<io::Result<()>>,
        listeners: &[Arc<TcpListener>],
        shutdown: &CancellationToken,
        handle: F,
    ) where
        F: Fn(TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        for listener in listeners {
            let (accept, listener, shutdown, handle) = (
                self.clone(),
                listener.clone(),
                shutdown.clone(),
                handle.clone(),
            );
            tasks.spawn(
                async move { accept.run(&listener, &shutdown, handle).await }.in_current_span(),
            );
        }
    }

    /// Accepts until `shutdown`, each connection in its own task and `peer`
    /// span; peers outside `allow` are closed at once. Then waits for the
    /// connections, which see the same token, to finish (the supervisor
    /// bounds that wait by the grace time).
    async fn run<F, Fut>(
        &self,
        listener: &TcpListener,
        shutdown: &CancellationToken,
        handle: F,
    ) -> io::Result<()>
    where
        F: Fn(TcpStream, SocketAddr) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            if !allowed(&self.allow, peer.ip()) {
                self.stats.refuse(Refusal::NotAllowed);
                debug!(%peer, "refused: not in allow");
                continue;
            }
            if connections.len() >= self.max {
                self.stats.refuse(Refusal::OverLimit);
                debug!(%peer, "refused: full");
                // A new socket's send buffer is empty: this never blocks.
                let _ = stream.try_write(&self.full);
                continue;
            }
            let _ = stream.set_nodelay(true);
            // Debug level: every connection line is debug, and at info an
            // idle client should not carry a span's memory.
            let span = debug_span!("conn", %peer);
            span.in_scope(|| debug!("connected"));
            let served = Counted {
                served: Box::pin(handle(stream, peer)),
                _client: Client::new(self.stats.clone()),
            };
            connections.spawn(served.instrument(span));
        }
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

/// A connection's future, boxed rather than moved into an `async` block:
/// awaiting it there would hold it twice in the task, which every idle
/// client pays for.
struct Counted<F> {
    served: Pin<Box<F>>,
    _client: Client,
}

impl<F: Future<Output = ()>> Future for Counted<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.served.as_mut().poll(cx)
    }
}

/// Counts a connected client for as long as it lives (even if aborted).
struct Client(Arc<ServiceStats>);

impl Client {
    fn new(stats: Arc<ServiceStats>) -> Self {
        stats.clients.fetch_add(1, Relaxed);
        Client(stats)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Relaxed);
        debug!("closed");
    }
}
