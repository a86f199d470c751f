//! Judging where a datagram came from: allow lists, sources that must never
//! get an answer, and whether a sender is on one of this host's subnets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use ipnet::IpNet;

use super::interfaces::Interfaces;

/// Is `ip` inside one of `allow`? An empty list allows everyone.
pub fn allowed(allow: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    allow.is_empty() || allow.iter().any(|net| net.contains(&ip))
}

/// Why a datagram's source must never get an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadSource {
    /// A privileged port or NFS: the sender may be another echo-like service,
    /// and two of them would ping-pong forever.
    Port(u16),
    /// 0/8, 255/8, multicast, a broadcast address: never a real sender.
    Address,
}

/// The rules of OpenBSD inetd's `dg_badinput`, with loopback allowed so the
/// course's client works on the Pi itself. `broadcasts` are this host's
/// subnet broadcast addresses.
pub fn bad_source(peer: SocketAddr, broadcasts: &[Ipv4Addr]) -> Option<BadSource> {
    let port = peer.port();
    if port < 1024 || port == 2049 {
        return Some(BadSource::Port(port));
    }
    let bad_ip = match peer.ip().to_canonical() {
        IpAddr::V4(ip) => {
            let first = ip.octets()[0];
            first == 0 || first == 255 || ip.is_multicast() || broadcasts.contains(&ip)
        }
        IpAddr::V6(ip) => ip.is_multicast() || ip.is_unspecified(),
    };
    bad_ip.then_some(BadSource::Address)
}

/// The networks this host's interfaces are on, from [`Interfaces`].
pub struct LocalNets {
    interfaces: Interfaces,
    nets: Vec<IpNet>,
    broadcasts: Vec<Ipv4Addr>,
}

impl LocalNets {
    pub fn new() -> Self {
        let mut nets = Self {
            interfaces: Interfaces::default(),
            nets: Vec::new(),
            broadcasts: Vec::new(),
        };
        nets.fresh(Instant::now());
        nets
    }

    fn fresh(&mut self, now: Instant) -> &mut Self {
        if !self.interfaces.refresh(now) {
            return self;
        }
        self.nets.clear();
        self.broadcasts.clear();
        for interface in self.interfaces.list() {
            match &interface.addr {
                if_addrs::IfAddr::V4(v4) => {
                    if let Ok(net) = ipnet::Ipv4Net::new(v4.ip, v4.prefixlen) {
                        self.nets.push(net.into());
                        // A /31 or /32 has no broadcast address.
                        if v4.prefixlen < 31 {
                            self.broadcasts.push(net.broadcast());
                        }
                    }
                }
                if_addrs::IfAddr::V6(v6) => {
                    if let Ok(net) = ipnet::Ipv6Net::new(v6.ip, v6.prefixlen) {
                        self.nets.push(net.into());
                    }
                }
            }
        }
        self
    }

    /// This host's subnet broadcast addresses.
    pub fn broadcasts(&mut self, now: Instant) -> &[Ipv4Addr] {
        &self.fresh(now).broadcasts
    }

    /// Is `ip` on a subnet one of this host's interfaces is on (loopback included)?
    pub fn on_link(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = ip.to_canonical();
        ip.is_loopback() || self.fresh(now).nets.iter().any(|net| net.contains(&ip))
    }
}

impl Default for LocalNets {
    fn default() -> Self {
        Self::new()
    }
}

/// A peer's source, as limits count it: its address, IPv6 per /64 (one
/// host gets a whole /64).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn reflection_rules() {
        let bcast = [Ipv4Addr::new(192, 168, 0, 255)];
        assert_eq!(
            bad_source(addr("127.0.0.1:7"), &bcast),
            Some(BadSource::Port(7))
        );
        assert_eq!(
            bad_source(addr("10.0.0.1:1023"), &bcast),
            Some(BadSource::Port(1023))
        );
        assert_eq!(
            bad_source(addr("10.0.0.1:2049"), &bcast),
            Some(BadSource::Port(2049))
        );
        assert_eq!(
            bad_source(addr("0.1.2.3:5000"), &bcast),
            Some(BadSource::Address)
        );
        assert_eq!(
            bad_source(addr("255.1.2.3:5000"), &bcast),
            Some(BadSource::Address)
        );
        assert_eq!(
            bad_source(addr("224.0.0.1:5000"), &bcast),
            Some(BadSource::Address)
        );
        assert_eq!(
            bad_source(addr("192.168.0.255:5000"), &bcast),
            Some(BadSource::Address)
        );
        assert_eq!(
            bad_source(addr("[ff02::1]:5000"), &bcast),
            Some(BadSource::Address)
        );
        assert_eq!(
            bad_source(addr("[::ffff:0.0.0.1]:5000"), &bcast),
            Some(BadSource::Address)
        );
        assert_eq!(bad_source(addr("127.0.0.1:1024"), &bcast), None);
        assert_eq!(bad_source(addr("192.168.0.23:40000"), &bcast), None);
        assert_eq!(bad_source(addr("[::1]:40000"), &bcast), None);
    }

    #[test]
    fn allow_lists() {
        let lo: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(allowed(&[], "8.8.8.8".parse().unwrap()));
        assert!(allowed(&lo, "127.0.0.2".parse().unwrap()));
        assert!(!allowed(&lo, "10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn loopback_is_on_link() {
        let mut nets = LocalNets::new();
        let now = Instant::now();
        assert!(nets.on_link("127.0.0.1".parse().unwrap(), now));
        assert!(nets.on_link("::1".parse().unwrap(), now));
        assert!(!nets.on_link("203.0.113.9".parse().unwrap(), now));
    }
}
