//! The chat room's bridge through NATS: hubs on many machines whose
//! `bridge_subject` is the same share one room.
//!
//! The hub hands the bridge what its clients say, and its join and leave
//! notices, through a [`Link`], which never blocks: while NATS is away, or
//! the bridge is behind by [`QUEUE_BYTES`], an item is counted as not
//! bridged and dropped, so the local room goes on as if unbridged. The
//! bridge task publishes them with the hub's instance id and host in the
//! headers, and gives what other hubs publish to the local clients: a hub
//! drops its own messages (and the server is asked not to echo them), and
//! never publishes what it received, so nothing loops or arrives twice.
//! One connection and one subscription keep each sender's order.
//!
//! Messages: the subject is `bridge_subject`, the headers
//! `Pinetd-Hub` (instance id), `Pinetd-Host`, `Pinetd-Kind` and
//! `Pinetd-Online` (the local clients now), the payload by kind: `say`,
//! relayed lines as formatted by the sending hub; `joined` and `left`,
//! names one per line; `here` (a presence, on connecting and every
//! [`PRESENCE_EVERY`]) and `gone` (on shutdown), nothing. What arrives from
//! NATS is input like any other: limited in size and cleaned of control
//! characters before a client sees it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::stats::ServiceStats;

/// What the bridge may hold for NATS: beyond this, items are not bridged.
pub const QUEUE_BYTES: usize = 1 << 20;
/// What one queued item counts for beyond its bytes.
const ITEM_COST: usize = 64;
/// A hub announces itself this often, so others can count its clients.
pub const PRESENCE_EVERY: Duration = Duration::from_secs(30);
/// A hub not heard from for this long is no longer counted.
const FORGET_AFTER: Duration = Duration::from_secs(95);
/// At most this many other hubs are remembered.
const MAX_OTHERS: usize = 1000;
/// The most clients a hub is believed to have.
const MAX_ONLINE: u64 = 1_000_000;
/// Hubs named by /who.
const OTHERS_SHOWN: usize = 10;

/// Something the local room said, for the other hubs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Relayed lines, formatted, each ending in `\n`.
    Said(Bytes),
    Joined(Vec<String>),
    Left(Vec<String>),
    /// A client's new name: old, new.
    Renamed(String, String),
}

impl Outgoing {
    fn cost(&self) -> usize {
        ITEM_COST
            + match self {
                Outgoing::Said(lines) => lines.len(),
                Outgoing::Joined(names) | Outgoing::Left(names) => {
                    names.iter().map(|n| n.len() + 1).sum()
                }
                Outgoing::Renamed(old, new) => old.len() + new.len() + 1,
            }
    }

    /// How many lines of the room it is (for the not-bridged count).
    fn lines(&self) -> u64 {
        match self {
            Outgoing::Said(lines) => memchr::memchr_iter(b'\n', lines).count().max(1) as u64,
            Outgoing::Joined(_) | Outgoing::Left(_) | Outgoing::Renamed(..) => 1,
        }
    }
}

/// The bridge's state, as the hub sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// No `bridge_url`: nothing is queued or counted.
    Off = 0,
    /// Configured, but NATS is not connected: items are counted and dropped.
    Down = 1,
    Up = 2,
    /// The first attempt to connect (at most two seconds): items are held,
    /// so what is said as the daemon starts is not lost to a race.
    Connecting = 3,
}

/// Between the hub and its bridge task.
pub struct Link {
    state: AtomicU8,
    queue: Mutex<Queue>,
    ready: Notify,
    others: Mutex<HashMap<String, Other>>,
    stats: Arc<ServiceStats>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    bytes: usize,
}

/// Another hub on the subject, as last heard.
#[derive(Debug, Clone)]
struct Other {
    host: String,
    online: u64,
    seen: Instant,
}

impl Link {
    pub fn new(stats: Arc<ServiceStats>) -> Self {
        Self {
            state: AtomicU8::new(State::Off as u8),
            queue: Mutex::default(),
            ready: Notify::new(),
            others: Mutex::default(),
            stats,
        }
    }

    pub fn state(&self) -> State {
        match self.state.load(Relaxed) {
            3 => State::Connecting,
            2 => State::Up,
            1 => State::Down,
            _ => State::Off,
        }
    }

