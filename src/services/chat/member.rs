//! One client of the hub: what it says, and the loop that serves it. Its
//! two directions are independent: its input is read and relayed however
//! full its output is, and what it hears ([`hears`](super::hears)) goes
//! out when its socket takes it.
//!
//! (A little over 600 lines: the loop and the handling of each line a
//! client sends read best together; what reaches it alone is in
//! [`orders`](super::orders), what it hears in `hears`.)

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{Interest, Ready};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::bridge::Outgoing;
use super::conn::{Conn, RECV_BUFFER};
use super::hub::{Hub, Item, Speaker};
use super::mailbox::Mailbox;
use super::notices;
use crate::chatline::{Line, Lines, Said, claimed_name, line_text, parse, relay_line};
use crate::config::{ChatConfig, OnLag};
use crate::limit::TokenBucket;
use crate::observe::Visit;

/// The goodbye on shutdown is not worth waiting for longer than this.
const GOODBYE_WITHIN: Duration = Duration::from_secs(1);
/// A client's own replies (/who, /help, notices, private lines) waiting
/// beyond this many bytes: it is not read, nor given private lines, until
/// it takes some, or `write_timeout` drops it.
pub(super) const OWN_REPLIES: usize = 64 * 1024;

/// What woke a client up.
enum Event {
    Shutdown,
    Received(Result<Item, broadcast::error::RecvError>),
    /// Its socket is ready for what it wanted.
    Ready(io::Result<Ready>),
    /// The senders started or stopped waiting for the room.
    Paced,
    /// One of the client's deadlines: see [`Member::next_deadline`].
    Timer,
    /// Its mailbox has something for it.
    Mail,
}

/// How a client's connection ends.
pub(super) enum End {
    /// Closed its side (or reset).
    Left,
    /// Tell it this, then close.
    Say(Goodbye),
    /// Nothing more can be written to it.
    Gone,
}

/// What the hub says to a client it closes.
#[derive(Clone, Copy)]
pub(super) enum Goodbye {
    Bye,
    Shutdown,
    Behind,
    Removed,
}

impl Goodbye {
    fn line(self) -> &'static str {
        match self {
            Goodbye::Bye => notices::BYE,
            Goodbye::Shutdown => notices::SHUTTING_DOWN,
            Goodbye::Behind => notices::FELL_BEHIND,
            Goodbye::Removed => notices::REMOVED,
        }
    }
}

impl End {
    /// Why it ended, for the log.
    fn reason(&self) -> &'static str {
        match self {
            End::Left => "closed by the client",
            End::Say(Goodbye::Bye) => "said bye",
            End::Say(Goodbye::Shutdown) => "server shutting down",
            End::Say(Goodbye::Behind) => "fell too far behind (on_lag = \"disconnect\")",
            End::Say(Goodbye::Removed) => "removed by the teacher",
            End::Gone => "took nothing for write_timeout",
        }
    }
}

/// The client said bye.
pub(super) struct Quit;

/// A client of the hub: its connection, its name and settings, and what
/// it has still to write and to relay.
pub(super) struct Member {
    pub hub: Arc<Hub>,
    /// The `[chat]` table, as of the last look at `settings`.
    pub config: Arc<ChatConfig>,
    settings: watch::Receiver<Arc<ChatConfig>>,
    pub id: u64,
    /// The service's run it joined.
    run: u64,
    /// Its address, for the log's budget of lines per source.
    peer: IpAddr,
    /// Its name as the room knows it (the hub's may be newer while an
    /// order of the teacher's is on its way).
    pub(super) name: String,
    /// Still on its default name (exercise 4-3 clients may claim one).
    default_name: bool,
    /// Private lines and the teacher's orders for it alone.
    pub(super) mailbox: Arc<Mailbox>,
    /// Muted by the teacher until then.
    pub(super) muted_until: Option<Instant>,
    /// Has said something to the others (so its join has been told).
    spoken: bool,
    pub conn: Conn,
    /// Its input, split into lines at `max_line_bytes`.
    lines: Lines,
    /// Its place in the channel; None once it has left.
    pub rx: Option<broadcast::Receiver<Item>>,
    /// The number of the room's next line it is to get: an item that
    /// starts later tells how many it skipped.
    pub next_line: u64,
    /// Its socket took nothing while the room waited for it: it takes
    /// every item from the channel into `backlog` as it comes, so the room
    /// goes on, and its socket gets them from there.
    pub lagging: bool,
    /// The newest `queue` items while it lags; older ones are skipped.
    pub backlog: VecDeque<Item>,
    /// It has something to read while the senders wait: it waits for the room.
    held: bool,
    /// Since when, and from how many bytes taken, it is watched while the
    /// room waits for it.
    pub watched: Option<(Instant, u64)>,
    /// Relayed lines of the current read, sent as one item.
    relay: BytesMut,
    /// Its allowance of messages: when it runs out, its socket is not read
    /// until it refills (TCP pushes back on the sender; nothing is lost).
    allowance: TokenBucket,
    /// What the web page sees of it.
    pub visit: Visit,
}

