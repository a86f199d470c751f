//! The chat hub: every line a client sends is relayed, as `{prefix}{text}`,
//! to every other client (and to the sender too with `echo_self`), through
//! one `tokio::sync::broadcast` channel: one send per message, a shared
//! buffer never copied per receiver, and a receiver that falls `queue`
//! messages behind skips them (or is disconnected) instead of stalling anyone.
//!
//! Each client is one task whose two directions are independent: its input
//! is read and relayed however full its output is (cut at `max_line_bytes`;
//! a client that has never sent a newline, as the course's client, has a
//! message flushed after `flush_after` of quiet), and everything waiting for
//! it goes out in one vectored write when its socket takes it. Output is
//! bounded by the channel (`queue`, then `on_lag`) and by `write_timeout`.
//!
//! A busy room paces its senders, not its readers: while the slowest reader
//! whose socket takes data is three quarters of `queue` behind, senders (and
//! lines from other hubs) are read no further until it has caught up half
//! way, so a reader that keeps up is never skipped, however fast the
//! senders. A reader whose socket takes next to nothing while the room
//! waits for it much longer than it usually waits for its readers lets go
//! of its place instead: it gets the newest `queue` messages and is told
//! how many it skipped (or is disconnected), and the others go on at their
//! own pace.
//!
//! A reload hands the hub new settings in place: every client takes them
//! from its next line on, and nobody is dropped.

use std::collections::{HashSet, VecDeque};
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info};

use crate::chatline::{
    HELP, Line, Lines, Said, bad_name, claimed_name, line_text, parse, relay_line,
};
use crate::config::{ChatConfig, Config, OnLag, TableIn};
use crate::describe::SelfInfo;
use crate::limit::TokenBucket;
use crate::net::{BindError, Sockets};
use crate::services::accept::{Gate, Listeners, Policy, Refusals};
use crate::services::bridge::{self, Link, Outgoing, Room, Settings};
use crate::services::registry::{BindContext, Registered};
use crate::services::{Reconfigured, Service, ServiceFuture, first_failure};
use crate::stats::{Counts, ServiceStats};

const NAME: &str = ChatConfig::NAME;

/// Read at most this much at a time.
const READ_CHUNK: usize = 4096;
/// The kernel's send buffer per client (Linux doubles it).
const SEND_BUFFER: usize = 64 * 1024;
/// The kernel's receive buffer per client (doubled too): what a client can
/// have sent that the hub has not read, so what is relayed when it is dropped.
const RECV_BUFFER: usize = 64 * 1024;
/// Messages (or batches of lines) written in one vectored write.
const WRITE_BATCH: usize = 64;
/// Join and leave notices are sent at most this often; what happens in
/// between is told in one line, so 10,000 joins cost far fewer than 10,000².
const NOTICE_EVERY: Duration = Duration::from_millis(100);
/// A join is told this long after the client connects, or at its first
/// words if sooner: a client that names itself at once (`pinetd chat
/// --name`, a course client's `[name] ...`) joins under that name.
const JOIN_GRACE: Duration = Duration::from_millis(500);
/// ... and at most once per this much per client: 10,000 clients, one a second.
const NOTICE_COST: Duration = Duration::from_micros(100);
/// Names listed by one notice or one /who before "and N others".
const NAMES_SHOWN: usize = 5;
const WHO_SHOWN: usize = 100;
/// The goodbye on shutdown is not worth waiting for longer than this.
const GOODBYE_WITHIN: Duration = Duration::from_secs(1);
/// A client's own replies (/who, /help, notices) waiting beyond this many
/// bytes: it is not read until it takes some, or `write_timeout` drops it.
const OWN_REPLIES: usize = 64 * 1024;
/// A reader the senders wait for whose socket takes less than [`KEEPS_UP`]
/// in the room's patience does not hold the room back: it lags, and the
/// room goes on without it. The patience is four times what the room's
/// waits for its readers usually last, at least this ...
const PATIENCE_MIN: Duration = Duration::from_millis(100);
/// ... and at most this: a client that reads nothing costs the room that
/// long once.
const PATIENCE_MAX: Duration = Duration::from_secs(1);
/// A reader that has come back after its socket took nothing for a while
/// (a program that reads in bursts, a busy machine) gets twice its longest
/// such pause, up to this.
const PATIENCE_EARNED: Duration = Duration::from_secs(4);
/// A socket that takes less than this in the room's patience takes nothing
/// (a client still filling the kernel's buffers, unread, takes a little
/// for a while).
const KEEPS_UP: u64 = 16 * 1024;

pub struct Chat {
    listeners: Listeners<ChatConfig>,
    gate: Arc<Gate>,
    /// The channel, made once: `queue` is its capacity.
    tx: broadcast::Sender<Item>,
    queue: u32,
    stats: Arc<ServiceStats>,
    /// For the NATS bridge: who this hub is.
    info: Arc<SelfInfo>,
}

fn policy(config: &ChatConfig) -> Policy {
    Policy::new(&config.allow, config.max_clients, config.max_per_source)
}

impl Chat {
    pub fn bind(
        config: &ChatConfig,
        sockets: &mut Sockets,
        stats: Arc<ServiceStats>,
        info: Arc<SelfInfo>,
    ) -> Result<Self, BindError> {
        let listeners = sockets.tcp_all(NAME, &config.listen)?;
        let refusals = Refusals {
            full: Bytes::from_static(b"*** the hub is full, try again later\n"),
            crowded: Bytes::from_static(
                b"*** too many connections from your address, try again later\n",
            ),
        };
        let gate = Gate::new(policy(config), refusals, stats.clone());
        let (tx, _) = broadcast::channel(config.queue as usize);
        // The description names the room from the moment the hub is bound,
        // not once the bridge task first runs: a probe answered in between
        // would say the hub is in no room.
        if !config.bridge_url.is_empty() {
            info.set_room(Some(config.bridge_subject.clone()));
        }
        Ok(Self {
            listeners: Listeners::new(config.clone(), listeners, policy(config)),
            gate,
            tx,
            queue: config.queue,
            stats,
            info,
        })
    }
}