    /// Sets the state; what was queued is not bridged unless it is Up.
    pub fn set_state(&self, state: State) {
        self.state.store(state as u8, Relaxed);
        if matches!(state, State::Off | State::Down) {
            let dropped = std::mem::take(&mut *self.queue());
            if state == State::Down {
                self.not_bridged(dropped.items.iter().map(Outgoing::lines).sum());
            }
        }
        if state == State::Off {
            self.others().clear();
        }
    }

    /// Queues `item` for the other hubs, never waiting: counted as not
    /// bridged instead when NATS is away or the queue is full.
    pub fn offer(&self, item: Outgoing) {
        match self.state() {
            State::Off => return,
            State::Down => return self.not_bridged(item.lines()),
            State::Up | State::Connecting => {}
        }
        let cost = item.cost();
        {
            let mut queue = self.queue();
            if queue.bytes + cost > QUEUE_BYTES {
                drop(queue);
                return self.not_bridged(item.lines());
            }
            queue.bytes += cost;
            queue.items.push_back(item);
        }
        self.ready.notify_one();
    }

    /// The next item to publish, if any.
    pub fn take(&self) -> Option<Outgoing> {
        let mut queue = self.queue();
        let item = queue.items.pop_front()?;
        queue.bytes -= item.cost();
        Some(item)
    }

    pub fn has_items(&self) -> bool {
        !self.queue().items.is_empty()
    }

    /// Drops everything queued, counting it as not bridged (NATS stopped taking it).
    pub fn drop_queued(&self) {
        let dropped = std::mem::take(&mut *self.queue());
        self.not_bridged(dropped.items.iter().map(Outgoing::lines).sum());
    }

    /// Wakes when an item may be waiting.
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    pub fn not_bridged(&self, lines: u64) {
        self.stats.not_bridged.fetch_add(lines, Relaxed);
    }

    /// Notes a message from hub `id`; true if it was not known.
    pub fn heard_from(&self, id: &str, host: &str, online: Option<u64>, now: Instant) -> bool {
        // Whatever a message claims, no hub has more clients than this.
        let online = online.map(|n| n.min(MAX_ONLINE));
        let mut others = self.others();
        if let Some(other) = others.get_mut(id) {
            other.seen = now;
            other.host = host.to_owned();
            if let Some(online) = online {
                other.online = online;
            }
            return false;
        }
        if others.len() >= MAX_OTHERS {
            forget_old(&mut others, now);
            if others.len() >= MAX_OTHERS {
                return false;
            }
        }
        others.insert(
            id.to_owned(),
            Other {
                host: host.to_owned(),
                online: online.unwrap_or(0),
                seen: now,
            },
        );
        true
    }

    /// Hub `id` said it is gone; how many clients it had.
    pub fn gone(&self, id: &str) -> Option<u64> {
        self.others().remove(id).map(|o| o.online)
    }

    /// The /who line about the other hubs: `*** and 12 more on 2 other hubs: pi-07 (5), pi-09 (7)`;
    /// None when no other hub has been heard from lately.
    pub fn who_elsewhere(&self, now: Instant) -> Option<String> {
        let mut others = self.others();
        forget_old(&mut others, now);
        if others.is_empty() {
            return None;
        }
        let mut hubs: Vec<&Other> = others.values().collect();
        hubs.sort_by(|a, b| b.online.cmp(&a.online).then_with(|| a.host.cmp(&b.host)));
        let total = hubs
            .iter()
            .fold(0u64, |sum, o| sum.saturating_add(o.online));
        let count = hubs.len();
        let shown: Vec<String> = hubs
            .iter()
            .take(OTHERS_SHOWN)
            .map(|o| format!("{} ({})", o.host, o.online))
            .collect();
        let mut line = format!(
            "*** and {total} more on {count} other hub{}: {}",
            if count == 1 { "" } else { "s" },
            shown.join(", ")
        );
        if count > OTHERS_SHOWN {
            line.push_str(&format!(" and {} more hubs", count - OTHERS_SHOWN));
        }
        line.push('\n');
        Some(line)
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn others(&self) -> MutexGuard<'_, HashMap<String, Other>> {
        self.others.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn forget_old(others: &mut HashMap<String, Other>, now: Instant) {
    others.retain(|_, o| now.saturating_duration_since(o.seen) < FORGET_AFTER);
}

/// What the bridge needs of the hub.
pub trait Room: Send + Sync + 'static {
    /// Gives `lines` (each ending in `\n`) to every local client.
    fn hear(&self, lines: Bytes);
    /// The local readers are behind: nothing more is heard until
    /// [`Room::unpaced`] (NATS keeps what waits).
    fn paced(&self) -> bool;
    /// Completes when the room may be paced no longer.
    fn unpaced(&self) -> tokio::sync::futures::Notified<'_>;
    /// Local clients now.
    fn online(&self) -> usize;
}

/// The bridge's settings, from `[chat]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// "" when off.
    pub url: String,
    pub subject: String,
    /// The local line limit: a remote line is cut a little above it.
    pub max_line_bytes: u32,
    /// Lines a second taken from the other hubs (0: no limit).
    pub rate_limit: u32,
}

