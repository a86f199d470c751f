//! Live counters, shared by the services and read for systemd's STATUS= line
//! (and, at each scrape, by the Prometheus metrics: `observe::metrics`).
//! Plain relaxed atomics: counting costs a hot path next to nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

/// Why a peer or a datagram got no service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Outside the service's `allow` list.
    NotAllowed,
    /// A source that must never be answered (reflection, loops).
    BadSource,
    /// The answer would be larger than the request from a non-loopback peer.
    Amplification,
    /// Over the per-source rate limit.
    RateLimited,
    /// Over a size or count limit (a line, a message, a queue).
    OverLimit,
    /// Not what the service takes (JSON echo: not JSON).
    BadInput,
    /// The service had `max_clients` already.
    Full,
    /// Its source had `max_per_source` connections already.
    PerSource,
    /// JSON nested deeper than the limit.
    TooDeep,
    /// Closed for sending (or reading) nothing for too long.
    Timeout,
}

impl Refusal {
    pub const ALL: [Refusal; 10] = [
        Refusal::NotAllowed,
        Refusal::BadSource,
        Refusal::Amplification,
        Refusal::RateLimited,
        Refusal::OverLimit,
        Refusal::BadInput,
        Refusal::Full,
        Refusal::PerSource,
        Refusal::TooDeep,
        Refusal::Timeout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not allowed",
            Refusal::BadSource => "bad source",
            Refusal::Amplification => "amplification",
            Refusal::RateLimited => "rate limited",
            Refusal::OverLimit => "over limit",
            Refusal::BadInput => "bad input",
            Refusal::Full => "full",
            Refusal::PerSource => "per-source limit",
            Refusal::TooDeep => "too deep",
            Refusal::Timeout => "timeout",
        }
    }

    /// Its name as a key of the web API.
    pub fn key(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not_allowed",
            Refusal::BadSource => "bad_source",
            Refusal::Amplification => "amplification",
            Refusal::RateLimited => "rate_limited",
            Refusal::OverLimit => "over_limit",
            Refusal::BadInput => "bad_input",
            Refusal::Full => "full",
            Refusal::PerSource => "per_source",
            Refusal::TooDeep => "too_deep",
            Refusal::Timeout => "timeout",
        }
    }
}

/// Why a connection closed, as the metrics count it: a few kinds, fixed,
/// so every label exists from the start (the log keeps the words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The client closed it, said bye, or (web) ended its requests.
    Client,
    /// The server is shutting down.
    Shutdown,
    /// The client read or sent nothing for too long.
    Timeout,
    /// A chat client fell too far behind (`on_lag = "disconnect"`).
    Lagging,
    /// It sent what the service does not take.
    BadInput,
    /// The connection failed (reset, broken pipe).
    Error,
    /// Dropped before it ended (the drain's deadline, a failed service).
    Aborted,
    /// A reason not known here.
    Other,
}

impl Close {
    pub const ALL: [Close; 8] = [
        Close::Client,
        Close::Shutdown,
        Close::Timeout,
        Close::Lagging,
        Close::BadInput,
        Close::Error,
        Close::Aborted,
        Close::Other,
    ];

    /// The kind of the reason a service gave for the log.
    pub fn of(reason: &str) -> Close {
        match reason {
            "closed by the client" | "said bye" | "closed" => Close::Client,
            "server shutting down" => Close::Shutdown,
            "took nothing for write_timeout" | "idle for idle_timeout" | "header timeout" => {
                Close::Timeout
            }
            "bad input" | "bad request" => Close::BadInput,
            "connection failed" => Close::Error,
            r if r.starts_with("fell too far behind") => Close::Lagging,
            _ => Close::Other,
        }
    }

    /// Its name as a label value.
    pub fn key(self) -> &'static str {
        match self {
            Close::Client => "client",
            Close::Shutdown => "shutdown",
            Close::Timeout => "timeout",
            Close::Lagging => "lagging",
            Close::BadInput => "bad_input",
            Close::Error => "error",
            Close::Aborted => "aborted",
            Close::Other => "other",
        }
    }
}

