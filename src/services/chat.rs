//! The chat hub: every line a client sends is relayed, as `{prefix}{text}`,
//! to every other client (and to the sender too with `echo_self`), through
//! one `tokio::sync::broadcast` channel: one send per message, a shared
//! buffer never copied per receiver, and a receiver that falls `queue`
//! messages behind skips them (or is disconnected) instead of stalling anyone.
//!
//! Each client is one task that reads its lines (cut at `max_line_bytes`; an
//! unterminated message is flushed after `flush_after` of quiet, as the
//! course's client sends no newline) and writes everything waiting for it in
//! one vectored write.

use std::collections::HashSet;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug};

use crate::chatline::{HELP, Line, Lines, Said, bad_name, claimed_name, clean, parse, relay_line};
use crate::config::{ChatConfig, OnLag};
use crate::net::{BindError, Sockets, local_addrs};
use crate::services::{Accept, Service, ServiceFuture, first_failure};
use crate::stats::ServiceStats;

pub const NAME: &str = "chat";

/// Read at most this much at a time.
const READ_CHUNK: usize = 4096;
/// The kernel's send buffer per client (Linux doubles it).
const SEND_BUFFER: usize = 64 * 1024;
/// Messages (or batches of lines) written in one vectored write.
const WRITE_BATCH: usize = 64;
/// Join and leave notices are sent at most this often; what happens in
/// between is told in one line, so 10,000 joins cost far fewer than 10,000².
const NOTICE_EVERY: Duration = Duration::from_millis(100);
/// ... and at most once per this much per client: 10,000 clients, one a second.
const NOTICE_COST: Duration = Duration::from_micros(100);
/// Names listed by one notice or one /who before "and N others".
const NAMES_SHOWN: usize = 5;
const WHO_SHOWN: usize = 100;
/// The goodbye on shutdown is not worth waiting for longer than this.
const GOODBYE_WITHIN: Duration = Duration::from_secs(1);

pub struct Chat {
    config: ChatConfig,
    listeners: Vec<Arc<TcpListener>>,
    stats: Arc<ServiceStats>,
}

impl Chat {
    pub fn bind(
        config: &ChatConfig,
        sockets: &mut Sockets,
        stats: Arc<ServiceStats>,
    ) -> Result<Self, BindError> {
        let listeners = sockets.tcp_all(NAME, &config.listen)?;
        Ok(Self {
            config: config.clone(),
            listeners,
            stats,
        })
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        local_addrs(&self.listeners)
    }
}

impl Service for Chat {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Arc<Self>, shutdown: CancellationToken) -> ServiceFuture {
        Box::pin(async move {
            let hub = Arc::new(Hub::new(&self.config, self.stats.clone()));
            let mut tasks = JoinSet::new();
            let notices = hub.clone().tell_notices(shutdown.clone());
            tasks.spawn(
                async move {
                    notices.await;
                    Ok(())
                }
                .in_current_span(),
            );
            let accept = Accept {
                allow: self.config.allow.clone(),
                max: self.config.max_clients as usize,
                full: Bytes::from_static(b"*** the hub is full, try again later\n"),
                stats: self.stats.clone(),
            };
            let serve = shutdown.clone();
            accept.spawn_each(
                &mut tasks,
                &self.listeners,
                &shutdown,
                move |stream, peer| Client::serve(hub.clone(), stream, peer, serve.clone()),
            );
            first_failure(&mut tasks).await
        })
    }
}

/// One message in the channel: the lines, formatted, and who sent them.
#[derive(Clone, Debug)]
struct Item {
    /// The sending client, so it can skip its own; 0 for the hub's notices.
    from: u64,
    lines: Bytes,
}

/// Joins (with the client's id) and leaves, not told yet.
type Pending = (Vec<(u64, String)>, Vec<String>);

/// What every client shares.
struct Hub {
    config: ChatConfig,
    tx: broadcast::Sender<Item>,
    names: Mutex<HashSet<String>>,
    next_id: AtomicU64,
    /// Joins and leaves not told yet; at most two per client.
    pending: Mutex<Pending>,
    notice: Notify,
    stats: Arc<ServiceStats>,
}