impl Settings {
    pub fn of(config: &crate::config::ChatConfig) -> Self {
        Self {
            url: config.bridge_url.trim().to_owned(),
            subject: config.bridge_subject.clone(),
            max_line_bytes: config.max_line_bytes,
            rate_limit: config.bridge_rate_limit,
        }
    }

    /// The same connection and subscription (only the limits differ).
    pub fn same_bridge(&self, other: &Settings) -> bool {
        self.url == other.url && self.subject == other.subject
    }
}

/// Room a remote hub's prefix and name may take in a line beyond the local limit.
pub const PREFIX_ROOM: usize = 256;
/// The largest message taken from NATS: a local item is one read's lines.
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// Remote lines are given to the clients in items of about this many bytes.
const ITEM_BYTES: usize = 8 * 1024;
/// Names taken from one remote notice.
const MAX_NAMES: usize = 1000;
/// A remote host name is cut to this many characters.
const MAX_HOST: usize = 64;

/// A remote `say`'s lines: each cleaned of control characters and invalid
/// UTF-8 and cut to `max` bytes, ending in `\n`; empty lines dropped.
pub fn remote_lines(payload: &[u8], max: usize) -> Vec<String> {
    payload
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .map(|line| {
            let text = crate::chatline::clean(line);
            let mut line = cut_at(&text, max).to_owned();
            line.push('\n');
            line
        })
        .collect()
}

/// Lines packed into items of about [`ITEM_BYTES`], in order.
pub fn pack(lines: impl IntoIterator<Item = String>) -> Vec<Bytes> {
    let mut items = Vec::new();
    let mut item = String::new();
    for line in lines {
        if !item.is_empty() && item.len() + line.len() > ITEM_BYTES {
            items.push(Bytes::from(std::mem::take(&mut item)));
        }
        item.push_str(&line);
    }
    if !item.is_empty() {
        items.push(Bytes::from(item));
    }
    items
}

/// A remote notice's names: the valid ones, at most [`MAX_NAMES`].
pub fn remote_names(payload: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(payload)
        .split('\n')
        .filter(|name| crate::chatline::bad_name(name).is_none())
        .take(MAX_NAMES)
        .map(str::to_owned)
        .collect()
}

/// A remote host name fit to show: cleaned, at most [`MAX_HOST`] characters, never empty.
pub fn remote_host(host: &str) -> String {
    let host: String = crate::chatline::clean(host.as_bytes())
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(MAX_HOST)
        .collect();
    if host.is_empty() { "?".into() } else { host }
}

fn cut_at(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(feature = "bridge")]
pub use nats::run;

/// Without the `bridge` feature a bridge_url is refused by the config, so
/// the bridge never runs.
#[cfg(not(feature = "bridge"))]
pub async fn run(
    _link: Arc<Link>,
    _settings: tokio::sync::watch::Receiver<Settings>,
    _room: Arc<dyn Room>,
    _info: Arc<crate::describe::SelfInfo>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    shutdown.cancelled().await
}

#[cfg(feature = "bridge")]
mod nats {
    use super::*;

    use async_nats::connection::State as Connection;
    use async_nats::{Client, ConnectOptions, HeaderMap, HeaderValue, Message};
    use futures_util::StreamExt;
    use tokio::sync::{mpsc, watch};
    use tokio::time::{MissedTickBehavior, interval, timeout};
    use tokio_util::sync::CancellationToken;
    use tracing::{info, warn};

