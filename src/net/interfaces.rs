//! This host's interface addresses, read again once they are a few seconds
//! old, so a Pi whose Wi-Fi comes up after boot is seen, without a system
//! call per datagram.

use std::time::{Duration, Instant};

use if_addrs::Interface;

/// How long a reading of the interfaces is used before the next.
const MAX_AGE: Duration = Duration::from_secs(5);

/// The host's interfaces as last read.
#[derive(Debug, Default)]
pub struct Interfaces {
    list: Vec<Interface>,
    read_at: Option<Instant>,
}

impl Interfaces {
    /// Reads them again if the last reading is too old; true if it did.
    /// A failed reading keeps the last one.
    pub fn refresh(&mut self, now: Instant) -> bool {
        if self
            .read_at
            .is_some_and(|at| now.saturating_duration_since(at) <= MAX_AGE)
        {
            return false;
        }
        self.read_at = Some(now);
        if let Ok(list) = if_addrs::get_if_addrs() {
            self.list = list;
        }
        true
    }

    pub fn list(&self) -> &[Interface] {
        &self.list
    }
}
