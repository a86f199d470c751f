//! The JSON API (`/api/v1/...`, `/healthz`): what the page is built on,
//! for scripts too ([`views`](super::views) makes what it says).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::guard::Failures;
use super::live::Snapshots;
use super::views::{
    Class, activity_view, conn_page, heard_view, room_view, status_view, window_of,
};
use crate::config::WebConfig;
use crate::observe::metrics::{Metrics, OPENMETRICS_TYPE, TEXT_TYPE};

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
    /// The counters for Prometheus.
    pub metrics: Arc<Metrics>,
    /// Wrong teacher tokens, by address.
    pub failures: Arc<Failures>,
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

/// A JSON answer that no cache keeps.
pub(super) fn fresh(value: impl Serialize) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(value)).into_response()
}

/// An error answer: `{"error": message}`.
pub(super) fn problem(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({ "error": message });
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

pub async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "no such page".into())
}

pub async fn status(Extract(state): Extract<State>) -> Response {
    fresh(status_view(&state))
}

/// Every counter, for Prometheus: OpenMetrics to whoever asks for it (as
/// Prometheus does), the Prometheus text format to the others.
pub async fn metrics(Extract(state): Extract<State>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok());
    let (content_type, body) = if accept.is_some_and(|a| a.contains("application/openmetrics-text"))
    {
        (OPENMETRICS_TYPE, state.metrics.openmetrics())
    } else {
        (TEXT_TYPE, state.metrics.text())
    };
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (headers, body).into_response()
}

/// 200 when every enabled service runs; 503 naming those that do not.
pub async fn healthz(Extract(state): Extract<State>) -> Response {
    let reasons = state.observatory.reasons();
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

pub async fn heard(Extract(state): Extract<State>) -> Response {
    fresh(serde_json::json!({ "heard": heard_view(&state) }))
}
