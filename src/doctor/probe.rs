//! Round trips to each service with the course's own messages, each within
//! [`PATIENCE`], so the doctor never hangs: a chat line relayed from one
//! client to another, the course's JSON object echoed, "Hello UDP
//! Listener" answered, a discovery probe answered, the web page's
//! `/healthz`, and the announcements heard on their port.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout, timeout_at};

use crate::describe::Description;

/// How long one probe may take, all its steps together.
pub const PATIENCE: Duration = Duration::from_secs(2);

/// What the course's UDP client sends.
const UDP_HELLO: &str = "Hello UDP Listener";

/// Why a round trip did not happen.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// Connection refused, or an ICMP port unreachable: nothing listens
    /// there (or a firewall rejects).
    #[error("refused: nothing listens there")]
    Refused,
    /// No answer in time: dropped on the way (a firewall), or the host is down.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The host or network cannot be reached at all.
    #[error("unreachable: {0}")]
    Unreachable(io::Error),
    /// It answered, not as the service should.
    #[error("{0}")]
    Wrong(String),
    #[error("{0}")]
    Io(io::Error),
}

impl From<io::Error> for ProbeError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ProbeError::Refused,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                ProbeError::Unreachable(e)
            }
            io::ErrorKind::TimedOut => ProbeError::Timeout(PATIENCE),
            _ => ProbeError::Io(e),
        }
    }
}

/// `work` within [`PATIENCE`].
async fn within<T>(work: impl Future<Output = Result<T, ProbeError>>) -> Result<T, ProbeError> {
    timeout(PATIENCE, work)
        .await
        .unwrap_or(Err(ProbeError::Timeout(PATIENCE)))
}

/// Two clients join the hub at `at`; a line from one reaches the other.
pub async fn chat(at: SocketAddr) -> Result<String, ProbeError> {
    within(async {
        let nonce = format!("{:08x}", fastrand::u32(..));
        let mut sender = join_chat(at).await?;
        let mut hearer = join_chat(at).await?;
        let line = format!("hello from pinetd doctor {nonce}\n");
        sender.get_mut().write_all(line.as_bytes()).await?;
        let heard = loop {
            let got = read_line(&mut hearer).await?;
            if got.contains(&nonce) {
                break got;
            }
        };
        for client in [&mut sender, &mut hearer] {
            let _ = client.get_mut().write_all(b"bye\n").await;
        }
        Ok(format!(
            "a line relayed between two clients ({})",
            heard.trim_end()
        ))
    })
    .await
}

/// A client in the room: connected, and its welcome line read (so it hears
/// what is said after).
async fn join_chat(at: SocketAddr) -> Result<BufReader<TcpStream>, ProbeError> {
    let mut client = BufReader::new(TcpStream::connect(at).await?);
    let welcome = read_line(&mut client).await?;
    if !welcome.starts_with("***") {
        return Err(ProbeError::Wrong(format!(
            "answered {:?}, not a chat hub's welcome",
            welcome.trim_end()
        )));
    }
    Ok(client)
}

/// One line, at most 4 KiB; closed before it is an error.
async fn read_line(from: &mut BufReader<TcpStream>) -> Result<String, ProbeError> {
    let mut line = String::new();
    let n = from.take(4096).read_line(&mut line).await?;
    if n == 0 {
        return Err(ProbeError::Wrong("closed the connection".into()));
    }
    Ok(line)
}