    use crate::config::{NatsAuth, NatsUrl};
    use crate::describe::SelfInfo;
    use crate::limit::TokenBucket;
    use crate::stats::Refusal;

    const HUB: &str = "Pinetd-Hub";
    const HOST: &str = "Pinetd-Host";
    const KIND: &str = "Pinetd-Kind";
    const ONLINE: &str = "Pinetd-Online";
    /// The client's state is checked this often, whatever its events say.
    const CHECK_EVERY: Duration = Duration::from_secs(1);
    /// How long a connection attempt may take.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Reconnect backoff: from this, doubling, ...
    const BACKOFF_FIRST: Duration = Duration::from_millis(100);
    /// ... up to this.
    const BACKOFF_MAX: Duration = Duration::from_secs(5);
    /// Attempts in a row before a client gives up and a new one is made: a
    /// client dropped by a reload then stops trying within a minute.
    const MAX_RECONNECTS: usize = 12;
    /// What the client may hold unsent: while NATS is away nothing new is
    /// given it, so this bounds what arrives late once it is back.
    const CLIENT_CAPACITY: usize = 256;
    /// A publish the client cannot take this long (NATS not reading) is
    /// dropped, and with it everything queued.
    const PUBLISH_WITHIN: Duration = Duration::from_millis(500);
    /// Items published before anything else gets a turn.
    const PUBLISH_BATCH: usize = 64;
    /// On shutdown, the goodbye is not worth waiting for longer than this.
    const GOODBYE_WITHIN: Duration = Duration::from_millis(500);
    /// A new hub makes this one say who it is at most this often.
    const PRESENCE_AT_MOST: Duration = Duration::from_secs(1);
    /// "Lost NATS" is logged at most this often (a server that keeps
    /// dropping the connection is one line a minute, with a count).
    const LOST_LOGGED_EVERY: Duration = Duration::from_secs(60);

    /// What is known of the connection across clients: an outage is logged
    /// once, however many clients it takes to end it.
    #[derive(Default)]
    struct Outage {
        /// Connected at least once to these settings.
        ever_up: bool,
        /// The current outage (or first attempt) has been logged.
        told: bool,
        /// The not-bridged count when it began.
        not_bridged_at: u64,
        /// When "lost NATS" was last logged, and the losses since.
        lost_logged: Option<Instant>,
        lost_since: u64,
    }

