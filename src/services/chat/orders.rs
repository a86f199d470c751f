//! How a client sends a private line (`/msg`) and an action (`/me`), and
//! acts on what reaches it alone through its [`mailbox`](super::mailbox):
//! private lines, the teacher's orders, and its mute.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::info;

use super::hub::NotDelivered;
use super::mailbox::Order;
use super::member::{End, Goodbye, Member, OWN_REPLIES};
use super::notices;
use crate::chatline::{Said, action_line, private_line, private_sent};

/// A mute longer than a clock can count lasts this long (a century).
const MUTE_MAX: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);

impl Member {
    /// Takes the teacher's orders, then the private lines its replies have
    /// room for; `Some` to close the client.
    pub(super) fn on_mail(&mut self) -> Option<End> {
        while let Some(order) = self.mailbox.next_order() {
            if let Some(end) = self.on_order(order) {
                return Some(end);
            }
        }
        while self.conn.own < OWN_REPLIES {
            let Some(line) = self.mailbox.next_private() else {
                break;
            };
            self.tell(line);
        }
        None
    }

    /// Acts on the teacher's `order`; `Some` to close the client.
    fn on_order(&mut self, order: Order) -> Option<End> {
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
                // However long it is asked for, no clock overflows.
                let now = Instant::now();
                self.muted_until = Some(now.checked_add(time).unwrap_or(now + MUTE_MAX));
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

    /// A mute whose time is up by `now` ends, and the client is told.
    pub(super) fn mute_ended(&mut self, now: Instant) {
        if self.muted_until.is_some_and(|until| until <= now) {
            self.muted_until = None;
            self.tell(notices::MUTE_ENDED);
        }
    }

    /// While the teacher mutes it, what it says to anyone (and a new name)
    /// is refused with a notice; true if `said` was.
    pub(super) fn refused_while_muted(&mut self, said: &Said<'_>) -> bool {
        let now = Instant::now();
        self.mute_ended(now);
        let Some(until) = self.muted_until else {
            return false;
        };
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
