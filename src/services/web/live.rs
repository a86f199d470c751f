//! What open pages see change: one task, while a page is open, makes one snapshot of the whole class at most
//! [`SNAPSHOTS_EVERY`] when something changed. A snapshot is made once, as
//! the bytes of its Server-Sent Event, and every page's stream sends those
//! same bytes (a busy room costs pages a few updates a second, never one
//! per line, and a hundred pages cost one snapshot, not a hundred). With
//! no page open it does nothing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval};

use super::views::{self, Class};
use crate::observe::SAMPLE_EVERY;

/// At most this often a snapshot is made (when something changed).
const SNAPSHOTS_EVERY: Duration = Duration::from_millis(250);
/// ... and at least this often while a page is open (uptime, rates).
const SNAPSHOT_AT_LEAST: Duration = Duration::from_secs(2);
/// Connections of each kind a snapshot holds; the API pages the rest.
const SNAPSHOT_CONNS: usize = 100;
const SNAPSHOT_CLOSED: usize = 30;
/// Events of each service a snapshot holds.
const SNAPSHOT_EVENTS: usize = 30;

/// One snapshot, as its event's bytes, and when it was made.
#[derive(Clone)]
pub struct Frame {
    made: Instant,
    pub bytes: Bytes,
}

impl Frame {
    fn of(class: &Class) -> Self {
        let event = format!("event: snapshot\ndata: {}\n\n", snapshot(class));
        Frame {
            made: Instant::now(),
            bytes: Bytes::from(event),
        }
    }
}

/// The newest snapshot, shared by every stream.
pub struct Snapshots {
    class: Arc<Class>,
    newest: watch::Sender<Frame>,
}

impl Snapshots {
    pub fn new(class: Arc<Class>) -> Self {
        let empty = Frame {
            made: Instant::now() - SNAPSHOT_AT_LEAST,
            bytes: Bytes::new(),
        };
        Self {
            class,
            newest: watch::Sender::new(empty),
        }
    }

    /// The newest snapshot if it is fresh, else one made now for every
    /// stream: a page that opens (or reconnects) starts whole, and a
    /// hundred that open at once cost a few snapshots.
    pub fn fresh(&self) -> Frame {
        let newest = self.newest.borrow().clone();
        if newest.made.elapsed() < SNAPSHOTS_EVERY && !newest.bytes.is_empty() {
            return newest;
        }
        self.make()
    }

    /// Each snapshot made from now on.
    pub fn subscribe(&self) -> watch::Receiver<Frame> {
        self.newest.subscribe()
    }

    fn make(&self) -> Frame {
        let frame = Frame::of(&self.class);
        self.newest.send_replace(frame.clone());
        frame
    }
}

/// Makes snapshots while a page is open. Runs until dropped.
pub async fn run(snapshots: Arc<Snapshots>) {
    let class = snapshots.class.clone();
    let mut tick = interval(SNAPSHOTS_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sampled = Instant::now();
    let mut made: Option<(u64, Instant)> = None;
    loop {
        tick.tick().await;
        let now = Instant::now();
        // The daemon samples the rates this often: a page sees them move.
        if now - sampled >= SAMPLE_EVERY {
            sampled = now;
            made = None;
        }
        if class.observatory.watchers() == 0 {
            continue;
        }
        let changes = class.observatory.changes();
        let due = match made {
            None => true,
            Some((seen, at)) => seen != changes || now - at >= SNAPSHOT_AT_LEAST,
        };
        if due {
            snapshots.make();
            made = Some((changes, now));
        }
    }
}

/// The whole class, as one JSON object.
pub fn snapshot(state: &Class) -> String {
    // The sign-in is offered where a token file is named.
    let teacher = !state.observatory.config().web.admin_token_file.is_empty();
    let conns = |service: &str| {
        let open = views::conn_page(state, service, false, "since", false, 0, SNAPSHOT_CONNS).ok();
        let closed =
            views::conn_page(state, service, true, "closed_at", true, 0, SNAPSHOT_CLOSED).ok();
        (open, closed)
    };
    let events = |service: &'static str| {
        views::activity_view(&state.observatory.window(service), SNAPSHOT_EVENTS)
    };
    let (chat_open, chat_closed) = conns("chat");
    let (json_open, json_closed) = conns("json_echo");
    let history = state.observatory.config().web.history as usize;
    let value = json!({
        "status": views::status_view(state),
        "chat": {
            "open": chat_open,
            "closed": chat_closed,
            "room": views::room_view(state, history),
            "activity": events("chat"),
            "bridge": state.observatory.window("chat").bridge(),
        },
        "json_echo": {
            "open": json_open,
            "closed": json_closed,
            "activity": events("json_echo"),
        },
        "udp_echo": { "activity": events("udp_echo") },
        "discovery": { "activity": events("discovery"), "heard": views::heard_view(state) },
        "web": { "activity": events("web") },
        "teacher": super::actions::teacher_view(state, teacher),
    });
    value.to_string()
}
