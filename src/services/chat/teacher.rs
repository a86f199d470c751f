//! The teacher's hand on the room ([`Moderator`]), which the web page's
//! teacher actions use: kick, mute and rename reach one client through its
//! mailbox ([`Order`]), and the client's own loop acts on them between its
//! lines; `say` goes to the room (and the other hubs) like a line.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::info;

use super::bridge::Outgoing;
use super::hub::{Hub, Speaker};
use super::mailbox::Order;
use super::notices;
use crate::observe::Moderator;

/// The room's moderator; it does not keep a room that has stopped alive.
pub struct Moderation(Weak<Hub>);

impl Moderation {
    pub fn new(hub: &Arc<Hub>) -> Self {
        Self(Arc::downgrade(hub))
    }

    fn hub(&self) -> Result<Arc<Hub>, String> {
        self.0
            .upgrade()
            .ok_or_else(|| "the chat is not running".into())
    }
}

impl Moderator for Moderation {
    fn kick(&self, id: u64) -> Result<(), String> {
        self.hub()?.order(id, Order::Kick)
    }

    fn mute(&self, id: u64, time: Duration) -> Result<(), String> {
        self.hub()?.order(id, Order::Mute(time))
    }

    fn rename(&self, id: u64, name: &str) -> Result<String, String> {
        let hub = self.hub()?;
        let old = hub.rename(id, name).map_err(|why| match hub.name_of(id) {
            Some(_) => why,
            None => format!("no client {id} in the chat room"),
        })?;
        if old != name {
            // The name is taken now; the client tells itself and the room.
            if let Err(why) = hub.order(id, Order::Renamed(name.to_owned())) {
                // It would never hear of it: it keeps its name.
                let _ = hub.rename(id, &old);
                return Err(why);
            }
        }
        Ok(old)
    }

    fn say(&self, text: &str) -> Result<(), String> {
        let hub = self.hub()?;
        let max = hub.settings.borrow().max_line_bytes as usize;
        let line = notices::teacher(checked(text, max)?);
        info!(text, "the teacher says");
        hub.send(Speaker::Hub, line.clone());
        hub.link.offer(Outgoing::Said(line.into()));
        Ok(())
    }
}

/// The teacher's line, if the room can take it: one line of printable
/// text, at most `max` bytes.
fn checked(text: &str, max: usize) -> Result<&str, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("nothing to say".into());
    }
    if text.contains(['\n', '\r']) {
        return Err("one line only".into());
    }
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err("only printable characters".into());
    }
    if text.len() > max {
        return Err(format!(
            "{} bytes, more than max_line_bytes ({max})",
            text.len()
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_teachers_line_is_one_printable_line_within_the_limit() {
        assert_eq!(checked("  hello class ", 20), Ok("hello class"));
        assert_eq!(checked(" \t ", 20), Err("nothing to say".into()));
        assert_eq!(checked("a\nb", 20), Err("one line only".into()));
        assert!(checked("a\x1b[2J", 20).unwrap_err().contains("printable"));
        assert!(checked(&"x".repeat(21), 20).unwrap_err().contains("(20)"));
        assert_eq!(checked("안녕", 6), Ok("안녕"));
    }
}
