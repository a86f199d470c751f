//! The bridge's NATS side (cargo feature `bridge`): one client and one
//! subscription to `bridge_subject`, reconnected when NATS goes away or a
//! reload moves the bridge.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{
    Link, MAX_PAYLOAD, Outgoing, PREFIX_ROOM, PRESENCE_EVERY, Room, Settings, State, pack,
    remote_host, remote_lines, remote_names,
};

use async_nats::connection::State as Connection;
use async_nats::{Client, ConnectOptions, HeaderMap, HeaderValue, Message};
use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::time::{MissedTickBehavior, interval, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::super::notices;
use crate::config::{ChatConfig, NatsAuth, NatsUrl};
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
    mut config: watch::Receiver<Arc<ChatConfig>>,
    room: Arc<dyn Room>,
    info: Arc<SelfInfo>,
    shutdown: CancellationToken,
) {
    let mut outage = Outage::default();
    let mut remote = TokenBucket::new(0, Instant::now().into_std());
    loop {
        let current = Settings::of(&config.borrow_and_update());
        let Some(servers) = servers(&current) else {
            link.set_state(State::Off);
            info.set_room(None);
            outage = Outage::default();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = config.changed() => if changed.is_err() { return },
            }
            continue;
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
            .run(&mut config, &shutdown, &mut outage, &mut remote)
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

/// The servers of `bridge_url`; None when it is off (or, never the case
/// since the config checked it, cannot be used).
fn servers(settings: &Settings) -> Option<Vec<NatsUrl>> {
    if settings.url.is_empty() {
        return None;
    }
    let servers: Result<Vec<NatsUrl>, String> = (settings.url.split(','))
        .map(|u| NatsUrl::parse(u.trim()))
        .collect();
    servers
        .inspect_err(|e| warn!(error = %e, "cannot use bridge_url; the room stays local"))
        .ok()
}

/// How a session with NATS ends.
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

/// A session's connection, as it goes.
struct Connected {
    client: Client,
    /// Wakes when the client's state may have changed.
    events: Arc<Notify>,
    url: String,
    up: bool,
    started: Instant,
    last_presence: Option<Instant>,
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

    /// A client connecting in the background, and what wakes when its
    /// state may have changed.
    async fn connect(&self) -> Option<(Client, Arc<Notify>)> {
        let events = Arc::new(Notify::new());
        let wake = events.clone();
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
                wake.notify_one();
                async {}
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
            Err(e) => {
                warn!(url = %self.shown(), error = %e, "cannot start the NATS client");
                None
            }
        }
    }

    /// Serves one connection to NATS until it ends, and how. One loop over
    /// one `select!` (a little over 60 lines): each arm is a method, and
    /// the intervals live as long as the session.
    async fn run(
        mut self,
        config: &mut watch::Receiver<Arc<ChatConfig>>,
        shutdown: &CancellationToken,
        outage: &mut Outage,
        remote: &mut TokenBucket,
    ) -> End {
        let url = self.shown();
        let Some((client, events)) = self.connect().await else {
            return End::Stopped;
        };
        let subject = self.settings.subject.clone();
        let mut subscriber = match client.subscribe(subject.clone()).await {
            Ok(subscriber) => subscriber,
            Err(e) => {
                warn!(%subject, error = %e, "cannot subscribe; the room stays local");
                return End::Stopped;
            }
        };
        self.link.set_state(State::Connecting);
        if !outage.told && !outage.ever_up {
            info!(%url, %subject, "bridging the chat room through NATS");
        }
        let mut nats = Connected {
            client,
            events,
            url,
            up: false,
            started: Instant::now(),
            last_presence: None,
        };
        let mut check = interval(CHECK_EVERY);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut presence = interval(PRESENCE_EVERY);
        presence.set_missed_tick_behavior(MissedTickBehavior::Delay);
        presence.reset();
        loop {
            // Made before the room is looked at: its going on is not missed.
            let unpaced = self.room.unpaced();
            let paced = self.room.paced();
            let up = nats.up;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.goodbye(&nats).await;
                    return End::Shutdown;
                }
                changed = config.changed() => {
                    if let Some(end) = self.reconfigured(changed.is_ok(), config, remote, &nats).await {
                        return end;
                    }
                }
                _ = nats.events.notified() => {}
                _ = check.tick() => {}
                _ = unpaced, if paced => {}
                message = subscriber.next(), if !paced => match message {
                    Some(message) => self.received(message, remote, &mut nats).await,
                    // The client gave up: a new one.
                    None => return End::Stopped,
                },
                _ = self.link.ready(), if up => self.publish_queued(&nats, shutdown, config).await,
                _ = presence.tick(), if up => self.present(&mut nats).await,
            }
            // Whatever woke it: has the connection come or gone?
            self.look_at_connection(&mut nats, outage).await;
        }
    }

    /// A reload: the limits change in place; a new URL or subject ends the
    /// session (`Some`), as does the config's sender going (shutdown).
    async fn reconfigured(
        &mut self,
        sender_alive: bool,
        config: &mut watch::Receiver<Arc<ChatConfig>>,
        remote: &mut TokenBucket,
        nats: &Connected,
    ) -> Option<End> {
        if !sender_alive {
            return Some(End::Shutdown);
        }
        let next = Settings::of(&config.borrow_and_update());
        if next == self.settings {
            // Another key of [chat] changed.
            return None;
        }
        if !next.same_bridge(&self.settings) {
            self.goodbye(nats).await;
            return Some(End::Changed);
        }
        remote.set_rate(next.rate_limit, Instant::now().into_std());
        self.settings = next;
        None
    }

    /// A message from NATS; a hub not known before hears who this one is
    /// (at most once per [`PRESENCE_AT_MOST`]).
    async fn received(&self, message: Message, remote: &mut TokenBucket, nats: &mut Connected) {
        if !self.heard(message, remote) || !nats.up {
            return;
        }
        let now = Instant::now();
        if nats
            .last_presence
            .is_none_or(|at| now - at >= PRESENCE_AT_MOST)
        {
            self.present(nats).await;
        }
    }

    /// Publishes what the room said, a batch at a time: what comes from
    /// NATS waits no longer.
    async fn publish_queued(
        &self,
        nats: &Connected,
        shutdown: &CancellationToken,
        config: &watch::Receiver<Arc<ChatConfig>>,
    ) {
        for _ in 0..PUBLISH_BATCH {
            if shutdown.is_cancelled() || self.moved(config) {
                break;
            }
            let Some(item) = self.link.take() else { break };
            if !self.send(&nats.client, item).await {
                // NATS takes nothing: the rest would only wait too.
                self.link.drop_queued();
                break;
            }
        }
        if self.link.has_items() {
            self.link.wake();
        }
        tokio::task::coop::consume_budget().await;
    }

    /// A reload changed the bridge's settings (not only other keys of [chat]).
    fn moved(&self, config: &watch::Receiver<Arc<ChatConfig>>) -> bool {
        match config.has_changed() {
            Ok(false) => false,
            Ok(true) => Settings::of(&config.borrow()) != self.settings,
            Err(_) => true,
        }
    }

    /// Says this hub is here, with its clients now.
    async fn present(&self, nats: &mut Connected) {
        nats.last_presence = Some(Instant::now());
        self.publish(&nats.client, "here", Bytes::new()).await;
    }

    /// Notes the connection coming or going, and tells of an outage once.
    async fn look_at_connection(&self, nats: &mut Connected, outage: &mut Outage) {
        let now_up = nats.client.connection_state() == Connection::Connected;
        if now_up != nats.up {
            nats.up = now_up;
            if now_up {
                self.came_up(nats, outage).await;
            } else {
                self.link.set_state(State::Down);
                outage.not_bridged_at = self.link.not_bridged_total();
            }
        }
        let waited = nats.started.elapsed() >= CONNECT_TIMEOUT
            || nats.client.connection_state() != Connection::Pending;
        if !nats.up && waited && self.link.state() == State::Connecting {
            self.link.set_state(State::Down);
        }
        if !nats.up && !outage.told && waited {
            outage.told = true;
            self.tell_down(&nats.url, outage);
        }
    }

    async fn came_up(&self, nats: &mut Connected, outage: &mut Outage) {
        self.link.set_state(State::Up);
        // What was held while connecting goes out now.
        self.link.wake();
        let url = &nats.url;
        if outage.ever_up {
            let missed = self.link.not_bridged_total() - outage.not_bridged_at;
            info!(%url, not_bridged = missed, "NATS is back; bridging again");
        } else {
            info!(%url, "connected to NATS; the room is bridged");
        }
        outage.ever_up = true;
        outage.told = false;
        self.present(nats).await;
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
        if sent {
            self.link.sent();
        } else {
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

    /// Tells the other hubs this one is going, briefly, if connected.
    async fn goodbye(&self, nats: &Connected) {
        if !nats.up {
            return;
        }
        let _ = timeout(GOODBYE_WITHIN, async {
            self.publish(&nats.client, "gone", Bytes::new()).await;
            let _ = nats.client.flush().await;
        })
        .await;
    }

    /// Gives a message from another hub to the local clients, within
    /// `remote`'s rate; true if that hub was not known before. One match
    /// over the kinds of message (a little over 60 lines), read in order.
    fn heard(&self, message: Message, remote: &mut TokenBucket) -> bool {
        let Some(headers) = message.headers.as_ref() else {
            self.link.refuse(Refusal::BadSource);
            return false;
        };
        let header = |name: &str| headers.get(name).map(HeaderValue::as_str);
        let Some(id) = header(HUB).filter(|id| !id.is_empty() && id.len() <= 64) else {
            self.link.refuse(Refusal::BadSource);
            return false;
        };
        if id == self.info.instance() {
            return false;
        }
        self.link.received();
        if message.payload.len() > MAX_PAYLOAD {
            self.link.refuse(Refusal::OverLimit);
            return false;
        }
        let host = remote_host(header(HOST).unwrap_or(""));
        let online = header(ONLINE).and_then(|n| n.parse::<u64>().ok());
        let now = Instant::now();
        let kind = header(KIND).unwrap_or("");
        if kind == "gone" {
            if let Some(online) = self.link.gone(id).filter(|&n| n > 0) {
                self.room
                    .hear_notice(notices::hub_stopped(online, &host).into());
            }
            return false;
        }
        let new = self.link.heard_from(id, &host, online, now);
        let max = self.settings.max_line_bytes as usize + PREFIX_ROOM;
        let mut allowed = || {
            let ok = remote.try_take(now.into_std());
            if !ok {
                self.link.refuse(Refusal::RateLimited);
            }
            ok
        };
        match kind {
            "say" => {
                let lines = remote_lines(&message.payload, max);
                let lines: Vec<String> = lines.into_iter().filter(|_| allowed()).collect();
                for item in pack(lines) {
                    self.room.hear(item);
                }
            }
            "joined" | "left" => {
                let names = remote_names(&message.payload);
                if !names.is_empty() && allowed() {
                    (self.room).hear_notice(notices::on_other_hub(&names, kind, &host).into());
                }
            }
            "renamed" => {
                if let [old, new] = remote_names(&message.payload).as_slice() {
                    if allowed() {
                        (self.room)
                            .hear_notice(notices::renamed_on_other_hub(old, new, &host).into());
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
