//! What open pages see change: one task samples every service's rate and,
//! while a page is open, makes one snapshot of the whole class at most
//! [`SNAPSHOTS_EVERY`] when something changed; every page's stream sends
//! that same snapshot (a busy room costs pages a few updates a second,
//! never one per line). With no page open it samples the rates only.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as Extract;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval};

use super::api::{self, Class, State};
use super::rates::SAMPLE_EVERY;

/// At most this often a snapshot is made (when something changed).
const SNAPSHOTS_EVERY: Duration = Duration::from_millis(250);
/// ... and at least this often while a page is open (uptime, rates).
const SNAPSHOT_AT_LEAST: Duration = Duration::from_secs(2);
/// Connections of each kind a snapshot holds; the API pages the rest.
const SNAPSHOT_CONNS: usize = 100;
const SNAPSHOT_CLOSED: usize = 50;
/// Events of each service a snapshot holds.
const SNAPSHOT_EVENTS: usize = 50;
/// A stream says it is alive this often.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The task that samples and makes snapshots.
pub struct Live {
    class: Arc<Class>,
    snapshots: watch::Sender<Arc<str>>,
}

impl Live {
    pub fn new(class: Arc<Class>) -> (Self, watch::Receiver<Arc<str>>) {
        let (snapshots, receiver) = watch::channel(Arc::from("{}"));
        (Self { class, snapshots }, receiver)
    }

    /// Runs until dropped.
    pub async fn run(self) {
        let mut tick = interval(SNAPSHOTS_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sampled = Instant::now();
        let mut made: Option<(u64, Instant)> = None;
        loop {
            tick.tick().await;
            let now = Instant::now();
            if now - sampled >= SAMPLE_EVERY {
                self.class
                    .rates
                    .sample(&self.class.observatory, now - sampled);
                sampled = now;
                made = None;
            }
            if self.class.observatory.watchers() == 0 {
                continue;
            }
            let changes = self.class.observatory.changes();
            let due = match made {
                None => true,
                Some((seen, at)) => seen != changes || now - at >= SNAPSHOT_AT_LEAST,
            };
            if due {
                let made_now: Arc<str> = snapshot(&self.class).into();
                self.snapshots.send_replace(made_now);
                made = Some((changes, now));
            }
        }
    }
}

/// The whole class, as one JSON object.
pub fn snapshot(state: &Class) -> String {
    let conns = |service: &str| {
        let open = api::conn_page(state, service, false, "since", false, 0, SNAPSHOT_CONNS).ok();
        let closed =
            api::conn_page(state, service, true, "closed_at", true, 0, SNAPSHOT_CLOSED).ok();
        (open, closed)
    };
    let events = |service: &'static str| {
        api::activity_view(&state.observatory.window(service), SNAPSHOT_EVENTS)
    };
    let (chat_open, chat_closed) = conns("chat");
    let (json_open, json_closed) = conns("json_echo");
    let history = state.observatory.config().web.history as usize;
    let value = json!({
        "status": api::status_view(state),
        "chat": {
            "open": chat_open,
            "closed": chat_closed,
            "room": api::room_view(state, history),
            "activity": events("chat"),
            "bridge": state.observatory.window("chat").bridge(),
        },
        "json_echo": {
            "open": json_open,
            "closed": json_closed,
            "activity": events("json_echo"),
        },
        "udp_echo": { "activity": events("udp_echo") },
        "discovery": { "activity": events("discovery"), "heard": api::heard_view(state) },
        "web": { "activity": events("web") },
    });
    value.to_string()
}

/// `GET /api/v1/stream`: a snapshot at once, then each new one.
pub async fn stream(Extract(state): Extract<State>) -> Response {
    let watching = state.observatory.watch();
    let mut snapshots = state.snapshots.clone();
    // The first is made now: a page that opens (or reconnects) starts whole.
    let first = snapshot(&state);
    snapshots.mark_unchanged();
    let shutdown = state.shutdown.clone();
    let events = futures_util::stream::unfold(
        (Some(first), snapshots, watching, shutdown),
        |(first, mut snapshots, watching, shutdown)| async move {
            if let Some(first) = first {
                let event = Event::default().event("snapshot").data(first);
                return Some((Ok(event), (None, snapshots, watching, shutdown)));
            }
            tokio::select! {
                _ = shutdown.cancelled() => None,
                changed = snapshots.changed() => {
                    changed.ok()?;
                    let data = snapshots.borrow_and_update().clone();
                    let event = Event::default().event("snapshot").data(&*data);
                    Some((Ok::<_, Infallible>(event), (None, snapshots, watching, shutdown)))
                }
            }
        },
    );
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(events);
    Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(KEEP_ALIVE)
                .event(Event::default().event("ping")),
        )
        .into_response()
}
