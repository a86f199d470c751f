//! What reaches one client of the room rather than all of them, with no
//! I/O: the private lines of `/msg` and the teacher's orders (kick, mute,
//! rename); [`orders`](super::orders) is how a client acts on them. Each
//! client has a [`Mailbox`], which its own loop waits on beside the
//! room's channel; the hub keeps it too, by the client's id and name. The
//! room's channel, the relaying hot path, never touches it.
//!
//! A mailbox costs an idle client a few dozen bytes (no queue is allocated
//! until something arrives: a channel's first block would cost more than
//! the whole client), and looking at it one atomic load. Both queues are
//! bounded and never wait: a private line to a client that has
//! [`PRIVATE_WAITING`] unread is refused to its sender, and the client's
//! loop takes private lines only while its own replies do not pile up, so
//! a client that reads nothing costs a bounded amount whoever writes to it.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;

/// Private lines waiting for one client.
pub const PRIVATE_WAITING: usize = 16;
/// The teacher's orders waiting for one client.
const ORDERS_WAITING: usize = 8;

/// The teacher's hand on one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// Told `*** removed by the teacher` and closed, its lines relayed first.
    Kick,
    /// Its lines refused for this long; zero lifts a mute.
    Mute(Duration),
    /// The hub has given it this name: tell it and the room.
    Renamed(String),
}

/// Why a private line or an order did not reach a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

#[derive(Debug, Default)]
struct Letters {
    private: VecDeque<Bytes>,
    orders: VecDeque<Order>,
}

/// One client's mailbox: the hub puts letters in, the client's loop
/// takes them out.
#[derive(Debug, Default)]
pub struct Mailbox {
    letters: Mutex<Letters>,
    /// Whether each queue holds something: the loop looks without a lock.
    has_private: AtomicBool,
    has_orders: AtomicBool,
    waker: AtomicWaker,
}

impl Mailbox {
    fn letters(&self) -> MutexGuard<'_, Letters> {
        self.letters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the client a private line, formatted, never waiting.
    pub fn private(&self, line: Bytes) -> Result<(), Full> {
        let mut letters = self.letters();
        if letters.private.len() >= PRIVATE_WAITING {
            return Err(Full);
        }
        letters.private.push_back(line);
        self.has_private.store(true, Ordering::Release);
        drop(letters);
        self.waker.wake();
        Ok(())
    }

    /// Hands the client an order, never waiting.
    pub fn order(&self, order: Order) -> Result<(), Full> {
        let mut letters = self.letters();
        if letters.orders.len() >= ORDERS_WAITING {
            return Err(Full);
        }
        letters.orders.push_back(order);
        self.has_orders.store(true, Ordering::Release);
        drop(letters);
        self.waker.wake();
        Ok(())
    }

    /// Whether there is something it takes now: an order, or a private
    /// line if `private` (its own replies do not pile up).
    fn ready(&self, private: bool) -> bool {
        self.has_orders.load(Ordering::Acquire)
            || (private && self.has_private.load(Ordering::Acquire))
    }

    /// Completes when there is something it takes (see [`Mailbox::ready`]).
    pub fn arrived(&self, private: bool) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.ready(private) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // A letter put in between is not missed.
            if self.ready(private) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// The next order, if any.
    pub fn next_order(&self) -> Option<Order> {
        let mut letters = self.letters();
        let order = letters.orders.pop_front();
        if letters.orders.is_empty() {
            letters.orders = VecDeque::new();
            self.has_orders.store(false, Ordering::Release);
        }
        order
    }

    /// The next private line, if any.
    pub fn next_private(&self) -> Option<Bytes> {
        let mut letters = self.letters();
        let line = letters.private.pop_front();
        if letters.private.is_empty() {
            letters.private = VecDeque::new();
            self.has_private.store(false, Ordering::Release);
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_mailbox_refuses_at_once_and_an_empty_one_holds_nothing() {
        let mailbox = Mailbox::default();
        assert!(!mailbox.ready(true));
        for _ in 0..PRIVATE_WAITING {
            mailbox.private(Bytes::from_static(b"x\n")).unwrap();
        }
        assert_eq!(mailbox.private(Bytes::from_static(b"y\n")), Err(Full));
        assert!(mailbox.ready(true) && !mailbox.ready(false));
        assert_eq!(mailbox.next_private().unwrap(), "x\n");
        mailbox.order(Order::Kick).unwrap();
        assert!(mailbox.ready(false));
        assert_eq!(mailbox.next_order(), Some(Order::Kick));
        assert_eq!(mailbox.next_order(), None);
        while mailbox.next_private().is_some() {}
        assert!(!mailbox.ready(true));
        assert_eq!(mailbox.letters().private.capacity(), 0);
    }
}
