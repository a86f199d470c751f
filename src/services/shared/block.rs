//! An address the teacher blocked, refused at every TCP service's gate
//! (the chat's listeners and its door from the web's chat box, JSON echo)
//! and told why, with the time left, in the service's own voice: the voice
//! of its `full` refusal, a `*** ` notice for the chat, a JSON error object
//! for JSON echo. A service whose refusals are HTTP answers (the web page)
//! is never blocked: the teacher may share the blocked address (one NAT, one
//! lab machine), and its page is how the block is lifted.
//!
//! The blocks themselves are kept by the observatory
//! ([`Teacher`](crate::observe::teacher::Teacher)), shared by every service.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tracing::info;

use crate::jsonstream::error_line;
use crate::logging::peer_line;
use crate::observe::{Event, Window};
use crate::stats::Refusal;

/// What a blocked `peer` of `window`'s service is told, in the voice of
/// the service's `full` refusal, the refusal counted (as `not allowed`)
/// and shown; None when `peer` is not blocked (or the service never is).
pub(crate) fn refusal(window: &Window, full: &[u8], peer: SocketAddr) -> Option<Bytes> {
    let left = window.teacher().blocked(peer.ip())?;
    let text = blocked_text(left);
    let told: Bytes = if full.starts_with(b"***") {
        format!("*** {text}\n").into()
    } else if full.starts_with(b"{") {
        error_line(&text, None).into()
    } else {
        return None;
    };
    window.stats.refuse(Refusal::NotAllowed);
    if peer_line(peer.ip()) {
        info!(peer = %peer.ip(), "refused: blocked by the teacher");
    }
    if window.shows_problem() {
        window.turned_away(peer, "refused: blocked by the teacher");
        window.record(Event {
            peer: Some(peer),
            kind: "refused",
            reason: Some(text),
            ..Event::default()
        });
    }
    Some(told)
}

/// `your address is blocked by the teacher for 4 more minutes`.
pub fn blocked_text(left: Duration) -> String {
    format!(
        "your address is blocked by the teacher for {}",
        time_left(left)
    )
}

/// `4 more minutes`, `1 more minute`, `30 more seconds`: rounded up, so
/// the last second is `1 more second`, never `0`.
pub fn time_left(left: Duration) -> String {
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let (n, unit) = match seconds {
        0..=119 => (seconds.max(1), "second"),
        120..=7199 => (seconds.div_ceil(60), "minute"),
        _ => (seconds.div_ceil(3600), "hour"),
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} more {unit}{plural}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::observe::Observatory;

    #[test]
    fn the_time_left_is_rounded_up_in_words() {
        let told = |ms| time_left(Duration::from_millis(ms));
        assert_eq!(told(1), "1 more second");
        assert_eq!(told(30_000), "30 more seconds");
        assert_eq!(told(119_000), "119 more seconds");
        assert_eq!(told(120_000), "2 more minutes");
        assert_eq!(told(239_500), "4 more minutes");
        assert_eq!(told(7_200_000), "2 more hours");
    }

    #[test]
    fn a_blocked_peer_is_told_in_the_voice_of_its_service() {
        let observatory = Observatory::new(Arc::default(), &Config::default());
        let window = observatory.window("chat");
        let ip: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(refusal(&window, b"*** full\n", ip), None);
        observatory
            .teacher()
            .block(ip.ip(), Duration::from_secs(240))
            .unwrap();
        let chat = refusal(&window, b"*** full\n", ip).unwrap();
        assert_eq!(
            chat,
            "*** your address is blocked by the teacher for 4 more minutes\n"
        );
        let json = refusal(&window, br#"{"error":"busy"}"#, ip).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value["error"],
            "your address is blocked by the teacher for 4 more minutes"
        );
        assert_eq!(
            refusal(&window, b"HTTP/1.1 503", ip),
            None,
            "the page never"
        );
    }
}
