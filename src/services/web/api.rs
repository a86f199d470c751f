//! The JSON API (`/api/v1/...`, `/healthz`): what the page is built on,
//! for scripts too. Times are Unix seconds and RFC 3339 text; durations
//! seconds and text; what a peer sent is a [`Shown`], never raw.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::live::Snapshots;
use super::rates::Rates;
use crate::config::{Table, WebConfig};
use crate::describe::SelfInfo;
use crate::observe::{Activity, ConnView, Observatory, RoomLine, Shown};
use crate::stats::Refusal;

/// What the views are made of: the services' windows, who this is, the rates.
pub struct Class {
    pub observatory: Arc<Observatory>,
    pub info: Arc<SelfInfo>,
    pub rates: Arc<Rates>,
}

/// What every handler can read.
#[derive(Clone)]
pub struct State {
    pub class: Arc<Class>,
    /// The newest snapshot, for the pages' streams.
    pub snapshots: Arc<Snapshots>,
    /// `[web]` as the last reload left it.
    pub settings: watch::Receiver<Arc<WebConfig>>,
    pub shutdown: CancellationToken,
    /// Requests a second per source.
    pub requests: Arc<std::sync::Mutex<crate::limit::RateLimiter>>,
}

impl std::ops::Deref for State {
    type Target = Class;

    fn deref(&self) -> &Class {
        &self.class
    }
}

/// The most connections one page of `/connections` holds.
const PAGE_MAX: usize = 1000;
/// The most events or lines one answer holds.
const LIST_MAX: usize = 10_000;

pub fn seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn time_text(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn duration_text(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// A JSON answer that no cache keeps.
fn fresh(value: impl Serialize) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(value)).into_response()
}

fn problem(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({ "error": message });
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

pub async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "no such page".into())
}

/// One service, as the page's card shows it.
#[derive(Serialize)]
pub struct ServiceView {
    name: &'static str,
    enabled: bool,
    running: bool,
    transport: Option<&'static str>,
    listen: Vec<String>,
    clients: Option<u64>,
    max_clients: Option<u64>,
    messages: u64,
    messages_name: &'static str,
    errors: u64,
    refused: serde_json::Map<String, serde_json::Value>,
    rate: RateView,
}

#[derive(Serialize)]
pub struct RateView {
    interval_seconds: u64,
    per_second: Vec<f64>,
}

#[derive(Serialize)]
pub struct StatusView {
    version: &'static str,
    host: String,
    now: f64,
    started_at: f64,
    started_at_text: String,
    uptime_seconds: f64,
    uptime_text: String,
    languages: Vec<&'static str>,
    services: Vec<ServiceView>,
}

pub fn status_view(state: &Class) -> StatusView {
    let observatory = &state.observatory;
    let config = observatory.config();
    let tables = serde_json::to_value(&*config).unwrap_or_default();
    let now = SystemTime::now();
    let started = observatory.started();
    let services = config
        .tables()
        .into_iter()
        .map(|table| service_view(state, table, &tables))
        .collect();
    StatusView {
        version: env!("CARGO_PKG_VERSION"),
        host: state.info.host().to_owned(),
        now: seconds(now),
        started_at: seconds(started),
        started_at_text: time_text(started),
        uptime_seconds: now
            .duration_since(started)
            .unwrap_or_default()
            .as_secs_f64(),
        uptime_text: duration_text(now.duration_since(started).unwrap_or_default()),
        languages: super::assets::LANGUAGES
            .iter()
            .map(|(tag, _)| *tag)
            .collect(),
        services,
    }
}

fn service_view(state: &Class, table: &dyn Table, tables: &serde_json::Value) -> ServiceView {
    let name = table.name();
    let observatory = &state.observatory;
    let stats = observatory.stats().service(name);
    let counts = stats.counts();
    let running = table.enabled() && stats.running.load(Relaxed);
    let bound = observatory.addrs(name);
    // Where it listens, or would if it ran; nowhere while disabled.
    let listen = match (bound.is_empty(), table.listen()) {
        (false, _) => bound,
        (true, Some((_, addrs))) if table.enabled() => addrs.to_vec(),
        (true, _) => Vec::new(),
    };
    let max_clients = tables[name]["max_clients"].as_u64();
    let refused = Refusal::ALL
        .iter()
        .map(|why| (why.key().to_owned(), stats.refused(*why).into()))
        .collect();
    let (interval, per_second) = state.rates.of(name);
    ServiceView {
        name,
        enabled: table.enabled(),
        running,
        transport: table.listen().map(|(transport, _)| transport.name()),
        listen: listen.iter().map(ToString::to_string).collect(),
        clients: counts.clients.then(|| stats.clients.load(Relaxed)),
        max_clients,
        messages: stats.messages.load(Relaxed),
        messages_name: counts.messages,
        errors: stats.errors.load(Relaxed),
        refused,
        rate: RateView {
            interval_seconds: interval.as_secs(),
            per_second,
        },
    }
}

