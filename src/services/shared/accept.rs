//! How a TCP service takes its connections: one accept task per listener,
//! a [`Gate`] that every accept of the service passes (the `allow` list,
//! `max_clients` over all its listeners, `max_per_source`), and a listener
//! set that a reload changes in place: added listeners start accepting,
//! removed ones stop, and connections stay wherever they came from.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::logging::peer_line;
use crate::net::{BindError, Sockets, allowed, local_addrs, source_of};
use crate::observe::{Door, Event, Window};
use crate::services::Reconfigured;
use crate::services::shared::{block, closing::closing};
use crate::stats::{Refusal, ServiceStats};

/// After an accept error (out of file descriptors, say), wait this long.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Accept errors are logged at most this often per service, with a count.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(1);
/// Accepted connections on their way from the accept tasks to the service.
const HANDOFF: usize = 64;
/// A reload waits at most this long for removed listeners to stop accepting.
const APPLY_WITHIN: Duration = Duration::from_secs(1);

/// Who may connect, and how many at once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    pub allow: Vec<IpNet>,
    /// Connections at once over all the service's listeners.
    pub max: usize,
    /// Connections at once from one source (an IPv6 /64); 0: no limit.
    pub per_source: usize,
}

impl Policy {
    pub fn new(allow: &[IpNet], max_clients: u32, max_per_source: u32) -> Self {
        Self {
            allow: allow.to_vec(),
            max: max_clients as usize,
            per_source: max_per_source as usize,
        }
    }
}

/// What a refused peer is told before it is closed.
pub(crate) struct Refusals {
    pub full: Bytes,
    pub crowded: Bytes,
}

/// Every accept of a service passes here; it counts the connections.
pub(crate) struct Gate {
    state: Mutex<GateState>,
    refusals: Refusals,
    stats: Arc<ServiceStats>,
    /// Where refusals are shown.
    window: Arc<Window>,
}

struct GateState {
    policy: Policy,
    total: usize,
    by_source: HashMap<IpAddr, usize>,
    errors: ErrorLog,
}

/// Accept errors since the last one logged.
#[derive(Default)]
struct ErrorLog {
    logged_at: Option<Instant>,
    unlogged: u64,
}

/// A connection counted by the gate for as long as it lives (even if aborted).
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    source: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.stats.disconnected();
        let mut state = self.gate.state();
        state.total -= 1;
        if let Some(count) = state.by_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                state.by_source.remove(&self.source);
            }
        }
        debug!("closed");
    }
}

impl Gate {
    pub fn new(policy: Policy, refusals: Refusals, window: Arc<Window>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GateState {
                policy,
                total: 0,
                by_source: HashMap::new(),
                errors: ErrorLog::default(),
            }),
            refusals,
            stats: window.stats.clone(),
            window,
        })
    }

    /// Counts and shows a refusal of `peer`.
    fn refuse(&self, peer: SocketAddr, why: Refusal, reason: String) {
        self.stats.refuse(why);
        if !self.window.shows_problem() {
            return;
        }
        let closed = match why {
            Refusal::NotAllowed => "refused: not in allow",
            Refusal::Full => "refused: max_clients reached",
            _ => "refused: max_per_source reached",
        };
        self.window.turned_away(peer, closed);
        self.window.record(Event {
            peer: Some(peer),
            kind: "refused",
            reason: Some(reason),
            ..Event::default()
        });
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies to connections accepted from now on.
    pub fn set_policy(&self, policy: Policy) {
        self.state().policy = policy;
    }

    /// Counts `peer` in, or says why not (and what to tell it).
    fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Ticket, Option<Bytes>> {
        let ip = peer.ip();
        if let Some(told) = block::refusal(&self.window, &self.refusals.full, peer) {
            return Err(Some(told));
        }
        let mut state = self.state();
        if !allowed(&state.policy.allow, ip) {
            drop(state);
            self.refuse(peer, Refusal::NotAllowed, "not in allow".into());
            if peer_line(ip) {
                info!(peer = %ip, "refused: not in allow");
            }
            return Err(None);
        }
        if state.total >= state.policy.max {
            let max = state.policy.max;
            drop(state);
            self.refuse(
                peer,
                Refusal::Full,
                format!("full: max_clients ({max}) connected"),
            );
            if peer_line(ip) {
                info!(peer = %ip, max_clients = max, "refused: full");
            }
            return Err(Some(self.refusals.full.clone()));
        }
        let source = source_of(ip);
        let per_source = state.policy.per_source;
        let count = state.by_source.entry(source).or_insert(0);
        if per_source > 0 && *count >= per_source {
            drop(state);
            let reason = format!("max_per_source ({per_source}) connections from this address");
            self.refuse(peer, Refusal::PerSource, reason);
            if peer_line(ip) {
                info!(peer = %ip, max_per_source = per_source, "refused: too many from this source");
            }
            return Err(Some(self.refusals.crowded.clone()));
        }
        *count += 1;
        state.total += 1;
        self.stats.connected();
        Ok(Ticket {
            gate: self.clone(),
            source,
        })
    }

    /// Logs an accept error, at most once per ERROR_LOG_EVERY, with how many
    /// there were since the last line.
    fn accept_failed(&self, error: &io::Error) {
        if let Some(count) = self.state().errors.note(Instant::now()) {
            warn!(error = %error, count, "accept failed");
        }
    }
}