/// What a service's counters mean, for the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// It holds clients (a TCP service).
    pub clients: bool,
    /// What its `messages` are: `lines`, `values`, `answered`, `sent`.
    pub messages: &'static str,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            clients: false,
            messages: "messages",
        }
    }
}

/// One service's counters.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// What they mean; set once, by the daemon.
    counts: OnceLock<Counts>,
    /// The service runs: the status line shows it.
    pub running: AtomicBool,
    /// Connected clients now (TCP services).
    pub clients: AtomicU64,
    /// Messages or datagrams answered, relayed or announced.
    pub messages: AtomicU64,
    /// Sends that failed (network down, no route); retried, never fatal.
    pub errors: AtomicU64,
    /// Chat lines and notices the NATS bridge could not pass on (NATS away,
    /// or its queue full): they reached this hub's room only.
    pub not_bridged: AtomicU64,
    /// Messages the NATS bridge published, and took from other hubs.
    pub bridge_sent: AtomicU64,
    pub bridge_received: AtomicU64,
    /// Chat lines handed to the room's readers (lines times readers).
    pub deliveries: AtomicU64,
    /// Chat lines readers skipped for falling behind.
    pub skipped: AtomicU64,
    /// Connections let in, ever (TCP services).
    pub accepted: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    closed: [AtomicU64; Close::ALL.len()],
    /// Announcements sent and failed by interface (`default` for the
    /// kernel's choice): a handful of names, written once a second at most.
    by_interface: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl ServiceStats {
    pub fn counts(&self) -> Counts {
        self.counts.get().copied().unwrap_or_default()
    }

    pub fn refuse(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Relaxed)
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.iter().map(|r| r.load(Relaxed)).sum()
    }

    /// A connection let in: counted now and ever.
    pub fn connected(&self) {
        self.clients.fetch_add(1, Relaxed);
        self.accepted.fetch_add(1, Relaxed);
    }

    /// A connection gone (served or not).
    pub fn disconnected(&self) {
        self.clients.fetch_sub(1, Relaxed);
    }

    /// A connection served closed, for this reason.
    pub fn close(&self, why: Close) {
        self.closed[why as usize].fetch_add(1, Relaxed);
    }

    pub fn closed(&self, why: Close) -> u64 {
        self.closed[why as usize].load(Relaxed)
    }

    /// An interface announcements go out of, counted from 0 from now on.
    pub fn expect_interface(&self, name: &str) {
        let mut by_interface = self.by_interface.lock().unwrap_or_else(|e| e.into_inner());
        by_interface.entry(name.to_owned()).or_default();
    }

    /// An announcement sent (or not) out of `interface`.
    pub fn announced(&self, interface: &str, sent: bool) {
        let mut by_interface = self.by_interface.lock().unwrap_or_else(|e| e.into_inner());
        let (ok, failed) = match by_interface.get_mut(interface) {
            Some(counts) => counts,
            None => by_interface.entry(interface.to_owned()).or_default(),
        };
        *(if sent { ok } else { failed }) += 1;
    }

    /// Announcements sent and failed, by interface.
    pub fn interfaces(&self) -> Vec<(String, u64, u64)> {
        let by_interface = self.by_interface.lock().unwrap_or_else(|e| e.into_inner());
        (by_interface.iter())
            .map(|(name, &(ok, failed))| (name.clone(), ok, failed))
            .collect()
    }

    pub fn message(&self) {
        self.messages.fetch_add(1, Relaxed);
    }

    pub fn messages(&self, n: usize) {
        if n > 0 {
            self.messages.fetch_add(n as u64, Relaxed);
        }
    }
}

/// Every service's counters, by service name.
#[derive(Debug, Default)]
pub struct Stats {
    services: Mutex<BTreeMap<&'static str, Arc<ServiceStats>>>,
}

impl Stats {
    /// The counters of the service named `name`, made on first use; a
    /// restarted service keeps counting where it was.
    pub fn service(&self, name: &'static str) -> Arc<ServiceStats> {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services.entry(name).or_default().clone()
    }

