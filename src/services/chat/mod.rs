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
//!
//! A client that joins first gets the room's last `history` lines, then
//! the live ones. `/msg` reaches one client alone, on this hub; the teacher
//! (through the web page) kicks, mutes and renames a client, and says a
//! line to the room.
//!
//! The parts: [`hub`] (the room, no I/O), its [`pace`] and its
//! [`history`]; [`member`] (what one client says, and its loop), [`hears`]
//! (what it hears, and how it falls behind), its [`mailbox`] (what reaches
//! it alone: private lines, the teacher's orders) and [`orders`] (how it
//! sends and acts on them); [`conn`] (its socket
//! and buffers); [`notices`] (every line the hub says); [`teacher`] (the
//! teacher's hand on the room); [`bridge`] (the room shared with other hubs).

pub mod bridge;
mod conn;
mod hears;
mod history;
mod hub;
mod mailbox;
mod member;
pub mod notices;
mod orders;
mod pace;
mod teacher;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info};

use self::bridge::Link;
use self::hub::Hub;
use self::member::Member;
use crate::config::{ChatConfig, Config, TableIn};
use crate::describe::SelfInfo;
use crate::net::{BindError, Sockets};
use crate::observe::transcript::Place;
use crate::services::shared::accept::{Gate, Listeners, Policy, Refusals};
use crate::services::{
    BindContext, Reconfigured, Registered, Service, ServiceFuture, first_failure,
};
use crate::stats::{Counts, ServiceStats};

const NAME: &str = ChatConfig::NAME;

/// Join and leave notices are sent at most this often; what happens in
/// between is told in one line, so 10,000 joins cost far fewer than 10,000².
const NOTICE_EVERY: Duration = Duration::from_millis(100);
/// ... and at most once per this much per client: 10,000 clients, one a second.
const NOTICE_COST: Duration = Duration::from_micros(100);
/// The web page's view of the bridge is this fresh.
const SHOW_BRIDGE_EVERY: Duration = Duration::from_secs(1);
/// On shutdown, the transcript's last lines are synced within this long.
const TRANSCRIPT_WITHIN: Duration = Duration::from_secs(2);

pub struct Chat {
    listeners: Listeners<ChatConfig>,
    gate: Arc<Gate>,
    /// The room, made once: its channel holds `queue` items.
    hub: Arc<Hub>,
    queue: u32,
    /// For the NATS bridge: who this hub is.
    info: Arc<SelfInfo>,
}

/// Where the room's transcript is written, if anywhere.
fn transcript(config: &ChatConfig) -> Option<Place> {
    (!config.transcript.is_empty()).then(|| Place {
        dir: config.transcript.clone().into(),
        days: config.transcript_days,
        prefix: config.prefix.clone(),
    })
}

fn policy(config: &ChatConfig) -> Policy {
    Policy::new(&config.allow, config.max_clients, config.max_per_source)
}

impl Registered for Chat {
    type Table = ChatConfig;
    const COUNTS: Counts = Counts {
        clients: true,
        messages: "lines",
    };

    fn bind(config: &Config, context: BindContext<'_>) -> Result<Self, BindError> {
        let table = &config.chat;
        let refusals = Refusals {
            full: Bytes::from_static(notices::FULL.as_bytes()),
            crowded: Bytes::from_static(notices::CROWDED.as_bytes()),
        };
        let stats: Arc<ServiceStats> = context.stats;
        let (listeners, gate) = Listeners::bind(
            NAME,
            table,
            &table.listen,
            policy(table),
            refusals,
            context.window.clone(),
            context.sockets,
        )?;
        let link = Arc::new(Link::new(stats.clone()));
        let window = context.window;
        window.set_door(listeners.door(&gate));
        window.transcript.configure(transcript(table));
        let hub = Arc::new(Hub::new(
            table.queue as usize,
            stats,
            link,
            listeners.settings(),
            window.clone(),
        ));
        window.set_moderator(Arc::new(teacher::Moderation::new(&hub)));
        // The description names the room from the moment the hub is bound,
        // not once the bridge task first runs: a probe answered in between
        // would say the hub is in no room.
        if !table.bridge_url.is_empty() {
            context.info.set_room(Some(table.bridge_subject.clone()));
        }
        Ok(Self {
            listeners,
            gate,
            hub,
            queue: table.queue,
            info: context.info,
        })
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
            self.hub.begin_run();
            let mut tasks = JoinSet::new();
            let bridge = bridge::run(
                self.hub.link.clone(),
                self.listeners.settings(),
                self.hub.clone(),
                self.info.clone(),
                shutdown.clone(),
            );
            let notices = tell_notices(self.hub.clone(), shutdown.clone());
            let shown = show_bridge(self.hub.clone(), shutdown.clone());
            tasks.spawn(infallible(bridge).in_current_span());
            tasks.spawn(infallible(notices).in_current_span());
            tasks.spawn(infallible(shown).in_current_span());
            let hub = self.hub.clone();
            tasks.spawn(async move { self.serve(&shutdown).await }.in_current_span());
            let ended = first_failure(&mut tasks).await;
            // What the room said last is on disk before the daemon exits.
            let finish = move || hub.window.transcript.finish(TRANSCRIPT_WITHIN);
            let _ = tokio::task::spawn_blocking(finish).await;
            ended
        })
    }

    fn reconfigure(
        &self,
        config: &Config,
        sockets: &mut Sockets,
    ) -> Option<Result<Reconfigured, BindError>> {
        let table = &config.chat;
        self.hub.window.transcript.configure(transcript(table));
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

impl Chat {
    /// Takes clients until `shutdown`, each a [`Member`] of the hub.
    async fn serve(&self, shutdown: &CancellationToken) -> std::io::Result<()> {
        let handle = |_: &Arc<ChatConfig>, stream, peer| {
            Member::serve(self.hub.clone(), stream, peer, shutdown.clone())
        };
        self.listeners.serve(&self.gate, shutdown, handle).await
    }
}

/// A task of the service that cannot fail.
async fn infallible(task: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
    task.await;
    Ok(())
}

/// Shows the bridge on the web page (while one is open), once a second.
async fn show_bridge(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut shown = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sleep(SHOW_BRIDGE_EVERY) => {}
        }
        if !hub.window.watched() {
            continue;
        }
        let config = hub.settings.borrow().clone();
        let view = (!config.bridge_url.is_empty())
            .then(|| (hub.link).view(&config.bridge_url, &config.bridge_subject, Instant::now()));
        if view != shown {
            hub.window.set_bridge(view.clone());
            shown = view;
        }
    }
}

/// Tells joins and leaves, at most once per [`NOTICE_EVERY`], coalesced.
async fn tell_notices(hub: Arc<Hub>, shutdown: CancellationToken) {
    loop {
        let due = hub.notices_due(Instant::now());
        let wait = sleep_until(due.unwrap_or_else(Instant::now));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // Something new: look again at what is due.
            _ = hub.noted() => continue,
            _ = wait, if due.is_some() => {}
        }
        hub.tell_pending(None);
        // Each notice goes to every client: in a big room, fewer of them.
        let clients = hub.online() as u32;
        sleep(NOTICE_EVERY.max(NOTICE_COST * clients)).await;
    }
}
