//! The room, with no I/O: who is in it, what it says (one
//! `tokio::sync::broadcast` channel, one send per message, a shared buffer
//! never copied per receiver), the joins and leaves still to be told, and
//! the pace of its senders. Every client's task holds it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;

use super::bridge::{Link, Outgoing, Room, State};
use super::notices;
use super::pace::Pace;
use crate::chatline::bad_name;
use crate::config::ChatConfig;
use crate::observe::Window;
use crate::stats::ServiceStats;

/// A join is told this long after the client connects, or at its first
/// words if sooner: a client that names itself at once (`pinetd chat
/// --name`, a course client's `[name] ...`) joins under that name.
pub const JOIN_GRACE: Duration = Duration::from_millis(500);

/// Who said an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaker {
    /// The hub: notices, and what the other hubs say.
    Hub,
    /// The client with this id, which skips its own unless `echo_self`.
    Client(u64),
}

/// One message in the channel: the lines, formatted, and who sent them.
#[derive(Clone, Debug)]
pub struct Item {
    pub from: Speaker,
    pub lines: Bytes,
    /// How many lines the room said before these, and how many these are:
    /// a client that skips items knows how many lines it missed.
    pub first: u64,
    pub count: u64,
    /// For a notice of joins: who joined, so none is told of itself.
    pub joined: Option<Arc<Joined>>,
}

/// The joins of a notice, for those who joined: each hears the others.
#[derive(Debug)]
pub struct Joined {
    ids: Vec<u64>,
    names: Vec<String>,
    /// The notice's line of leaves, if any.
    left: String,
}

