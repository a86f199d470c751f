//! A chat client for the tests: a blocking socket read by lines, the way
//! netcat and the course's clients use the hub.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A chat client: a socket and what it has read so far, by lines.
pub struct Peer {
    pub stream: TcpStream,
    pub reader: BufReader<TcpStream>,
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
        let mut peer = Peer { stream, reader };
        peer.until("*** welcome");
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
