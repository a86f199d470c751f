//! JSON echo: each connection sends a stream of JSON values (separated by
//! whitespace, or simply concatenated as the course's client does) and gets
//! each back as compact JSON plus `\n`, in order. Malformed input, a value
//! over `max_message_bytes` or nested too deep gets one error object, then
//! the connection closes; nobody else notices.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::BufMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::config::{Config, JsonEchoConfig, TableIn};
use crate::jsonstream::{JsonError, Unanswered, error_line};
use crate::logging::peer_line;
use crate::net::{BindError, Sockets};
use crate::observe::shown::SHOWN_BYTES;
use crate::observe::{ErrorAt, Event as Seen, Shown, Visit, Window};
use crate::services::shared::accept::{Gate, Listeners, Policy, Refusals};
use crate::services::{BindContext, Reconfigured, Registered, Service, ServiceFuture};
use crate::stats::{Counts, Refusal, ServiceStats};

/// The kind of refusal a JSON error is counted as.
fn refusal_of(error: &JsonError) -> Refusal {
    if error.message.starts_with("nesting deeper") {
        Refusal::TooDeep
    } else if error.message.starts_with("value larger") {
        Refusal::OverLimit
    } else {
        Refusal::BadInput
    }
}

/// Why a connection that sent what is not JSON ended, for the log.
const BAD_INPUT: &str = "bad input";

const NAME: &str = JsonEchoConfig::NAME;

/// Read at most this much at a time.
const READ_CHUNK: usize = 16 * 1024;
/// A bare number or literal at the end of what arrived (`12`, maybe of
/// `1234`) is answered after this much quiet; so is a mistake whose words
/// depend on what follows (`Tru`, maybe Python's `True`).
const SCALAR_QUIET: Duration = Duration::from_millis(20);

/// A reload applies to connections made after it; those open keep the
/// settings they started with.
pub struct JsonEcho {
    listeners: Listeners<JsonEchoConfig>,
    gate: Arc<Gate>,
    stats: Arc<ServiceStats>,
    /// What the web page sees: connections, errors, exchanges while watched.
    window: Arc<Window>,
}

fn policy(config: &JsonEchoConfig) -> Policy {
    Policy::new(&config.allow, config.max_clients, config.max_per_source)
}

impl Registered for JsonEcho {
    type Table = JsonEchoConfig;
    const COUNTS: Counts = Counts {
        clients: true,
        messages: "values",
    };

    fn bind(config: &Config, context: BindContext<'_>) -> Result<Self, BindError> {
        let config = &config.json_echo;
        let stats = context.stats;
        let refusals = Refusals {
            full: error_line("server busy, try again later", None).into(),
            crowded: error_line(
                "too many connections from your address, try again later",
                None,
            )
            .into(),
        };
        let (listeners, gate) = Listeners::bind(
            NAME,
            config,
            &config.listen,
            policy(config),
            refusals,
            context.window.clone(),
            context.sockets,
        )?;
        Ok(Self {
            listeners,
            gate,
            stats,
            window: context.window,
        })
    }
}

impl Service for JsonEcho {
    fn name(&self) -> &'static str {
        NAME
    }

    fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.local_addrs()
    }

    fn run(self: Arc<Self>, shutdown: CancellationToken) -> ServiceFuture {
        Box::pin(async move {
            let handle = |config: &Arc<JsonEchoConfig>, stream, peer: SocketAddr| {
                let visit = self.window.arrived(peer, None);
                Connection::new(config, self.stats.clone(), peer, visit)
                    .serve(stream, shutdown.clone())
            };
            self.listeners.serve(&self.gate, &shutdown, handle).await
        })
    }

    fn reconfigure(
        &self,
        config: &Config,
        sockets: &mut Sockets,
    ) -> Option<Result<Reconfigured, BindError>> {
        let table = &config.json_echo;
        Some(
            self.listeners
                .reconfigure(NAME, table, &table.listen, policy(table), sockets),
        )
    }
}

