//! The daemon's self-description, sent by the announcer and the discovery
//! responder: one line of versioned JSON naming the host, this run (a random
//! instance id, so a scanner sees restarts), the ports of the services it
//! runs and the addresses where each can really be reached: a service on
//! 127.0.0.1 is on loopback only, one on 0.0.0.0 on each of the host's
//! addresses.
//!
//! `{"pinetd":1,"version":"0.1.0","host":"raspberrypi","instance":"5f3a9c1e","addrs":["192.168.0.23"],"services":{"chat":9999,"discovery":37021},"reach":{"chat":["192.168.0.23"],"discovery":["192.168.0.23"]},"ttl":3,"seq":17}`

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ipnet::IpNet;
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
    /// Where at least one service can be reached.
    #[serde(default)]
    pub addrs: Vec<IpAddr>,
    #[serde(default)]
    pub services: BTreeMap<String, u16>,
    /// Where each service can be reached (absent from older daemons).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reach: BTreeMap<String, Vec<IpAddr>>,
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

    /// `chat 9999 (room pinetd.chat), json_echo 9000`; a service reached
    /// elsewhere than at `addrs` says where: `json_echo 9000 on 127.0.0.1`.
    pub fn services_text(&self) -> String {
        let parts: Vec<String> = self
            .services
            .iter()
            .map(|(name, port)| {
                let mut part = format!("{name} {port}");
                if let Some(room) = self.room.as_ref().filter(|_| name == "chat") {
                    part.push_str(&format!(" (room {room})"));
                }
                if let Some(at) = self.reach.get(name).filter(|at| **at != self.addrs) {
                    let at: Vec<String> = at.iter().map(IpAddr::to_string).collect();
                    part.push_str(&format!(" on {}", at.join(" ")));
                }
                part
            })
            .collect();
        parts.join(", ")
    }

    /// `addrs` as text: `192.168.0.23 fd00::23`, or `-` for none.
    pub fn addrs_text(&self) -> String {
        if self.addrs.is_empty() {
            return "-".to_owned();
        }
        let addrs: Vec<String> = self.addrs.iter().map(IpAddr::to_string).collect();
        addrs.join(" ")
    }
}

/// What the daemon says about itself; shared by the announcer and discovery
/// and kept current by the daemon as services start and stop.
#[derive(Debug)]
pub struct SelfInfo {
    host: String,
    instance: String,
    /// Each running service's bound addresses, and whether it serves
    /// loopback peers alone (its `allow`).
    services: Mutex<BTreeMap<String, (Vec<SocketAddr>, bool)>>,
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