impl Registered for Chat {
    type Table = ChatConfig;
    const COUNTS: Counts = Counts {
        clients: true,
        messages: "lines",
    };

    fn bind(config: &Config, context: BindContext<'_>) -> Result<Self, BindError> {
        Chat::bind(&config.chat, context.sockets, context.stats, context.info)
    }
}

impl Service for Chat {
    fn name(&self) -> &'static str {
        NAME
    }

    fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.local_addrs()
    }

    fn run(self: Arc<Self>, shutdown: CancellationToken) -> ServiceFuture {
        Box::pin(async move {
            let (settings, bridge_settings) = watch::channel(Settings::default());
            let link = Arc::new(Link::new(self.stats.clone()));
            let hub = Arc::new(Hub::new(
                self.tx.clone(),
                self.queue,
                self.stats.clone(),
                link.clone(),
                settings,
            ));
            let mut tasks = JoinSet::new();
            let bridge = bridge::run(
                link,
                bridge_settings,
                hub.clone(),
                self.info.clone(),
                shutdown.clone(),
            );
            tasks.spawn(
                async move {
                    bridge.await;
                    Ok(())
                }
                .in_current_span(),
            );
            let notices = hub.clone().tell_notices(shutdown.clone());
            tasks.spawn(
                async move {
                    notices.await;
                    Ok(())
                }
                .in_current_span(),
            );
            let me = self.clone();
            let (apply_to, hub_of_client, client_shutdown) =
                (hub.clone(), hub.clone(), shutdown.clone());
            tasks.spawn(
                async move {
                    me.listeners
                        .serve(
                            &me.gate,
                            &shutdown,
                            |config| apply_to.set_config(config),
                            |_, stream, _| {
                                Member::serve(
                                    hub_of_client.clone(),
                                    stream,
                                    client_shutdown.clone(),
                                )
                            },
                        )
                        .await
                }
                .in_current_span(),
            );
            first_failure(&mut tasks).await
        })
    }

    fn reconfigure(
        &self,
        config: &Config,
        sockets: &mut Sockets,
    ) -> Option<Result<Reconfigured, BindError>> {
        let table = &config.chat;
        if table.queue != self.queue {
            info!(
                running = self.queue,
                queue = table.queue,
                "a new queue length applies when the service is next started"
            );
        }
        Some(
            self.listeners
                .reconfigure(NAME, table, &table.listen, policy(table), sockets),
        )
    }
}

/// How far the slowest reader may fall behind before the senders wait.
struct Pace {
    /// Senders wait from this many items behind ...
    high: usize,
    /// ... until the slowest is back to this many.
    low: usize,
    /// A sender waits (or did, and the room has not caught up yet).
    waiting: AtomicBool,
    /// Up to this many items sent, the room is known not to be full.
    free_until: AtomicU64,
    /// The senders start or stop waiting.
    changed: Notify,
    /// When the senders began to wait, in nanoseconds from `epoch`.
    wait_began: AtomicU64,
    /// How long the waits that ended with every reader caught up lasted,
    /// lately (an average, in nanoseconds).
    usual_wait: AtomicU64,
    epoch: Instant,
}

impl Pace {
    /// A quarter of `queue` is left for what is not paced: the hub's
    /// notices and what a client says as it goes.
    fn new(queue: usize) -> Self {
        let high = (queue - queue / 4).max(1);
        Self {
            high,
            low: high / 2,
            waiting: AtomicBool::new(false),
            free_until: AtomicU64::new(0),
            changed: Notify::new(),
            wait_began: AtomicU64::new(0),
            usual_wait: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// How long the room waits for a reader whose socket takes nothing:
    /// a room of readers that keep up waits briefly; one of many readers
    /// served by one busy machine, longer.
    fn patience(&self) -> Duration {
        let usual = Duration::from_nanos(self.usual_wait.load(Relaxed));
        (usual * 4).clamp(PATIENCE_MIN, PATIENCE_MAX)
    }

    /// When the senders began to wait.
    fn waiting_since(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.wait_began.load(Relaxed))
    }

    /// A wait ended with every reader caught up: it tells what is usual.
    fn waited(&self, now: Instant) {
        let this = now.saturating_duration_since(self.waiting_since());
        let this = this.min(PATIENCE_MAX).as_nanos() as u64;
        let usual = self.usual_wait.load(Relaxed);
        let usual = if usual == 0 {
            this
        } else {
            (usual * 7 + this) / 8
        };
        self.usual_wait.store(usual, Relaxed);
    }
}

/// One message in the channel: the lines, formatted, and who sent them.
#[derive(Clone, Debug)]
struct Item {
    /// The sending client, so it can skip its own; 0 for the hub's notices.
    from: u64,
    lines: Bytes,
    /// How many lines the room said before these, and how many these are:
    /// a client that skips items knows how many lines it missed.
    first: u64,
    count: u64,
    /// For a notice of joins: who joined, so none is told of itself.
    joined: Option<Arc<Joined>>,
}

/// The joins of a notice, for those who joined: each hears the others.
#[derive(Debug)]
struct Joined {
    ids: Vec<u64>,
    names: Vec<String>,
    /// The notice's line of leaves, if any.
    left: String,
}

impl Joined {
    /// The notice as client `id` hears it: None if it is not one who joined.
    fn told_to(&self, id: u64) -> Option<Bytes> {
        let me = self.ids.iter().position(|&joined| joined == id)?;
        let others: Vec<String> = (self.names.iter().enumerate())
            .filter(|&(i, _)| i != me)
            .map(|(_, name)| name.clone())
            .collect();
        let mut text = String::new();
        if !others.is_empty() {
            text.push_str(&format!("*** {} joined\n", names_line(&others)));
        }
        text.push_str(&self.left);
        Some(text.into())
    }
}

/// A join not told yet.
struct Join {
    id: u64,
    name: String,
    /// When it is told, unless the client speaks before.
    due: Instant,
}

/// Joins and leaves not told yet.
#[derive(Default)]
struct Pending {
    joined: Vec<Join>,
    left: Vec<String>,
}

impl Pending {
    /// When there is something to tell: now for a leave, else the first
    /// join's due time.
    fn due(&self, now: Instant) -> Option<Instant> {
        if !self.left.is_empty() {
            return Some(now);
        }
        self.joined.iter().map(|j| j.due).min()
    }
}

/// What every client shares.
struct Hub {
    /// The settings now; `generation` counts how often they changed, so a
    /// client checks one number, not a lock, before each thing it does.
    config: RwLock<Arc<ChatConfig>>,
    generation: AtomicU64,
    tx: broadcast::Sender<Item>,
    /// Items sent on `tx`, ever.
    sent: AtomicU64,
    /// Lines sent on `tx`, ever, counted in the channel's order.
    said: Mutex<u64>,
    pace: Pace,
    names: Mutex<HashSet<String>>,
    next_id: AtomicU64,
    /// Joins and leaves not told yet; at most two per client.
    pending: Mutex<Pending>,
    notice: Notify,
    stats: Arc<ServiceStats>,
    /// What the room says, for the other hubs (when bridged).
    link: Arc<Link>,
    /// The bridge's settings, for its task.
    bridge: watch::Sender<Settings>,
}

impl Hub {
    fn new(
        tx: broadcast::Sender<Item>,
        queue: u32,
        stats: Arc<ServiceStats>,
        link: Arc<Link>,
        bridge: watch::Sender<Settings>,
    ) -> Self {
        Self {
            config: RwLock::default(),
            generation: AtomicU64::new(0),
            tx,
            sent: AtomicU64::new(0),
            said: Mutex::new(0),
            pace: Pace::new(queue as usize),
            names: Mutex::new(HashSet::new()),
            next_id: AtomicU64::new(1),
            pending: Mutex::default(),
            notice: Notify::new(),
            stats,
            link,
            bridge,
        }
    }

