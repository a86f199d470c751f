//! Per-source rate limiting: a token bucket for each source address, in a
//! table of bounded size, so a flood of spoofed sources costs bounded memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Sources tracked at once; past this, idle ones are forgotten first.
const MAX_SOURCES: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Allows `rate` events per second per source, in bursts of up to `rate`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// `rate` 0 means no limit.
    pub fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `source`; false if it has none left.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&source) {
            self.forget_idle(now);
            if self.buckets.len() >= MAX_SOURCES {
                // Every tracked source is busy: a new one waits until one is idle.
                return false;
            }
        }
        let rate = self.rate;
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let earned = now.saturating_duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + earned).min(rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops the buckets that would be full by now: they hold no information.
    fn forget_idle(&mut self, now: Instant) {
        let rate = self.rate;
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < rate
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut limiter = RateLimiter::new(10);
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!((0..100).filter(|_| limiter.allow(a, t0)).count(), 10);
        // Another source has its own bucket.
        assert!(limiter.allow(b, t0));
        // 0.5 s later, five more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| limiter.allow(a, t1)).count(), 5);
        // Idle for long, the bucket refills to the burst, no more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| limiter.allow(a, t2)).count(), 10);
    }

    #[test]
    fn zero_is_unlimited() {
        let mut limiter = RateLimiter::new(0);
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.allow("10.0.0.1".parse().unwrap(), now)));
    }

    #[test]
    fn memory_is_bounded_under_spoofed_floods() {
        let mut limiter = RateLimiter::new(5);
        let now = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 1000) {
            limiter.allow(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(limiter.buckets.len() <= MAX_SOURCES);
        // Once they are idle, new sources get in again.
        let later = now + Duration::from_secs(2);
        assert!(limiter.allow("192.0.2.1".parse().unwrap(), later));
    }
}