    /// Runs the bridge until `shutdown`: connects when `bridge_url` is set,
    /// and again whenever a reload changes the URL or the subject.
    pub async fn run(
        link: Arc<Link>,
        mut settings: watch::Receiver<Settings>,
        room: Arc<dyn Room>,
        info: Arc<SelfInfo>,
        shutdown: CancellationToken,
    ) {
        let mut outage = Outage::default();
        let mut remote = TokenBucket::new(0, Instant::now().into_std());
        loop {
            let current = settings.borrow_and_update().clone();
            if current.url.is_empty() {
                link.set_state(State::Off);
                info.set_room(None);
                outage = Outage::default();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = settings.changed() => if changed.is_err() { return },
                }
                continue;
            }
            let servers: Result<Vec<NatsUrl>, String> = current
                .url
                .split(',')
                .map(|u| NatsUrl::parse(u.trim()))
                .collect();
            let servers = match servers {
                Ok(servers) => servers,
                Err(error) => {
                    // The config checked it; never the case.
                    warn!(%error, "cannot use bridge_url; the room stays local");
                    link.set_state(State::Off);
                    info.set_room(None);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        changed = settings.changed() => if changed.is_err() { return },
                    }
                    continue;
                }
            };
            info.set_room(Some(current.subject.clone()));
            remote.set_rate(current.rate_limit, Instant::now().into_std());
            let session = Session {
                link: link.clone(),
                room: room.clone(),
                info: info.clone(),
                settings: current,
                servers,
            };
            match session
                .run(&mut settings, &shutdown, &mut outage, &mut remote)
                .await
            {
                End::Shutdown => {
                    link.set_state(State::Off);
                    return;
                }
                End::Changed => {
                    info!("bridge settings changed; reconnecting the bridge");
                    outage = Outage::default();
                }
                End::Stopped => {
                    // The client gave up (MAX_RECONNECTS attempts, or a
                    // server that wants TLS): a new one, after a pause.
                    link.set_state(State::Down);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(BACKOFF_MAX) => {}
                    }
                }
            }
        }
    }

    enum End {
        Shutdown,
        Changed,
        Stopped,
    }

    struct Session {
        link: Arc<Link>,
        room: Arc<dyn Room>,
        info: Arc<SelfInfo>,
        settings: Settings,
        servers: Vec<NatsUrl>,
    }

    /// Reconnect delay after `attempts` failures in a row.
    fn backoff(attempts: usize) -> Duration {
        let doubled = BACKOFF_FIRST.saturating_mul(1 << attempts.saturating_sub(1).min(10));
        doubled.min(BACKOFF_MAX)
    }

    impl Session {
        /// The servers, for the log: never with credentials.
        fn shown(&self) -> String {
            let servers: Vec<&str> = self.servers.iter().map(|s| s.server.as_str()).collect();
            servers.join(",")
        }

        /// A client connecting in the background, and a channel that says
        /// when its state may have changed.
        async fn connect(&self) -> Option<(Client, mpsc::UnboundedReceiver<()>)> {
            let (events_tx, events) = mpsc::unbounded_channel::<()>();
            let mut options = ConnectOptions::new()
                .name(format!(
                    "pinetd {} {}",
                    self.info.host(),
                    self.info.instance()
                ))
                .no_echo()
                .retry_on_initial_connect()
                .max_reconnects(MAX_RECONNECTS)
                .connection_timeout(CONNECT_TIMEOUT)
                .client_capacity(CLIENT_CAPACITY)
                .reconnect_delay_callback(backoff)
                .event_callback(move |_| {
                    let events = events_tx.clone();
                    async move {
                        let _ = events.send(());
                    }
                });
            // The first server's credentials are the cluster's.
            match self
                .servers
                .iter()
                .map(|s| &s.auth)
                .find(|a| **a != NatsAuth::None)
            {
                Some(NatsAuth::Token(token)) => options = options.token(token.clone()),
                Some(NatsAuth::UserPassword(user, password)) => {
                    options = options.user_and_password(user.clone(), password.clone())
                }
                _ => {}
            }
            let servers: Vec<&str> = self.servers.iter().map(|s| s.server.as_str()).collect();
            match options.connect(servers.as_slice()).await {
                Ok(client) => Some((client, events)),
                Err(error) => {
                    warn!(url = %self.shown(), %error, "cannot start the NATS client");
                    None
                }
            }
        }

        async fn run(
            mut self,
            settings: &mut watch::Receiver<Settings>,
            shutdown: &CancellationToken,
            outage: &mut Outage,
            remote: &mut TokenBucket,
        ) -> End {
            let url = self.shown();
            let Some((client, mut events)) = self.connect().await else {
                return End::Stopped;
            };
            let subject = self.settings.subject.clone();
            let mut subscriber = match client.subscribe(subject.clone()).await {
                Ok(subscriber) => subscriber,
                Err(error) => {
                    warn!(%subject, %error, "cannot subscribe; the room stays local");
                    return End::Stopped;
                }
            };
            self.link.set_state(State::Connecting);
            if !outage.told && !outage.ever_up {
                info!(%url, %subject, "bridging the chat room through NATS");
            }
            let mut up = false;
            let started = Instant::now();
            let mut last_presence: Option<Instant> = None;
            let mut check = interval(CHECK_EVERY);
            check.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut presence = interval(PRESENCE_EVERY);
            presence.set_missed_tick_behavior(MissedTickBehavior::Delay);
            presence.reset();
            loop {
                // Made before the room is looked at: its going on is not missed.
                let unpaced = self.room.unpaced();
                let paced = self.room.paced();
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        if up {
                            self.goodbye(&client).await;
                        }
                        return End::Shutdown;
                    }
                    changed = settings.changed() => {
                        if changed.is_err() {
                            return End::Shutdown;
                        }
                        let next = settings.borrow_and_update().clone();
                        if !next.same_bridge(&self.settings) {
                            if up {
                                self.goodbye(&client).await;
                            }
                            return End::Changed;
                        }
                        remote.set_rate(next.rate_limit, Instant::now().into_std());
                        self.settings = next;
                    }
                    Some(()) = events.recv() => {}
                    _ = check.tick() => {}
                    _ = unpaced, if paced => {}
                    message = subscriber.next(), if !paced => match message {
                        Some(message) => {
                            if self.heard(message, remote) && up {
                                let now = Instant::now();
                                if last_presence.is_none_or(|at| now - at >= PRESENCE_AT_MOST) {
                                    last_presence = Some(now);
                                    self.publish(&client, "here", Bytes::new()).await;
                                }
                            }
                        }
                        // The client gave up: a new one.
                        None => return End::Stopped,
                    },
                    _ = self.link.ready(), if up => {
                        // A batch at a time: what comes from NATS waits no longer.
                        for _ in 0..PUBLISH_BATCH {
                            if shutdown.is_cancelled() || settings.has_changed().unwrap_or(true) {
                                break;
                            }
                            let Some(item) = self.link.take() else { break };
                            if !self.send(&client, item).await {
                                // NATS takes nothing: the rest would only wait too.
                                self.link.drop_queued();
                                break;
                            }
                        }
                        if self.link.has_items() {
                            self.link.ready.notify_one();
                        }
                        tokio::task::coop::consume_budget().await;
                    }
                    _ = presence.tick(), if up => {
                        last_presence = Some(Instant::now());
                        self.publish(&client, "here", Bytes::new()).await;
                    }
                }
                // Whatever woke it: has the connection come or gone?
                let now_up = client.connection_state() == Connection::Connected;
                if now_up != up {
                    up = now_up;
                    if up {
                        self.link.set_state(State::Up);
                        // What was held while connecting goes out now.
                        self.link.ready.notify_one();
                        if outage.ever_up {
                            let missed = self.not_bridged() - outage.not_bridged_at;
                            info!(%url, not_bridged = missed, "NATS is back; bridging again");
                        } else {
                            info!(%url, "connected to NATS; the room is bridged");
                        }
                        outage.ever_up = true;
                        outage.told = false;
                        last_presence = Some(Instant::now());
                        self.publish(&client, "here", Bytes::new()).await;
                    } else {
                        self.link.set_state(State::Down);
                        outage.not_bridged_at = self.not_bridged();
                    }
                }
                let waited = started.elapsed() >= CONNECT_TIMEOUT
                    || client.connection_state() != Connection::Pending;
                if !up && waited && self.link.state() == State::Connecting {
                    self.link.set_state(State::Down);
                }
                if !up && !outage.told && waited {
                    outage.told = true;
                    self.tell_down(&url, outage);
                }
            }
        }

        fn tell_down(&self, url: &str, outage: &mut Outage) {
            if !outage.ever_up {
                warn!(
                    %url,
                    "NATS is not reachable; the room goes on locally, unbridged lines are counted, retrying"
                );
                return;
            }
            let now = Instant::now();
            outage.lost_since += 1;
            if outage
                .lost_logged
                .is_none_or(|at| now - at >= LOST_LOGGED_EVERY)
            {
                warn!(
                    %url,
                    times = outage.lost_since,
                    "lost NATS; the room goes on locally, unbridged lines are counted, reconnecting"
                );
                outage.lost_logged = Some(now);
                outage.lost_since = 0;
            }
        }

        fn not_bridged(&self) -> u64 {
            self.link.stats.not_bridged.load(Relaxed)
        }

        /// Publishes one item of the local room; false if NATS did not take it.
        async fn send(&self, client: &Client, item: Outgoing) -> bool {
            let lines = item.lines();
            let (kind, payload) = match item {
                Outgoing::Said(lines) => ("say", lines),
                Outgoing::Joined(names) => ("joined", Bytes::from(names.join("\n"))),
                Outgoing::Left(names) => ("left", Bytes::from(names.join("\n"))),
                Outgoing::Renamed(old, new) => ("renamed", Bytes::from(format!("{old}\n{new}"))),
            };
            let sent = self.publish(client, kind, payload).await;
            if !sent {
                self.link.not_bridged(lines);
            }
            sent
        }

        /// Publishes a message of `kind`; false if the client did not take it.
        async fn publish(&self, client: &Client, kind: &'static str, payload: Bytes) -> bool {
            let mut headers = HeaderMap::new();
            headers.insert(HUB, self.info.instance());
            headers.insert(HOST, header_safe(self.info.host()).as_str());
            headers.insert(KIND, kind);
            headers.insert(ONLINE, HeaderValue::from(self.room.online() as u64));
            let publishing =
                client.publish_with_headers(self.settings.subject.clone(), headers, payload);
            matches!(timeout(PUBLISH_WITHIN, publishing).await, Ok(Ok(())))
        }

        /// Tells the other hubs this one is going, briefly.
        async fn goodbye(&self, client: &Client) {
            let _ = timeout(GOODBYE_WITHIN, async {
                self.publish(client, "gone", Bytes::new()).await;
                let _ = client.flush().await;
            })
            .await;
        }

        /// Gives a message from another hub to the local clients, within
        /// `remote`'s rate; true if that hub was not known before.
        fn heard(&self, message: Message, remote: &mut TokenBucket) -> bool {
            let stats = &self.link.stats;
            let Some(headers) = message.headers.as_ref() else {
                stats.refuse(Refusal::BadSource);
                return false;
            };
            let header = |name: &str| headers.get(name).map(HeaderValue::as_str);
            let Some(id) = header(HUB).filter(|id| !id.is_empty() && id.len() <= 64) else {
                stats.refuse(Refusal::BadSource);
                return false;
            };
            if id == self.info.instance() {
                return false;
            }
            if message.payload.len() > MAX_PAYLOAD {
                stats.refuse(Refusal::OverLimit);
                return false;
            }
            let host = remote_host(header(HOST).unwrap_or(""));
            let online = header(ONLINE).and_then(|n| n.parse::<u64>().ok());
            let now = Instant::now();
            let kind = header(KIND).unwrap_or("");
            if kind == "gone" {
                if let Some(online) = self.link.gone(id).filter(|&n| n > 0) {
                    self.room.hear(Bytes::from(format!(
                        "*** {online} left on {host} (its hub stopped)\n"
                    )));
                }
                return false;
            }
            let new = self.link.heard_from(id, &host, online, now);
            let max = self.settings.max_line_bytes as usize + PREFIX_ROOM;
            let mut allowed = |stats: &ServiceStats| {
                let ok = remote.try_take(now.into_std());
                if !ok {
                    stats.refuse(Refusal::RateLimited);
                }
                ok
            };
            match kind {
                "say" => {
                    let lines = remote_lines(&message.payload, max);
                    let lines: Vec<String> = lines.into_iter().filter(|_| allowed(stats)).collect();
                    for item in pack(lines) {
                        self.room.hear(item);
                    }
                }
                "joined" | "left" => {
                    let names = remote_names(&message.payload);
                    if !names.is_empty() && allowed(stats) {
                        self.room.hear(Bytes::from(format!(
                            "*** {} {kind} on {host}\n",
                            crate::services::chat::names_line(&names)
                        )));
                    }
                }
                "renamed" => {
                    if let [old, new] = remote_names(&message.payload).as_slice() {
                        if allowed(stats) {
                            self.room
                                .hear(Bytes::from(format!("*** {old} is now {new} on {host}\n")));
                        }
                    }
                }
                _ => {}
            }
            new
        }
    }

    /// A header value holds no control characters or newlines.
    fn header_safe(text: &str) -> String {
        text.chars().filter(|c| !c.is_control()).collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn backoff_doubles_up_to_five_seconds() {
            let delays: Vec<u128> = (1..=8).map(|n| backoff(n).as_millis()).collect();
            assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
            assert_eq!(backoff(usize::MAX), BACKOFF_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> (Link, Arc<ServiceStats>) {
        let stats = Arc::new(ServiceStats::default());
        (Link::new(stats.clone()), stats)
    }

    #[test]
    fn nothing_is_held_or_counted_while_off_and_only_counted_while_down() {
        let (link, stats) = link();
        link.offer(Outgoing::Said(Bytes::from_static(b"a\nb\n")));
        assert_eq!((link.take(), stats.not_bridged.load(Relaxed)), (None, 0));
        link.set_state(State::Down);
        link.offer(Outgoing::Said(Bytes::from_static(b"a\nb\n")));
        link.offer(Outgoing::Joined(vec!["alice".into()]));
        assert_eq!((link.take(), stats.not_bridged.load(Relaxed)), (None, 3));
        link.set_state(State::Up);
        link.offer(Outgoing::Left(vec!["bob".into()]));
        assert_eq!(link.take(), Some(Outgoing::Left(vec!["bob".into()])));
        assert_eq!(link.take(), None);
        // Held while first connecting, then sent; or counted if it fails.
        link.set_state(State::Connecting);
        link.offer(Outgoing::Joined(vec!["early".into()]));
        assert_eq!(link.take(), Some(Outgoing::Joined(vec!["early".into()])));
        link.offer(Outgoing::Joined(vec!["early".into()]));
        link.set_state(State::Down);
        assert_eq!((link.take(), stats.not_bridged.load(Relaxed)), (None, 4));
        link.set_state(State::Up);
        // Queued when NATS goes away: counted, not kept for later.
        link.offer(Outgoing::Said(Bytes::from_static(b"c\n")));
        link.set_state(State::Down);
        link.set_state(State::Up);
        assert_eq!((link.take(), stats.not_bridged.load(Relaxed)), (None, 5));
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_and_keeps_order() {
        let (link, stats) = link();
        link.set_state(State::Up);
        let line = Bytes::from(
            vec![b'x'; 1023]
                .into_iter()
                .chain([b'\n'])
                .collect::<Vec<u8>>(),
        );
        let fits = QUEUE_BYTES / (1024 + ITEM_COST);
        for _ in 0..fits + 10 {
            link.offer(Outgoing::Said(line.clone()));
        }
        assert_eq!(stats.not_bridged.load(Relaxed), 10);
        let mut taken = 0;
        while link.take().is_some() {
            taken += 1;
        }
        assert_eq!(taken, fits);
        // Room again once taken.
        link.offer(Outgoing::Said(line));
        assert!(link.take().is_some());
    }

    #[test]
    fn remote_input_is_cleaned_and_limited() {
        let got = remote_lines(b"[a] hi\x1b[2J\r\n\n[b] \xff ok\n[c] no newline", 100);
        assert_eq!(
            got,
            [
                "[a] hi\u{fffd}[2J\n",
                "[b] \u{fffd} ok\n",
                "[c] no newline\n"
            ]
        );
        let long = format!("{}\n", "é".repeat(100));
        assert_eq!(
            remote_lines(long.as_bytes(), 11),
            [format!("{}\n", "é".repeat(5))]
        );
        // Invalid UTF-8 triples in size when cleaned: the cut holds after it.
        let bad = [0xffu8; 1000];
        assert_eq!(remote_lines(&bad, 100)[0].len(), 99 + 1);
        // Packed into items of about 8 KiB, in order, nothing lost.
        let lines: Vec<String> = (0..1000).map(|n| format!("line {n:04}\n")).collect();
        let items = pack(lines.clone());
        assert!(items.len() > 1 && items.iter().all(|i| i.len() <= ITEM_BYTES));
        assert_eq!(items.concat(), lines.concat().into_bytes());
        assert_eq!(
            remote_names(b"alice\nbad name\n\n/x\nbob"),
            ["alice", "bob"]
        );
        assert_eq!(
            remote_host("pi-07\x1b]0;x\x07"),
            "pi-07\u{fffd}]0;x\u{fffd}"
        );
        assert_eq!(remote_host(""), "?");
        assert_eq!(remote_host(&"h".repeat(100)).len(), 64);
    }

    #[test]
    fn who_counts_the_other_hubs_heard_lately() {
        let (link, _) = link();
        let now = Instant::now();
        assert_eq!(link.who_elsewhere(now), None);
        assert!(link.heard_from("a1", "pi-07", Some(5), now));
        assert!(!link.heard_from("a1", "pi-07", Some(3), now));
        assert!(link.heard_from("b2", "pi-09", None, now));
        assert_eq!(
            link.who_elsewhere(now).unwrap(),
            "*** and 3 more on 2 other hubs: pi-07 (3), pi-09 (0)\n"
        );
        assert_eq!(link.gone("b2"), Some(0));
        assert_eq!(
            link.who_elsewhere(now).unwrap(),
            "*** and 3 more on 1 other hub: pi-07 (3)\n"
        );
        assert_eq!(link.who_elsewhere(now + FORGET_AFTER), None);
    }
}