impl Hub {
    fn new(config: &ChatConfig, stats: Arc<ServiceStats>) -> Self {
        let (tx, _) = broadcast::channel(config.queue as usize);
        Self {
            config: config.clone(),
            tx,
            names: Mutex::new(HashSet::new()),
            next_id: AtomicU64::new(1),
            pending: Mutex::new((Vec::new(), Vec::new())),
            notice: Notify::new(),
            stats,
        }
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
                self.note(|p| p.0.push((id, name.clone())));
                return (id, name);
            }
        }
    }

    fn leave(&self, name: &str) {
        self.names().remove(name);
        self.note(|p| p.1.push(name.to_owned()));
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
        // An error only means nobody is listening.
        let _ = self.tx.send(Item {
            from,
            lines: lines.into(),
        });
    }

    /// Tells joins and leaves, at most once per NOTICE_EVERY, coalesced.
    async fn tell_notices(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.notice.notified() => {}
            }
            self.tell_pending();
            // Each notice goes to every client: in a big room, fewer of them.
            let clients = self.names().len() as u32;
            sleep(NOTICE_EVERY.max(NOTICE_COST * clients)).await;
        }
    }

    /// Tells the joins and leaves not told yet, in one item.
    fn tell_pending(&self) {
        let (joined, left) = std::mem::take(&mut *self.pending());
        // One joiner is not told of itself; in a crowd, everyone hears the crowd.
        let from = match joined.as_slice() {
            [(id, _)] if left.is_empty() => *id,
            _ => 0,
        };
        let joined: Vec<String> = joined.into_iter().map(|(_, name)| name).collect();
        let mut text = String::new();
        if !joined.is_empty() {
            text.push_str(&format!("*** {} joined\n", names_line(&joined)));
        }
        if !left.is_empty() {
            text.push_str(&format!("*** {} left\n", names_line(&left)));
        }
        if !text.is_empty() {
            self.send(from, text);
        }
    }

    /// Before client `id` first says anything to the others: if its join
    /// is still waiting to be told, tell it now, so nobody hears from a
    /// client before hearing it joined.
    fn before_first_words(&self, id: u64) {
        let waiting = self.pending().0.iter().any(|(joined, _)| *joined == id);
        if waiting {
            self.tell_pending();
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
        line
    }
}

/// `a`, `a and b`, `a, b and c`, `a, b, c, d, e and 95 others`.
fn names_line(names: &[String]) -> String {
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

/// A client's allowance of messages: when it runs out, its socket is not
/// read until it refills (TCP pushes back on the sender; nothing is lost).
struct Allowance {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Allowance {
    fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            at: Instant::now(),
        }
    }

    fn spend(&mut self) {
        if self.rate > 0.0 {
            let now = Instant::now();
            self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate)
                .min(self.rate)
                - 1.0;
            self.at = now;
        }
    }

    /// When reading may go on: None if now.
    fn resume_at(&self) -> Option<Instant> {
        if self.rate <= 0.0 || self.tokens >= 1.0 {
            return None;
        }
        let at = self.at + Duration::from_secs_f64((1.0 - self.tokens) / self.rate);
        (at > Instant::now()).then_some(at)
    }
}

/// What woke a client up.
enum Event {
    Shutdown,
    Received(Result<Item, broadcast::error::RecvError>),
    Read(io::Result<usize>),
    /// No byte for `flush_after` after an unterminated message.
    Quiet,
    /// Its allowance refilled: read again.
    Resume,
}

/// Why a client's loop ended.
enum Close {
    /// Said bye, or closed its side.
    Left,
    /// Tell it this, then close.
    Say(&'static str),
    /// Nothing more can be written to it.
    Gone,
}

struct Client {
    hub: Arc<Hub>,
    id: u64,
    name: String,
    /// Still on its default name (exercise 4-3 clients may claim one).
    default_name: bool,
    /// Has said something to the others (so its join has been told).
    spoken: bool,
    write: OwnedWriteHalf,
    /// Lines waiting for this client, written in one go.
    out: Vec<Bytes>,
    /// Relayed lines of the current read, sent as one item.
    relay: BytesMut,
    allowance: Allowance,
}

impl Client {
    async fn serve(
        hub: Arc<Hub>,
        stream: TcpStream,
        _peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        // Chat lines are small: a fixed kernel buffer bounds what a client
        // that reads nothing holds there, and lets the hub see it lag.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let mut rx = hub.tx.subscribe();
        let (id, name) = hub.join();
        let (mut read, write) = stream.into_split();
        let mut client = Client {
            allowance: Allowance::new(hub.config.rate_limit),
            hub,
            id,
            name,
            default_name: true,
            spoken: false,
            write,
            out: Vec::new(),
            relay: BytesMut::new(),
        };
        debug!(name = %client.name, "joined");
        let welcome = format!(
            "*** welcome to pinetd chat, you are {}; /help for commands\n",
            client.name
        );
        client.out.push(welcome.into());
        let close = client.chat(&mut read, &mut rx, &shutdown).await;
        if let Close::Say(goodbye) = close {
            client.out.push(Bytes::from_static(goodbye.as_bytes()));
            let _ = timeout(GOODBYE_WITHIN, client.flush()).await;
        }
        let _ = timeout(GOODBYE_WITHIN, client.write.shutdown()).await;
        client.hub.leave(&client.name);
        debug!(name = %client.name, "left");
    }

