//! Live counters, shared by the services and read for systemd's STATUS= line.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

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
    /// Over a size or count limit (line, message, clients).
    OverLimit,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [
        Refusal::NotAllowed,
        Refusal::BadSource,
        Refusal::Amplification,
        Refusal::RateLimited,
        Refusal::OverLimit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not allowed",
            Refusal::BadSource => "bad source",
            Refusal::Amplification => "amplification",
            Refusal::RateLimited => "rate limited",
            Refusal::OverLimit => "over limit",
        }
    }
}

/// One service's counters.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// Connected clients now (TCP services).
    pub clients: AtomicU64,
    /// Messages or datagrams answered, relayed or announced.
    pub messages: AtomicU64,
    /// Sends that failed (network down, no route); retried, never fatal.
    pub errors: AtomicU64,
    /// Chat lines and notices the NATS bridge could not pass on (NATS away,
    /// or its queue full): they reached this hub's room only.
    pub not_bridged: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
}

impl ServiceStats {
    pub fn refuse(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Relaxed)
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.iter().map(|r| r.load(Relaxed)).sum()
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

    fn all(&self) -> Vec<Arc<ServiceStats>> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services.values().cloned().collect()
    }
}

/// The one-line summary systemd shows: `clients 3, messages 1520, refused 12 (rate limited 10, bad source 2)`.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = self.all();
        let clients: u64 = all.iter().map(|s| s.clients.load(Relaxed)).sum();
        let messages: u64 = all.iter().map(|s| s.messages.load(Relaxed)).sum();
        let refused: u64 = all.iter().map(|s| s.refused_total()).sum();
        let not_bridged: u64 = all.iter().map(|s| s.not_bridged.load(Relaxed)).sum();
        write!(
            f,
            "clients {clients}, messages {messages}, refused {refused}"
        )?;
        let mut reasons = Refusal::ALL
            .iter()
            .map(|&why| (why, all.iter().map(|s| s.refused(why)).sum::<u64>()))
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
        assert_eq!(stats.to_string(), "clients 0, messages 0, refused 0");
        stats.service("chat").clients.fetch_add(3, Relaxed);
        stats.service("udp_echo").message();
        stats.service("udp_echo").refuse(Refusal::RateLimited);
        stats.service("discovery").refuse(Refusal::BadSource);
        stats.service("discovery").refuse(Refusal::RateLimited);
        assert_eq!(
            stats.to_string(),
            "clients 3, messages 1, refused 3 (bad source 1, rate limited 2)"
        );
        stats.service("chat").not_bridged.fetch_add(7, Relaxed);
        assert_eq!(
            stats.to_string(),
            "clients 3, messages 1, refused 3 (bad source 1, rate limited 2), not bridged 7"
        );
    }
}