/// Why a connection ends, from the server's side.
enum End {
    /// The client closed its side; everything it sent was answered.
    Eof,
    /// Say this (an error object line) and close, for this reason.
    Say(Vec<u8>, &'static str),
}

/// What woke a connection up.
enum Event {
    Data,
    Eof,
    Idle,
    /// No byte for a moment after a value that may be a number cut short.
    Quiet,
    Shutdown,
}

/// A yield that takes longer than this means other connections had work:
/// the thread is not idle, and spinning would only take time from them.
const BUSY_THREAD: Duration = Duration::from_micros(10);

/// One client: its own read buffer (so a cancelled read loses nothing) and
/// the replies to write, both empty until data arrives.
struct Connection {
    idle: Duration,
    /// The busy-poll budget, and whether this client earned it: its last
    /// value came within the budget of the reply before.
    busy_poll: Duration,
    polling: bool,
    input: Unanswered,
    output: Vec<u8>,
    stats: Arc<ServiceStats>,
    /// Its address, for the log's budget of lines per source.
    peer: SocketAddr,
    /// What the web page sees of it.
    visit: Visit,
}

impl Connection {
    fn new(
        config: &JsonEchoConfig,
        stats: Arc<ServiceStats>,
        peer: SocketAddr,
        visit: Visit,
    ) -> Self {
        Self {
            idle: config.idle_timeout,
            busy_poll: config.busy_poll,
            polling: false,
            input: Unanswered::new(config.max_message_bytes as usize),
            output: Vec::new(),
            stats,
            peer,
            visit,
        }
    }

    /// Serves one client; why it ended.
    async fn serve(mut self, mut stream: TcpStream, shutdown: CancellationToken) -> &'static str {
        let end = self.exchange(&mut stream, &shutdown).await;
        let (goodbye, reason) = match end {
            Ok(End::Eof) => (None, "closed by the client"),
            Ok(End::Say(line, reason)) => (Some(line), reason),
            Err(e) => {
                debug!(error = %e, "connection failed");
                (None, "connection failed")
            }
        };
        self.visit.end(reason);
        if let Some(line) = goodbye {
            let _ = timeout(self.idle, async {
                stream.write_all(&line).await?;
                stream.shutdown().await
            })
            .await;
        }
        reason
    }

    /// Answers until the client or the server ends the connection. One
    /// loop over one `select!` (a little over 60 lines): its timers are
    /// pinned once for the connection, not per read.
    async fn exchange(
        &mut self,
        stream: &mut TcpStream,
        shutdown: &CancellationToken,
    ) -> io::Result<End> {
        // Made once, not per read: each costs a registration.
        let cancelled = shutdown.cancelled();
        let idle = sleep(self.idle);
        tokio::pin!(cancelled, idle);
        // Read since the idle timer was last set? Checked only when it fires,
        // so a busy connection costs no timer work per read.
        let mut active = false;
        let mut quiet = false;
        loop {
            let waiting = match self.answer(quiet, false) {
                Ok(waiting) => waiting,
                Err(error) => {
                    self.flush(stream).await?;
                    return Ok(End::Say(error, BAD_INPUT));
                }
            };
            self.flush(stream).await?;
            let answered = Instant::now();
            let room = self.input.room(READ_CHUNK);
            // Without room reserved, a BytesMut offers 64 bytes a read.
            self.input.buf_mut().reserve(room);
            let polled = if self.polling && !waiting {
                self.poll_next(stream, room).await?
            } else {
                None
            };
            let event = match polled {
                Some(event) => event,
                None => {
                    let mut input = self.input.buf_mut().limit(room);
                    tokio::select! {
                        biased;
                        _ = &mut cancelled => Event::Shutdown,
                        read = stream.read_buf(&mut input) => read_event(read)?,
                        _ = sleep(SCALAR_QUIET), if waiting => Event::Quiet,
                        _ = &mut idle => Event::Idle,
                    }
                }
            };
            quiet = false;
            match event {
                Event::Data => {
                    active = true;
                    self.polling =
                        !self.busy_poll.is_zero() && answered.elapsed() <= self.busy_poll;
                }
                Event::Quiet => quiet = true,
                Event::Idle if active => {
                    active = false;
                    idle.as_mut().reset(Instant::now() + self.idle);
                }
                Event::Idle => {
                    self.stats.refuse(Refusal::Timeout);
                    let goodbye = error_line("idle timeout, closing", None);
                    return Ok(End::Say(goodbye, "idle for idle_timeout"));
                }
                Event::Shutdown => return self.last_answers(stream, false).await,
                Event::Eof => return self.last_answers(stream, true).await,
            }
        }
    }

    /// At the client's end of input (`eof`) or the server's shutdown:
    /// answers what is left, then how the connection ends.
    async fn last_answers(&mut self, stream: &mut TcpStream, eof: bool) -> io::Result<End> {
        let answered = self.answer(true, eof);
        self.flush(stream).await?;
        Ok(match answered {
            Err(error) => End::Say(error, BAD_INPUT),
            Ok(_) if !eof => End::Say(
                error_line("server shutting down", None),
                "server shutting down",
            ),
            Ok(_) => End::Eof,
        })
    }