    fn config(&self) -> Arc<ChatConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// New settings for every client, from its next line on.
    fn set_config(&self, config: &Arc<ChatConfig>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config.clone();
        self.generation.fetch_add(1, Relaxed);
        let settings = Settings::of(config);
        self.bridge.send_if_modified(|now| {
            let changed = *now != settings;
            *now = settings;
            changed
        });
    }

    fn names(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new client's id and default name.
    fn join(&self) -> (u64, String) {
        loop {
            let id = self.next_id.fetch_add(1, Relaxed);
            let name = format!("user{id}");
            // Someone may have chosen "user7" with /nick: then take the next.
            if self.names().insert(name.clone()) {
                let due = Instant::now() + JOIN_GRACE;
                let join = Join {
                    id,
                    name: name.clone(),
                    due,
                };
                self.note(|p| p.joined.push(join));
                return (id, name);
            }
        }
    }

    /// Client `id` leaves: the room is told, unless its join was not told
    /// yet (then neither is).
    fn leave(&self, id: u64, name: &str) {
        self.names().remove(name);
        let mut pending = self.pending();
        let before = pending.joined.len();
        pending.joined.retain(|j| j.id != id);
        if pending.joined.len() == before {
            pending.left.push(name.to_owned());
            drop(pending);
            self.notice.notify_one();
        }
    }

    /// Client `id` took the name `new`: true if its join is still to be
    /// told, and is now told under that name (the room hears no rename).
    fn renamed_before_told(&self, id: u64, new: &str) -> bool {
        let mut pending = self.pending();
        match pending.joined.iter_mut().find(|j| j.id == id) {
            Some(join) => {
                join.name = new.to_owned();
                true
            }
            None => false,
        }
    }

    fn note(&self, change: impl FnOnce(&mut Pending)) {
        change(&mut self.pending());
        self.notice.notify_one();
    }

    /// Takes `new` for the client called `old`; why not, if it cannot.
    fn rename(&self, old: &str, new: &str) -> Result<(), String> {
        if let Some(why) = bad_name(new) {
            return Err(why.to_owned());
        }
        let mut names = self.names();
        if names.contains(new) {
            return Err(format!("{new} is taken"));
        }
        names.remove(old);
        names.insert(new.to_owned());
        Ok(())
    }

    fn send(&self, from: u64, lines: impl Into<Bytes>) {
        self.send_item(from, lines.into(), None);
    }

    fn send_item(&self, from: u64, lines: Bytes, joined: Option<Arc<Joined>>) {
        let count = lines.iter().filter(|&&b| b == b'\n').count() as u64;
        self.sent.fetch_add(1, Relaxed);
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        let first = *said;
        *said += count;
        // An error only means nobody is listening.
        let _ = self.tx.send(Item {
            from,
            lines,
            first,
            count,
            joined,
        });
    }

    /// A new client's place in the room, and the number of the first
    /// line it will hear.
    fn subscribe(&self) -> (broadcast::Receiver<Item>, u64) {
        let said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        (self.tx.subscribe(), *said)
    }

    /// Whether senders wait: the slowest reader holding a place is
    /// `pace.high` items behind. Reads the channel at most once every
    /// few items: between two looks, it fills by one item a send at most.
    fn paced(&self) -> bool {
        let sent = self.sent.load(Relaxed);
        if sent < self.pace.free_until.load(Relaxed) {
            return false;
        }
        let behind = self.tx.len();
        if behind < self.pace.high {
            let free = (self.pace.high - behind) as u64;
            self.pace.free_until.store(sent + free, Relaxed);
            return false;
        }
        if !self.pace.waiting.swap(true, Relaxed) {
            let now = self.pace.nanos(Instant::now());
            self.pace.wait_began.store(now, Relaxed);
            // A reader that takes nothing may be what holds the room: it looks.
            self.pace.changed.notify_waiters();
        }
        true
    }

    /// After a reader took items: once the slowest is back to `pace.low`
    /// behind, the senders go on.
    fn took(&self) {
        if self.go_on() {
            self.pace.waited(Instant::now());
        }
    }

    /// After a reader let go of its place or left: the wait it ended says
    /// nothing of how long the room usually waits.
    fn let_go(&self) {
        self.go_on();
    }

    /// True if the senders waited and go on now.
    fn go_on(&self) -> bool {
        let ends = self.pace.waiting.load(Relaxed) && self.tx.len() <= self.pace.low;
        if ends {
            self.pace.waiting.store(false, Relaxed);
            self.pace.changed.notify_waiters();
        }
        ends
    }

    /// Tells joins and leaves, at most once per NOTICE_EVERY, coalesced.
    async fn tell_notices(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let due = self.pending().due(Instant::now());
            let wait = tokio::time::sleep_until(due.unwrap_or_else(Instant::now));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                // Something new: look again at what is due.
                _ = self.notice.notified() => continue,
                _ = wait, if due.is_some() => {}
            }
            self.tell_pending(None);
            // Each notice goes to every client: in a big room, fewer of them.
            let clients = self.names().len() as u32;
            sleep(NOTICE_EVERY.max(NOTICE_COST * clients)).await;
        }
    }

