//! The window onto the running services: what each one publishes about
//! itself for the web page (and its API) to read, so that the page imports
//! no service and reaches into none. The daemon makes one [`Observatory`];
//! each service gets its own [`Window`] at bind, beside its counters, and
//! writes to it: its open connections ([`Visit`], dropped when one closes,
//! with the reason), its recent activity, the chat's room, the announcements
//! heard, and a [`Door`] through which the web's chat box joins the room;
//! and the [`teacher`]'s blocks, which every service's gate reads.
//!
//! Everything kept is bounded by `[web]`'s sizes (rings: the oldest goes).
//! What a service records for every message it serves (an answered JSON
//! value, an echoed datagram) it records only while a page is open
//! ([`Window::watched`], one atomic load); rare things (errors, refusals,
//! connections, the room's lines, which the page shows from before it
//! opened) it keeps always. Answers are shown at most 50 a second per
//! service ([`Window::shows_more`]), and errors and refusals 50 more
//! ([`Window::shows_problem`]), so a flood costs a few and answers never
//! hide a problem.
//!
//! A little over 600 lines: the one seam every service writes and the page
//! reads; what can live apart already does (`conns`, `rates`, `shown`,
//! `status`, `transcript`, [`teacher`]).

mod conns;
pub mod metrics;
mod rates;
pub mod shown;
pub mod status;
pub mod teacher;
pub mod transcript;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::config::Config;
use crate::stats::{ServiceStats, Stats};
use conns::Conns;
pub use conns::{ConnView, Seen, Visit};
use rates::Rates;
pub use rates::SAMPLE_EVERY;
pub use shown::Shown;
use teacher::Teacher;
use transcript::Transcript;

/// Events shown a second per service, at most: a flood (of refused
/// datagrams, of answered ones while a page is open) costs a few.
const SHOWN_A_SECOND: u64 = 50;

/// The most announcers remembered as heard.
const HEARD_MAX: usize = 256;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// How much every window keeps: `[web]`'s sizes.
#[derive(Debug)]
pub struct Sizes {
    /// Lines of the chat room.
    pub history: AtomicUsize,
    /// Events of each service's activity.
    pub activity: AtomicUsize,
    /// Recently closed connections of each service.
    pub closed: AtomicUsize,
}

/// What every window shares: the sizes and whether a page is open.
#[derive(Debug)]
struct Shared {
    sizes: Sizes,
    /// Pages (live streams) open now.
    watchers: AtomicUsize,
    /// The teacher's blocks and actions, which every service's gate reads.
    teacher: Teacher,
}

/// Every service's window, the config as loaded, and where each listens.
pub struct Observatory {
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    windows: Mutex<BTreeMap<&'static str, Arc<Window>>>,
    config: Mutex<Arc<Config>>,
    addrs: Mutex<BTreeMap<&'static str, Vec<SocketAddr>>>,
    /// Services that failed and wait to be restarted, and why.
    failing: Mutex<BTreeMap<&'static str, String>>,
    /// Services whose table, as last reloaded, could not be bound, and why.
    unapplied: Mutex<BTreeMap<&'static str, String>>,
    rates: Rates,
    started: SystemTime,
}

impl Observatory {
    pub fn new(stats: Arc<Stats>, config: &Config) -> Self {
        let web = &config.web;
        Self {
            shared: Arc::new(Shared {
                sizes: Sizes {
                    history: AtomicUsize::new(web.history as usize),
                    activity: AtomicUsize::new(web.activity as usize),
                    closed: AtomicUsize::new(web.closed as usize),
                },
                watchers: AtomicUsize::new(0),
                teacher: Teacher::default(),
            }),
            stats,
            windows: Mutex::default(),
            config: Mutex::new(Arc::new(config.clone())),
            addrs: Mutex::default(),
            failing: Mutex::default(),
            unapplied: Mutex::default(),
            rates: Rates::default(),
            started: SystemTime::now(),
        }
    }

