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
//! The parts: [`assets`] (the page, its language), [`views`] (what the
//! page and the API show), [`api`] (the JSON endpoints and `/metrics`),
//! [`live`] (the snapshots pages stream) and [`stream`] (a page's stream),
//! [`chatbox`] (the WebSocket into the room), [`heard`] (the Pis heard
//! announcing), [`teacher`] (who may act as the teacher, with [`guard`])
//! and [`actions`]
//! (what the teacher does: kick, mute, rename, say, block).

mod actions;
mod api;
mod assets;
mod chatbox;
mod guard;
mod heard;
mod live;
mod stream;
mod teacher;
mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::{Instrument, debug, error};

use crate::config::{Config, TableIn, WebConfig};
use crate::describe::SelfInfo;
use crate::net::{BindError, Sockets};
use crate::observe::metrics::Metrics;
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
/// Requests a second from one address, at most (a page makes a few).
const REQUESTS_A_SECOND: u32 = 50;
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
        let table = &with_token(&config.web);
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

/// `table` with its teacher's token read, if the config was made in code
/// rather than loaded (which reads it, or fails naming the file): a token
/// file that cannot be read then leaves the page read-only, and says so.
fn with_token(table: &WebConfig) -> WebConfig {
    let mut table = table.clone();
    if !table.admin_token_file.is_empty() && !table.admin_token.is_set() {
        if let Err(e) = table.read_admin_token() {
            error!(error = %e, "[web] admin_token_file: the page stays read-only");
        }
    }
    table
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
            let class = Arc::new(views::Class {
                observatory: self.observatory.clone(),
                info: self.info.clone(),
            });
            let snapshots = Arc::new(live::Snapshots::new(class.clone()));
            let state = api::State {
                requests: Arc::new(std::sync::Mutex::new(crate::limit::RateLimiter::new(
                    REQUESTS_A_SECOND,
                ))),
                snapshots: snapshots.clone(),
                settings: self.listeners.settings(),
                shutdown: shutdown.clone(),
                metrics: Arc::new(Metrics::new(self.observatory.clone())),
                failures: Arc::default(),
                class,
            };
            let router = router(state);
            let mut tasks = JoinSet::new();
            let hear = heard::hear(self.observatory.clone(), self.window.clone());
            tasks.spawn(until(shutdown.clone(), live::run(snapshots)).in_current_span());
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
        let table = &with_token(&config.web);
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
    let admitted = axum::middleware::from_fn_with_state(state.clone(), admit);
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{*file}", get(assets::file))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/connections", get(api::connections))
        .route("/api/v1/activity", get(api::activity))
        .route("/api/v1/room", get(api::room))
        .route("/api/v1/heard", get(api::heard))
        .route("/api/v1/stream", get(stream::stream))
        .route("/api/v1/chat", get(chatbox::join))
        .route("/api/v1/teacher", get(actions::view))
        .route("/api/v1/teacher/signin", post(actions::sign_in))
        .route("/api/v1/teacher/transcript", get(actions::transcript))
        .route("/api/v1/teacher/kick", post(actions::kick))
        .route("/api/v1/teacher/mute", post(actions::mute))
        .route("/api/v1/teacher/rename", post(actions::rename))
        .route("/api/v1/teacher/say", post(actions::say))
        .route("/api/v1/teacher/block", post(actions::block))
        .route("/api/v1/teacher/unblock", post(actions::unblock))
        .fallback(api::not_found)
        .layer(admitted)
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

/// Answers only requests for this server by a name it knows (`Host`: an
/// address, `localhost`, this host's name, or one of `[web] hosts`): a
/// page of another site whose name was rebound to the Pi's address gets
/// nothing, though the browser calls it the same origin. And at most
/// [`REQUESTS_A_SECOND`] from one address: the runtime is every service's.
async fn admit(
    axum::extract::State(state): axum::extract::State<api::State>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let host = (request.headers().get(header::HOST)).and_then(|h| h.to_str().ok());
    let hosts = state.settings.borrow().hosts.clone();
    if !host.is_some_and(|host| host_is_known(host, state.info.host(), &hosts)) {
        let why = "this page answers to its address, localhost or its host name (add others to [web] hosts)\n";
        return (StatusCode::MISDIRECTED_REQUEST, why).into_response();
    }
    let peer = request.extensions().get::<Peer>().map(|p| p.addr.ip());
    let paced = peer.is_none_or(|ip| {
        let mut requests = state.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.allow(ip, std::time::Instant::now())
    });
    if !paced {
        let why = "too many requests from your address, slow down\n";
        return (StatusCode::TOO_MANY_REQUESTS, why).into_response();
    }
    next.run(request).await
}

/// `host` (a `Host` header) is an address, `localhost`, `me`, `me.local`,
/// or one of `hosts`, with any port.
fn host_is_known(host: &str, me: &str, hosts: &[String]) -> bool {
    if let Some(v6) = host.strip_prefix('[') {
        return v6
            .split(']')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => name,
        _ => host,
    };
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let me = me.to_ascii_lowercase();
    name == "localhost" || name == me || name == format!("{me}.local") || hosts.contains(&name)
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

#[cfg(test)]
mod tests {
    use super::host_is_known;

    #[test]
    fn only_names_of_this_server_are_answered() {
        let hosts = ["pi07.school.example".to_owned()];
        for known in [
            "127.0.0.1:8080",
            "192.168.1.20",
            "[::1]:8080",
            "localhost:8080",
            "Pi-Lab",
            "pi-lab.local:8080",
            "pi07.school.example:80",
        ] {
            assert!(host_is_known(known, "pi-lab", &hosts), "{known}");
        }
        for unknown in [
            "evil.example",
            "pi-lab.evil.example",
            "[evil]",
            "localhost.evil:80",
            "",
        ] {
            assert!(!host_is_known(unknown, "pi-lab", &hosts), "{unknown}");
        }
    }
}
