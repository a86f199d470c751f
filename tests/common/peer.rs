//! A chat client for the tests: a blocking socket read by lines, the way
//! netcat and the course's clients use the hub.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A chat client: a socket and what it has read so far, by lines.
pub struct Peer {
    pub stream: TcpStream,
    pub reader: BufReader<TcpStream>,
    /// The name the hub's welcome gave it.
    pub name: String,
}

impl Peer {
    pub fn connect(addr: SocketAddr) -> Peer {
        Peer::with_stream(TcpStream::connect(addr).unwrap())
    }

    /// A client whose socket takes in little: once the hub's buffers for it
    /// are full, what it is sent waits in the hub's queue.
    pub fn stingy(addr: SocketAddr) -> Peer {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&addr.into()).unwrap();
        Peer::with_stream(socket.into())
    }

    pub fn with_stream(stream: TcpStream) -> Peer {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut peer = Peer {
            stream,
            reader,
            name: String::new(),
        };
        let welcome = peer.until("*** welcome").pop().unwrap_or_default();
        peer.name = welcome
            .split_once("you are ")
            .and_then(|(_, rest)| rest.split(';').next())
            .unwrap_or_default()
            .to_owned();
        peer
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }

    /// Lines up to and including the first that contains `needle`.
    pub fn until(&mut self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.line() {
                Some(line) => {
                    let found = line.contains(needle);
                    lines.push(line);
                    if found {
                        return lines;
                    }
                }
                None => panic!("no line with {needle:?}; got {lines:#?}"),
            }
        }
    }

    /// The connection is closed by the hub (after any lines still to read).
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok()
    }
}

/// What a client saw of numbered lines (`{prefix}0001234 ...`).
#[derive(Debug, Default)]
pub struct Numbered {
    /// Lines in order, and the numbers it never got.
    pub got: u64,
    pub lost: u64,
    /// Lines that came again or too late.
    pub disorder: u64,
    pub skip_notices: Vec<String>,
    /// The hub closed the connection before the last line.
    pub closed: bool,
}

impl Numbered {
    /// Got each of `lines` once, in order, and no skip notice.
    pub fn every_line(&self, lines: u64) -> bool {
        self.got == lines && self.lost == 0 && self.disorder == 0 && self.skip_notices.is_empty()
    }

    /// The lines its skip notices said it missed, all told.
    pub fn noticed(&self) -> u64 {
        self.skip_notices
            .iter()
            .filter_map(|l| {
                l.strip_prefix("*** ")?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }
}

impl Peer {
    /// Reads lines `{prefix}NNNNNNN ...` up to number `last`, the end of
    /// the connection or a hang; other lines (notices) are passed over.
    pub fn numbered(&mut self, prefix: &str, last: u64) -> Numbered {
        let mut seen = Numbered::default();
        let mut next = 0;
        let deadline = std::time::Instant::now() + super::HANG;
        while std::time::Instant::now() < deadline {
            let Some(line) = self.line() else {
                seen.closed = true;
                break;
            };
            if line.ends_with(" messages skipped\n") {
                seen.skip_notices.push(line);
                continue;
            }
            let number = line
                .strip_prefix(prefix)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse::<u64>().ok());
            let Some(n) = number else { continue };
            if n < next {
                seen.disorder += 1;
                continue;
            }
            seen.lost += n - next;
            seen.got += 1;
            next = n + 1;
            if n == last {
                break;
            }
        }
        seen
    }
}

/// `count` lines numbered from 0, 64 bytes each with `prefix` (as the
/// issue that made the hub pace its senders measured them).
pub fn numbered_lines(prefix: &str, count: u64) -> Vec<u8> {
    let pad = 64usize.saturating_sub(prefix.len() + 9);
    (0..count)
        .flat_map(|n| format!("{prefix}{n:07} {}\n", "x".repeat(pad)).into_bytes())
        .collect()
}