    /// The window of the service named `name`, made on first use: a
    /// restarted service goes on showing what it showed.
    pub fn window(&self, name: &'static str) -> Arc<Window> {
        lock(&self.windows)
            .entry(name)
            .or_insert_with(|| {
                Arc::new(Window {
                    name,
                    stats: self.stats.service(name),
                    shared: self.shared.clone(),
                    changes: AtomicU64::new(0),
                    conns: Mutex::default(),
                    activity: Mutex::default(),
                    room: Mutex::default(),
                    room_lines: AtomicU64::new(0),
                    heard: Mutex::default(),
                    door: Mutex::default(),
                    moderator: Mutex::default(),
                    transcript: Transcript::default(),
                    bridge: Mutex::default(),
                    ordinary_budget: AtomicU64::new(0),
                    problem_budget: AtomicU64::new(0),
                })
            })
            .clone()
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// The config the daemon runs now (set at start and by every reload).
    pub fn config(&self) -> Arc<Config> {
        lock(&self.config).clone()
    }

    pub fn set_config(&self, config: &Config) {
        let web = &config.web;
        let sizes = &self.shared.sizes;
        sizes.history.store(web.history as usize, Relaxed);
        sizes.activity.store(web.activity as usize, Relaxed);
        sizes.closed.store(web.closed as usize, Relaxed);
        *lock(&self.config) = Arc::new(config.clone());
    }

    /// Where `service` listens now; [] when it does not run.
    pub fn addrs(&self, service: &str) -> Vec<SocketAddr> {
        lock(&self.addrs).get(service).cloned().unwrap_or_default()
    }

    pub fn set_addrs(&self, service: &'static str, addrs: &[SocketAddr]) {
        lock(&self.addrs).insert(service, addrs.to_vec());
    }

    /// `service` failed and waits to be restarted (why), or runs again (None).
    pub fn set_failing(&self, service: &'static str, why: Option<String>) {
        let mut failing = lock(&self.failing);
        match why {
            Some(why) => failing.insert(service, why),
            None => failing.remove(service),
        };
    }

    /// `service`'s reloaded table could not be bound (why), or now is.
    pub fn set_unapplied(&self, service: &'static str, why: Option<String>) {
        let mut unapplied = lock(&self.unapplied);
        match why {
            Some(why) => unapplied.insert(service, why),
            None => unapplied.remove(service),
        };
    }

    /// Why `service` does not run as its table says, if it does not:
    /// failing and waiting to restart, or its reloaded table not bound.
    pub fn problem(&self, service: &str) -> Option<String> {
        let failing = lock(&self.failing).get(service).cloned();
        failing.or_else(|| lock(&self.unapplied).get(service).cloned())
    }

    /// Every service failing now, and why.
    pub fn failing(&self) -> Vec<(&'static str, String)> {
        let failing = lock(&self.failing);
        failing.iter().map(|(n, w)| (*n, w.clone())).collect()
    }

    /// Every service whose table enables it and that does not run (not
    /// bound, or failing and waiting to restart), and every one that could
    /// not take its reloaded table, each in words; empty when all run as
    /// configured. `/healthz` and `pinetd status` answer by it.
    pub fn reasons(&self) -> Vec<String> {
        let config = self.config();
        let mut failing = self.failing();
        failing.extend(lock(&self.unapplied).iter().map(|(n, w)| (*n, w.clone())));
        let not_running = (config.tables().into_iter())
            .filter(|table| table.enabled())
            .map(|table| table.name())
            .filter(|name| !failing.iter().any(|(n, _)| n == name))
            .filter(|name| !self.stats.service(name).running.load(Relaxed))
            .map(|name| format!("{name} is not running"));
        let failing = (failing.iter()).map(|(name, why)| format!("{name} {why}"));
        not_running.chain(failing).collect()
    }

    /// The sampling interval and the messages a second of `service` over
    /// the last minutes, oldest first.
    pub fn rates(&self, service: &str) -> (Duration, Vec<f64>) {
        self.rates.of(service)
    }

    /// Samples every service's rate, `elapsed` after the last sample.
    pub fn sample_rates(&self, elapsed: Duration) {
        let names: Vec<&'static str> = (self.config().tables().into_iter())
            .map(|table| table.name())
            .collect();
        self.rates.sample(&self.stats, &names, elapsed);
    }

    /// A page opened: the services record everything until it closes.
    pub fn watch(&self) -> Watching {
        self.shared.watchers.fetch_add(1, Relaxed);
        Watching(self.shared.clone())
    }

    /// The teacher's blocks, actions and refusals.
    pub fn teacher(&self) -> &Teacher {
        &self.shared.teacher
    }

    /// Pages open now.
    pub fn watchers(&self) -> usize {
        self.shared.watchers.load(Relaxed)
    }

    /// A number that changes whenever some window does: a page's stream
    /// sends an update only when it has moved.
    pub fn changes(&self) -> u64 {
        let windows = lock(&self.windows);
        let changes: u64 = windows.values().map(|w| w.changes.load(Relaxed)).sum();
        let stats: u64 = windows
            .values()
            .map(|w| w.stats.messages.load(Relaxed) + w.stats.refused_total())
            .sum();
        (changes.wrapping_add(stats)).wrapping_add(self.shared.teacher.changes())
    }
}

/// Takes one from `budget` (the second now in its high bits, what was
/// taken in it in the low ones); false when this second's are all taken.
fn spend(budget: &AtomicU64) -> bool {
    let second = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let taken = budget.load(Relaxed);
    if taken >> 16 != second {
        budget.store(second << 16 | 1, Relaxed);
        return true;
    }
    if taken & 0xffff >= SHOWN_A_SECOND {
        return false;
    }
    budget.fetch_add(1, Relaxed);
    true
}

/// An open page; dropped when it closes.
pub struct Watching(Arc<Shared>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Relaxed);
    }
}

