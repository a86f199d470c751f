//! Binding listeners the same way everywhere (socket2).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

use crate::config::Transport;

/// Pending connections the kernel queues for a TCP listener.
const BACKLOG: i32 = 1024;
/// Receive buffer asked for UDP sockets, so a burst waits instead of being dropped.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// A listener that could not be bound, named for the user.
#[derive(Debug, thiserror::Error)]
#[error("{service}: cannot listen on {transport} {addr}: {source}")]
pub struct BindError {
    pub service: &'static str,
    pub transport: Transport,
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
pub fn local_addrs<S: LocalAddr>(sockets: &[Arc<S>]) -> Vec<SocketAddr> {
    sockets.iter().filter_map(|s| s.local_addr().ok()).collect()
}
