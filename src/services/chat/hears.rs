//! What a client hears: the room's items into its socket, keeping up with
//! the room or, when its socket takes next to nothing while the room waits
//! for it, letting go of its place and keeping the newest `queue` items.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::Instant;
use tracing::debug;

use super::conn::WRITE_BATCH;
use super::hub::{Item, Speaker};
use super::member::{End, Goodbye, Member};
use super::notices;
use crate::config::OnLag;

/// A reader that has come back after its socket took nothing for a while
/// (a program that reads in bursts, a busy machine) gets twice its longest
/// such pause, up to this.
const PATIENCE_EARNED: Duration = Duration::from_secs(4);
/// A socket that takes less than this in the room's patience takes nothing
/// (a client still filling the kernel's buffers, unread, takes a little
/// for a while).
const KEEPS_UP: u64 = 16 * 1024;

impl Member {
    /// Queues `item` and everything else already waiting, up to one batch
    /// (or all of it, into the backlog, while it lags).
    pub(super) fn take(&mut self, item: Item) {
        if self.lagging {
            self.keep(item);
            return self.take_all();
        }
        let mut next = Some(item);
        while let Some(item) = next.take() {
            self.deliver(item);
            if self.conn.has_output_batch() {
                break;
            }
            let Some(rx) = &mut self.rx else {
                break;
            };
            loop {
                match rx.try_recv() {
                    Ok(item) => next = Some(item),
                    // The next item tells how many lines it skipped.
                    Err(TryRecvError::Lagged(_)) if self.config.on_lag == OnLag::Skip => continue,
                    // Empty; or lagged under "disconnect", which the next recv reports.
                    Err(_) => {}
                }
                break;
            }
        }
        self.hub.took();
    }

    /// Queues `item` for its socket unless it said it (and does not want its
    /// own echoed), after a notice of the lines it skipped before it.
    fn deliver(&mut self, item: Item) {
        let skipped = item.first.saturating_sub(self.next_line);
        self.next_line = item.first + item.count;
        let seen = self.visit.seen();
        seen.heard.store(self.next_line, Relaxed);
        if skipped > 0 {
            seen.skipped.fetch_add(skipped, Relaxed);
            self.hub.stats.skipped.fetch_add(skipped, Relaxed);
        }
        if skipped > 0 && self.config.on_lag == OnLag::Skip {
            self.tell(notices::skipped(skipped));
        }
        if let Some(told) = item.joined.as_ref().and_then(|j| j.told_to(self.id)) {
            if !told.is_empty() {
                self.conn.push(told);
            }
        } else if item.from != Speaker::Client(self.id) || self.config.echo_self {
            self.conn.push(item.lines);
        }
    }

    /// Whether it may be what holds the room back: it does not lag yet
    /// and its socket takes nothing now.
    pub(super) fn may_hold_back(&self) -> bool {
        !self.lagging && self.conn.stuck_since.is_some()
    }

    /// A reader the senders wait for is watched for the room's patience
    /// at a time: if its socket took less than [`KEEPS_UP`] meanwhile, it
    /// lags from then on (`on_lag = "skip"`: it gets the newest `queue`
    /// items and is told how many it missed) or is disconnected, and the
    /// room goes on.
    pub(super) fn check_stall(&mut self) -> Option<End> {
        let pace = &self.hub.pace;
        let behind = match &self.rx {
            Some(rx) if self.may_hold_back() && pace.waiting() => rx.len(),
            _ => 0,
        };
        if behind <= pace.low {
            self.watched = None;
            return None;
        }
        let now = Instant::now();
        let Some((since, taken)) = self.watched else {
            self.watched = Some((now, self.conn.taken));
            return None;
        };
        if now < since + self.patience() {
            return None;
        }
        let waited = now.saturating_duration_since(self.hub.pace.waiting_since());
        self.conn.write_all_it_takes();
        // Took all it had, or enough: it keeps up.
        if !self.conn.has_output() || self.conn.taken - taken >= KEEPS_UP {
            self.watched = Some((now, self.conn.taken));
            return None;
        }
        self.watched = None;
        if self.config.on_lag == OnLag::Disconnect {
            debug!(
                behind,
                ?waited,
                "takes nothing while the room waits; disconnected"
            );
            self.relay_rest();
            return Some(End::Say(Goodbye::Behind));
        }
        debug!(behind, ?waited, "takes nothing while the room waits; skips");
        self.lag();
        None
    }

    /// How long the room waits for it when its socket takes nothing.
    pub(super) fn patience(&self) -> Duration {
        let earned = Duration::from_millis(self.conn.slowest_ms.into()) * 2;
        self.hub.pace.patience().max(earned.min(PATIENCE_EARNED))
    }

    /// From now on it takes what the room says as it comes, keeping the
    /// newest `queue` items for its socket: the room no longer waits for it.
    pub(super) fn lag(&mut self) {
        self.lagging = true;
        self.take_all();
    }

    /// Takes every item waiting in the channel into the backlog.
    fn take_all(&mut self) {
        while let Some(rx) = &mut self.rx {
            match rx.try_recv() {
                Ok(item) => self.keep(item),
                Err(TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        self.hub.let_go();
    }

    /// At its close: keeps the items the room has for it now (the newest
    /// `queue`), for [`Member::flush_owed`]; none that come after.
    pub(super) fn keep_what_is_owed(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        for _ in 0..rx.len() {
            match rx.try_recv() {
                Ok(item) => self.keep(item),
                // The next item tells how many lines it skipped.
                Err(TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        self.lagging = !self.backlog.is_empty();
    }

    /// Writes its queued output, then its backlog.
    pub(super) async fn flush_owed(&mut self) -> io::Result<()> {
        loop {
            self.conn.flush().await?;
            self.refill();
            if !self.conn.has_output() {
                return Ok(());
            }
        }
    }

    /// Keeps `item` for later, as one of the newest `queue`.
    fn keep(&mut self, item: Item) {
        if self.conn.failed {
            return;
        }
        self.backlog.push_back(item);
        if self.backlog.len() > self.config.queue as usize {
            self.backlog.pop_front();
        }
    }

    /// Once its socket took everything: what it missed, then the next
    /// batch of its backlog; and once that is empty, it lags no more.
    pub(super) fn refill(&mut self) {
        if !self.lagging || self.conn.has_output() || self.conn.failed {
            return;
        }
        for _ in 0..WRITE_BATCH {
            let Some(item) = self.backlog.pop_front() else {
                break;
            };
            self.deliver(item);
        }
        if self.backlog.is_empty() {
            self.lagging = false;
            self.backlog = VecDeque::new();
        }
    }
}