/// Lets a client in from elsewhere than the service's listeners (the web's
/// chat box), through the same gate as the others.
pub trait Door: Send + Sync {
    /// Serves `stream` as a client from `peer`, or says what a refused
    /// peer is told (and the stream is closed).
    fn enter(&self, stream: TcpStream, peer: SocketAddr) -> Result<(), Bytes>;
}

/// The teacher's hand on the chat room: the chat service sets it in its
/// window ([`Window::set_moderator`]), the web service's teacher actions use
/// it. `id` is a connection's id as the window shows it ([`ConnView::id`]).
/// Each answers why not when it cannot (no such client, a name taken).
pub trait Moderator: Send + Sync {
    /// Tells client `id` `*** removed by the teacher` and closes it; the
    /// lines it sent before are relayed first, as for any close.
    fn kick(&self, id: u64) -> Result<(), String>;
    /// Refuses client `id`'s lines, each with a notice, for `time`; it
    /// stays and reads. `Duration::ZERO` lifts a mute.
    fn mute(&self, id: u64, time: Duration) -> Result<(), String>;
    /// Renames client `id` to `name`, told to it and to the room; its old
    /// name.
    fn rename(&self, id: u64, name: &str) -> Result<String, String>;
    /// Says `text` to the whole room (and across the bridge) as
    /// `*** teacher: text`.
    fn say(&self, text: &str) -> Result<(), String>;
}

/// One service's window.
pub struct Window {
    pub name: &'static str,
    pub stats: Arc<ServiceStats>,
    shared: Arc<Shared>,
    changes: AtomicU64,
    conns: Mutex<Conns>,
    activity: Mutex<Ring<Activity>>,
    room: Mutex<Ring<RoomLine>>,
    /// Lines the room has said, ever (how far behind a member is).
    room_lines: AtomicU64,
    heard: Mutex<BTreeMap<String, Heard>>,
    door: Mutex<Option<Arc<dyn Door>>>,
    moderator: Mutex<Option<Arc<dyn Moderator>>>,
    /// What the room heard, written to disk (the chat's, when configured).
    pub transcript: Transcript,
    bridge: Mutex<Option<serde_json::Value>>,
    /// The second now (high bits) and the answers shown in it.
    ordinary_budget: AtomicU64,
    /// The same, for errors and refusals.
    problem_budget: AtomicU64,
}

/// A bounded queue: the newest `max`, each numbered.
struct Ring<T> {
    items: VecDeque<T>,
    next: u64,
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            next: 1,
        }
    }
}

