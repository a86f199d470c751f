//! The daemon's self-description, sent by the announcer and the discovery
//! responder: one line of versioned JSON naming the host, this run (a random
//! instance id, so a scanner sees restarts), its addresses and the ports of
//! the services it runs.
//!
//! `{"pinetd":1,"version":"0.1.0","host":"raspberrypi","instance":"5f3a9c1e","addrs":["192.168.0.23"],"services":{"chat":9999,"discovery":37021},"ttl":3,"seq":17}`

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::net::interfaces::Interfaces;

/// The format's version: the value of the `pinetd` key.
pub const FORMAT: u32 = 1;

/// One announcement or discovery reply, as sent and as parsed by the clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    pub pinetd: u32,
    #[serde(default)]
    pub version: String,
    pub host: String,
    pub instance: String,
    #[serde(default)]
    pub addrs: Vec<IpAddr>,
    #[serde(default)]
    pub services: BTreeMap<String, u16>,
    #[serde(default)]
    pub ttl: u64,
    #[serde(default)]
    pub seq: u64,
    /// The NATS subject the chat hub's room is bridged on, if it is: Pis
    /// that name the same one share a room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

impl Description {
    /// Parses a datagram; None if it is not a pinetd description.
    pub fn parse(payload: &[u8]) -> Option<Description> {
        serde_json::from_slice::<Description>(payload).ok()
    }

    /// `chat 9999 (room pinetd.chat), json_echo 9000`
    pub fn services_text(&self) -> String {
        let parts: Vec<String> = self
            .services
            .iter()
            .map(|(name, port)| match &self.room {
                Some(room) if name == "chat" => format!("{name} {port} (room {room})"),
                _ => format!("{name} {port}"),
            })
            .collect();
        parts.join(", ")
    }
}

/// What the daemon says about itself; shared by the announcer and discovery
/// and kept current by the daemon as services start and stop.
#[derive(Debug)]
pub struct SelfInfo {
    host: String,
    instance: String,
    services: Mutex<BTreeMap<String, u16>>,
    room: Mutex<Option<String>>,
    interfaces: Mutex<Interfaces>,
    seq: AtomicU64,
}

impl SelfInfo {
    pub fn new() -> Self {
        Self {
            host: hostname(),
            instance: format!("{:08x}", fastrand::u32(..)),
            services: Mutex::new(BTreeMap::new()),
            room: Mutex::new(None),
            interfaces: Mutex::new(Interfaces::default()),
            seq: AtomicU64::new(0),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn set_service(&self, name: &str, port: Option<u16>) {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        match port {
            Some(port) => services.insert(name.to_owned(), port),
            None => services.remove(name),
        };
    }

    /// The host's name, as the description gives it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The subject the chat room is bridged on; None when it is not.
    pub fn set_room(&self, room: Option<String>) {
        *self.room.lock().unwrap_or_else(|e| e.into_inner()) = room;
    }

    /// The next announcement's sequence number.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Relaxed) + 1
    }

    /// The description as one JSON line, without the newline.
    pub fn describe(&self, ttl: Duration, seq: u64) -> String {
        let description = Description {
            pinetd: FORMAT,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            host: self.host.clone(),
            instance: self.instance.clone(),
            addrs: self.addrs(),
            services: self
                .services
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            ttl: ttl.as_secs().max(1),
            seq,
            room: self.room.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        };
        serde_json::to_string(&description).unwrap_or_default()
    }

    /// The current sequence number, for a discovery reply.
    pub fn seq(&self) -> u64 {
        self.seq.load(Relaxed)
    }

    /// This host's addresses but loopback and link-local IPv6.
    fn addrs(&self) -> Vec<IpAddr> {
        let mut interfaces = self.interfaces.lock().unwrap_or_else(|e| e.into_inner());
        interfaces.refresh(Instant::now());
        let mut addrs: Vec<IpAddr> = interfaces
            .list()
            .iter()
            .filter(|i| !i.is_loopback() && !i.is_link_local())
            .map(|i| i.ip())
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }
}

impl Default for SelfInfo {
    fn default() -> Self {
        Self::new()
    }
}

/// The host's name, as `hostname` prints it; "localhost" if it has none.
fn hostname() -> String {
    hostname::get()
        .ok()
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_itself_as_one_json_line() {
        let info = SelfInfo::new();
        info.set_service("chat", Some(9999));
        info.set_service("discovery", Some(37021));
        info.set_service("json_echo", Some(9000));
        info.set_service("json_echo", None);
        let line = info.describe(Duration::from_secs(3), 17);
        assert!(!line.contains('\n'));
        let parsed = Description::parse(line.as_bytes()).unwrap();
        assert_eq!(parsed.pinetd, 1);
        assert_eq!(parsed.instance.len(), 8);
        assert_eq!(parsed.services_text(), "chat 9999, discovery 37021");
        assert_eq!((parsed.ttl, parsed.seq), (3, 17));
        assert!(
            parsed
                .addrs
                .iter()
                .all(|a| !a.is_loopback() && !a.is_unspecified())
        );
        assert!(line.starts_with("{\"pinetd\":1,\"version\":"), "{line}");
        assert_ne!(
            SelfInfo::new().instance(),
            info.instance(),
            "random per start"
        );
        assert!(Description::parse(b"hello").is_none());
        assert!(!line.contains("room"), "no room key unless bridged: {line}");
        info.set_room(Some("pinetd.chat".into()));
        let parsed =
            Description::parse(info.describe(Duration::from_secs(3), 18).as_bytes()).unwrap();
        assert_eq!(
            parsed.services_text(),
            "chat 9999 (room pinetd.chat), discovery 37021"
        );
    }
}
