//! What the page and the API show, as JSON, made from the services'
//! windows ([`Observatory`]): times as Unix seconds and RFC 3339 text,
//! durations as seconds and text, what a peer sent as a [`Shown`], never raw.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::describe::SelfInfo;
use crate::observe::status::Status;
pub use crate::observe::status::{duration_text, seconds, time_text};
use crate::observe::{Activity, ConnView, Observatory, RoomLine, Shown, Window};

/// What the views are made of: the services' windows and who this is.
pub struct Class {
    pub observatory: Arc<Observatory>,
    pub info: Arc<SelfInfo>,
}

/// The status of the daemon, as the page's cards show it, and the
/// languages the page speaks.
#[derive(Serialize)]
pub struct StatusView {
    #[serde(flatten)]
    status: Status,
    languages: Vec<&'static str>,
}

pub fn status_view(state: &Class) -> StatusView {
    StatusView {
        status: Status::of(&state.observatory, state.info.host()),
        languages: super::assets::LANGUAGES
            .iter()
            .map(|(tag, _)| *tag)
            .collect(),
    }
}

#[derive(Serialize)]
pub struct ConnJson {
    id: u64,
    addr: String,
    name: Option<Shown>,
    since: f64,
    since_text: String,
    connected_seconds: f64,
    connected_text: String,
    said: u64,
    skipped: u64,
    behind: u64,
    errors: u64,
    closed_at: Option<f64>,
    closed_at_text: Option<String>,
    reason: Option<&'static str>,
    /// A chat client the teacher muted: until when (seconds since 1970).
    #[serde(skip_serializing_if = "Option::is_none")]
    muted_until: Option<f64>,
}

impl ConnJson {
    fn new(view: &ConnView, now: SystemTime) -> Self {
        let until = view.closed_at.unwrap_or(now);
        let connected = until.duration_since(view.since).unwrap_or_default();
        Self {
            id: view.id,
            addr: view.addr.to_string(),
            name: view.name.as_deref().map(|n| Shown::new(n.as_bytes())),
            since: seconds(view.since),
            since_text: time_text(view.since),
            connected_seconds: connected.as_secs_f64(),
            connected_text: duration_text(connected),
            said: view.said,
            skipped: view.skipped,
            behind: view.behind,
            errors: view.errors,
            closed_at: view.closed_at.map(seconds),
            closed_at_text: view.closed_at.map(time_text),
            reason: view.reason,
            muted_until: None,
        }
    }
}

#[derive(Serialize)]
pub struct ConnPage {
    service: String,
    state: &'static str,
    total: usize,
    offset: usize,
    limit: usize,
    connections: Vec<ConnJson>,
}

/// A page of a service's connections, sorted.
pub fn conn_page(
    state: &Class,
    service: &str,
    closed: bool,
    sort: &str,
    descending: bool,
    offset: usize,
    limit: usize,
) -> Result<ConnPage, String> {
    let window = window_of(state, service)?;
    let mut views = if closed {
        window.closed()
    } else {
        window.open()
    };
    let key = |v: &ConnView| -> (u128, String) {
        let number = match sort {
            "said" => u128::from(v.said),
            "skipped" => u128::from(v.skipped),
            "behind" => u128::from(v.behind),
            "closed_at" => v.closed_at.map_or(0, |t| (seconds(t) * 1e6) as u128),
            "name" | "addr" => 0,
            _ => (seconds(v.since) * 1e6) as u128,
        };
        let text = match sort {
            "name" => v.name.clone().unwrap_or_default(),
            "addr" => v.addr.to_string(),
            _ => String::new(),
        };
        (number, text)
    };
    if ![
        "since",
        "addr",
        "name",
        "said",
        "skipped",
        "behind",
        "closed_at",
    ]
    .contains(&sort)
    {
        return Err(format!(
            "sort must be since, addr, name, said, skipped, behind or closed_at, not {sort:?}"
        ));
    }
    views.sort_by_cached_key(|v| (key(v), v.id));
    if descending {
        views.reverse();
    }
    let total = views.len();
    let page: Vec<ConnView> = views.into_iter().skip(offset).take(limit).collect();
    let mut json = conn_json(service, closed, total, offset, limit, &page);
    if service == "chat" && !closed {
        show_mutes(state, &mut json.connections);
    }
    Ok(json)
}

/// Marks the chat clients the teacher muted, with until when.
fn show_mutes(state: &Class, connections: &mut [ConnJson]) {
    let teacher = state.observatory.teacher();
    for conn in connections {
        conn.muted_until = teacher.muted_until(conn.id).map(seconds);
    }
}

fn conn_json(
    service: &str,
    closed: bool,
    total: usize,
    offset: usize,
    limit: usize,
    page: &[ConnView],
) -> ConnPage {
    let now = SystemTime::now();
    ConnPage {
        service: service.to_owned(),
        state: if closed { "closed" } else { "open" },
        total,
        offset,
        limit,
        connections: page.iter().map(|v| ConnJson::new(v, now)).collect(),
    }
}

pub fn window_of(state: &Class, service: &str) -> Result<Arc<Window>, String> {
    let config = state.observatory.config();
    let table = config
        .tables()
        .into_iter()
        .find(|t| t.name() == service)
        .ok_or_else(|| format!("no service named {service:?}"))?;
    Ok(state.observatory.window(table.name()))
}

/// An event, with its time.
#[derive(Serialize)]
pub struct ActivityJson {
    #[serde(flatten)]
    activity: Activity,
    at: f64,
    at_text: String,
}

pub fn activity_view(window: &Window, limit: usize) -> Vec<ActivityJson> {
    window
        .activity(limit)
        .into_iter()
        .map(|activity| ActivityJson {
            at: seconds(activity.at),
            at_text: time_text(activity.at),
            activity,
        })
        .collect()
}

/// One line of the room.
#[derive(Serialize)]
pub struct LineJson {
    seq: u64,
    at: f64,
    at_text: String,
    name: Option<Shown>,
    text: Shown,
    notice: bool,
}

/// The room's last `limit` lines, oldest first.
pub fn room_view(state: &Class, limit: usize) -> Vec<LineJson> {
    let window = state.observatory.window("chat");
    let items: Vec<RoomLine> = window.room(limit);
    let mut lines: Vec<LineJson> = Vec::new();
    for item in items.iter().rev() {
        let text = item.lines.strip_suffix(b"\n").unwrap_or(&item.lines);
        for line in text.rsplit(|b| *b == b'\n') {
            lines.push(LineJson {
                seq: item.seq,
                at: seconds(item.at),
                at_text: time_text(item.at),
                name: item.name.as_deref().map(|n| Shown::new(n.as_bytes())),
                text: Shown::new(line),
                notice: item.notice,
            });
        }
        if lines.len() >= limit {
            break;
        }
    }
    lines.truncate(limit);
    lines.reverse();
    lines
}

#[derive(Serialize)]
pub struct HeardJson {
    from: String,
    text: Shown,
    first_seen: f64,
    last_seen: f64,
    count: u64,
}

pub fn heard_view(state: &Class) -> Vec<HeardJson> {
    let mut heard = state.observatory.window("web").heard_all();
    heard.sort_by_key(|h| std::cmp::Reverse(h.last_seen));
    heard
        .into_iter()
        .map(|h| HeardJson {
            from: h.from.to_string(),
            text: Shown::new(&h.text),
            first_seen: seconds(h.first_seen),
            last_seen: seconds(h.last_seen),
            count: h.count,
        })
        .collect()
}
