//! What reaches one client of the room rather than all of them, with no
//! I/O: the private lines of `/msg` and the teacher's orders (kick, mute,
//! rename); [`orders`](super::orders) is how a client acts on them. Each
//! client has a [`Mailbox`], which its own loop waits on beside the
//! room's channel; the hub keeps the sending side ([`Post`]) by the
//! client's id and name. The room's channel, the relaying hot path, never
//! touches them.
//!
//! Both queues are bounded and never wait: a private line to a client that
//! has [`PRIVATE_WAITING`] unread is refused to its sender, and the
//! client's loop takes private lines only while its own replies do not
//! pile up, so a client that reads nothing costs a bounded amount
//! whoever writes to it.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

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
pub enum NotSent {
    /// Too many are waiting for it.
    Full,
    /// It has left.
    Gone,
}

/// The sending side of one client's mailbox, kept by the hub.
#[derive(Debug, Clone)]
pub struct Post {
    private: mpsc::Sender<Bytes>,
    orders: mpsc::Sender<Order>,
}

/// One client's mailbox, which its loop waits on.
#[derive(Debug)]
pub struct Mailbox {
    pub private: mpsc::Receiver<Bytes>,
    pub orders: mpsc::Receiver<Order>,
}

/// A new client's mailbox and the hub's side of it.
pub fn mailbox() -> (Post, Mailbox) {
    let (private_tx, private) = mpsc::channel(PRIVATE_WAITING);
    let (orders_tx, orders) = mpsc::channel(ORDERS_WAITING);
    let post = Post {
        private: private_tx,
        orders: orders_tx,
    };
    (post, Mailbox { private, orders })
}

fn not_sent<T>(error: mpsc::error::TrySendError<T>) -> NotSent {
    match error {
        mpsc::error::TrySendError::Full(_) => NotSent::Full,
        mpsc::error::TrySendError::Closed(_) => NotSent::Gone,
    }
}

impl Post {
    /// Hands the client a private line, formatted, never waiting.
    pub fn private(&self, line: Bytes) -> Result<(), NotSent> {
        self.private.try_send(line).map_err(not_sent)
    }

    /// Hands the client an order, never waiting.
    pub fn order(&self, order: Order) -> Result<(), NotSent> {
        self.orders.try_send(order).map_err(not_sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_or_closed_mailbox_refuses_at_once() {
        let (post, mut mailbox) = mailbox();
        for _ in 0..PRIVATE_WAITING {
            post.private(Bytes::from_static(b"x\n")).unwrap();
        }
        assert_eq!(post.private(Bytes::from_static(b"y\n")), Err(NotSent::Full));
        assert_eq!(mailbox.private.try_recv().unwrap(), "x\n");
        post.order(Order::Kick).unwrap();
        assert_eq!(mailbox.orders.try_recv().unwrap(), Order::Kick);
        drop(mailbox);
        assert_eq!(post.order(Order::Kick), Err(NotSent::Gone));
    }
}