impl Drop for Member {
    /// However it ends (a task aborted too), its name is free again.
    fn drop(&mut self) {
        self.hub.leave(self.id, self.run);
    }
}

impl Member {
    /// Serves one client; why it ended.
    pub async fn serve(
        hub: Arc<Hub>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> &'static str {
        let conn = Conn::new(stream);
        let (rx, next_line, history) = hub.subscribe();
        let run = hub.run();
        let mailbox = Arc::default();
        let (id, name) = hub.join(&mailbox);
        let visit = hub.window.arrived(peer, Some(id));
        visit.set_name(&name);
        visit.seen().heard.store(next_line, Relaxed);
        let peer = peer.ip();
        let mut settings = hub.settings.clone();
        let config = settings.borrow_and_update().clone();
        let mut client = Member {
            allowance: TokenBucket::new(config.rate_limit, Instant::now().into_std()),
            lines: Lines::new(config.max_line_bytes as usize),
            config,
            settings,
            hub,
            id,
            run,
            peer,
            name,
            default_name: true,
            mailbox,
            muted_until: None,
            spoken: false,
            conn,
            rx: Some(rx),
            next_line,
            lagging: false,
            backlog: VecDeque::new(),
            held: false,
            watched: None,
            relay: BytesMut::new(),
            visit,
        };
        debug!(name = %client.name, "joined");
        client.tell(notices::welcome(&client.name));
        // Then what the room said before, as it was heard; then the live lines.
        history
            .into_iter()
            .for_each(|lines| client.conn.push(lines));
        let end = client.chat(&shutdown).await;
        client.say_goodbye(&end).await;
        debug!(name = %client.name, "left");
        client.visit.end(end.reason());
        end.reason()
    }

    /// Lets go of its place in the room, then writes what it is owed.
    async fn say_goodbye(&mut self, end: &End) {
        if let End::Left = end {
            // It closed its side: what the room said before is still its.
            self.keep_what_is_owed();
        }
        // Its place goes now: the room does not wait on its goodbye.
        self.rx = None;
        self.hub.let_go();
        match end {
            // Replies to its last commands and lines of others already
            // queued for it: a half-closed client still reads them.
            End::Left => {
                let within = self.config.write_timeout;
                let _ = timeout(within, self.flush_owed()).await;
            }
            End::Say(goodbye) => {
                self.tell(Bytes::from_static(goodbye.line().as_bytes()));
                let _ = timeout(GOODBYE_WITHIN, self.conn.flush()).await;
            }
            End::Gone => {}
        }
        let _ = timeout(GOODBYE_WITHIN, self.conn.shutdown()).await;
    }

