//! Why a TCP connection closed, logged and counted: the reason its
//! service gives, or `aborted` if it was dropped before it gave one (the
//! drain's deadline, a service that failed). Apart from `accept`, which
//! calls it for every connection it serves.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use tracing::info;

use crate::logging::peer_line;
use crate::stats::{Close, ServiceStats};

/// Counts the connection's close in `stats` when dropped, with its reason.
struct Closing {
    stats: Arc<ServiceStats>,
    why: Close,
}

impl Drop for Closing {
    fn drop(&mut self) {
        self.stats.close(self.why);
    }
}

/// Serves a connection from `peer`; `served` says why it ended, for the
/// log and `stats`.
pub(crate) async fn closing(
    served: impl Future<Output = &'static str>,
    peer: IpAddr,
    stats: Arc<ServiceStats>,
) {
    let mut closing = Closing {
        stats,
        why: Close::Aborted,
    };
    let reason = served.await;
    closing.why = Close::of(reason);
    if peer_line(peer) {
        info!(reason, "closed");
    }
}