    /// A service runs on `addrs` (as bound, port 0 resolved), serving
    /// the peers in `allow`; no addresses: it does not run.
    pub fn set_service(&self, name: &str, addrs: &[SocketAddr], allow: &[IpNet]) {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        if addrs.is_empty() {
            services.remove(name);
        } else {
            let loopback_only =
                !allow.is_empty() && allow.iter().all(|net| net.network().is_loopback());
            services.insert(name.to_owned(), (addrs.to_vec(), loopback_only));
        }
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
        let host = self.host_addrs();
        let running = self
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let services = (running.iter())
            .filter_map(|(name, (bound, _))| Some((name.clone(), bound.first()?.port())))
            .collect();
        let reach: BTreeMap<String, Vec<IpAddr>> = (running.iter())
            .map(|(name, (bound, loopback_only))| {
                // Serving loopback alone, it is reached there alone.
                let host: &[IpAddr] = if *loopback_only { &[] } else { &host };
                (name.clone(), reachable(bound, host))
            })
            .collect();
        let mut addrs: Vec<IpAddr> = reach.values().flatten().copied().collect();
        addrs.sort();
        addrs.dedup();
        let description = Description {
            pinetd: FORMAT,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            host: self.host.clone(),
            instance: self.instance.clone(),
            addrs,
            services,
            reach,
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
    fn host_addrs(&self) -> Vec<IpAddr> {
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

/// Where a service bound to `bound` can be reached, given the host's
/// addresses (loopback and link-local left out): a wildcard listener on
/// each of its family's, or on loopback when the host has no other; a
/// listener on one address there only.
fn reachable(bound: &[SocketAddr], host: &[IpAddr]) -> Vec<IpAddr> {
    let mut at = Vec::new();
    for addr in bound {
        let ip = addr.ip();
        if !ip.is_unspecified() {
            at.push(ip);
            continue;
        }
        let before = at.len();
        at.extend(host.iter().filter(|h| h.is_ipv4() == ip.is_ipv4()));
        if at.len() == before {
            at.push(match ip {
                IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
    }
    at.sort();
    at.dedup();
    at
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
        let all = |port: u16| [SocketAddr::from(([0, 0, 0, 0], port))];
        info.set_service("chat", &all(9999), &[]);
        info.set_service("discovery", &all(37021), &[]);
        info.set_service("json_echo", &all(9000), &[]);
        info.set_service("json_echo", &[], &[]);
        let line = info.describe(Duration::from_secs(3), 17);
        assert!(!line.contains('\n'));
        let parsed = Description::parse(line.as_bytes()).unwrap();
        assert_eq!(parsed.pinetd, 1);
        assert_eq!(parsed.instance.len(), 8);
        assert_eq!(parsed.services_text(), "chat 9999, discovery 37021");
        assert_eq!((parsed.ttl, parsed.seq), (3, 17));
        assert!(parsed.addrs.iter().all(|a| !a.is_unspecified()));
        assert_eq!(parsed.reach["chat"], parsed.addrs);
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

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// The embedded default listens on loopback: that is all it names, not
    /// the host's LAN addresses, where nothing listens.
    #[test]
    fn a_service_is_named_where_it_can_be_reached() {
        let host = [ip("192.0.2.2"), ip("fd00::2")];
        assert_eq!(reachable(&[at("127.0.0.1:9999")], &host), [ip("127.0.0.1")]);
        assert_eq!(reachable(&[at("0.0.0.0:9999")], &host), [ip("192.0.2.2")]);
        assert_eq!(
            reachable(&[at("0.0.0.0:9999"), at("[::]:9999")], &host),
            [ip("192.0.2.2"), ip("fd00::2")]
        );
        assert_eq!(
            reachable(&[at("192.0.2.2:9999"), at("[::1]:9999")], &host),
            [ip("192.0.2.2"), ip("::1")]
        );
        // A host with loopback alone (a namespace): reached there.
        assert_eq!(reachable(&[at("[::]:1")], &[]), [ip("::1")]);

        let info = SelfInfo::new();
        info.set_service("chat", &[at("127.0.0.1:9999")], &[]);
        info.set_service("udp_echo", &[at("127.0.0.1:20001")], &[]);
        // On every address, serving loopback peers alone: loopback.
        let loopback = ["127.0.0.0/8".parse().unwrap()];
        info.set_service("discovery", &[at("0.0.0.0:37021")], &loopback);
        let parsed =
            Description::parse(info.describe(Duration::from_secs(3), 1).as_bytes()).unwrap();
        assert_eq!(parsed.addrs, [ip("127.0.0.1")]);
        assert_eq!(
            parsed.services_text(),
            "chat 9999, discovery 37021, udp_echo 20001"
        );
        assert_eq!(parsed.addrs_text(), "127.0.0.1");
        // Services reached in different places say where.
        let mixed = Description {
            addrs: vec![ip("127.0.0.1"), ip("192.0.2.2")],
            services: [("chat".to_owned(), 9999), ("json_echo".to_owned(), 9000)].into(),
            reach: [
                ("chat".to_owned(), vec![ip("127.0.0.1"), ip("192.0.2.2")]),
                ("json_echo".to_owned(), vec![ip("127.0.0.1")]),
            ]
            .into(),
            ..parsed
        };
        assert_eq!(
            mixed.services_text(),
            "chat 9999, json_echo 9000 on 127.0.0.1"
        );
    }
}