impl<T> Ring<T> {
    /// Adds `make(seq)`, keeping at most `max`.
    fn push(&mut self, max: usize, make: impl FnOnce(u64) -> T) {
        while self.items.len() >= max.max(1) {
            self.items.pop_front();
        }
        if max > 0 {
            self.items.push_back(make(self.next));
        }
        self.next += 1;
    }

    /// The newest `limit`, oldest first.
    fn last(&self, limit: usize) -> impl Iterator<Item = &T> {
        self.items
            .iter()
            .skip(self.items.len().saturating_sub(limit))
    }
}

/// What a service did, for the page, numbered and timed.
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub seq: u64,
    #[serde(skip)]
    pub at: SystemTime,
    #[serde(flatten)]
    pub event: Event,
}

/// Where a JSON value went wrong, as the client counts (1-based).
#[derive(Debug, Clone, Serialize)]
pub struct ErrorAt {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// What a service did: an exchange, an error, a refusal.
/// [`Window::record`] numbers and times it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Event {
    pub peer: Option<SocketAddr>,
    pub kind: &'static str,
    pub input: Option<Shown>,
    pub output: Option<Shown>,
    pub reason: Option<String>,
    pub error: Option<ErrorAt>,
}

/// One item the chat room said (one or more lines, as its clients got them).
#[derive(Debug, Clone)]
pub struct RoomLine {
    pub seq: u64,
    pub at: SystemTime,
    /// The hub's own words (notices, other hubs) rather than a client's.
    pub notice: bool,
    /// The client who said them, by its name then.
    pub name: Option<String>,
    pub lines: Bytes,
}

/// An announcer heard.
#[derive(Debug, Clone)]
pub struct Heard {
    pub from: SocketAddr,
    pub text: Bytes,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    /// Forgotten then, unless heard again.
    pub expires: SystemTime,
    pub count: u64,
}

impl Window {
    /// A page is open: record everything.
    pub fn watched(&self) -> bool {
        self.shared.watchers.load(Relaxed) > 0
    }

    /// The teacher's blocks: the service's gate asks them.
    pub fn teacher(&self) -> &Teacher {
        &self.shared.teacher
    }

    /// Whether one more ordinary event (an answer) may be shown now: at
    /// most [`SHOWN_A_SECOND`] a second.
    pub fn shows_more(&self) -> bool {
        spend(&self.ordinary_budget)
    }

