//! A service's connections as the page sees them: each open one (a
//! [`Visit`], which its service keeps up to date and drops when it
//! closes) and the recently closed, with the reason.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{Event, Window, lock};

/// A refusal joins one of this many latest closed of its address.
const TURNED_AWAY_LOOK: usize = 8;

#[derive(Default)]
pub(super) struct Conns {
    open: BTreeMap<u64, Arc<Seen>>,
    closed: VecDeque<Closed>,
    next_id: u64,
}

impl Conns {
    /// Keeps `view` first among the closed, at most `max` of them.
    fn close(&mut self, view: ConnView, max: usize) {
        while self.closed.len() >= max.max(1) {
            self.closed.pop_back();
        }
        if max > 0 {
            self.closed.push_front(Closed { view });
        }
    }
}

/// One open connection, as its service keeps it up to date.
#[derive(Debug)]
pub struct Seen {
    pub id: u64,
    pub addr: SocketAddr,
    pub since: SystemTime,
    name: Mutex<Option<String>>,
    /// Lines said (chat) or values answered (JSON echo).
    pub said: AtomicU64,
    /// Chat lines it skipped for falling behind.
    pub skipped: AtomicU64,
    /// The number of the room's next line it is to get.
    pub heard: AtomicU64,
    /// JSON errors.
    pub errors: AtomicU64,
}

/// A connection as a page sees it: open (`closed_at` None) or closed.
#[derive(Debug, Clone)]
pub struct ConnView {
    pub id: u64,
    pub addr: SocketAddr,
    pub name: Option<String>,
    pub since: SystemTime,
    pub said: u64,
    pub skipped: u64,
    pub behind: u64,
    pub errors: u64,
    pub closed_at: Option<SystemTime>,
    pub reason: Option<&'static str>,
}

pub(super) struct Closed {
    view: ConnView,
}

/// An open connection in its service's window; when it is dropped, the
/// connection moves to the recently closed, with the reason set last.
pub struct Visit {
    seen: Arc<Seen>,
    window: Arc<Window>,
    reason: &'static str,
}

impl Visit {
    pub fn seen(&self) -> &Seen {
        &self.seen
    }

    pub fn set_name(&self, name: &str) {
        *lock(&self.seen.name) = Some(name.to_owned());
        self.window.changed();
    }

    /// A page is open: record everything (within [`Visit::shows_more`]).
    pub fn watched(&self) -> bool {
        self.window.watched()
    }

    /// One more answer may be shown now ([`Window::shows_more`]).
    pub fn shows_more(&self) -> bool {
        self.window.shows_more()
    }

    /// One more error may be shown now ([`Window::shows_problem`]).
    pub fn shows_problem(&self) -> bool {
        self.window.shows_problem()
    }

    /// Keeps `event` in its service's activity.
    pub fn record(&self, event: Event) {
        self.window.record(event);
    }

    /// Why it closed, for the page.
    pub fn end(&mut self, reason: &'static str) {
        self.reason = reason;
    }
}

impl Drop for Visit {
    fn drop(&mut self) {
        let window = &self.window;
        let mut view = window.view(&self.seen);
        view.closed_at = Some(SystemTime::now());
        view.reason = Some(self.reason);
        let max = window.shared.sizes.closed.load(Relaxed);
        let mut conns = lock(&window.conns);
        conns.open.remove(&self.seen.id);
        conns.close(view, max);
        drop(conns);
        window.changed();
    }
}

impl Window {
    /// A connection from `addr` opened; `id` is the service's own number
    /// for it, if it has one (the chat's, which its room lines carry).
    pub fn arrived(self: &Arc<Self>, addr: SocketAddr, id: Option<u64>) -> Visit {
        let mut conns = lock(&self.conns);
        conns.next_id += 1;
        let seen = Arc::new(Seen {
            id: id.unwrap_or(conns.next_id),
            addr,
            since: SystemTime::now(),
            name: Mutex::new(None),
            said: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            heard: AtomicU64::new(self.room_lines.load(Relaxed)),
            errors: AtomicU64::new(0),
        });
        conns.open.insert(seen.id, seen.clone());
        drop(conns);
        self.changed();
        Visit {
            seen,
            window: self.clone(),
            reason: "closed",
        }
    }

    fn view(&self, seen: &Seen) -> ConnView {
        let room = self.room_lines.load(Relaxed);
        ConnView {
            id: seen.id,
            addr: seen.addr,
            name: lock(&seen.name).clone(),
            since: seen.since,
            said: seen.said.load(Relaxed),
            skipped: seen.skipped.load(Relaxed),
            behind: room.saturating_sub(seen.heard.load(Relaxed)),
            errors: seen.errors.load(Relaxed),
            closed_at: None,
            reason: None,
        }
    }

    /// A connection from `addr` refused at once (why), among the closed:
    /// one entry per address and reason among the latest, its time the
    /// last refusal's, so a reconnecting loop pushes out nobody else.
    pub fn turned_away(&self, addr: SocketAddr, why: &'static str) {
        let now = SystemTime::now();
        let max = self.shared.sizes.closed.load(Relaxed);
        let mut conns = lock(&self.conns);
        let again = (conns.closed.iter_mut().take(TURNED_AWAY_LOOK))
            .find(|c| c.view.addr.ip() == addr.ip() && c.view.reason == Some(why));
        if let Some(again) = again {
            again.view.addr = addr;
            again.view.closed_at = Some(now);
            again.view.errors += 1;
        } else {
            conns.next_id += 1;
            let view = ConnView {
                id: conns.next_id,
                addr,
                name: None,
                since: now,
                said: 0,
                skipped: 0,
                behind: 0,
                errors: 1,
                closed_at: Some(now),
                reason: Some(why),
            };
            conns.close(view, max);
        }
        drop(conns);
        self.changed();
    }

    /// The address and name (if it has one) of the open connection
    /// numbered `id`.
    pub(super) fn speaker(&self, id: u64) -> Option<(SocketAddr, Option<String>)> {
        let seen = lock(&self.conns).open.get(&id).cloned()?;
        let name = lock(&seen.name).clone();
        Some((seen.addr, name))
    }

    /// The open connections, in the order of their ids, and how many.
    pub fn open(&self) -> Vec<ConnView> {
        let seen: Vec<Arc<Seen>> = lock(&self.conns).open.values().cloned().collect();
        seen.iter().map(|s| self.view(s)).collect()
    }

    /// `limit` open connections from the `offset`th, in the order they
    /// came (of their ids), without looking at the others.
    pub fn open_range(&self, offset: usize, limit: usize) -> Vec<ConnView> {
        let seen: Vec<Arc<Seen>> = (lock(&self.conns).open.values())
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        seen.iter().map(|s| self.view(s)).collect()
    }

    /// How many are open, without looking at each.
    pub fn open_count(&self) -> usize {
        lock(&self.conns).open.len()
    }

    /// The recently closed, newest first.
    pub fn closed(&self) -> Vec<ConnView> {
        lock(&self.conns)
            .closed
            .iter()
            .map(|c| c.view.clone())
            .collect()
    }
}
