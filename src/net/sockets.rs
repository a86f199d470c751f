//! The daemon's bound sockets, kept across restarts and reloads.

use std::collections::HashMap;
use std::mem::take;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};

use super::bind::{BindError, bind_tcp, bind_udp};
use crate::config::Transport;

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
            transport: Transport::Tcp,
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
            transport: Transport::Udp,
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

    /// Closes `service`'s sockets bound to one of `ports`: an old listener
    /// on 0.0.0.0:P must be closed before 127.0.0.1:P can be bound.
    pub fn close_ports(&mut self, service: &str, ports: &[u16]) {
        let on = |name: &str, port: Option<u16>| {
            name == service && port.is_some_and(|p| ports.contains(&p))
        };
        self.tcp
            .retain(|(name, _), l| !on(name, l.local_addr().ok().map(|a| a.port())));
        self.udp
            .retain(|(name, _), s| !on(name, s.local_addr().ok().map(|a| a.port())));
    }

    pub fn put_back(&mut self, aside: Sockets) {
        self.tcp.extend(aside.tcp);
        self.udp.extend(aside.udp);
    }
}

/// True for a registered socket no running service holds.
fn only_here<K, S>((_, socket): &(K, Arc<S>)) -> bool {
    Arc::strong_count(socket) == 1
}