    /// Whether one more problem (an error, a refusal) may be shown now: at
    /// most [`SHOWN_A_SECOND`] a second, whatever the answers took.
    pub fn shows_problem(&self) -> bool {
        spend(&self.problem_budget)
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Relaxed);
    }

    /// Keeps `event` in the activity ring.
    pub fn record(&self, event: Event) {
        let max = self.shared.sizes.activity.load(Relaxed);
        lock(&self.activity).push(max, |seq| Activity {
            seq,
            at: SystemTime::now(),
            event,
        });
        self.changed();
    }

    /// The newest `limit` events, oldest first.
    pub fn activity(&self, limit: usize) -> Vec<Activity> {
        lock(&self.activity).last(limit).cloned().collect()
    }

    /// The room said `lines`, its lines numbered `first` on (`count` of
    /// them): the client numbered `speaker` (see [`Window::arrived`]), or
    /// the hub itself. A room made anew (the chat rebound) numbers from 0.
    pub fn said(&self, lines: &Bytes, first: u64, count: u64, speaker: Option<u64>) {
        let max = self.shared.sizes.history.load(Relaxed);
        self.room_lines.store(first + count, Relaxed);
        let at = SystemTime::now();
        let (addr, name) = match speaker.and_then(|id| self.speaker(id)) {
            Some((addr, name)) => (Some(addr), name),
            None => (None, None),
        };
        if self.transcript.on() {
            self.transcript.said(at, addr, name.clone(), lines);
        }
        lock(&self.room).push(max, |seq| RoomLine {
            seq,
            at,
            notice: speaker.is_none(),
            name,
            lines: lines.clone(),
        });
        self.changed();
    }

    /// Lines the room has said, ever.
    pub fn room_lines(&self) -> u64 {
        self.room_lines.load(Relaxed)
    }

    /// The newest `limit` items of the room, oldest first.
    pub fn room(&self, limit: usize) -> Vec<RoomLine> {
        lock(&self.room).last(limit).cloned().collect()
    }

    /// An announcement from `from` was heard: of the daemon `who` (its
    /// instance, or its address), good for `ttl`.
    pub fn heard(&self, who: &str, from: SocketAddr, text: &[u8], ttl: Duration) {
        let now = SystemTime::now();
        let mut heard = lock(&self.heard);
        heard.retain(|_, h| h.expires > now);
        if let Some(known) = heard.get_mut(who) {
            known.from = from;
            known.last_seen = now;
            known.expires = now + ttl;
            known.count += 1;
            if known.text != text {
                known.text = Bytes::copy_from_slice(text);
            }
        } else if heard.len() < HEARD_MAX {
            let heard_now = Heard {
                from,
                text: Bytes::copy_from_slice(text),
                first_seen: now,
                last_seen: now,
                expires: now + ttl,
                count: 1,
            };
            heard.insert(who.to_owned(), heard_now);
        }
        drop(heard);
        self.changed();
    }

    /// Every announcer heard and not expired.
    pub fn heard_all(&self) -> Vec<Heard> {
        let now = SystemTime::now();
        (lock(&self.heard).values())
            .filter(|h| h.expires > now)
            .cloned()
            .collect()
    }

    pub fn set_door(&self, door: Arc<dyn Door>) {
        *lock(&self.door) = Some(door);
    }

    pub fn door(&self) -> Option<Arc<dyn Door>> {
        lock(&self.door).clone()
    }

    /// The chat sets how the teacher acts on its room.
    pub fn set_moderator(&self, moderator: Arc<dyn Moderator>) {
        *lock(&self.moderator) = Some(moderator);
    }

    /// How the teacher acts on the room, once the chat has set it.
    pub fn moderator(&self) -> Option<Arc<dyn Moderator>> {
        lock(&self.moderator).clone()
    }

    /// What the service says of its links elsewhere (the chat's bridge).
    pub fn set_bridge(&self, bridge: Option<serde_json::Value>) {
        *lock(&self.bridge) = bridge;
        self.changed();
    }

    pub fn bridge(&self) -> Option<serde_json::Value> {
        lock(&self.bridge).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(history: u32, closed: u32) -> Arc<Window> {
        let mut config = Config::default();
        config.web.history = history;
        config.web.closed = closed;
        Observatory::new(Arc::default(), &config).window("chat")
    }

    #[test]
    fn a_visit_moves_to_the_closed_with_its_reason_and_the_closed_are_bounded() {
        let window = window(10, 2);
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        for reason in ["said bye", "reset", "write timeout"] {
            let mut visit = window.arrived(addr, None);
            visit.set_name("kim");
            visit.seen().said.fetch_add(2, Relaxed);
            assert_eq!(window.open_count(), 1);
            visit.end(reason);
        }
        assert_eq!(window.open_count(), 0);
        let closed = window.closed();
        let reasons: Vec<_> = closed.iter().map(|c| c.reason).collect();
        assert_eq!(reasons, [Some("write timeout"), Some("reset")]);
        assert_eq!(closed[0].name.as_deref(), Some("kim"));
        assert_eq!(closed[0].said, 2);
    }

    #[test]
    fn the_room_keeps_its_last_lines_and_a_member_knows_how_far_behind_it_is() {
        let window = window(2, 10);
        let visit = window.arrived("127.0.0.1:1".parse().unwrap(), Some(7));
        let mut first = 0;
        for line in ["a\n", "b\nc\n", "d\n"] {
            let count = line.matches('\n').count() as u64;
            window.said(&Bytes::from(line), first, count, Some(7));
            first += count;
        }
        let room: Vec<_> = window.room(10).iter().map(|l| l.lines.clone()).collect();
        assert_eq!(room, [Bytes::from("b\nc\n"), Bytes::from("d\n")]);
        assert_eq!(window.room(10)[1].seq, 3);
        visit.seen().heard.store(2, Relaxed);
        let open = window.open();
        assert_eq!((open[0].id, open[0].behind), (7, 2));
    }
}