    async fn chat(&mut self, shutdown: &CancellationToken) -> End {
        let cancelled = shutdown.cancelled();
        let timer = sleep(Duration::ZERO);
        tokio::pin!(cancelled, timer);
        let hub = self.hub.clone();
        loop {
            // Made before the room is looked at: no change of pace is missed.
            let pace_changed = hub.pace.changed();
            if let Some(end) = self.catch_up() {
                return end;
            }
            let deadline = self.next_deadline();
            if let Some(at) = deadline.filter(|&at| at != timer.deadline()) {
                timer.as_mut().reset(at);
            }
            let watch_pace = self.held || self.may_hold_back();
            let interest = self.interest();
            let event = tokio::select! {
                biased;
                _ = &mut cancelled => Event::Shutdown,
                // Readiness first: an idle client holds no read buffer at all.
                ready = self.conn.ready(interest.unwrap_or(Interest::READABLE)), if interest.is_some() => {
                    Event::Ready(ready)
                }
                // Only once the socket took the rest: the channel holds the
                // backlog, bounded by `queue`.
                received = next_item(&mut self.rx), if !self.conn.has_output() || self.lagging => {
                    Event::Received(received)
                }
                _ = pace_changed, if watch_pace => Event::Paced,
                _ = &mut timer, if deadline.is_some() => Event::Timer,
                _ = self.mailbox.arrived(self.conn.own < OWN_REPLIES) => Event::Mail,
            };
            if let Some(end) = self.on_event(event) {
                return end;
            }
            self.conn.release_inbox();
        }
    }

    /// Before it waits: takes new settings, writes what its socket takes,
    /// relays what its allowance lets it say, and looks at whether the room
    /// still waits for it; `Some` to close it.
    fn catch_up(&mut self) -> Option<End> {
        self.refresh();
        if let Err(e) = self.conn.write_now() {
            self.cannot_write(&e);
        }
        self.refill();
        if let Some(end) = self.check_stall() {
            return Some(end);
        }
        if self.allowance_ready_at().is_none() && self.drain(true).is_break() {
            return Some(End::Say(Goodbye::Bye));
        }
        // Lines left there wait for the room; once it goes on, so does it.
        self.held = self.hub.pace.waiting() && (self.held || !self.conn.inbox.is_empty());
        None
    }