    /// Checks for the client's next bytes without sleeping, up to the
    /// busy-poll budget and only while the thread has nothing else to do:
    /// a client in a tight request/response loop then never waits for this
    /// thread to be woken. None when nothing came (polling stops until the
    /// client is that fast again).
    async fn poll_next(&mut self, stream: &TcpStream, room: usize) -> io::Result<Option<Event>> {
        let start = Instant::now();
        loop {
            // Costs no system call until the runtime has seen the socket readable.
            let read = stream.try_read_buf(&mut self.input.buf_mut().limit(room));
            if read.is_ok() {
                // A try_read takes no share of the task's budget, as an
                // awaited read does: without this, a client that keeps its
                // socket full would hold the daemon's one thread.
                tokio::task::coop::consume_budget().await;
            }
            match read {
                Ok(0) => return Ok(Some(Event::Eof)),
                Ok(_) => return Ok(Some(Event::Data)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let before = Instant::now();
            if before - start >= self.busy_poll {
                break;
            }
            // Lets the runtime poll its sockets (without sleeping) and run any other task.
            tokio::task::yield_now().await;
            if before.elapsed() > BUSY_THREAD {
                break;
            }
        }
        self.polling = false;
        Ok(None)
    }

    /// Answers every complete value in the input. Ok(true) if a number (or
    /// a mistake's words) at its end waits for a moment's quiet (`quiet`:
    /// that moment came); the error object if the input is bad. `eof`: the
    /// client has closed.
    fn answer(&mut self, quiet: bool, eof: bool) -> Result<bool, Vec<u8>> {
        // Only while a page is open: the start of what arrived (no more
        // than is shown), to show beside its replies.
        let before = self.input.len();
        let watched = self.visit.watched().then(|| {
            let unanswered = self.input.unanswered();
            unanswered[..unanswered.len().min(SHOWN_BYTES)].to_vec()
        });
        let replied = self.output.len();
        let answered = self.input.answer(quiet, eof, &mut self.output);
        self.stats.messages(answered.values);
        let seen = self.visit.seen();
        if answered.values > 0 {
            seen.said.fetch_add(answered.values as u64, Relaxed);
        }
        if let Some(head) = watched.filter(|_| answered.values > 0 && self.visit.shows_more()) {
            let taken = before - self.input.len();
            let head = &head[..taken.min(head.len())];
            let trimmed = head.trim_ascii_start();
            let input = Shown::start_of(
                trimmed.trim_ascii_end(),
                taken - (head.len() - trimmed.len()),
            );
            self.visit.record(Seen {
                peer: Some(self.peer),
                kind: "exchange",
                input: Some(input),
                output: Some(Shown::new(self.output[replied..].trim_ascii_end())),
                ..Seen::default()
            });
        }
        match answered.error {
            None => Ok(answered.waiting),
            Some(e) => {
                self.stats.refuse(refusal_of(&e));
                seen.errors.fetch_add(1, Relaxed);
                if peer_line(self.peer.ip()) {
                    info!(error = %e.message, line = e.line, column = e.column, "bad input");
                }
                let line = e.to_line();
                if !self.visit.shows_problem() {
                    return Err(line);
                }
                // Shown without the line's end, as the exchanges are.
                let input = self.input.unanswered().trim_ascii_end();
                let at = self.input.error_offset(&e).min(input.len());
                self.visit.record(Seen {
                    peer: Some(self.peer),
                    kind: "error",
                    input: Some(Shown::marked(input, Some(at))),
                    output: Some(Shown::new(line.trim_ascii_end())),
                    error: Some(ErrorAt {
                        line: e.line,
                        column: e.column,
                        message: e.message,
                    }),
                    ..Seen::default()
                });
                Err(line)
            }
        }
    }

    /// Writes the replies; a client that reads none for `idle` is dropped.
    async fn flush(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        // Usually the socket takes it all at once, and no timer is needed.
        let written = match stream.try_write(&self.output) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if written < self.output.len() {
            let rest = &self.output[written..];
            match timeout(self.idle, stream.write_all(rest)).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client reads no replies",
                    ));
                }
            }
        }
        self.output.clear();
        if self.output.capacity() > READ_CHUNK {
            self.output.shrink_to(READ_CHUNK);
        }
        Ok(())
    }
}

/// What a read says: data, or the client's end of input.
fn read_event(read: io::Result<usize>) -> io::Result<Event> {
    match read? {
        0 => Ok(Event::Eof),
        _ => Ok(Event::Data),
    }
}