impl ErrorLog {
    /// Counts one error at `now`; the count to log if a line is due.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let due = self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= ERROR_LOG_EVERY);
        if !due {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// Where a TCP service listens and whom it lets in; a reload sends a new one.
pub(crate) struct Setup {
    pub listeners: Vec<Arc<TcpListener>>,
    pub policy: Policy,
    /// Counts the setups sent, so a reload can wait for its own to be applied.
    pub generation: u64,
}

/// A TCP service's changing setup and settings, shared by its bind, its
/// run and reloads.
pub(crate) struct Listeners<C> {
    setup: watch::Sender<Setup>,
    /// The service's table: every connection reads it from here.
    settings: watch::Sender<Arc<C>>,
    applied: watch::Sender<u64>,
    /// Where a [`SideDoor`] hands its clients while the service runs.
    handoff: Handoff,
}

type Handoff = Arc<Mutex<Option<mpsc::Sender<Accepted>>>>;

/// A way in besides the listeners (the web page's chat box), through the
/// same gate: counted, limited and refused as any other client.
pub(crate) struct SideDoor {
    gate: Arc<Gate>,
    handoff: Handoff,
}

impl Door for SideDoor {
    fn enter(&self, stream: TcpStream, peer: SocketAddr) -> Result<(), Bytes> {
        let busy = || Bytes::from_static(b"*** the service is not running, try again later\n");
        let ticket = self.gate.admit(peer).map_err(Option::unwrap_or_default)?;
        let handoff = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
        let handoff = handoff.as_ref().ok_or_else(busy)?;
        if peer_line(peer.ip()) {
            info!(%peer, "connected");
        }
        handoff.try_send((stream, peer, ticket)).map_err(|_| busy())
    }
}

/// Takes the handoff away when the service stops serving (or is aborted).
struct Unhanded(Handoff);

impl Drop for Unhanded {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl<C: Clone + Send + Sync + 'static> Listeners<C> {
    /// Binds a TCP service's `listen` (what is already bound is reused):
    /// its listeners, carrying its table, and the gate of its accepts.
    pub fn bind(
        service: &'static str,
        config: &C,
        listen: &[SocketAddr],
        policy: Policy,
        refusals: Refusals,
        window: Arc<Window>,
        sockets: &mut Sockets,
    ) -> Result<(Self, Arc<Gate>), BindError> {
        let listeners = sockets.tcp_all(service, listen)?;
        let gate = Gate::new(policy.clone(), refusals, window);
        Ok((Self::new(config.clone(), listeners, policy), gate))
    }
}

impl<C: Send + Sync + 'static> Listeners<C> {
    pub fn new(config: C, listeners: Vec<Arc<TcpListener>>, policy: Policy) -> Self {
        let setup = Setup {
            listeners,
            policy,
            generation: 0,
        };
        Self {
            setup: watch::Sender::new(setup),
            settings: watch::Sender::new(Arc::new(config)),
            applied: watch::Sender::new(0),
            handoff: Handoff::default(),
        }
    }

    /// The service's side door, through `gate`.
    pub fn door(&self, gate: &Arc<Gate>) -> Arc<dyn Door> {
        Arc::new(SideDoor {
            gate: gate.clone(),
            handoff: self.handoff.clone(),
        })
    }

    /// The service's table as the last reload left it, and each change.
    pub fn settings(&self) -> watch::Receiver<Arc<C>> {
        self.settings.subscribe()
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        local_addrs(&self.setup.borrow().listeners)
    }

    /// Hands a new setup to the running service; resolves once it is applied
    /// (removed listeners no longer accepting), or after a moment if the
    /// service is not running now (it takes the setup when it starts).
    pub fn update(
        &self,
        config: C,
        listeners: Vec<Arc<TcpListener>>,
        policy: Policy,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut generation = 0;
        self.settings.send_replace(Arc::new(config));
        self.setup.send_modify(|setup| {
            generation = setup.generation + 1;
            *setup = Setup {
                listeners,
                policy,
                generation,
            };
        });
        let mut applied = self.applied.subscribe();
        Box::pin(async move {
            let _ =
                tokio::time::timeout(APPLY_WITHIN, applied.wait_for(|&g| g >= generation)).await;
        })
    }

    /// A reload of the service's table: binds `listen` (what is already
    /// bound is reused) and hands everything to the running service.
    pub fn reconfigure(
        &self,
        service: &'static str,
        config: &C,
        listen: &[SocketAddr],
        policy: Policy,
        sockets: &mut Sockets,
    ) -> Result<Reconfigured, BindError>
    where
        C: Clone,
    {
        let listeners = sockets.tcp_all(service, listen)?;
        let applied = self.update(config.clone(), listeners, policy);
        Ok(Reconfigured {
            addrs: self.local_addrs(),
            applied,
        })
    }

    /// Accepts on every listener of the setup, through `gate`, until
    /// `shutdown`; each connection runs `handle` in its own task and `peer`
    /// span, given the settings as they are when it connects. Then waits
    /// for the connections, which see the same token, to finish. One loop
    /// over one `select!` (a little over 60 lines).
    pub async fn serve<F, Fut>(
        &self,
        gate: &Arc<Gate>,
        shutdown: &CancellationToken,
        handle: F,
    ) -> io::Result<()>
    where
        F: Fn(&Arc<C>, TcpStream, SocketAddr) -> Fut,
        // What the connection's future gives is why it ended, for the log.
        Fut: Future<Output = &'static str> + Send + 'static,
    {
        let mut setup = self.setup.subscribe();
        let (handoff, mut accepted) = mpsc::channel(HANDOFF);
        *self.handoff.lock().unwrap_or_else(|e| e.into_inner()) = Some(handoff.clone());
        let _unhanded = Unhanded(self.handoff.clone());
        let mut accepting: HashMap<usize, Accepting> = HashMap::new();
        let mut connections = JoinSet::new();
        let mut policy_of = None;
        loop {
            let generation = {
                let current = setup.borrow_and_update();
                if policy_of != Some(current.generation) {
                    gate.set_policy(current.policy.clone());
                    policy_of = Some(current.generation);
                }
                let wanted = listener_changes(&current.listeners, &mut accepting);
                for listener in wanted {
                    let task = accept_loop(listener.clone(), gate.clone(), handoff.clone());
                    accepting.insert(key(&listener), Accepting::spawn(task));
                }
                current.generation
            };
            let removed: Vec<Accepting>;
            (removed, accepting) = take_removed(accepting);
            for listener in removed {
                listener.stop().await;
            }
            self.applied.send_replace(generation);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = setup.changed() => {}
                Some((stream, peer, ticket)) = accepted.recv() => {
                    let span = info_span!("conn", %peer);
                    let settings = self.settings.borrow().clone();
                    let served = handle(&settings, stream, peer);
                    let served = Counted {
                        served: Box::pin(closing(served, peer.ip(), gate.stats.clone())),
                        _ticket: ticket,
                    };
                    connections.spawn(served.instrument(span));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        for (_, accept) in accepting.drain() {
            accept.stop().await;
        }
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

/// Marks the accept tasks whose listener is gone; returns the listeners
/// that have none yet.
fn listener_changes(
    listeners: &[Arc<TcpListener>],
    accepting: &mut HashMap<usize, Accepting>,
) -> Vec<Arc<TcpListener>> {
    for accept in accepting.values_mut() {
        accept.removed = true;
    }
    let mut added = Vec::new();
    for listener in listeners {
        match accepting.get_mut(&key(listener)) {
            Some(accept) => accept.removed = false,
            None => added.push(listener.clone()),
        }
    }
    for listener in &added {
        if let Ok(addr) = listener.local_addr() {
            debug!(%addr, "accepting");
        }
    }
    added
}

/// A listener's identity: the daemon hands out one `Arc` per bound address.
fn key(listener: &Arc<TcpListener>) -> usize {
    Arc::as_ptr(listener) as usize
}

/// Splits the accept tasks of removed listeners off the rest.
fn take_removed(
    accepting: HashMap<usize, Accepting>,
) -> (Vec<Accepting>, HashMap<usize, Accepting>) {
    let (removed, kept): (HashMap<_, _>, _) = accepting.into_iter().partition(|(_, a)| a.removed);
    (removed.into_values().collect(), kept)
}

/// One listener's accept task.
struct Accepting {
    stop: CancellationToken,
    task: AbortOnDropHandle<()>,
    removed: bool,
}

impl Accepting {
    fn spawn(task: impl FnOnce(CancellationToken) -> AcceptFuture) -> Self {
        let stop = CancellationToken::new();
        let task = AbortOnDropHandle::new(tokio::spawn(task(stop.clone()).in_current_span()));
        Self {
            stop,
            task,
            removed: false,
        }
    }

    /// Stops accepting; returns once the task (and its listener handle) is gone.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

type AcceptFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Accepted = (TcpStream, SocketAddr, Ticket);

/// Accepts on `listener` until stopped; refused peers are told why and closed.
fn accept_loop(
    listener: Arc<TcpListener>,
    gate: Arc<Gate>,
    handoff: mpsc::Sender<Accepted>,
) -> impl FnOnce(CancellationToken) -> AcceptFuture {
    move |stop| {
        Box::pin(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        gate.accept_failed(&e);
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                        }
                    }
                };
                let ticket = match gate.admit(peer) {
                    Ok(ticket) => ticket,
                    Err(told) => {
                        if let Some(why) = told {
                            // A new socket's send buffer is empty: this never blocks.
                            let _ = stream.try_write(&why);
                        }
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if peer_line(peer.ip()) {
                    info!(%peer, "connected");
                }
                // The service may be waiting for this task to stop, and
                // not taking connections meanwhile.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    sent = handoff.send((stream, peer, ticket)) => if sent.is_err() {
                        return;
                    },
                }
            }
        })
    }
}

/// A connection's future, boxed rather than moved into an `async` block:
/// awaiting it there would hold it twice in the task, which every idle
/// client pays for.
struct Counted<F> {
    served: Pin<Box<F>>,
    _ticket: Ticket,
}

impl<F: Future<Output = ()>> Future for Counted<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.served.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    fn gate(max: usize, per_source: usize) -> Arc<Gate> {
        let policy = Policy {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            max,
            per_source,
        };
        let refusals = Refusals {
            full: Bytes::from_static(b"full"),
            crowded: Bytes::from_static(b"crowded"),
        };
        let config = crate::config::Config::default();
        let window = crate::observe::Observatory::new(Arc::default(), &config).window("chat");
        Gate::new(policy, refusals, window)
    }

