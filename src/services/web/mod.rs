//! The web service: one live page of the whole class, its JSON API and a
//! chat box that joins the room, served over HTTP (axum on hyper) on the
//! daemon's runtime. It reads the other services only through the
//! [`Observatory`] they publish to, never their internals; every asset is
//! inside the binary.
//!
//! Its connections come through the same accept plumbing as the TCP
//! services (`allow`, `max_clients`, `max_per_source`, counted for as long
//! as a stream or a WebSocket lives), and each is served by hyper with a
//! header-read timeout and a header size limit, so a slow or hostile peer
//! costs one connection of its own.
//!
//! The parts: [`assets`] (the page, its language), [`api`] (what the JSON
//! endpoints say), [`live`] (the snapshots pages stream, and the rates),
//! [`chatbox`] (the WebSocket into the room), [`heard`] (the Pis heard
//! announcing).

mod api;
mod assets;
mod chatbox;
mod heard;
mod live;
mod rates;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::{Instrument, debug};

use crate::config::{Config, TableIn, WebConfig};
use crate::describe::SelfInfo;
use crate::net::{BindError, Sockets};
use crate::observe::{Observatory, Window};
use crate::services::shared::accept::{Gate, Listeners, Policy, Refusals};
use crate::services::{
    BindContext, Reconfigured, Registered, Service, ServiceFuture, first_failure,
};
use crate::stats::Counts;

const NAME: &str = WebConfig::NAME;

/// The most bytes of a request's headers.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most bytes of a request's body (the API takes none yet).
const MAX_BODY_BYTES: usize = 16 * 1024;
/// A connection finishing its request on shutdown gets this long.
const DRAIN: Duration = Duration::from_secs(1);

pub struct Web {
    listeners: Listeners<WebConfig>,
    gate: Arc<Gate>,
    observatory: Arc<Observatory>,
    window: Arc<Window>,
    info: Arc<SelfInfo>,
}

fn policy(config: &WebConfig) -> Policy {
    Policy::new(&config.allow, config.max_clients, config.max_per_source)
}

impl Registered for Web {
    type Table = WebConfig;
    const COUNTS: Counts = Counts {
        clients: true,
        messages: "requests",
    };

    fn bind(config: &Config, context: BindContext<'_>) -> Result<Self, BindError> {
        let table = &config.web;
        let refusals = Refusals {
            full: http_refusal("503 Service Unavailable", "server busy, try again later"),
            crowded: http_refusal(
                "429 Too Many Requests",
                "too many connections from your address",
            ),
        };
        let (listeners, gate) = Listeners::bind(
            NAME,
            table,
            &table.listen,
            policy(table),
            refusals,
            context.window.clone(),
            context.sockets,
        )?;
        Ok(Self {
            listeners,
            gate,
            observatory: context.observatory,
            window: context.window,
            info: context.info,
        })
    }
}

/// A whole HTTP answer, written to a refused peer before it is closed.
fn http_refusal(status: &str, why: &str) -> bytes::Bytes {
    let body = format!("{why}\n");
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into()
}

impl Service for Web {
    fn name(&self) -> &'static str {
        NAME
    }

    fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.local_addrs()
    }

    fn run(self: Arc<Self>, shutdown: CancellationToken) -> ServiceFuture {
        Box::pin(async move {
            let class = Arc::new(api::Class {
                observatory: self.observatory.clone(),
                info: self.info.clone(),
                rates: Arc::default(),
            });
            let (live, snapshots) = live::Live::new(class.clone());
            let state = api::State {
                class,
                snapshots,
                shutdown: shutdown.clone(),
            };
            let router = router(state);
            let mut tasks = JoinSet::new();
            let hear = heard::hear(self.observatory.clone(), self.window.clone());
            tasks.spawn(until(shutdown.clone(), live.run()).in_current_span());
            tasks.spawn(until(shutdown.clone(), hear).in_current_span());
            let this = self.clone();
            tasks.spawn(async move { this.serve(router, &shutdown).await }.in_current_span());
            first_failure(&mut tasks).await
        })
    }

    fn reconfigure(
        &self,
        config: &Config,
        sockets: &mut Sockets,
    ) -> Option<Result<Reconfigured, BindError>> {
        let table = &config.web;
        Some(
            self.listeners
                .reconfigure(NAME, table, &table.listen, policy(table), sockets),
        )
    }
}

/// Runs `task` (which cannot fail) until it ends or `shutdown`.
async fn until(shutdown: CancellationToken, task: impl Future<Output = ()>) -> std::io::Result<()> {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = task => {}
    }
    Ok(())
}

/// Every route, with the headers every answer carries.
fn router(state: api::State) -> Router {
    let csp = HeaderValue::from_static(assets::CONTENT_SECURITY_POLICY);
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{*file}", get(assets::file))
        .route("/healthz", get(api::healthz))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/connections", get(api::connections))
        .route("/api/v1/activity", get(api::activity))
        .route("/api/v1/room", get(api::room))
        .route("/api/v1/heard", get(api::heard))
        .route("/api/v1/stream", get(live::stream))
        .route("/api/v1/chat", get(chatbox::join))
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            csp,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .with_state(state)
}

/// Who is asking, and the hold that keeps its connection counted while
/// something it started (a WebSocket) lives on after the HTTP exchange.
#[derive(Clone)]
pub(crate) struct Peer {
    pub addr: SocketAddr,
    pub hold: mpsc::Sender<()>,
}

impl Web {
    /// Takes connections until `shutdown`, each served by hyper.
    async fn serve(&self, router: Router, shutdown: &CancellationToken) -> std::io::Result<()> {
        let handle = |config: &Arc<WebConfig>, stream: TcpStream, addr: SocketAddr| {
            let router = router.clone();
            let (shutdown, window) = (shutdown.clone(), self.window.clone());
            let header_timeout = config.header_timeout;
            async move {
                let connection = Connection {
                    addr,
                    window,
                    header_timeout,
                };
                connection.serve(router, stream, shutdown).await
            }
        };
        self.listeners.serve(&self.gate, shutdown, handle).await
    }
}

/// One HTTP connection.
struct Connection {
    addr: SocketAddr,
    window: Arc<Window>,
    header_timeout: Duration,
}

impl Connection {
    /// Serves it (and whatever it upgraded to); why it ended.
    async fn serve(
        self,
        router: Router,
        stream: TcpStream,
        shutdown: CancellationToken,
    ) -> &'static str {
        let Connection {
            addr,
            window,
            header_timeout,
        } = self;
        let (hold, mut held) = mpsc::channel::<()>(1);
        let router = router.layer(axum::Extension(Peer { addr, hold }));
        let counted = tower::ServiceBuilder::new()
            .map_request(move |request: hyper::Request<hyper::body::Incoming>| {
                window.stats.message();
                request
            })
            .service(router);
        let service = TowerToHyperService::new(counted);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_HEADER_BYTES);
        let mut connection = Box::pin(
            builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades(),
        );
        let reason = tokio::select! {
            served = connection.as_mut() => match served {
                Ok(()) => "closed",
                Err(e) if e.is_timeout() => "header timeout",
                Err(e) => {
                    debug!(error = %e, "http");
                    "bad request"
                }
            },
            _ = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(DRAIN, connection.as_mut()).await;
                "server shutting down"
            }
        };
        // A WebSocket it upgraded to keeps the connection counted until it ends.
        drop(connection);
        let _ = held.recv().await;
        reason
    }
}
