//! `GET /api/v1/stream`: a page's live view, as Server-Sent Events: the
//! newest snapshot at once, then each one [`live`](super::live) makes.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::State as Extract;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

use super::Peer;
use super::api::State;
use super::live::Frame;
use crate::config::WebConfig;
use crate::net::allowed;
use crate::observe::Watching;

/// A stream says it is alive this often.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const PING: &[u8] = b"event: ping\ndata: \n\n";

/// `GET /api/v1/stream`: a snapshot at once, then each new one, until the
/// page goes, the daemon stops, or `[web] allow` no longer admits it.
pub async fn stream(Extract(state): Extract<State>, Extension(peer): Extension<Peer>) -> Response {
    let watching = state.observatory.watch();
    let mut newest = state.snapshots.subscribe();
    let first = state.snapshots.fresh();
    newest.mark_unchanged();
    let open = Open {
        first: Some(first.bytes),
        newest,
        settings: state.settings.clone(),
        peer: peer.addr.ip(),
        shutdown: state.shutdown.clone(),
        _watching: watching,
        _hold: peer.hold,
    };
    let events = futures_util::stream::unfold(open, |mut open| async move {
        let next = open.next().await?;
        Some((Ok::<_, Infallible>(next), open))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

/// One page's stream.
struct Open {
    first: Option<Bytes>,
    newest: watch::Receiver<Frame>,
    settings: watch::Receiver<Arc<WebConfig>>,
    peer: IpAddr,
    shutdown: CancellationToken,
    /// The services record everything while it is open.
    _watching: Watching,
    /// Counted as its connection while it lives.
    _hold: tokio::sync::mpsc::Sender<()>,
}

impl Open {
    /// The next bytes to send; None when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                changed = self.newest.changed() => {
                    changed.ok()?;
                    return Some(self.newest.borrow_and_update().bytes.clone());
                }
                changed = self.settings.changed() => {
                    changed.ok()?;
                    let allow = self.settings.borrow_and_update().allow.clone();
                    if !allowed(&allow, self.peer) {
                        return None;
                    }
                }
                _ = sleep(KEEP_ALIVE) => return Some(Bytes::from_static(PING)),
            }
        }
    }
}