impl Joined {
    /// The notice as client `id` hears it: None if it is not one who joined.
    pub fn told_to(&self, id: u64) -> Option<Bytes> {
        let me = self.ids.iter().position(|&joined| joined == id)?;
        let others: Vec<String> = (self.names.iter().enumerate())
            .filter(|&(i, _)| i != me)
            .map(|(_, name)| name.clone())
            .collect();
        let mut text = String::new();
        if !others.is_empty() {
            text.push_str(&notices::joined(&others));
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
pub struct Hub {
    tx: broadcast::Sender<Item>,
    /// Items sent on `tx`, ever.
    sent: AtomicU64,
    /// Lines sent on `tx`, ever, counted in the channel's order.
    said: Mutex<u64>,
    pub pace: Pace,
    names: Mutex<HashSet<String>>,
    next_id: AtomicU64,
    /// Counts the service's runs: a client of an earlier run (aborted when
    /// it failed) leaves without a notice to the room of this one.
    run: AtomicU64,
    /// Joins and leaves not told yet; at most two per client.
    pending: Mutex<Pending>,
    notice: Notify,
    pub stats: Arc<ServiceStats>,
    /// What the room says, for the other hubs (when bridged).
    pub link: Arc<Link>,
    /// The `[chat]` table as the last reload left it.
    pub settings: watch::Receiver<Arc<ChatConfig>>,
    /// What the web page sees: the room's lines and its members.
    pub window: Arc<Window>,
}

impl Hub {
    /// A room whose channel holds `queue` items.
    pub fn new(
        queue: usize,
        stats: Arc<ServiceStats>,
        link: Arc<Link>,
        settings: watch::Receiver<Arc<ChatConfig>>,
        window: Arc<Window>,
    ) -> Self {
        Self {
            tx: broadcast::channel(queue).0,
            sent: AtomicU64::new(0),
            said: Mutex::new(0),
            pace: Pace::new(queue),
            names: Mutex::new(HashSet::new()),
            next_id: AtomicU64::new(1),
            run: AtomicU64::new(0),
            pending: Mutex::default(),
            notice: Notify::new(),
            stats,
            link,
            settings,
            window,
        }
    }

    fn names(&self) -> MutexGuard<'_, HashSet<String>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Clients in the room now.
    pub fn online(&self) -> usize {
        self.names().len()
    }

    /// The service (re)starts: nothing of a run that failed is told or
    /// bridged, and the senders do not wait for its readers; the names of
    /// its clients go as their tasks end.
    pub fn begin_run(&self) {
        self.run.fetch_add(1, Relaxed);
        *self.pending() = Pending::default();
        self.link.set_state(State::Off);
        self.pace.reset();
    }

    /// The run a new client joins.
    pub fn run(&self) -> u64 {
        self.run.load(Relaxed)
    }

    /// A new client's id and default name; its join is told after
    /// [`JOIN_GRACE`], or sooner if it speaks.
    pub fn join(&self) -> (u64, String) {
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
                self.pending().joined.push(join);
                self.notice.notify_one();
                return (id, name);
            }
        }
    }

    /// Client `id`, of `run`, leaves: the room is told, unless its join was
    /// not told yet (then neither is) or it was a client of an earlier run.
    pub fn leave(&self, id: u64, name: &str, run: u64) {
        self.names().remove(name);
        if run != self.run() {
            return;
        }
        let mut pending = self.pending();
        let before = pending.joined.len();
        pending.joined.retain(|j| j.id != id);
        if pending.joined.len() == before {
            pending.left.push(name.to_owned());
            drop(pending);
            self.notice.notify_one();
        }
    }

    /// Takes `new` for the client called `old`; why not, if it cannot.
    pub fn rename(&self, old: &str, new: &str) -> Result<(), String> {
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

    /// Client `id` took the name `new`: true if its join is still to be
    /// told, and is now told under that name (the room hears no rename).
    pub fn renamed_before_told(&self, id: u64, new: &str) -> bool {
        let mut pending = self.pending();
        match pending.joined.iter_mut().find(|j| j.id == id) {
            Some(join) => {
                join.name = new.to_owned();
                true
            }
            None => false,
        }
    }

    pub fn send(&self, from: Speaker, lines: impl Into<Bytes>) {
        self.send_item(from, lines.into(), None);
    }

    fn send_item(&self, from: Speaker, lines: Bytes, joined: Option<Arc<Joined>>) {
        let count = memchr::memchr_iter(b'\n', &lines).count() as u64;
        self.sent.fetch_add(1, Relaxed);
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        let first = *said;
        *said += count;
        // In the channel's order: the page's room is the clients' room.
        let speaker = match from {
            Speaker::Hub => None,
            Speaker::Client(id) => Some(id),
        };
        self.window.said(&lines, first, count, speaker);
        let own = matches!(from, Speaker::Client(_)) && !self.settings.borrow().echo_self;
        // An error only means nobody is listening.
        let readers = self.tx.send(Item {
            from,
            lines,
            first,
            count,
            joined,
        });
        // One count a message, not a reader: the readers never touch it.
        let others = readers.map_or(0, |n| n.saturating_sub(usize::from(own)));
        (self.stats.deliveries).fetch_add(count * others as u64, Relaxed);
    }

    /// A new client's place in the room, and the number of the first
    /// line it will hear.
    pub fn subscribe(&self) -> (broadcast::Receiver<Item>, u64) {
        let said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        (self.tx.subscribe(), *said)
    }

    /// Whether senders wait for the slowest reader holding a place.
    pub fn paced(&self) -> bool {
        self.pace.paced(self.sent.load(Relaxed), || self.tx.len())
    }

    /// After a reader took items: the senders may go on.
    pub fn took(&self) {
        self.pace.took(|| self.tx.len());
    }

    /// After a reader let go of its place or left.
    pub fn let_go(&self) {
        self.pace.let_go(|| self.tx.len());
    }

    /// When the next joins or leaves are due to be told.
    pub fn notices_due(&self, now: Instant) -> Option<Instant> {
        self.pending().due(now)
    }

    /// Completes when a join or a leave is noted.
    pub fn noted(&self) -> Notified<'_> {
        self.notice.notified()
    }

    /// Tells the leaves and the joins that are due (and client `now`'s,
    /// due or not) in one item. A joiner is not told of itself.
    pub fn tell_pending(&self, now: Option<u64>) {
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
            left_line = notices::left(&left);
            self.link.offer(Outgoing::Left(left));
        }
        if names.is_empty() {
            return self.send(Speaker::Hub, left_line);
        }
        let text = notices::joined(&names) + &left_line;
        self.link.offer(Outgoing::Joined(names.clone()));
        let joined = Joined {
            ids,
            names,
            left: left_line,
        };
        self.send_item(Speaker::Hub, text.into(), Some(Arc::new(joined)));
    }

    /// Before client `id` first says anything to the others: if its join
    /// is still waiting to be told, tell it now, so nobody hears from a
    /// client before hearing it joined.
    pub fn before_first_words(&self, id: u64) {
        let waiting = self.pending().joined.iter().any(|j| j.id == id);
        if waiting {
            self.tell_pending(Some(id));
        }
    }