pub async fn status(Extract(state): Extract<State>) -> Response {
    fresh(status_view(&state))
}

/// 200 when every enabled service runs; 503 naming those that do not.
pub async fn healthz(Extract(state): Extract<State>) -> Response {
    let config = state.observatory.config();
    let reasons: Vec<String> = config
        .tables()
        .into_iter()
        .filter(|table| table.enabled())
        .filter(|table| {
            !(state.observatory.stats().service(table.name()))
                .running
                .load(Relaxed)
        })
        .map(|table| format!("{} is not running", table.name()))
        .chain((state.observatory.failing().into_iter()).map(|(name, why)| format!("{name} {why}")))
        .collect();
    if reasons.is_empty() {
        fresh(serde_json::json!({ "status": "ok" }))
    } else {
        let body = serde_json::json!({ "status": "failing", "reasons": reasons });
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CACHE_CONTROL, "no-store")],
            Json(body),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
pub struct ConnQuery {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    offset: Option<usize>,
}

/// A connection, open or closed.
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
    Ok(conn_json(service, closed, total, offset, limit, &page))
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

fn window_of(state: &Class, service: &str) -> Result<Arc<crate::observe::Window>, String> {
    let config = state.observatory.config();
    let table = config
        .tables()
        .into_iter()
        .find(|t| t.name() == service)
        .ok_or_else(|| format!("no service named {service:?}"))?;
    Ok(state.observatory.window(table.name()))
}

/// A query string that is not what the endpoint takes, in the API's words.
fn bad_query(rejection: QueryRejection) -> Response {
    problem(StatusCode::BAD_REQUEST, rejection.body_text())
}

pub async fn connections(
    Extract(state): Extract<State>,
    query: Result<Query<ConnQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(rejection) => return bad_query(rejection),
    };
    let Some(service) = q.service else {
        return problem(StatusCode::BAD_REQUEST, "service= is required".into());
    };
    let closed = match q.state.as_deref() {
        None | Some("open") => false,
        Some("closed") => true,
        Some(other) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("state must be open or closed, not {other:?}"),
            );
        }
    };
    let sort = q
        .sort
        .as_deref()
        .unwrap_or(if closed { "closed_at" } else { "since" });
    let descending = match q.order.as_deref() {
        None => closed,
        Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("order must be asc or desc, not {other:?}"),
            );
        }
    };
    let limit = q.limit.unwrap_or(100).min(PAGE_MAX);
    let page = conn_page(
        &state,
        &service,
        closed,
        sort,
        descending,
        q.offset.unwrap_or(0),
        limit,
    );
    match page {
        Ok(page) => fresh(page),
        Err(why) => problem(StatusCode::BAD_REQUEST, why),
    }
}

/// An event, with its time.
#[derive(Serialize)]
pub struct ActivityJson {
    #[serde(flatten)]
    activity: Activity,
    at: f64,
    at_text: String,
}

pub fn activity_view(window: &crate::observe::Window, limit: usize) -> Vec<ActivityJson> {
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

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn activity(
    Extract(state): Extract<State>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(rejection) => return bad_query(rejection),
    };
    let Some(service) = q.service else {
        return problem(StatusCode::BAD_REQUEST, "service= is required".into());
    };
    match window_of(&state, &service) {
        Ok(window) => {
            let events = activity_view(&window, q.limit.unwrap_or(LIST_MAX).min(LIST_MAX));
            fresh(serde_json::json!({ "service": service, "events": events }))
        }
        Err(why) => problem(StatusCode::BAD_REQUEST, why),
    }
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

pub async fn room(
    Extract(state): Extract<State>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(rejection) => return bad_query(rejection),
    };
    let limit = q.limit.unwrap_or(LIST_MAX).min(LIST_MAX);
    fresh(serde_json::json!({ "lines": room_view(&state, limit) }))
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

pub async fn heard(Extract(state): Extract<State>) -> Response {
    fresh(serde_json::json!({ "heard": heard_view(&state) }))
}