    /// Tells the leaves and the joins that are due (and client `now`'s,
    /// due or not) in one item. A joiner is not told of itself.
    fn tell_pending(&self, now: Option<u64>) {
        let at = Instant::now();
        let (joined, left) = {
            let mut pending = self.pending();
            let (due, held) = std::mem::take(&mut pending.joined)
                .into_iter()
                .partition(|j| j.due <= at || Some(j.id) == now);
            pending.joined = held;
            (due, std::mem::take(&mut pending.left))
        };
        if joined.is_empty() && left.is_empty() {
            return;
        }
        let ids: Vec<u64> = joined.iter().map(|j| j.id).collect();
        let names: Vec<String> = joined.into_iter().map(|j| j.name).collect();
        let mut left_line = String::new();
        if !left.is_empty() {
            left_line = format!("*** {} left\n", names_line(&left));
            self.link.offer(Outgoing::Left(left));
        }
        if names.is_empty() {
            return self.send(0, left_line);
        }
        let text = format!("*** {} joined\n{left_line}", names_line(&names));
        self.link.offer(Outgoing::Joined(names.clone()));
        let joined = Joined {
            ids,
            names,
            left: left_line,
        };
        self.send_item(0, text.into(), Some(Arc::new(joined)));
    }

    /// Before client `id` first says anything to the others: if its join
    /// is still waiting to be told, tell it now, so nobody hears from a
    /// client before hearing it joined.
    fn before_first_words(&self, id: u64) {
        let waiting = self.pending().joined.iter().any(|j| j.id == id);
        if waiting {
            self.tell_pending(Some(id));
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn who(&self) -> String {
        let mut names: Vec<String> = self.names().iter().cloned().collect();
        names.sort();
        let total = names.len();
        let mut line = format!("*** online ({total}): ");
        line.push_str(&names[..total.min(WHO_SHOWN)].join(", "));
        if total > WHO_SHOWN {
            line.push_str(&format!(" and {} more", total - WHO_SHOWN));
        }
        line.push('\n');
        if let Some(elsewhere) = self.link.who_elsewhere(Instant::now()) {
            line.push_str(&elsewhere);
        }
        line
    }
}

impl Room for Hub {
    fn hear(&self, lines: Bytes) {
        self.send(0, lines);
    }

    fn paced(&self) -> bool {
        Hub::paced(self)
    }

    fn unpaced(&self) -> Notified<'_> {
        self.pace.changed.notified()
    }

    fn online(&self) -> usize {
        self.names().len()
    }
}

/// `a`, `a and b`, `a, b and c`, `a, b, c, d, e and 95 others`.
pub(crate) fn names_line(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        _ if names.len() <= NAMES_SHOWN => {
            let (last, rest) = names.split_last().unwrap_or((&names[0], &[]));
            format!("{} and {last}", rest.join(", "))
        }
        _ => format!(
            "{} and {} others",
            names[..NAMES_SHOWN].join(", "),
            names.len() - NAMES_SHOWN
        ),
    }
}

/// What woke a client up.
enum Event {
    Shutdown,
    Received(Result<Item, broadcast::error::RecvError>),
    Read(io::Result<usize>),
    /// The socket takes output again.
    Writable,
    /// It has something to read, but the senders wait for the room.
    Held,
    /// The senders started or stopped waiting for the room.
    Paced,
    /// One of the client's deadlines: see [`Member::next_deadline`].
    Timer,
}

/// Why a client's loop ended.
enum Close {
    /// Closed its side (or reset).
    Left,
    /// Tell it this, then close.
    Say(Goodbye),
    /// Nothing more can be written to it.
    Gone,
}

/// What the hub says to a client it closes.
#[derive(Clone, Copy)]
enum Goodbye {
    Bye,
    Shutdown,
    Behind,
}

impl Goodbye {
    fn line(self) -> &'static str {
        match self {
            Goodbye::Bye => "*** bye\n",
            Goodbye::Shutdown => "*** server shutting down\n",
            Goodbye::Behind => "*** you fell too far behind, disconnected\n",
        }
    }
}

impl Close {
    /// Why it ended, for the log.
    fn reason(&self) -> &'static str {
        match self {
            Close::Left => "closed by the client",
            Close::Say(Goodbye::Bye) => "said bye",
            Close::Say(Goodbye::Shutdown) => "server shutting down",
            Close::Say(Goodbye::Behind) => "fell too far behind (on_lag = \"disconnect\")",
            Close::Gone => "took nothing for write_timeout",
        }
    }
}

/// The next item of the room for a client; never, once it has left.
async fn next_item(
    rx: &mut Option<broadcast::Receiver<Item>>,
) -> Result<Item, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What a client has sent and the hub not yet handled.
struct Input {
    lines: Lines,
    bytes: BytesMut,
    /// When bytes last arrived: quiet is measured from here.
    at: Instant,
}

