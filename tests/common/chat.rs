//! The chat hub in-process, for tests whose clients are blocking sockets.

use std::net::SocketAddr;

use pinetd::config::Config;
use pinetd::daemon::Daemon;
use tokio::runtime::Runtime;

/// A hub with every other setting the embedded default's, then `edit`ed:
/// its runtime, the daemon and the hub's (first) address.
pub fn hub(edit: impl FnOnce(&mut Config)) -> (Runtime, Daemon, SocketAddr) {
    let (runtime, daemon) = super::start_on_runtime(super::config(|c| {
        c.chat.enabled = true;
        edit(c);
    }));
    let addr = daemon.addrs("chat")[0];
    (runtime, daemon, addr)
}