    fn ip(text: &str) -> SocketAddr {
        SocketAddr::new(text.parse().unwrap(), 5000)
    }

    #[test]
    fn counts_the_whole_service_and_each_source() {
        let gate = gate(3, 2);
        let a1 = gate.admit(ip("127.0.0.1")).ok().unwrap();
        let _a2 = gate.admit(ip("127.0.0.1")).ok().unwrap();
        assert_eq!(
            gate.admit(ip("127.0.0.1")).err().unwrap().unwrap(),
            "crowded"
        );
        let _b = gate.admit(ip("127.0.0.2")).ok().unwrap();
        assert_eq!(gate.admit(ip("127.0.0.3")).err().unwrap().unwrap(), "full");
        assert!(
            gate.admit(ip("10.0.0.1")).err().unwrap().is_none(),
            "not allowed"
        );
        drop(a1);
        let _a3 = gate.admit(ip("127.0.0.1")).ok().unwrap();
        assert_eq!(gate.stats.clients.load(Relaxed), 3);
    }

    #[test]
    fn accept_errors_are_told_once_a_second_with_a_count() {
        let mut log = ErrorLog::default();
        let start = Instant::now();
        assert_eq!(log.note(start), Some(1), "the first at once");
        // EMFILE ten times a second (every accept backoff) for two seconds.
        let told: Vec<u64> = (1..=20)
            .filter_map(|i| log.note(start + Duration::from_millis(100 * i)))
            .collect();
        assert_eq!(told, [10, 10]);
    }

    #[test]
    fn a_source_left_is_forgotten_and_ipv6_counts_by_64() {
        let gate = gate(10, 1);
        gate.set_policy(Policy {
            allow: Vec::new(),
            max: 10,
            per_source: 1,
        });
        let a = gate.admit(ip("2001:db8::1")).ok().unwrap();
        assert!(gate.admit(ip("2001:db8::2")).is_err(), "same /64");
        let _b = gate.admit(ip("2001:db8:0:1::1")).ok().unwrap();
        drop(a);
        assert_eq!(gate.state().by_source.len(), 1);
        assert!(
            gate.admit(ip("::ffff:127.0.0.1")).is_ok(),
            "mapped v4 is v4"
        );
    }
}
