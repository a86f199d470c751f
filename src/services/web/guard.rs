//! What guards the page's actions, with nothing of the API in it: whether
//! a request comes from a page of this server (`Origin`), for the chat box
//! and the teacher's actions, and the count of wrong teacher tokens by
//! address, which slows a guesser to [`FAILURES_A_MINUTE`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};

/// Wrong or missing tokens one address may send a minute.
pub const FAILURES_A_MINUTE: u32 = 5;
const MINUTE: Duration = Duration::from_secs(60);
/// Addresses whose failures are remembered at once; past this, an address
/// not among them is refused until some minute ends (a flood of sources
/// costs bounded memory, and gets no tries).
const SOURCES_MAX: usize = 4096;

/// A browser sends `Origin`; it must be this server (`Host`). A script
/// that sends none is not a browser another site could lead.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = origin.to_str().ok();
    let authority = origin.and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    matches!((authority, host), (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host))
}

/// The failures of each address in its current minute.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<IpAddr, (Instant, u32)>>);

impl Failures {
    /// How long `source` must wait, if it has used up its failures.
    pub fn wait(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        failures.retain(|_, (since, _)| now.duration_since(*since) < MINUTE);
        match failures.get(&source) {
            Some((since, count)) if *count >= FAILURES_A_MINUTE => {
                Some(MINUTE.saturating_sub(now.duration_since(*since)))
            }
            None if failures.len() >= SOURCES_MAX => Some(MINUTE),
            _ => None,
        }
    }

    /// Counts one failure of `source`.
    pub fn failed(&self, source: IpAddr, now: Instant) {
        let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() < SOURCES_MAX || failures.contains_key(&source) {
            failures.entry(source).or_insert((now, 0)).1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_a_minute_then_a_wait() {
        let failures = Failures::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let start = Instant::now();
        for _ in 0..FAILURES_A_MINUTE {
            assert_eq!(failures.wait(ip, start), None);
            failures.failed(ip, start);
        }
        let wait = failures.wait(ip, start + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(failures.wait(ip, start + MINUTE), None, "a new minute");
    }
}
