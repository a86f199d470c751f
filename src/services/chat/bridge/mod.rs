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
//! characters before a client sees it ([`remote`]); the NATS side is
//! [`nats`], behind the cargo feature `bridge`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::notices;
use crate::config::ChatConfig;
use crate::stats::{Refusal, ServiceStats};

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
    outbox: Mutex<Outbox>,
    ready: Notify,
    others: Mutex<HashMap<String, Other>>,
    stats: Arc<ServiceStats>,
}

#[derive(Default)]
struct Outbox {
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
            outbox: Mutex::default(),
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
            let dropped = std::mem::take(&mut *self.outbox());
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
            let mut outbox = self.outbox();
            if outbox.bytes + cost > QUEUE_BYTES {
                drop(outbox);
                return self.not_bridged(item.lines());
            }
            outbox.bytes += cost;
            outbox.items.push_back(item);
        }
        self.wake();
    }

    /// The next item to publish, if any.
    pub fn take(&self) -> Option<Outgoing> {
        let mut outbox = self.outbox();
        let item = outbox.items.pop_front()?;
        outbox.bytes -= item.cost();
        Some(item)
    }

    pub fn has_items(&self) -> bool {
        !self.outbox().items.is_empty()
    }

    /// Drops everything queued, counting it as not bridged (NATS stopped taking it).
    pub fn drop_queued(&self) {
        let dropped = std::mem::take(&mut *self.outbox());
        self.not_bridged(dropped.items.iter().map(Outgoing::lines).sum());
    }

    /// Wakes when an item may be waiting.
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Items may be waiting: the next [`Link::ready`] returns at once.
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    pub fn not_bridged(&self, lines: u64) {
        self.stats.not_bridged.fetch_add(lines, Relaxed);
    }

    /// A message published to NATS.
    pub fn sent(&self) {
        self.stats.bridge_sent.fetch_add(1, Relaxed);
    }

    /// A message from another hub taken from NATS (refused or not).
    pub fn received(&self) {
        self.stats.bridge_received.fetch_add(1, Relaxed);
    }

    /// Lines not bridged, ever.
    pub fn not_bridged_total(&self) -> u64 {
        self.stats.not_bridged.load(Relaxed)
    }

    /// A message from NATS refused, for this reason.
    pub fn refuse(&self, reason: Refusal) {
        self.stats.refuse(reason);
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
        let mut hubs: Vec<(&str, u64)> = (others.values())
            .map(|o| (o.host.as_str(), o.online))
            .collect();
        hubs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        Some(notices::elsewhere(&hubs))
    }

    /// What the web page shows of the bridge to `url` (its passwords left
    /// out): its state, what it could not pass on, the other hubs.
    pub fn view(&self, url: &str, subject: &str, now: Instant) -> serde_json::Value {
        let servers: Vec<String> = url
            .split(',')
            .map(|server| match server.split_once("://") {
                Some((scheme, rest)) => {
                    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                    format!("{scheme}://{host}")
                }
                None => server
                    .rsplit_once('@')
                    .map_or(server, |(_, h)| h)
                    .to_owned(),
            })
            .collect();
        let state = self.state();
        let mut others = self.others();
        forget_old(&mut others, now);
        let mut hubs: Vec<(&str, u64)> = (others.values())
            .map(|o| (o.host.as_str(), o.online))
            .collect();
        hubs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let hubs: Vec<serde_json::Value> = hubs
            .iter()
            .map(|(host, clients)| serde_json::json!({ "host": host, "clients": clients }))
            .collect();
        serde_json::json!({
            "url": servers.join(","),
            "subject": subject,
            "state": format!("{state:?}").to_lowercase(),
            "connected": state == State::Up,
            "not_bridged": self.not_bridged_total(),
            "hubs": hubs,
        })
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Gives `lines` (each ending in `\n`) to every local client, kept
    /// in the room's history: what the other hubs' clients said.
    fn hear(&self, lines: Bytes);
    /// The same for the hub's notices of the other hubs (joins, leaves,
    /// renames), not kept in the history.
    fn hear_notice(&self, lines: Bytes);
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
    pub fn of(config: &ChatConfig) -> Self {
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

#[cfg(feature = "bridge")]
mod nats;
mod remote;

#[cfg(feature = "bridge")]
pub use nats::run;
pub use remote::{MAX_PAYLOAD, PREFIX_ROOM, pack, remote_host, remote_lines, remote_names};

/// Without the `bridge` feature a bridge_url is refused by the config, so
/// the bridge never runs.
#[cfg(not(feature = "bridge"))]
pub async fn run(
    _link: Arc<Link>,
    _settings: tokio::sync::watch::Receiver<Arc<ChatConfig>>,
    _room: Arc<dyn Room>,
    _info: Arc<crate::describe::SelfInfo>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    shutdown.cancelled().await
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
    fn the_page_sees_the_other_hubs_and_never_a_password() {
        let (link, _) = link();
        let now = Instant::now();
        link.heard_from("a1", "pi-07", Some(5), now);
        let view = link.view(
            "nats://kim:secret@10.0.0.1:4222,nats://10.0.0.2:4222",
            "room",
            now,
        );
        assert_eq!(view["url"], "nats://10.0.0.1:4222,nats://10.0.0.2:4222");
        assert_eq!(view["hubs"][0]["host"], "pi-07");
        assert_eq!(view["hubs"][0]["clients"], 5);
        assert_eq!(view["connected"], false);
        assert!(!view.to_string().contains("secret"));
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
