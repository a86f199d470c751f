//! What reaches one client of the room rather than all of them: the
//! private lines of `/msg` and the teacher's orders (kick, mute, rename),
//! and how a client sends them (`/msg`) and acts on them; `/me` too.
//! Each client has a [`Mailbox`], which its own loop waits on beside the
//! room's channel; the hub keeps the sending side ([`Post`]) by the
//! client's id and name. The room's channel, the relaying hot path, never
//! touches them.
//!
//! Both queues are bounded and never wait: a private line to a client that
//! has [`PRIVATE_WAITING`] unread is refused to its sender, and the
//! client's loop takes private lines only while its own replies do not
//! pile up, so a client that reads nothing costs a bounded amount
//! whoever writes to it.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::info;

use super::hub::NotDelivered;
use super::member::{End, Goodbye, Member};
use super::notices;
use crate::chatline::{Said, action_line, private_line, private_sent};

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

impl Member {
    /// Acts on the teacher's `order`; `Some` to close the client.
    pub(super) fn on_order(&mut self, order: Order) -> Option<End> {
        match order {
            Order::Kick => {
                info!(name = %self.name, "removed by the teacher");
                // What it sent before is relayed first, as for any close.
                self.relay_rest();
                return Some(End::Say(Goodbye::Removed));
            }
            Order::Mute(time) if time.is_zero() => {
                if self.muted_until.take().is_some() {
                    self.tell(notices::UNMUTED);
                }
            }
            Order::Mute(time) => {
                info!(name = %self.name, ?time, "muted by the teacher");
                self.muted_until = Some(Instant::now() + time);
                self.tell(notices::muted(time));
            }
            Order::Renamed(new) => {
                // It renamed itself since: the hub holds that name now.
                if self.name != new && self.hub.name_of(self.id).as_deref() == Some(&new) {
                    info!(name = %self.name, new = %new, "renamed by the teacher");
                    self.tell(notices::renamed_you(&new));
                    self.renamed(&new, true);
                }
            }
        }
        None
    }

    /// While the teacher mutes it, what it says to anyone (and a new name)
    /// is refused with a notice; true if `said` was.
    pub(super) fn refused_while_muted(&mut self, said: &Said<'_>) -> bool {
        let Some(until) = self.muted_until else {
            return false;
        };
        let now = Instant::now();
        if until <= now {
            self.muted_until = None;
            return false;
        }
        let speaks = matches!(
            said,
            Said::Message(_) | Said::Msg(..) | Said::Me(_) | Said::Nick(_)
        );
        if speaks {
            self.tell(notices::still_muted(until - now));
        }
        speaks
    }

    /// `/msg NAME text`: to that client alone, on this hub; its sender is
    /// told it went, or why not.
    pub(super) fn private_to(&mut self, to: &str, text: &str) {
        if to.is_empty() || text.is_empty() {
            return self.tell(notices::MSG_USAGE);
        }
        if to == self.name {
            return self.tell(notices::MSG_YOURSELF);
        }
        // Lines it said before go first: a reply never overtakes them.
        self.send_relay();
        let line = Bytes::from(private_line(&self.name, text));
        match self.hub.private(to, line) {
            Ok(_) => self.tell(private_sent(to, text)),
            Err(NotDelivered::NotHere) => {
                let bridged = !self.config.bridge_url.is_empty();
                self.tell(notices::not_here(to, bridged));
            }
            Err(NotDelivered::Full) => self.tell(notices::not_reading(to)),
        }
    }

    /// `/me text`: `* name text` to the room, like a line.
    pub(super) fn act(&mut self, text: &str) {
        if text.is_empty() {
            return self.tell(notices::ME_USAGE);
        }
        self.send_relay();
        self.speak(action_line(&self.name, text));
        self.hub.stats.message();
        self.visit.seen().said.fetch_add(1, Relaxed);
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
