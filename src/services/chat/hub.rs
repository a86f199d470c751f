//! The room, with no I/O: who is in it (each client's name and the way
//! to reach it alone, its [`Post`]), what it says (one
//! `tokio::sync::broadcast` channel, one send per message, a shared buffer
//! never copied per receiver) and its last lines ([`History`]), the joins
//! and leaves still to be told, and the pace of its senders. Every
//! client's task holds it.
//!
//! (A little over 600 lines: a third of them are its tests, which read the
//! room's channel directly.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;

use super::bridge::{Link, Outgoing, Room, State};
use super::history::History;
use super::mailbox::{Full, Mailbox, Order};
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

/// The room's lines in the channel's order: a new client's history and
/// its place in the channel are taken under the same lock as a send, so
/// it gets every line once, none twice.
#[derive(Default)]
struct Said {
    /// Lines sent on the channel, ever.
    lines: u64,
    history: History,
}

/// Who is in the room: each client's name, and how to reach it alone.
#[derive(Default)]
struct Roster {
    ids: HashMap<String, u64>,
    members: HashMap<u64, Present>,
}

struct Present {
    name: String,
    mailbox: Arc<Mailbox>,
}

/// Why a private line did not go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotDelivered {
    /// Nobody of that name on this hub.
    NotHere,
    /// It has too many private lines unread.
    Full,
}

/// What every client shares.
pub struct Hub {
    tx: broadcast::Sender<Item>,
    /// Items sent on `tx`, ever.
    sent: AtomicU64,
    said: Mutex<Said>,
    pub pace: Pace,
    roster: Mutex<Roster>,
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
            said: Mutex::default(),
            pace: Pace::new(queue),
            roster: Mutex::default(),
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

