//! Per-source rate limiting: a token bucket for each source address, in a
//! table of bounded size, so a flood of spoofed sources costs bounded memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sources tracked at once; past this, idle ones are forgotten first.
const MAX_SOURCES: usize = 16_384;

/// A token bucket: `rate` tokens a second, holding at most `rate` (one
/// second's burst). A rate of 0 means no limit.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            at: now,
        }
    }

    fn unlimited(&self) -> bool {
        self.rate <= 0.0
    }

    /// The tokens at `now`, with what was earned since last time.
    fn tokens_at(&self, now: Instant) -> f64 {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        (self.tokens + earned).min(self.rate)
    }

    fn refill(&mut self, now: Instant) {
        self.tokens = self.tokens_at(now);
        self.at = self.at.max(now);
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.unlimited() {
            return true;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes a token whether or not there is one: the debt is paid off
    /// before [`ready_at`](Self::ready_at) says the next may go.
    pub fn take(&mut self, now: Instant) {
        if !self.unlimited() {
            self.refill(now);
            self.tokens -= 1.0;
        }
    }

    /// When the next token is there: None if it is there at `now`.
    pub fn ready_at(&self, now: Instant) -> Option<Instant> {
        if self.unlimited() || self.tokens_at(now) >= 1.0 {
            return None;
        }
        let at = self.at + Duration::from_secs_f64((1.0 - self.tokens) / self.rate);
        // Rounding may put it a nanosecond behind `now`: ready then.
        Some(at).filter(|&at| at > now)
    }

    /// A new rate (from a reload); a bucket that had no limit starts full.
    pub fn set_rate(&mut self, rate: u32, now: Instant) {
        if self.unlimited() {
            *self = Self::new(rate, now);
            return;
        }
        self.refill(now);
        self.rate = f64::from(rate);
        self.tokens = self.tokens.min(self.rate);
    }

    /// Full again at `now`: one can forget it and start anew.
    fn full_at(&self, now: Instant) -> bool {
        self.tokens_at(now) >= self.rate
    }
}

/// A token bucket per source address, in a table of bounded size.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u32,
    buckets: HashMap<IpAddr, TokenBucket>,
}

impl RateLimiter {
    /// `rate` datagrams a second per source, in bursts of up to `rate`; 0 means no limit.
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Takes one of `source`'s tokens; false if it has none (or the table is
    /// full of sources that are all busy).
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&source) {
            self.forget_idle(now);
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let rate = self.rate;
        self.buckets
            .entry(source)
            .or_insert_with(|| TokenBucket::new(rate, now))
            .try_take(now)
    }

    /// Forgets the sources whose buckets have refilled: nothing to remember.
    fn forget_idle(&mut self, now: Instant) {
        self.buckets.retain(|_, bucket| !bucket.full_at(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_in_debt_says_when_it_is_ready() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, t0);
        for _ in 0..11 {
            bucket.take(t0);
        }
        // One token owed: ready when two tenths of a second earned it back.
        let ready = bucket.ready_at(t0).expect("in debt");
        assert_eq!(ready - t0, Duration::from_millis(200));
        assert_eq!(bucket.ready_at(ready), None);
        assert!(!bucket.try_take(t0 + Duration::from_millis(150)));
        assert!(bucket.try_take(ready));
    }

    #[test]
    fn a_new_rate_keeps_no_more_than_its_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100, t0);
        bucket.set_rate(2, t0);
        assert_eq!((0..10).filter(|_| bucket.try_take(t0)).count(), 2);
        let mut unlimited = TokenBucket::new(0, t0);
        assert!((0..1000).all(|_| unlimited.try_take(t0)));
        unlimited.set_rate(3, t0);
        assert_eq!(
            (0..10).filter(|_| unlimited.try_take(t0)).count(),
            3,
            "starts full"
        );
    }

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