    /// The same, saying what they count.
    pub fn service_counting(&self, name: &'static str, counts: Counts) -> Arc<ServiceStats> {
        let stats = self.service(name);
        let _ = stats.counts.set(counts);
        stats
    }

    fn all(&self) -> Vec<(&'static str, Arc<ServiceStats>)> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services.iter().map(|(n, s)| (*n, s.clone())).collect()
    }
}

/// The one-line summary systemd shows, each service with what it counts,
/// then the refusals of all:
/// `chat 3 clients 1520 lines, json_echo 0 clients 40 values, udp_echo 12 answered, refused 3 (bad input 2, rate limited 1)`.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = self.all();
        for (name, stats) in all.iter().filter(|(_, s)| s.running.load(Relaxed)) {
            let counts = stats.counts();
            write!(f, "{name}")?;
            if counts.clients {
                write!(f, " {} clients", stats.clients.load(Relaxed))?;
            }
            write!(f, " {} {}, ", stats.messages.load(Relaxed), counts.messages)?;
        }
        let refused: u64 = all.iter().map(|(_, s)| s.refused_total()).sum();
        let not_bridged: u64 = all.iter().map(|(_, s)| s.not_bridged.load(Relaxed)).sum();
        write!(f, "refused {refused}")?;
        let mut reasons = Refusal::ALL
            .iter()
            .map(|&why| (why, all.iter().map(|(_, s)| s.refused(why)).sum::<u64>()))
            .filter(|(_, n)| *n > 0)
            .peekable();
        if reasons.peek().is_some() {
            let parts: Vec<String> = reasons
                .map(|(why, n)| format!("{} {n}", why.name()))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        if not_bridged > 0 {
            write!(f, ", not bridged {not_bridged}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line() {
        let stats = Stats::default();
        assert_eq!(stats.to_string(), "refused 0");
        let tcp = |messages| Counts {
            clients: true,
            messages,
        };
        let udp = |messages| Counts {
            clients: false,
            messages,
        };
        stats.service_counting("chat", tcp("lines"));
        stats.service_counting("udp_echo", udp("answered"));
        stats.service_counting("announcer", udp("sent"));
        stats.service_counting("discovery", udp("answered"));
        for name in ["chat", "udp_echo", "announcer"] {
            stats.service(name).running.store(true, Relaxed);
        }
        stats.service("chat").clients.fetch_add(3, Relaxed);
        stats.service("udp_echo").message();
        stats.service("udp_echo").refuse(Refusal::RateLimited);
        stats.service("chat").refuse(Refusal::BadSource);
        stats.service("udp_echo").refuse(Refusal::RateLimited);
        assert_eq!(
            stats.to_string(),
            "announcer 0 sent, chat 3 clients 0 lines, udp_echo 1 answered, refused 3 (bad source 1, rate limited 2)"
        );
        stats.service("chat").not_bridged.fetch_add(7, Relaxed);
        assert!(stats.to_string().ends_with(", not bridged 7"));
    }

    #[test]
    fn every_reason_a_service_gives_has_its_kind() {
        let kinds = [
            ("closed by the client", Close::Client),
            ("said bye", Close::Client),
            ("closed", Close::Client),
            ("server shutting down", Close::Shutdown),
            ("took nothing for write_timeout", Close::Timeout),
            ("idle for idle_timeout", Close::Timeout),
            ("header timeout", Close::Timeout),
            (
                "fell too far behind (on_lag = \"disconnect\")",
                Close::Lagging,
            ),
            ("bad input", Close::BadInput),
            ("bad request", Close::BadInput),
            ("connection failed", Close::Error),
            ("something new", Close::Other),
        ];
        for (reason, kind) in kinds {
            assert_eq!(Close::of(reason), kind, "{reason}");
        }
        let stats = ServiceStats::default();
        stats.connected();
        stats.close(Close::Timeout);
        stats.disconnected();
        assert_eq!(stats.closed(Close::Timeout), 1);
        assert_eq!(stats.clients.load(Relaxed), 0);
        assert_eq!(stats.accepted.load(Relaxed), 1);
    }
}