    async fn chat(
        &mut self,
        read: &mut tokio::net::tcp::OwnedReadHalf,
        rx: &mut broadcast::Receiver<Item>,
        shutdown: &CancellationToken,
    ) -> Close {
        let hub = self.hub.clone();
        let config = &hub.config;
        let mut lines = Lines::new(config.max_line_bytes as usize);
        let mut input = BytesMut::new();
        let cancelled = shutdown.cancelled();
        // One timer, two uses: the end of a pause, or the quiet that ends an
        // unterminated message (a paused sender is not quiet).
        let timer = sleep(config.flush_after);
        let mut timing_pause = false;
        tokio::pin!(cancelled, timer);
        loop {
            if !self.out.is_empty() && !self.flush_within(config.write_timeout).await {
                return Close::Gone;
            }
            // Lines left waiting by a pause go first, once the allowance refills.
            if self.allowance.resume_at().is_none() && self.drain(&mut lines, &mut input) {
                return Close::Say("*** bye\n");
            }
            let resume_at = self.allowance.resume_at();
            let room = READ_CHUNK.min(config.max_line_bytes as usize + 1);
            let paused = resume_at.is_some();
            match resume_at {
                Some(at) if !timing_pause || timer.deadline() != at => {
                    timer.as_mut().reset(at);
                    timing_pause = true;
                }
                None if timing_pause => {
                    timer.as_mut().reset(Instant::now() + config.flush_after);
                    timing_pause = false;
                }
                _ => {}
            }
            let event = tokio::select! {
                biased;
                _ = &mut cancelled => Event::Shutdown,
                received = rx.recv() => Event::Received(received),
                // Readiness first: an idle client holds no read buffer at all.
                ready = read.readable(), if !paused => match ready {
                    Ok(()) => {
                        input.reserve(room);
                        match read.try_read_buf(&mut (&mut input).limit(room)) {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                // A spurious wake: keep holding nothing.
                                if input.is_empty() {
                                    input = BytesMut::new();
                                }
                                continue;
                            }
                            got => Event::Read(got),
                        }
                    }
                    Err(e) => Event::Read(Err(e)),
                },
                _ = &mut timer, if paused || !input.is_empty() => {
                    if paused { Event::Resume } else { Event::Quiet }
                }
            };
            match event {
                Event::Shutdown => return Close::Say("*** server shutting down\n"),
                Event::Resume => {
                    timing_pause = false;
                    if self.drain(&mut lines, &mut input) {
                        return Close::Say("*** bye\n");
                    }
                    // The rest of a line may still be in the socket: quiet starts again.
                    timer.as_mut().reset(Instant::now() + config.flush_after);
                }
                Event::Received(Ok(item)) => self.take(item, rx),
                Event::Received(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    match config.on_lag {
                        OnLag::Skip => self
                            .out
                            .push(format!("*** {missed} messages skipped\n").into()),
                        OnLag::Disconnect => {
                            return Close::Say("*** you fell too far behind, disconnected\n");
                        }
                    }
                }
                Event::Received(Err(broadcast::error::RecvError::Closed)) => {
                    return Close::Say("*** server shutting down\n");
                }
                Event::Read(Ok(0) | Err(_)) => {
                    if let Some(line) = lines.flush(&mut input) {
                        self.said(line);
                    }
                    self.send_relay();
                    return Close::Left;
                }
                Event::Read(Ok(_)) => {
                    if self.drain(&mut lines, &mut input) {
                        return Close::Say("*** bye\n");
                    }
                    if input.is_empty() {
                        // Back to holding nothing until the next message.
                        input = BytesMut::new();
                    } else {
                        timer.as_mut().reset(Instant::now() + config.flush_after);
                    }
                }
                // Only a partial line is left: complete ones were drained above.
                Event::Quiet => {
                    let quit = lines.flush(&mut input).is_some_and(|line| self.said(line));
                    self.send_relay();
                    if quit {
                        return Close::Say("*** bye\n");
                    }
                }
            }
        }
    }

