//! `pinetd udp HOST PORT [MSG]`: send one datagram, print the reply and who
//! sent it, or fail clearly after the timeout.

use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::time::timeout;

/// What the course's UDP client sends.
pub const COURSE_MESSAGE: &str = "Hello UDP Listener";

/// Why `pinetd udp` failed, in words for the user.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    #[error("{host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("cannot send to {to}: {source}")]
    Io { to: SocketAddr, source: io::Error },
    #[error("no reply from {to} within {waited:?}")]
    Timeout { to: SocketAddr, waited: Duration },
    #[error("nothing listens on {to}: the host answered \"port unreachable\"")]
    Refused { to: SocketAddr },
}

/// One exchange: the reply's bytes, its sender and the round-trip time.
pub struct Reply {
    pub data: Vec<u8>,
    pub from: SocketAddr,
    pub rtt: Duration,
}

pub async fn exchange(
    host: &str,
    port: u16,
    message: &[u8],
    wait: Duration,
) -> Result<Reply, UdpError> {
    let to = super::resolve(host, port)
        .await
        .map_err(|source| UdpError::Resolve {
            host: host.to_owned(),
            source,
        })?;
    let io_err = |source| UdpError::Io { to, source };
    let local: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(io_err)?;
    // Lets `pinetd udp 127.255.255.255 20001` work like the course's broadcast clients.
    socket.set_broadcast(true).map_err(io_err)?;
    // A closed port answers with ICMP at once: say so rather than wait.
    crate::batch::report_icmp_errors(socket.as_fd(), to.is_ipv6());
    let started = Instant::now();
    socket.send_to(message, to).await.map_err(io_err)?;
    let mut buf = vec![0u8; 65_536];
    let received = timeout(wait, socket.recv_from(&mut buf)).await;
    match received {
        Err(_) => Err(UdpError::Timeout { to, waited: wait }),
        // The one datagram sent was refused (hosts never refuse a
        // broadcast, so a broadcast's replies are still waited for).
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Err(UdpError::Refused { to }),
        Ok(Err(source)) => Err(UdpError::Io { to, source }),
        Ok(Ok((len, from))) => Ok(Reply {
            data: buf[..len].to_vec(),
            from,
            rtt: started.elapsed(),
        }),
    }
}

/// The command: prints the reply on stdout and its sender on stderr.
pub async fn main(host: &str, port: u16, message: &str, wait: Duration) -> Result<(), UdpError> {
    let reply = exchange(host, port, message.as_bytes(), wait).await?;
    let mut out = io::stdout().lock();
    let _ = out.write_all(&reply.data);
    if !reply.data.ends_with(b"\n") {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
    eprintln!("reply from {} in {:.1?}", reply.from, reply.rtt);
    Ok(())
}