/// A client of the hub: its connection, its name and settings, and what
/// it has still to write and to relay.
struct Member {
    hub: Arc<Hub>,
    /// The hub's settings as of `generation`.
    config: Arc<ChatConfig>,
    generation: u64,
    id: u64,
    /// Its address, for the log's budget of lines per source.
    peer: IpAddr,
    name: String,
    /// Still on its default name (exercise 4-3 clients may claim one).
    default_name: bool,
    /// Has said something to the others (so its join has been told).
    spoken: bool,
    write: OwnedWriteHalf,
    /// Lines waiting for this client, written in one go.
    out: Vec<Bytes>,
    /// Bytes of its own replies queued since `out` was last empty.
    own: usize,
    /// Output has been waiting since then with none of it taken.
    stuck_since: Option<Instant>,
    /// Its socket refused a write: it is gone, but what it sent is still read.
    write_failed: bool,
    /// Its place in the channel; None once it has left.
    rx: Option<broadcast::Receiver<Item>>,
    /// The number of the room's next line it is to get: an item that
    /// starts later tells how many it skipped.
    next_line: u64,
    /// Its socket took nothing while the room waited for it: it takes
    /// every item from the channel into `backlog` as it comes, so the room
    /// goes on, and its socket gets them from there.
    lagging: bool,
    /// The newest `queue` items while it lags; older ones are skipped.
    backlog: VecDeque<Item>,
    /// It has something to read while the senders wait: it waits for the room.
    held: bool,
    /// Bytes its socket has taken, ever.
    taken: u64,
    /// Since when, and from how many bytes taken, it is watched while the
    /// room waits for it.
    watched: Option<(Instant, u64)>,
    /// The longest its socket took nothing with output waiting and then
    /// took it again, in milliseconds: it has earned that much patience.
    slowest_ms: u32,
    /// Relayed lines of the current read, sent as one item.
    relay: BytesMut,
    /// Its allowance of messages: when it runs out, its socket is not read
    /// until it refills (TCP pushes back on the sender; nothing is lost).
    allowance: TokenBucket,
}