    /// Handles the complete lines in `input` while the allowance lasts (the
    /// rest wait there, and nothing more is read until it refills); true if
    /// the client said bye.
    fn drain(&mut self, lines: &mut Lines, input: &mut BytesMut) -> bool {
        while self.allowance.resume_at().is_none() {
            let Some(line) = lines.next(input) else { break };
            if self.said(line) {
                self.send_relay();
                return true;
            }
        }
        self.send_relay();
        false
    }

    /// Queues `item` and everything else already waiting, up to one batch.
    fn take(&mut self, item: Item, rx: &mut broadcast::Receiver<Item>) {
        let mut next = Some(item);
        while let Some(item) = next.take() {
            if item.from != self.id || self.hub.config.echo_self {
                self.out.push(item.lines);
            }
            if self.out.len() >= WRITE_BATCH {
                break;
            }
            match rx.try_recv() {
                Ok(item) => next = Some(item),
                Err(broadcast::error::TryRecvError::Lagged(missed))
                    if self.hub.config.on_lag == OnLag::Skip =>
                {
                    self.out
                        .push(format!("*** {missed} messages skipped\n").into());
                }
                // Empty; or lagged under "disconnect", which the next recv reports.
                Err(_) => break,
            }
        }
    }

    /// Handles one line; true if the client said bye.
    fn said(&mut self, line: Line) -> bool {
        self.allowance.spend();
        let text = clean(&line.bytes);
        if line.cut {
            let limit = self.hub.config.max_line_bytes;
            self.out
                .push(format!("*** your line was longer than {limit} bytes and was cut\n").into());
        }
        match parse(&text) {
            Said::Nothing => {}
            Said::Quit => return true,
            Said::Help => self.out.push(Bytes::from_static(HELP.as_bytes())),
            Said::Who => self.out.push(self.hub.who().into()),
            Said::Unknown(command) => self
                .out
                .push(format!("*** unknown command /{command}; /help lists them\n").into()),
            Said::Nick(new) => self.rename(new),
            Said::Message(message) => {
                if self.default_name
                    && let Some(claimed) = claimed_name(message)
                    && self.hub.rename(&self.name, claimed).is_ok()
                {
                    self.renamed(claimed);
                }
                let relayed = relay_line(&self.hub.config.prefix, &self.name, message);
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
                self.out.push(format!("*** you are now {new}\n").into());
                self.renamed(new);
            }
            Err(why) => self.out.push(format!("*** cannot rename: {why}\n").into()),
        }
    }

    fn renamed(&mut self, new: &str) {
        // Lines relayed before the rename go out under the old name.
        self.send_relay();
        self.speak(format!("*** {} is now {new}\n", self.name));
        self.name = new.to_owned();
        self.default_name = false;
    }

    fn send_relay(&mut self) {
        if !self.relay.is_empty() {
            let lines = self.relay.split().freeze();
            self.speak(lines);
        }
    }

    /// Sends `lines` from this client to the others, its join told first.
    fn speak(&mut self, lines: impl Into<Bytes>) {
        if !self.spoken {
            self.hub.before_first_words(self.id);
            self.spoken = true;
        }
        self.hub.send(self.id, lines);
    }

    /// Writes what is queued; false if the client read none of it in `within`.
    async fn flush_within(&mut self, within: Duration) -> bool {
        // Usually the socket takes it all at once, and no timer is needed.
        let result = match self.write_ready() {
            Ok(true) => Ok(Ok(())),
            Ok(false) => timeout(within, self.flush()).await,
            Err(e) => Ok(Err(e)),
        };
        match result {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                debug!(error = %e, "write failed");
                false
            }
            Err(_) => {
                debug!(?within, "reads nothing; dropped");
                false
            }
        }
    }

    /// Writes what the socket takes now; true if that was everything.
    fn write_ready(&mut self) -> io::Result<bool> {
        match self.write_some() {
            Ok(written) => {
                self.advance(written);
                Ok(self.out.is_empty())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
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