    /// What it waits for on its socket: to read (readable while the room is
    /// paced, it waits for the room: only those with something to say, not
    /// every idle client), to write, both, or neither.
    fn interest(&self) -> Option<Interest> {
        let reads = self.wants_to_read() && !self.held;
        match (reads, self.conn.has_output()) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// Acts on what woke the client up; `Some` to close it.
    fn on_event(&mut self, event: Event) -> Option<End> {
        match event {
            Event::Shutdown => Some(End::Say(Goodbye::Shutdown)),
            // The loop looks at the room again.
            Event::Paced => None,
            Event::Received(received) => self.on_received(received),
            Event::Ready(Ok(ready)) if ready.is_readable() => self.on_readable(),
            Event::Ready(Ok(_)) => None,
            Event::Ready(Err(_)) => self.on_closed(),
            Event::Timer => self.on_timer(),
            Event::Mail => self.on_mail(),
        }
    }

    fn on_received(&mut self, received: Result<Item, broadcast::error::RecvError>) -> Option<End> {
        use broadcast::error::RecvError;
        match received {
            Ok(item) => self.take(item),
            // The next item tells how many lines it skipped.
            Err(RecvError::Lagged(_)) if self.lagging || self.config.on_lag == OnLag::Skip => {}
            Err(RecvError::Lagged(_)) => {
                self.relay_rest();
                return Some(End::Say(Goodbye::Behind));
            }
            Err(RecvError::Closed) => return Some(End::Say(Goodbye::Shutdown)),
        }
        None
    }

    /// It has something to read: read now, unless the senders wait for the room.
    fn on_readable(&mut self) -> Option<End> {
        if self.hub.paced() {
            self.held = true;
            return None;
        }
        match self.conn.read_some(self.config.max_line_bytes as usize) {
            // A spurious wake: keep holding nothing.
            None => None,
            Some(Ok(0) | Err(_)) => self.on_closed(),
            Some(Ok(_)) => {
                self.conn.heard_at = Instant::now();
                None
            }
        }
    }

    /// It closed or reset: what it sent before is relayed, its tail too.
    fn on_closed(&mut self) -> Option<End> {
        let _ = self.drain(false);
        if let Some(line) = self.lines.flush(&mut self.conn.inbox) {
            let _ = self.said(line);
        }
        self.send_relay();
        Some(End::Left)
    }

    fn on_timer(&mut self) -> Option<End> {
        let now = Instant::now();
        let write_timeout = self.config.write_timeout;
        if (self.conn.stuck_since).is_some_and(|at| at + write_timeout <= now) {
            debug!(within = ?write_timeout, "reads nothing; dropped");
            self.relay_rest();
            return Some(End::Gone);
        }
        if self.quiet_at().is_some_and(|at| at <= now) && self.flush_quiet().is_break() {
            return Some(End::Say(Goodbye::Bye));
        }
        self.mute_ended(now);
        None
    }

    /// A client whose socket refused a write has usually closed or reset:
    /// nothing more is written, but its input is read to the end (within
    /// `write_timeout`), so every line it sent is relayed.
    fn cannot_write(&mut self, e: &io::Error) {
        debug!(error = %e, "write failed; reading what it sent");
        self.conn.fail();
        // It will read nothing more: the room does not wait for it.
        self.lag();
    }

    /// Takes the new settings if a reload changed them.
    fn refresh(&mut self) {
        if !self.settings.has_changed().unwrap_or(false) {
            return;
        }
        self.config = self.settings.borrow_and_update().clone();
        self.lines.set_max(self.config.max_line_bytes as usize);
        (self.allowance).set_rate(self.config.rate_limit, Instant::now().into_std());
    }

    /// When its allowance lets it say the next line: None if now.
    fn allowance_ready_at(&self) -> Option<Instant> {
        (self.allowance)
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
        self.allowance_ready_at().is_none() && self.conn.own < OWN_REPLIES
    }

    /// The first of: the end of a pause, the quiet that ends an unterminated
    /// message, the write deadline, the look at whether it holds the room back.
    fn next_deadline(&self) -> Option<Instant> {
        let stuck = (self.conn.stuck_since).map(|at| at + self.config.write_timeout);
        let waiting = self.allowance_ready_at().or_else(|| self.quiet_at());
        let patience = self.patience();
        let look = self.watched.map(|(since, _)| since + patience);
        [stuck, waiting, look, self.muted_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// When quiet ends the unterminated message it sent: only for a client
    /// that never sent a newline, and not while it is paused.
    fn quiet_at(&self) -> Option<Instant> {
        let waits = !self.conn.inbox.is_empty()
            && !self.lines.ended_a_line()
            && self.allowance_ready_at().is_none();
        waits.then(|| self.conn.heard_at + self.config.flush_after)
    }

    /// The message quiet ended.
    fn flush_quiet(&mut self) -> ControlFlow<Quit> {
        let said = match self.lines.flush(&mut self.conn.inbox) {
            Some(line) => self.said(line),
            None => ControlFlow::Continue(()),
        };
        self.send_relay();
        said
    }

    /// Handles the complete lines it sent, while it may be read if
    /// `limited` (the rest wait until its allowance refills or it takes its
    /// own replies).
    fn drain(&mut self, limited: bool) -> ControlFlow<Quit> {
        while !limited || self.may_read() {
            let Some(line) = self.lines.next(&mut self.conn.inbox) else {
                break;
            };
            if self.said(line).is_break() {
                self.send_relay();
                return ControlFlow::Break(Quit);
            }
        }
        self.send_relay();
        ControlFlow::Continue(())
    }

    /// A client being dropped: every complete line that reached the hub is
    /// relayed first (and the message of one that never sent a newline).
    /// What reached it is at most the receive buffer: reading stops there,
    /// so a client that goes on sending cannot keep the hub relaying.
    pub fn relay_rest(&mut self) {
        let mut budget = 2 * RECV_BUFFER;
        loop {
            if self.drain(false).is_break() {
                return;
            }
            if budget == 0 {
                break;
            }
            match self.conn.read_some(self.config.max_line_bytes as usize) {
                Some(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
                _ => break,
            }
        }
        if !self.lines.ended_a_line() {
            let _ = self.flush_quiet();
        }
    }

    /// Tells this client alone: hub notices and its commands' answers.
    pub fn tell(&mut self, bytes: impl Into<Bytes>) {
        self.conn.push_own(bytes.into());
    }

    /// Handles one line it sent.
    fn said(&mut self, line: Line) -> ControlFlow<Quit> {
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
        if line.cut || grew {
            self.tell(notices::line_cut(limit, !line.cut));
        }
        let said = parse(&text);
        if self.refused_while_muted(&said) {
            return ControlFlow::Continue(());
        }
        match said {
            Said::Nothing => {}
            Said::Quit => return ControlFlow::Break(Quit),
            Said::Help => self.tell(Bytes::from_static(notices::HELP.as_bytes())),
            Said::Who => {
                let who = self.hub.who();
                self.tell(who);
            }
            Said::Unknown(command) => self.tell(notices::unknown_command(command)),
            Said::Nick(new) => self.rename(new),
            Said::Message(message) => self.message(message),
            Said::Msg(to, text) => self.private_to(to, text),
            Said::Me(text) => self.act(text),
        }
        ControlFlow::Continue(())
    }

    /// A line for the room, relayed with the others of this read.
    fn message(&mut self, message: &str) {
        // The first line of a client that has not chosen a name may claim one.
        let claimed = (self.default_name.then(|| claimed_name(message)).flatten())
            .filter(|&claimed| claimed != self.name);
        if let Some(claimed) = claimed.filter(|c| self.hub.rename(self.id, c).is_ok()) {
            self.renamed(claimed, false);
        }
        let relayed = relay_line(&self.config.prefix, &self.name, message);
        self.relay.extend_from_slice(relayed.as_bytes());
        self.hub.stats.message();
        self.visit.seen().said.fetch_add(1, Relaxed);
    }

    fn rename(&mut self, new: &str) {
        if new == self.name {
            return;
        }
        match self.hub.rename(self.id, new) {
            Ok(_) => {
                self.tell(notices::you_are_now(new));
                self.renamed(new, false);
            }
            Err(why) => self.tell(notices::cannot_rename(&why)),
        }
    }

    /// It has the name `new` (`by_teacher`: given by the teacher); the
    /// room is told.
    pub(super) fn renamed(&mut self, new: &str, by_teacher: bool) {
        // Lines relayed before the rename go out under the old name.
        self.send_relay();
        // Named before its join was told: it joins under this name.
        if !self.hub.renamed_before_told(self.id, new) {
            let notice = if by_teacher {
                notices::renamed_by_teacher(&self.name, new)
            } else {
                notices::renamed(&self.name, new)
            };
            self.speak_here(notice, false);
            // The other hubs say which hub it is on.
            (self.hub.link).offer(Outgoing::Renamed(self.name.clone(), new.to_owned()));
        }
        self.name = new.to_owned();
        self.visit.set_name(new);
        self.default_name = false;
    }

    pub(super) fn send_relay(&mut self) {
        if !self.relay.is_empty() {
            let lines = self.relay.split().freeze();
            self.speak(lines);
        }
    }

    /// Sends `lines` from this client to the others, here and on the
    /// other hubs, its join told first.
    pub(super) fn speak(&mut self, lines: impl Into<Bytes>) {
        let lines = lines.into();
        self.speak_here(lines.clone(), true);
        self.hub.link.offer(Outgoing::Said(lines));
    }

    /// Sends `lines` from this client to the others on this hub alone,
    /// kept in the room's history if `said` (a notice of its rename is not).
    fn speak_here(&mut self, lines: impl Into<Bytes>, said: bool) {
        if !self.spoken {
            self.hub.before_first_words(self.id);
            self.spoken = true;
        }
        if said {
            self.hub.send(Speaker::Client(self.id), lines);
        } else {
            self.hub.announce(Speaker::Client(self.id), lines);
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