impl Member {
    /// Serves one client; why it ended.
    async fn serve(hub: Arc<Hub>, stream: TcpStream, shutdown: CancellationToken) -> &'static str {
        // Chat lines are small: a fixed kernel buffer bounds what a client
        // that reads nothing holds there, and lets the hub see it lag.
        let socket = socket2::SockRef::from(&stream);
        let _ = socket.set_send_buffer_size(SEND_BUFFER);
        let _ = socket.set_recv_buffer_size(RECV_BUFFER);
        let peer = stream
            .peer_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let (rx, next_line) = hub.subscribe();
        let (id, name) = hub.join();
        let (mut read, write) = stream.into_split();
        // The generation first: a reload in between is then seen at once.
        let generation = hub.generation.load(Relaxed);
        let config = hub.config();
        let mut client = Member {
            allowance: TokenBucket::new(config.rate_limit, Instant::now().into_std()),
            generation,
            config,
            hub,
            id,
            peer,
            name,
            default_name: true,
            spoken: false,
            write,
            out: Vec::new(),
            own: 0,
            stuck_since: None,
            write_failed: false,
            rx: Some(rx),
            next_line,
            lagging: false,
            backlog: VecDeque::new(),
            held: false,
            taken: 0,
            watched: None,
            slowest_ms: 0,
            relay: BytesMut::new(),
        };
        debug!(name = %client.name, "joined");
        let welcome = format!(
            "*** welcome to pinetd chat, you are {}; /help for commands\n",
            client.name
        );
        client.queue(welcome);
        let close = client.chat(&mut read, &shutdown).await;
        if let Close::Left = close {
            // It closed its side: what the room said before is still its.
            client.keep_what_is_owed();
        }
        // Its place goes now: the room does not wait on its goodbye.
        client.rx = None;
        client.hub.let_go();
        match close {
            // Replies to its last commands and lines of others already
            // queued for it: a half-closed client still reads them.
            Close::Left => {
                let within = client.config.write_timeout;
                let _ = timeout(within, client.flush_owed()).await;
            }
            Close::Say(goodbye) => {
                client.queue(Bytes::from_static(goodbye.line().as_bytes()));
                let _ = timeout(GOODBYE_WITHIN, client.flush()).await;
            }
            Close::Gone => {}
        }
        let _ = timeout(GOODBYE_WITHIN, client.write.shutdown()).await;
        client.hub.leave(client.id, &client.name);
        debug!(name = %client.name, "left");
        close.reason()
    }

    async fn chat(&mut self, read: &mut OwnedReadHalf, shutdown: &CancellationToken) -> Close {
        let mut input = Input {
            lines: Lines::new(self.config.max_line_bytes as usize),
            bytes: BytesMut::new(),
            at: Instant::now(),
        };
        let cancelled = shutdown.cancelled();
        let timer = sleep(Duration::ZERO);
        tokio::pin!(cancelled, timer);
        let hub = self.hub.clone();
        loop {
            // Made before the room is looked at: no change of pace is missed.
            let pace_changed = hub.pace.changed.notified();
            self.refresh(&mut input.lines);
            if let Err(e) = self.write_now() {
                self.cannot_write(&e);
            }
            self.refill();
            if let Some(close) = self.check_stall(read, &mut input) {
                return close;
            }
            if self.allowance_ready_at().is_none() && self.drain(&mut input, true) {
                return Close::Say(Goodbye::Bye);
            }
            // Lines left there wait for the room; once it goes on, so does it.
            self.held = hub.pace.waiting.load(Relaxed) && (self.held || !input.bytes.is_empty());
            let deadline = self.next_deadline(&input);
            if let Some(at) = deadline.filter(|&at| at != timer.deadline()) {
                timer.as_mut().reset(at);
            }
            // Readable while the room is paced: it waits for the room
            // (only those with something to say, not every idle client).
            let reads = self.wants_to_read() && !self.held;
            let interest = match (reads, !self.out.is_empty()) {
                (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
                (true, false) => Some(Interest::READABLE),
                (false, true) => Some(Interest::WRITABLE),
                (false, false) => None,
            };
            let event = tokio::select! {
                biased;
                _ = &mut cancelled => Event::Shutdown,
                // Readiness first: an idle client holds no read buffer at
                // all. One wait for both directions: every idle client
                // keeps this future.
                ready = read.ready(interest.unwrap_or(Interest::READABLE)), if interest.is_some() => {
                    match ready {
                        Ok(ready) if ready.is_readable() && self.hub.paced() => Event::Held,
                        Ok(ready) if ready.is_readable() => match self.read_some(read, &mut input.bytes) {
                            Some(got) => Event::Read(got),
                            // A spurious wake: keep holding nothing.
                            None => Event::Read(Err(io::ErrorKind::WouldBlock.into())),
                        },
                        Ok(_) => Event::Writable,
                        Err(e) => Event::Read(Err(e)),
                    }
                }
                // Only once the socket took the rest: the channel holds the
                // backlog, bounded by `queue`.
                received = next_item(&mut self.rx), if self.out.is_empty() || self.lagging => {
                    Event::Received(received)
                }
                _ = pace_changed, if self.held || self.may_hold_back() => Event::Paced,
                _ = &mut timer, if deadline.is_some() => Event::Timer,
            };
            if let Some(close) = self.on_event(event, read, &mut input) {
                return close;
            }
            if input.bytes.is_empty() {
                // Back to holding nothing until the next message.
                input.bytes = BytesMut::new();
            }
        }
    }

    /// Acts on what woke the client up; `Some` to close it.
    fn on_event(
        &mut self,
        event: Event,
        read: &mut OwnedReadHalf,
        input: &mut Input,
    ) -> Option<Close> {
        match event {
            Event::Shutdown => return Some(Close::Say(Goodbye::Shutdown)),
            Event::Writable => {}
            Event::Held => self.held = true,
            // The loop looks at the room again.
            Event::Paced => {}
            Event::Received(Ok(item)) => self.take(item),
            // The next item tells how many lines it skipped.
            Event::Received(Err(broadcast::error::RecvError::Lagged(_)))
                if self.lagging || self.config.on_lag == OnLag::Skip => {}
            Event::Received(Err(broadcast::error::RecvError::Lagged(_))) => {
                self.relay_rest(read, input);
                return Some(Close::Say(Goodbye::Behind));
            }
            Event::Received(Err(broadcast::error::RecvError::Closed)) => {
                return Some(Close::Say(Goodbye::Shutdown));
            }
            Event::Read(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Event::Read(Ok(0) | Err(_)) => {
                // What it sent before closing is relayed, its tail too.
                self.drain(input, false);
                if let Some(line) = input.lines.flush(&mut input.bytes) {
                    self.said(line);
                }
                self.send_relay();
                return Some(Close::Left);
            }
            Event::Read(Ok(_)) => {
                input.at = Instant::now();
            }
            Event::Timer => {
                let now = Instant::now();
                if self
                    .stuck_since
                    .is_some_and(|at| at + self.config.write_timeout <= now)
                {
                    debug!(within = ?self.config.write_timeout, "reads nothing; dropped");
                    self.relay_rest(read, input);
                    return Some(Close::Gone);
                }
                if self.quiet_at(input).is_some_and(|at| at <= now) && self.flush_quiet(input) {
                    return Some(Close::Say(Goodbye::Bye));
                }
            }
        }
        None
    }

    /// A client whose socket refused a write has usually closed or reset:
    /// nothing more is written, but its input is read to the end (within
    /// `write_timeout`), so every line it sent is relayed.
    fn cannot_write(&mut self, error: &io::Error) {
        debug!(%error, "write failed; reading what it sent");
        self.write_failed = true;
        self.out = Vec::new();
        self.own = 0;
        self.stuck_since.get_or_insert_with(Instant::now);
        // It will read nothing more: the room does not wait for it.
        self.lag();
    }

    /// Whether it may be what holds the room back: it does not lag yet
    /// and its socket takes nothing now.
    fn may_hold_back(&self) -> bool {
        !self.lagging && self.stuck_since.is_some()
    }

    /// A reader the senders wait for is watched for the room's patience
    /// at a time: if its socket took less than [`KEEPS_UP`] meanwhile, it
    /// lags from then on (`on_lag = "skip"`: it gets the newest `queue`
    /// items and is told how many it missed) or is disconnected, and the
    /// room goes on.
    fn check_stall(&mut self, read: &OwnedReadHalf, input: &mut Input) -> Option<Close> {
        let pace = &self.hub.pace;
        let behind = match &self.rx {
            Some(rx) if self.may_hold_back() && pace.waiting.load(Relaxed) => rx.len(),
            _ => 0,
        };
        if behind <= pace.low {
            self.watched = None;
            return None;
        }
        let now = Instant::now();
        let Some((since, taken)) = self.watched else {
            self.watched = Some((now, self.taken));
            return None;
        };
        if now < since + self.patience() {
            return None;
        }
        let waited = now.saturating_duration_since(pace.waiting_since());
        self.write_all_it_takes();
        // Took all it had, or enough: it keeps up.
        if self.out.is_empty() || self.taken - taken >= KEEPS_UP {
            self.watched = Some((now, self.taken));
            return None;
        }
        self.watched = None;
        if self.config.on_lag == OnLag::Disconnect {
            debug!(
                behind,
                ?waited,
                "takes nothing while the room waits; disconnected"
            );
            self.relay_rest(read, input);
            return Some(Close::Say(Goodbye::Behind));
        }
        debug!(behind, ?waited, "takes nothing while the room waits; skips");
        self.lag();
        None
    }

    /// How long the room waits for it when its socket takes nothing.
    fn patience(&self) -> Duration {
        let earned = (Duration::from_millis(self.slowest_ms.into()) * 2).min(PATIENCE_EARNED);
        self.hub.pace.patience().max(earned)
    }

    /// Writes what its socket takes now, asking the kernel: the readiness
    /// the task waits for comes only once a third of the send buffer is
    /// free, so a reader taking its output steadily looks stuck between
    /// two wakes.
    fn write_all_it_takes(&mut self) {
        let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
        let count = self.out.len().min(WRITE_BATCH);
        for (slice, buf) in slices.iter_mut().zip(&self.out) {
            *slice = IoSlice::new(buf);
        }
        let socket = socket2::SockRef::from(self.write.as_ref());
        if let Ok(written) = socket.send_vectored(&slices[..count]) {
            self.advance(written);
            if written > 0 {
                self.stuck_since = (!self.out.is_empty()).then(Instant::now);
            }
        }
    }

    /// From now on it takes what the room says as it comes, keeping the
    /// newest `queue` items for its socket: the room no longer waits for it.
    fn lag(&mut self) {
        self.lagging = true;
        self.take_all();
    }

    /// Takes every item waiting in the channel into the backlog.
    fn take_all(&mut self) {
        loop {
            let Some(rx) = &mut self.rx else {
                return;
            };
            match rx.try_recv() {
                Ok(item) => self.keep(item),
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        self.hub.let_go();
    }

    /// At its close: keeps the items the room has for it now (the newest
    /// `queue`), for [`Member::flush_owed`]; none that come after.
    fn keep_what_is_owed(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        for _ in 0..rx.len() {
            match rx.try_recv() {
                Ok(item) => self.keep(item),
                // The next item tells how many lines it skipped.
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        self.lagging = !self.backlog.is_empty();
    }

    /// Writes its queued output, then its backlog.
    async fn flush_owed(&mut self) -> io::Result<()> {
        loop {
            self.flush().await?;
            self.refill();
            if self.out.is_empty() {
                return Ok(());
            }
        }
    }

    /// Keeps `item` for later, as one of the newest `queue`.
    fn keep(&mut self, item: Item) {
        if self.write_failed {
            return;
        }
        self.backlog.push_back(item);
        if self.backlog.len() > self.config.queue as usize {
            self.backlog.pop_front();
        }
    }

    /// Once its socket took everything: what it missed, then the next
    /// batch of its backlog; and once that is empty, it lags no more.
    fn refill(&mut self) {
        if !self.lagging || !self.out.is_empty() || self.write_failed {
            return;
        }
        for _ in 0..WRITE_BATCH {
            let Some(item) = self.backlog.pop_front() else {
                break;
            };
            self.deliver(item);
        }
        if self.backlog.is_empty() {
            self.lagging = false;
            self.backlog = VecDeque::new();
        }
    }

    /// Takes the hub's settings if a reload changed them.
    fn refresh(&mut self, lines: &mut Lines) {
        let generation = self.hub.generation.load(Relaxed);
        if generation != self.generation {
            self.generation = generation;
            self.config = self.hub.config();
            lines.set_max(self.config.max_line_bytes as usize);
            self.allowance
                .set_rate(self.config.rate_limit, Instant::now().into_std());
        }
    }

    /// When its allowance lets it say the next line: None if now.
    fn allowance_ready_at(&self) -> Option<Instant> {
        self.allowance
            .ready_at(Instant::now().into_std())
            .map(Instant::from_std)
    }

    /// Not while its allowance is spent, nor while its own replies pile up
    /// unread, nor while the senders wait for the room.
    fn may_read(&self) -> bool {
        self.wants_to_read() && !self.hub.paced()
    }

    /// Its allowance is not spent and its own replies do not pile up.
    fn wants_to_read(&self) -> bool {
        self.allowance_ready_at().is_none() && self.own < OWN_REPLIES
    }

    /// One read into `bytes`; None on a spurious wake.
    fn read_some(&self, read: &OwnedReadHalf, bytes: &mut BytesMut) -> Option<io::Result<usize>> {
        let room = READ_CHUNK.min(self.config.max_line_bytes as usize + 1);
        bytes.reserve(room);
        match read.try_read_buf(&mut bytes.limit(room)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            got => Some(got),
        }
    }

    /// The first of: the end of a pause, the quiet that ends an unterminated
    /// message, the write deadline, the look at whether it holds the room back.
    fn next_deadline(&self, input: &Input) -> Option<Instant> {
        let stuck = self.stuck_since.map(|at| at + self.config.write_timeout);
        let waiting = self.allowance_ready_at().or_else(|| self.quiet_at(input));
        let patience = self.patience();
        let look = self.watched.map(|(since, _)| since + patience);
        [stuck, waiting, look].into_iter().flatten().min()
    }

    /// When quiet ends the unterminated message in `input`: only for a
    /// client that never sent a newline, and not while it is paused.
    fn quiet_at(&self, input: &Input) -> Option<Instant> {
        let waits = !input.bytes.is_empty()
            && !input.lines.ended_a_line()
            && self.allowance_ready_at().is_none();
        waits.then(|| input.at + self.config.flush_after)
    }

    /// The message quiet ended; true if it was bye.
    fn flush_quiet(&mut self, input: &mut Input) -> bool {
        let quit = input
            .lines
            .flush(&mut input.bytes)
            .is_some_and(|line| self.said(line));
        self.send_relay();
        quit
    }

    /// Handles the complete lines in `input`, while the client may be read
    /// if `limited` (the rest wait there until its allowance refills or it
    /// takes its own replies); true if the client said bye.
    fn drain(&mut self, input: &mut Input, limited: bool) -> bool {
        while !limited || self.may_read() {
            let Some(line) = input.lines.next(&mut input.bytes) else {
                break;
            };
            if self.said(line) {
                self.send_relay();
                return true;
            }
        }
        self.send_relay();
        false
    }

    /// A client being dropped: every complete line that reached the hub is
    /// relayed first (and the message of one that never sent a newline).
    /// What reached it is at most the receive buffer: reading stops there,
    /// so a client that goes on sending cannot keep the hub relaying.
    fn relay_rest(&mut self, read: &OwnedReadHalf, input: &mut Input) {
        let mut budget = 2 * RECV_BUFFER;
        loop {
            if self.drain(input, false) {
                return;
            }
            if budget == 0 {
                break;
            }
            match self.read_some(read, &mut input.bytes) {
                Some(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
                _ => break,
            }
        }
        if !input.lines.ended_a_line() {
            self.flush_quiet(input);
        }
    }

    /// Queues a reply to this client alone: hub notices and its commands' answers.
    fn queue(&mut self, bytes: impl Into<Bytes>) {
        if self.write_failed {
            return;
        }
        let bytes = bytes.into();
        self.own += bytes.len();
        self.out.push(bytes);
    }

    /// Queues `item` and everything else already waiting, up to one batch
    /// (or all of it, into the backlog, while it lags).
    fn take(&mut self, item: Item) {
        if self.lagging {
            self.keep(item);
            return self.take_all();
        }
        let mut next = Some(item);
        while let Some(item) = next.take() {
            self.deliver(item);
            if self.out.len() >= WRITE_BATCH {
                break;
            }
            let Some(rx) = &mut self.rx else {
                break;
            };
            loop {
                match rx.try_recv() {
                    Ok(item) => next = Some(item),
                    // The next item tells how many lines it skipped.
                    Err(broadcast::error::TryRecvError::Lagged(_))
                        if self.config.on_lag == OnLag::Skip =>
                    {
                        continue;
                    }
                    // Empty; or lagged under "disconnect", which the next recv reports.
                    Err(_) => {}
                }
                break;
            }
        }
        self.hub.took();
    }

    /// Queues `item` for its socket unless it said it (and does not want its
    /// own echoed), after a notice of the lines it skipped before it.
    fn deliver(&mut self, item: Item) {
        let skipped = item.first.saturating_sub(self.next_line);
        self.next_line = item.first + item.count;
        if skipped > 0 && self.config.on_lag == OnLag::Skip {
            self.queue(format!("*** {skipped} messages skipped\n"));
        }
        if let Some(told) = item.joined.as_ref().and_then(|j| j.told_to(self.id)) {
            if !told.is_empty() {
                self.out.push(told);
            }
        } else if item.from != self.id || self.config.echo_self {
            self.out.push(item.lines);
        }
    }

    /// Handles one line; true if the client said bye.
    fn said(&mut self, line: Line) -> bool {
        self.allowance.take(Instant::now().into_std());
        let limit = self.config.max_line_bytes;
        let (text, grew) = line_text(&line, limit as usize);
        if line.cut && crate::logging::peer_line(self.peer) {
            info!(
                max_line_bytes = limit,
                start = %crate::logging::excerpt(&text.as_bytes()[..text.len().min(64)]),
                "line cut at the limit"
            );
        }
        if line.cut {
            self.queue(format!(
                "*** your line was longer than {limit} bytes and was cut\n"
            ));
        } else if grew {
            self.queue(format!(
                "*** your line was longer than {limit} bytes once its control characters and invalid UTF-8 were replaced, and was cut\n"
            ));
        }
        match parse(&text) {
            Said::Nothing => {}
            Said::Quit => return true,
            Said::Help => self.queue(Bytes::from_static(HELP.as_bytes())),
            Said::Who => {
                let who = self.hub.who();
                self.queue(who);
            }
            Said::Unknown(command) => {
                self.queue(format!(
                    "*** unknown command /{command}; /help lists them\n"
                ));
            }
            Said::Nick(new) => self.rename(new),
            Said::Message(message) => {
                // The first line of a client that has not chosen a name may claim one.
                let claimed = self.default_name.then(|| claimed_name(message)).flatten();
                if let Some(claimed) = claimed.filter(|c| self.hub.rename(&self.name, c).is_ok()) {
                    self.renamed(claimed);
                }
                let relayed = relay_line(&self.config.prefix, &self.name, message);
                self.relay.extend_from_slice(relayed.as_bytes());
                self.hub.stats.message();
            }
        }
        false
    }

    fn rename(&mut self, new: &str) {
        if new == self.name {
            return;
        }
        match self.hub.rename(&self.name, new) {
            Ok(()) => {
                self.queue(format!("*** you are now {new}\n"));
                self.renamed(new);
            }
            Err(why) => self.queue(format!("*** cannot rename: {why}\n")),
        }
    }

    fn renamed(&mut self, new: &str) {
        // Lines relayed before the rename go out under the old name.
        self.send_relay();
        // Named before its join was told: it joins under this name.
        if !self.hub.renamed_before_told(self.id, new) {
            self.speak_here(format!("*** {} is now {new}\n", self.name));
            // The other hubs say which hub it is on.
            self.hub
                .link
                .offer(Outgoing::Renamed(self.name.clone(), new.to_owned()));
        }
        self.name = new.to_owned();
        self.default_name = false;
    }

    fn send_relay(&mut self) {
        if !self.relay.is_empty() {
            let lines = self.relay.split().freeze();
            self.speak(lines);
        }
    }

    /// Sends `lines` from this client to the others, here and on the
    /// other hubs, its join told first.
    fn speak(&mut self, lines: impl Into<Bytes>) {
        let lines = lines.into();
        self.speak_here(lines.clone());
        self.hub.link.offer(Outgoing::Said(lines));
    }

    /// Sends `lines` from this client to the others on this hub alone.
    fn speak_here(&mut self, lines: impl Into<Bytes>) {
        if !self.spoken {
            self.hub.before_first_words(self.id);
            self.spoken = true;
        }
        self.hub.send(self.id, lines);
    }

    /// Writes what the socket takes now, never waiting; notes since when
    /// output waits with none of it taken.
    fn write_now(&mut self) -> io::Result<()> {
        if self.out.is_empty() || self.write_failed {
            return Ok(());
        }
        match self.write_some() {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                self.advance(written);
                // Usually the socket takes it all, and no clock is read.
                self.stuck_since = (!self.out.is_empty()).then(Instant::now);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stuck_since.get_or_insert_with(Instant::now);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes every queued buffer, as few system calls as the socket allows.
    async fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.write_some() {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Drops `written` bytes from the front of the queue; once it is empty,
    /// holds nothing between writes: most clients are idle most of the time.
    fn advance(&mut self, mut written: usize) {
        self.taken += written as u64;
        if let Some(since) = self.stuck_since.filter(|_| written > 0) {
            let ms = since.elapsed().as_millis().min(u32::MAX.into()) as u32;
            self.slowest_ms = self.slowest_ms.max(ms);
        }
        let mut done = 0;
        while written > 0 {
            let first = &mut self.out[done];
            let n = written.min(first.len());
            first.advance(n);
            written -= n;
            if first.is_empty() {
                done += 1;
            }
        }
        self.out.drain(..done);
        if self.out.is_empty() {
            self.out = Vec::new();
            self.own = 0;
        }
    }

    /// One write of the queued buffers: vectored when there are several.
    /// Not async: the slices stay off the task's state, which every idle
    /// client keeps.
    fn write_some(&self) -> io::Result<usize> {
        if let [one] = self.out.as_slice() {
            return self.write.try_write(one);
        }
        let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
        let count = self.out.len().min(WRITE_BATCH);
        for (slice, buf) in slices.iter_mut().zip(&self.out) {
            *slice = IoSlice::new(buf);
        }
        self.write.try_write_vectored(&slices[..count])
    }
}