    /// The answer to /who.
    pub fn who(&self) -> String {
        let mut names: Vec<String> = self.names().iter().cloned().collect();
        names.sort();
        let mut line = notices::online(&names);
        if let Some(elsewhere) = self.link.who_elsewhere(Instant::now()) {
            line.push_str(&elsewhere);
        }
        line
    }
}

impl Room for Hub {
    fn hear(&self, lines: Bytes) {
        self.send(Speaker::Hub, lines);
    }

    fn paced(&self) -> bool {
        Hub::paced(self)
    }

    fn unpaced(&self) -> Notified<'_> {
        self.pace.changed()
    }

    fn online(&self) -> usize {
        Hub::online(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::observe::Observatory;

    fn hub() -> Hub {
        let stats = Arc::new(ServiceStats::default());
        let settings = watch::channel(Arc::new(ChatConfig::default())).1;
        let window = Observatory::new(Arc::default(), &Config::default()).window("chat");
        Hub::new(
            16,
            stats.clone(),
            Arc::new(Link::new(stats)),
            settings,
            window,
        )
    }

    fn text(item: &Item) -> &str {
        std::str::from_utf8(&item.lines).unwrap()
    }

    #[test]
    fn names_are_unique_and_defaults_skip_taken_ones() {
        let hub = hub();
        assert_eq!(hub.join(), (1, "user1".into()));
        hub.rename("user1", "user2").unwrap();
        assert_eq!(hub.join(), (3, "user3".into()), "user2 was taken by /nick");
        assert_eq!(hub.rename("user3", "user2"), Err("user2 is taken".into()));
        assert_eq!(
            hub.rename("user3", "a b"),
            Err("a name has no spaces and only printable characters".into())
        );
        assert_eq!(hub.online(), 2);
        assert_eq!(hub.who(), "*** online (2): user2, user3\n");
    }

    #[test]
    fn a_join_is_told_at_first_words_under_its_name_and_not_to_itself() {
        let hub = hub();
        let (mut rx, first) = hub.subscribe();
        let (alice, _) = hub.join();
        let (bob, _) = hub.join();
        assert!(hub.renamed_before_told(alice, "alice"));
        hub.before_first_words(alice);
        let item = rx.try_recv().unwrap();
        assert_eq!(
            (item.from, item.first, item.count),
            (Speaker::Hub, first, 1)
        );
        assert_eq!(text(&item), "*** alice joined\n");
        let joined = item.joined.unwrap();
        assert_eq!(joined.told_to(alice).unwrap(), "");
        assert_eq!(joined.told_to(bob), None, "bob hears the notice as it is");
        // Nothing else was due: bob's join waits for its grace.
        assert!(rx.try_recv().is_err());
        assert!(hub.notices_due(Instant::now()).unwrap() > Instant::now());
        assert!(!hub.renamed_before_told(alice, "al"), "told already");
    }

    #[test]
    fn joins_due_together_are_one_notice_and_a_leave_before_its_join_is_silent() {
        let hub = hub();
        let (mut rx, _) = hub.subscribe();
        let (a, _) = hub.join();
        let (b, _) = hub.join();
        let (c, _) = hub.join();
        hub.leave(c, "user3", 0);
        hub.pending()
            .joined
            .iter_mut()
            .for_each(|j| j.due = Instant::now());
        hub.tell_pending(None);
        let item = rx.try_recv().unwrap();
        assert_eq!(text(&item), "*** user1 and user2 joined\n");
        let joined = item.joined.unwrap();
        assert_eq!(joined.told_to(a).unwrap(), "*** user2 joined\n");
        assert_eq!(joined.told_to(b).unwrap(), "*** user1 joined\n");
        // Told joins are told leaving; lines are numbered across items.
        hub.leave(a, "user1", 0);
        hub.send(Speaker::Client(b), "x\ny\n");
        hub.tell_pending(None);
        let said = rx.try_recv().unwrap();
        // A client of a run that failed leaves unannounced.
        hub.begin_run();
        hub.leave(b, "user2", 0);
        assert_eq!(hub.online(), 0);
        assert_eq!(hub.notices_due(Instant::now()), None);
        assert_eq!(
            (said.from, said.first, said.count),
            (Speaker::Client(b), 1, 2)
        );
        let left = rx.try_recv().unwrap();
        assert_eq!((text(&left), left.first), ("*** user1 left\n", 3));
        assert!(rx.try_recv().is_err());
    }
}
