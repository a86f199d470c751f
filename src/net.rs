//! Networking helpers shared by the services: binding listeners the same way
//! everywhere (socket2), keeping bound sockets across restarts and reloads,
//! and judging where a datagram came from.

use std::collections::HashMap;
use std::io;
use std::mem::take;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

/// Pending connections the kernel queues for a TCP listener.
const BACKLOG: i32 = 1024;
/// Receive buffer asked for UDP sockets, so a burst waits instead of being dropped.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// A listener that could not be bound, named for the user.
#[derive(Debug, thiserror::Error)]
#[error("{service}: cannot listen on {transport} {addr}: {source}")]
pub struct BindError {
    pub service: &'static str,
    pub transport: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

fn socket(addr: SocketAddr, ty: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() {
        // So "0.0.0.0:P" and "[::]:P" can both be listed.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Binds a TCP listener: SO_REUSEADDR (restart while old connections sit in
/// TIME_WAIT), v6-only for IPv6, a deep backlog. Needs a tokio runtime.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Binds a UDP socket. `shared` sets SO_REUSEADDR so several responders can
/// share a broadcast port; otherwise a second daemon on the port is an error,
/// not a silent split of the traffic. Needs a tokio runtime.
pub fn bind_udp(addr: SocketAddr, shared: bool) -> io::Result<UdpSocket> {
    let socket = socket(addr, Type::DGRAM, Protocol::UDP)?;
    socket.set_reuse_address(shared)?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// The daemon's bound sockets, keyed by service and address as configured
/// (port 0 included), so a service restarted by a reload keeps its port and
/// a listener never has a moment where it is closed.
#[derive(Default)]
pub struct Sockets {
    tcp: HashMap<(&'static str, SocketAddr), Arc<TcpListener>>,
    udp: HashMap<(&'static str, SocketAddr), Arc<UdpSocket>>,
}

impl Sockets {
    pub fn tcp(
        &mut self,
        service: &'static str,
        addr: SocketAddr,
    ) -> Result<Arc<TcpListener>, BindError> {
        if let Some(listener) = self.tcp.get(&(service, addr)) {
            return Ok(listener.clone());
        }
        let listener = Arc::new(bind_tcp(addr).map_err(|source| BindError {
            service,
            transport: "tcp",
            addr,
            source,
        })?);
        self.tcp.insert((service, addr), listener.clone());
        Ok(listener)
    }

    pub fn udp(
        &mut self,
        service: &'static str,
        addr: SocketAddr,
        shared: bool,
    ) -> Result<Arc<UdpSocket>, BindError> {
        if let Some(socket) = self.udp.get(&(service, addr)) {
            return Ok(socket.clone());
        }
        let socket = Arc::new(bind_udp(addr, shared).map_err(|source| BindError {
            service,
            transport: "udp",
            addr,
            source,
        })?);
        self.udp.insert((service, addr), socket.clone());
        Ok(socket)
    }

    pub fn tcp_all(
        &mut self,
        service: &'static str,
        addrs: &[SocketAddr],
    ) -> Result<Vec<Arc<TcpListener>>, BindError> {
        addrs.iter().map(|&addr| self.tcp(service, addr)).collect()
    }

    pub fn udp_all(
        &mut self,
        service: &'static str,
        addrs: &[SocketAddr],
        shared: bool,
    ) -> Result<Vec<Arc<UdpSocket>>, BindError> {
        addrs
            .iter()
            .map(|&addr| self.udp(service, addr, shared))
            .collect()
    }

    /// Closes every socket no running service holds any more.
    pub fn release_unused(&mut self) {
        drop(self.take_unused());
    }

    /// Moves out the sockets no running service holds, to close them or to
    /// [`put_back`](Self::put_back) if what was to replace them cannot bind.
    pub fn take_unused(&mut self) -> Sockets {
        let (tcp, held) = take(&mut self.tcp).into_iter().partition(only_here);
        self.tcp = held;
        let (udp, held) = take(&mut self.udp).into_iter().partition(only_here);
        self.udp = held;
        Sockets { tcp, udp }
    }

    pub fn put_back(&mut self, aside: Sockets) {
        self.tcp.extend(aside.tcp);
        self.udp.extend(aside.udp);
    }
}

/// A bound socket of either kind.
pub trait LocalAddr {
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl LocalAddr for TcpListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }
}

impl LocalAddr for UdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        UdpSocket::local_addr(self)
    }
}

/// The addresses actually bound (port 0 resolved).
/// True for a registered socket no running service holds.
fn only_here<K, S>((_, socket): &(K, Arc<S>)) -> bool {
    Arc::strong_count(socket) == 1
}

pub fn local_addrs<S: LocalAddr>(sockets: &[Arc<S>]) -> Vec<SocketAddr> {
    sockets.iter().filter_map(|s| s.local_addr().ok()).collect()
}

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

/// The networks this host's interfaces are on, re-read now and then so a Pi
/// whose Wi-Fi comes up after boot is seen.
pub struct LocalNets {
    nets: Vec<IpNet>,
    broadcasts: Vec<Ipv4Addr>,
    read_at: Option<Instant>,
}

impl LocalNets {
    const MAX_AGE: Duration = Duration::from_secs(10);

    pub fn new() -> Self {
        let mut nets = Self {
            nets: Vec::new(),
            broadcasts: Vec::new(),
            read_at: None,
        };
        nets.refresh(Instant::now());
        nets
    }

    fn refresh(&mut self, now: Instant) {
        self.read_at = Some(now);
        let Ok(interfaces) = if_addrs::get_if_addrs() else {
            return;
        };
        self.nets.clear();
        self.broadcasts.clear();
        for interface in interfaces {
            match interface.addr {
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
    }

    fn fresh(&mut self, now: Instant) -> &mut Self {
        if self
            .read_at
            .is_none_or(|at| now.duration_since(at) > Self::MAX_AGE)
        {
            self.refresh(now);
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