    fn roster(&self) -> MutexGuard<'_, Roster> {
        self.roster.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn said(&self) -> MutexGuard<'_, Said> {
        self.said.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Clients in the room now.
    pub fn online(&self) -> usize {
        self.roster().members.len()
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

    /// A new client's id and default name, reached alone through
    /// `mailbox`; its join is told after [`JOIN_GRACE`], or sooner if it
    /// speaks.
    pub fn join(&self, mailbox: &Arc<Mailbox>) -> (u64, String) {
        loop {
            let id = self.next_id.fetch_add(1, Relaxed);
            let name = format!("user{id}");
            // Someone may have chosen "user7" with /nick: then take the next.
            let mut roster = self.roster();
            if !roster.ids.contains_key(&name) {
                roster.ids.insert(name.clone(), id);
                let present = Present {
                    name: name.clone(),
                    mailbox: mailbox.clone(),
                };
                roster.members.insert(id, present);
                drop(roster);
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
    pub fn leave(&self, id: u64, run: u64) {
        let Some(name) = self.forget(id) else {
            return;
        };
        if run != self.run() {
            return;
        }
        let mut pending = self.pending();
        let before = pending.joined.len();
        pending.joined.retain(|j| j.id != id);
        if pending.joined.len() == before {
            pending.left.push(name);
            drop(pending);
            self.notice.notify_one();
        }
    }

    /// Client `id` is no longer in the room; its name, if it was.
    fn forget(&self, id: u64) -> Option<String> {
        let mut roster = self.roster();
        let present = roster.members.remove(&id)?;
        roster.ids.remove(&present.name);
        Some(present.name)
    }

    /// Gives client `id` the name `new`; its old name, or why not.
    pub fn rename(&self, id: u64, new: &str) -> Result<String, String> {
        if let Some(why) = bad_name(new) {
            return Err(why.to_owned());
        }
        let mut roster = self.roster();
        let Roster { ids, members } = &mut *roster;
        let present = members.get_mut(&id).ok_or("not in the room")?;
        if present.name == new {
            return Ok(present.name.clone());
        }
        if ids.contains_key(new) {
            return Err(format!("{new} is taken"));
        }
        ids.remove(&present.name);
        ids.insert(new.to_owned(), id);
        Ok(std::mem::replace(&mut present.name, new.to_owned()))
    }

    /// The name client `id` has now, if it is in the room.
    pub fn name_of(&self, id: u64) -> Option<String> {
        self.roster().members.get(&id).map(|p| p.name.clone())
    }

    /// Hands `line` to the client called `to` alone (not into the channel,
    /// the history, the bridge or the page); its id.
    pub fn private(&self, to: &str, line: Bytes) -> Result<u64, NotDelivered> {
        let roster = self.roster();
        let id = *roster.ids.get(to).ok_or(NotDelivered::NotHere)?;
        let present = roster.members.get(&id).ok_or(NotDelivered::NotHere)?;
        match present.mailbox.private(line) {
            Ok(()) => Ok(id),
            Err(Full) => Err(NotDelivered::Full),
        }
    }

    /// Hands client `id` the teacher's `order`; why not, in words.
    pub fn order(&self, id: u64, order: Order) -> Result<(), String> {
        let roster = self.roster();
        let present = (roster.members.get(&id)).ok_or_else(|| no_client(id))?;
        (present.mailbox.order(order))
            .map_err(|Full| format!("client {id} has orders waiting; try again"))
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

    /// Says `lines` to the room, kept in its history.
    pub fn send(&self, from: Speaker, lines: impl Into<Bytes>) {
        self.send_item(from, lines.into(), None, true);
    }

    /// Says `lines` (joins, leaves, renames) to the room, not kept in
    /// its history.
    pub fn announce(&self, from: Speaker, lines: impl Into<Bytes>) {
        self.send_item(from, lines.into(), None, false);
    }

    fn send_item(&self, from: Speaker, lines: Bytes, joined: Option<Arc<Joined>>, kept: bool) {
        let count = memchr::memchr_iter(b'\n', &lines).count() as u64;
        self.sent.fetch_add(1, Relaxed);
        let (echo_self, history) = {
            let settings = self.settings.borrow();
            (settings.echo_self, u64::from(settings.history))
        };
        let mut said = self.said();
        let first = said.lines;
        said.lines += count;
        if kept {
            said.history.keep(&lines, count, history);
        }
        // In the channel's order: the page's room is the clients' room.
        let speaker = match from {
            Speaker::Hub => None,
            Speaker::Client(id) => Some(id),
        };
        self.window.said(&lines, first, count, speaker);
        let own = matches!(from, Speaker::Client(_)) && !echo_self;
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

    /// A new client's place in the room, the number of the first line it
    /// will hear, and the room's last `history` lines before it.
    pub fn subscribe(&self) -> (broadcast::Receiver<Item>, u64, Vec<Bytes>) {
        let history = u64::from(self.settings.borrow().history);
        let mut said = self.said();
        let last = said.history.last(history);
        (self.tx.subscribe(), said.lines, last)
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
            return self.announce(Speaker::Hub, left_line);
        }
        let text = notices::joined(&names) + &left_line;
        self.link.offer(Outgoing::Joined(names.clone()));
        let joined = Joined {
            ids,
            names,
            left: left_line,
        };
        self.send_item(Speaker::Hub, text.into(), Some(Arc::new(joined)), false);
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
        let mut names: Vec<String> = self.roster().ids.keys().cloned().collect();
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

    fn hear_notice(&self, lines: Bytes) {
        self.announce(Speaker::Hub, lines);
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

fn no_client(id: u64) -> String {
    format!("no client {id} in the chat room")
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

    /// A client joining, with a mailbox nobody reads.
    fn join(hub: &Hub) -> (u64, String) {
        hub.join(&Arc::default())
    }

    fn text(item: &Item) -> &str {
        std::str::from_utf8(&item.lines).unwrap()
    }

    #[test]
    fn names_are_unique_and_defaults_skip_taken_ones() {
        let hub = hub();
        assert_eq!(join(&hub), (1, "user1".into()));
        assert_eq!(hub.rename(1, "user2"), Ok("user1".into()));
        assert_eq!(join(&hub), (3, "user3".into()), "user2 was taken by /nick");
        assert_eq!(hub.rename(3, "user2"), Err("user2 is taken".into()));
        assert_eq!(
            hub.rename(3, "a b"),
            Err("a name has no spaces and only printable characters".into())
        );
        assert_eq!(hub.online(), 2);
        assert_eq!(hub.who(), "*** online (2): user2, user3\n");
    }

    #[test]
    fn a_join_is_told_at_first_words_under_its_name_and_not_to_itself() {
        let hub = hub();
        let (mut rx, first, _) = hub.subscribe();
        let (alice, _) = join(&hub);
        let (bob, _) = join(&hub);
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
        let (mut rx, _, _) = hub.subscribe();
        let (a, _) = join(&hub);
        let (b, _) = join(&hub);
        let (c, _) = join(&hub);
        hub.leave(c, 0);
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
        hub.leave(a, 0);
        hub.send(Speaker::Client(b), "x\ny\n");
        hub.tell_pending(None);
        let said = rx.try_recv().unwrap();
        // A client of a run that failed leaves unannounced.
        hub.begin_run();
        hub.leave(b, 0);
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

    #[test]
    fn a_new_client_gets_the_last_lines_said_and_private_lines_go_to_one_alone() {
        let hub = hub();
        let alice_box = Arc::new(Mailbox::default());
        let (alice, _) = hub.join(&alice_box);
        let (bob, _) = join(&hub);
        hub.rename(alice, "alice").unwrap();
        hub.send(Speaker::Client(bob), "[user2] one\n[user2] two\n");
        hub.announce(Speaker::Hub, "*** user9 left\n");
        for n in 4..=21 {
            hub.send(Speaker::Client(bob), format!("[user2] {n}\n"));
        }
        hub.send(Speaker::Hub, "*** teacher: quiet\n");
        let (_, next, history) = hub.subscribe();
        let history = String::from_utf8(history.concat()).unwrap();
        let want: String = (4..=21).map(|n| format!("[user2] {n}\n")).collect();
        assert_eq!(history, format!("[user2] two\n{want}*** teacher: quiet\n"));
        assert_eq!(next, 22);
        // A private line: to alice's mailbox alone, not the room.
        let line = Bytes::from_static("[user2 → you] psst\n".as_bytes());
        assert_eq!(hub.private("alice", line.clone()), Ok(alice));
        assert_eq!(alice_box.next_private().unwrap(), line);
        assert_eq!(hub.private("carol", line), Err(NotDelivered::NotHere));
        let (_, after, _) = hub.subscribe();
        assert_eq!(after, next, "nothing was said to the room");
        hub.order(alice, Order::Kick).unwrap();
        assert_eq!(alice_box.next_order(), Some(Order::Kick));
        assert!(
            hub.order(99, Order::Kick)
                .unwrap_err()
                .contains("no client 99")
        );
    }
}