/// The course's JSON object, sent with no newline (as its client does), comes back.
pub async fn json_echo(at: SocketAddr) -> Result<String, ProbeError> {
    within(async {
        let sent = serde_json::json!({"name": "jung", "count": 3});
        let mut stream = TcpStream::connect(at).await?;
        stream.write_all(sent.to_string().as_bytes()).await?;
        let mut reply = vec![0u8; 1024];
        let mut len = 0;
        // One value, ended by its newline; it may come in pieces.
        while !reply[..len].contains(&b'\n') && len < reply.len() {
            let n = stream.read(&mut reply[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
        }
        let text = String::from_utf8_lossy(&reply[..len]).trim().to_owned();
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(value) if value == sent => Ok(format!("{sent} echoed")),
            _ if len == 0 => Err(ProbeError::Wrong("closed without an answer".into())),
            _ => Err(ProbeError::Wrong(format!(
                "answered {text:?} to {sent}, not the same JSON"
            ))),
        }
    })
    .await
}

/// "Hello UDP Listener" gets a reply: itself, or `expect` where known.
pub async fn udp_echo(at: SocketAddr, expect: Option<&str>) -> Result<String, ProbeError> {
    within(async {
        let reply = ask_udp(at, UDP_HELLO.as_bytes()).await?;
        let reply = String::from_utf8_lossy(&reply).into_owned();
        let fine = match expect {
            Some(expected) => reply == expected,
            // Unknown from here: the echo (RFC 862), the course's answer, any text.
            None => !reply.is_empty(),
        };
        if fine {
            Ok(format!("{UDP_HELLO:?} answered {reply:?}"))
        } else {
            Err(ProbeError::Wrong(format!(
                "answered {reply:?} to {UDP_HELLO:?}"
            )))
        }
    })
    .await
}

/// A discovery probe to `at` (unicast) is answered with a description.
pub async fn discovery(at: SocketAddr) -> Result<Description, ProbeError> {
    within(async {
        let reply = ask_udp(at, crate::client::discover::PROBE).await?;
        Description::parse(&reply).ok_or_else(|| {
            ProbeError::Wrong(format!(
                "answered {:?}, not pinetd's description",
                String::from_utf8_lossy(&reply)
            ))
        })
    })
    .await
}

/// One datagram to `at` from a connected socket (so a port unreachable is
/// seen as refused), and its one reply.
async fn ask_udp(at: SocketAddr, payload: &[u8]) -> Result<Vec<u8>, ProbeError> {
    let local: SocketAddr = match at.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(at).await?;
    socket.send(payload).await?;
    let mut buf = vec![0u8; 65_536];
    let n = socket.recv(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

/// The web page's `/healthz` answers 200.
pub async fn web(at: SocketAddr) -> Result<String, ProbeError> {
    within(async {
        let mut stream = TcpStream::connect(at).await?;
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {at}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(16 * 1024).read_to_end(&mut answer).await?;
        let answer = String::from_utf8_lossy(&answer);
        let status = answer.lines().next().unwrap_or("").trim().to_owned();
        if status.starts_with("HTTP/1.1 200") {
            Ok("GET /healthz answered 200".into())
        } else if status.is_empty() {
            Err(ProbeError::Wrong("closed without an answer".into()))
        } else {
            Err(ProbeError::Wrong(format!(
                "GET /healthz answered {status:?}"
            )))
        }
    })
    .await
}

/// The services a round trip checks, in the order checked.
pub const CHECKED: [&str; 5] = ["chat", "json_echo", "udp_echo", "discovery", "web"];

/// The round trip of `service` to `at`: what came back, in words.
/// `udp_reply`: UDP echo's fixed reply, where known.
pub async fn round_trip(
    service: &str,
    at: SocketAddr,
    udp_reply: Option<String>,
) -> Result<String, ProbeError> {
    match service {
        "chat" => chat(at).await,
        "json_echo" => json_echo(at).await,
        "udp_echo" => udp_echo(at, udp_reply.as_deref()).await,
        "discovery" => discovery(at)
            .await
            .map(|d| format!("a probe answered by {} (pinetd {})", d.host, d.version)),
        "web" => web(at).await,
        other => Err(ProbeError::Wrong(format!("{other} has no round trip"))),
    }
}

/// Round trips to many places at once (each within [`PATIENCE`]), the
/// results in the order asked.
pub async fn round_trips(
    asks: Vec<(&'static str, SocketAddr, Option<String>)>,
) -> Vec<(&'static str, SocketAddr, Result<String, ProbeError>)> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (service, at, reply)) in asks.into_iter().enumerate() {
        tasks.spawn(async move { (i, service, at, round_trip(service, at, reply).await) });
    }
    let mut done = Vec::new();
    while let Some(result) = tasks.join_next().await {
        if let Ok(result) = result {
            done.push(result);
        }
    }
    done.sort_by_key(|(i, ..)| *i);
    done.into_iter().map(|(_, s, at, r)| (s, at, r)).collect()
}

/// One datagram heard on the announcer's port.
#[derive(Debug, Clone)]
pub struct Heard {
    pub from: SocketAddr,
    pub description: Option<Description>,
}

/// The announcements heard on `port` for `wait`: the socket shares the
/// port (SO_REUSEADDR and SO_REUSEPORT) with any listener already there,
/// which still gets every datagram, broadcasts being delivered to each.
pub async fn announcements(port: u16, wait: Duration) -> io::Result<Vec<Heard>> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    let socket = UdpSocket::from_std(socket.into())?;
    let deadline = Instant::now() + wait;
    let mut heard = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok(got) = timeout_at(deadline, socket.recv_from(&mut buf)).await {
        let Ok((n, from)) = got else { continue };
        heard.push(Heard {
            from,
            description: Description::parse(&buf[..n]),
        });
    }
    Ok(heard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_listening_is_refused_not_a_hang() {
        // A port just freed: nothing listens there.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = free.local_addr().unwrap();
        drop(free);
        assert!(matches!(json_echo(at).await, Err(ProbeError::Refused)));
        assert!(matches!(chat(at).await, Err(ProbeError::Refused)));
        let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = free.local_addr().unwrap();
        drop(free);
        assert!(matches!(udp_echo(at, None).await, Err(ProbeError::Refused)));
    }

    #[tokio::test]
    async fn a_silent_service_times_out() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = silent.local_addr().unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(discovery(at).await, Err(ProbeError::Timeout(_))));
        assert!(started.elapsed() < PATIENCE * 2);
    }
}
