//! How far the slowest reader may fall behind before the senders wait, and
//! how long the room waits for a reader whose socket takes nothing. No I/O:
//! the hub tells it how many items were sent and how far behind the
//! slowest reader is.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

/// A reader the senders wait for whose socket takes little in the room's
/// patience does not hold the room back: it lags, and the room goes on
/// without it. The patience is four times what the room's waits for its
/// readers usually last, at least this ...
const PATIENCE_MIN: Duration = Duration::from_millis(100);
/// ... and at most this: a client that reads nothing costs the room that
/// long once.
pub const PATIENCE_MAX: Duration = Duration::from_secs(1);

pub struct Pace {
    /// Senders wait from this many items behind ...
    high: usize,
    /// ... until the slowest is back to this many.
    pub low: usize,
    /// A sender waits (or did, and the room has not caught up yet).
    waiting: AtomicBool,
    /// Up to this many items sent, the room is known not to be full.
    free_until: AtomicU64,
    /// The senders start or stop waiting.
    changed: Notify,
    /// When the senders began to wait, in nanoseconds from `epoch`.
    wait_began: AtomicU64,
    /// How long the waits that ended with every reader caught up lasted,
    /// lately (an average, in nanoseconds).
    usual_wait: AtomicU64,
    epoch: Instant,
}

impl Pace {
    /// For a channel of `queue` items: a quarter of it is left for what is
    /// not paced, the hub's notices and what a client says as it goes.
    pub fn new(queue: usize) -> Self {
        let high = (queue - queue / 4).max(1);
        Self {
            high,
            low: high / 2,
            waiting: AtomicBool::new(false),
            free_until: AtomicU64::new(0),
            changed: Notify::new(),
            wait_began: AtomicU64::new(0),
            usual_wait: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether the senders wait: the slowest reader is `high` items behind.
    /// `behind` is asked at most once every few items: between two looks,
    /// `sent` items later, the channel has filled by that many at most.
    pub fn paced(&self, sent: u64, behind: impl FnOnce() -> usize) -> bool {
        if sent < self.free_until.load(Relaxed) {
            return false;
        }
        let behind = behind();
        if behind < self.high {
            let free = (self.high - behind) as u64;
            self.free_until.store(sent + free, Relaxed);
            return false;
        }
        if !self.waiting.swap(true, Relaxed) {
            let now = self.nanos(Instant::now());
            self.wait_began.store(now, Relaxed);
            // A reader that takes nothing may be what holds the room: it looks.
            self.changed.notify_waiters();
        }
        true
    }

    /// A new run: nobody waits.
    pub fn reset(&self) {
        self.waiting.store(false, Relaxed);
        self.free_until.store(0, Relaxed);
        self.changed.notify_waiters();
    }

    /// The senders wait (or did, and the room has not caught up yet).
    pub fn waiting(&self) -> bool {
        self.waiting.load(Relaxed)
    }

    /// Completes when the senders start or stop waiting: made before the
    /// room is looked at, no change is missed.
    pub fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }

    /// After a reader took items: once the slowest is back to `low`
    /// `behind` (asked only while the senders wait), they go on, and the
    /// wait tells what is usual.
    pub fn took(&self, behind: impl FnOnce() -> usize) {
        if self.go_on(behind) {
            self.waited(Instant::now());
        }
    }

    /// After a reader let go of its place or left: the wait it ended says
    /// nothing of how long the room usually waits.
    pub fn let_go(&self, behind: impl FnOnce() -> usize) {
        self.go_on(behind);
    }

    /// True if the senders waited and go on now.
    fn go_on(&self, behind: impl FnOnce() -> usize) -> bool {
        let ends = self.waiting() && behind() <= self.low;
        if ends {
            self.waiting.store(false, Relaxed);
            self.changed.notify_waiters();
        }
        ends
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// How long the room waits for a reader whose socket takes nothing:
    /// a room of readers that keep up waits briefly; one of many readers
    /// served by one busy machine, longer.
    pub fn patience(&self) -> Duration {
        let usual = Duration::from_nanos(self.usual_wait.load(Relaxed));
        (usual * 4).clamp(PATIENCE_MIN, PATIENCE_MAX)
    }

    /// When the senders began to wait.
    pub fn waiting_since(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.wait_began.load(Relaxed))
    }

    /// A wait ended with every reader caught up: it tells what is usual.
    fn waited(&self, now: Instant) {
        let this = now.saturating_duration_since(self.waiting_since());
        let this = this.min(PATIENCE_MAX).as_nanos() as u64;
        let usual = self.usual_wait.load(Relaxed);
        let usual = if usual == 0 {
            this
        } else {
            (usual * 7 + this) / 8
        };
        self.usual_wait.store(usual, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_wait_at_three_quarters_and_go_on_at_half_of_that() {
        let pace = Pace::new(1024);
        assert_eq!((pace.high, pace.low), (768, 384));
        assert!(!pace.paced(0, || 767));
        // Known free for one more item: the channel is not asked.
        assert!(!pace.paced(0, || unreachable!()));
        assert!(pace.paced(1, || 768));
        assert!(pace.waiting());
        // Not waiting: the channel is not asked.
        Pace::new(8).took(|| unreachable!());
        pace.took(|| 385);
        assert!(pace.waiting(), "not back to half yet");
        pace.took(|| 384);
        assert!(!pace.waiting());
        assert!(pace.patience() >= PATIENCE_MIN && pace.patience() <= PATIENCE_MAX);
        // A reader letting go ends a wait too.
        assert!(pace.paced(2, || 1000));
        pace.let_go(|| 0);
        assert!(!pace.waiting());
        // The smallest channel still paces.
        let tiny = Pace::new(1);
        assert!(tiny.paced(0, || 1));
    }

    #[test]
    fn patience_follows_the_usual_wait_within_its_bounds() {
        let pace = Pace::new(16);
        assert_eq!(pace.patience(), PATIENCE_MIN);
        pace.usual_wait
            .store(Duration::from_millis(50).as_nanos() as u64, Relaxed);
        assert_eq!(pace.patience(), Duration::from_millis(200));
        pace.usual_wait.store(u64::MAX / 8, Relaxed);
        assert_eq!(pace.patience(), PATIENCE_MAX);
    }
}
