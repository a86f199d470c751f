//! Clients of the web service, each a little code over a tokio `TcpStream`:
//! HTTP/1.1 `GET` and `POST` (as `curl` asks), a WebSocket (as the page's chat box
//! talks), a Server-Sent Events reader (as the page listens), and a chat
//! client read by lines, for the tests that pair a WebSocket with a TCP
//! member of the room. Every wait is bounded by [`HANG`].

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, sleep, timeout};

use super::HANG;

/// A TCP connection to `to` from `ip` ("127.0.0.2": any 127.x.y.z is this machine).
pub async fn connect_from(ip: &str, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip.parse().unwrap(), 0))?;
    socket.connect(to).await
}

/// An HTTP answer: status, headers (names in lower case) and the whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        (self.headers.iter())
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics, showing it, if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
}

/// `GET path` from 127.0.0.1.
pub async fn get(to: SocketAddr, path: &str) -> Answer {
    get_with(to, path, &[]).await
}

/// `GET path` from `ip` (any 127.x.y.z).
pub async fn get_from(ip: &str, to: SocketAddr, path: &str) -> Answer {
    let stream = connect_from(ip, to).await.expect("connects to the web");
    ask(stream, to, path, &[])
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `GET path` with more header lines.
pub async fn get_with(to: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let stream = TcpStream::connect(to).await.expect("connects to the web");
    ask(stream, to, path, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `GET path` on `stream`, `Connection: close`, the answer read to its end.
pub async fn ask(
    stream: TcpStream,
    to: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Answer> {
    let mut wire = Wire::new(stream);
    wire.request(to, path, headers, "Connection: close\r\n")
        .await?;
    let (status, headers) = wire.head().await?;
    let body = wire.body(&headers).await?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// `POST path` from 127.0.0.1 with `body` as JSON and more header lines,
/// `Connection: close`, the answer read to its end.
pub async fn post(to: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let stream = TcpStream::connect(to).await.expect("connects to the web");
    let mut wire = Wire::new(stream);
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request += &format!("{name}: {value}\r\n");
    }
    request += "\r\n";
    request += body;
    let answer = async {
        wire.stream.write_all(request.as_bytes()).await?;
        let (status, headers) = wire.head().await?;
        let body = wire.body(&headers).await?;
        io::Result::Ok(Answer {
            status,
            headers,
            body,
        })
    };
    answer.await.unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// `GET path`, which must answer 200 with JSON: that JSON.
pub async fn get_json(to: SocketAddr, path: &str) -> Value {
    let answer = get(to, path).await;
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.text());
    answer.json()
}

/// Asks `path` until `done` holds of its JSON (polling, for at most
/// [`HANG`]); that JSON. `what` names what is awaited.
pub async fn poll_json(
    to: SocketAddr,
    path: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + HANG;
    loop {
        let value = get_json(to, path).await;
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "still waiting for {what}; {path} says {value:#}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// A connection and what has been read of it and not yet used.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

type Headers = Vec<(String, String)>;

impl Wire {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    async fn request(
        &mut self,
        to: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        more: &str,
    ) -> io::Result<()> {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\n{more}");
        for (name, value) in headers {
            request += &format!("{name}: {value}\r\n");
        }
        request += "\r\n";
        self.stream.write_all(request.as_bytes()).await
    }

    /// Reads more; 0 at the end. A hang is an error.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = timeout(HANG, self.stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "nothing for HANG"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads until `buf` holds `needle`; the index just past it.
    async fn until(&mut self, needle: &[u8]) -> io::Result<usize> {
        loop {
            if let Some(at) = self.buf.windows(needle.len()).position(|w| w == needle) {
                return Ok(at + needle.len());
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Takes the first `n` bytes, reading until there are that many.
    async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// The status line and headers of an answer.
    async fn head(&mut self) -> io::Result<(u16, Headers)> {
        let end = self.until(b"\r\n\r\n").await?;
        let head = String::from_utf8_lossy(&self.take(end).await?).into_owned();
        let mut lines = head.split("\r\n");
        let status = (lines.next().unwrap_or_default().split(' '))
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("not an HTTP answer: {head:?}")))?;
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Ok((status, headers))
    }

    /// The whole body: by its length, its chunks, or to the end.
    async fn body(&mut self, headers: &Headers) -> io::Result<Vec<u8>> {
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            while let Some(chunk) = self.chunk().await? {
                body.extend(chunk);
            }
            return Ok(body);
        }
        if let Some(length) = header("content-length").and_then(|v| v.parse().ok()) {
            return self.take(length).await;
        }
        while self.fill().await? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// The next chunk of a chunked body; None after the last.
    async fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let end = self.until(b"\r\n").await?;
        let line = String::from_utf8_lossy(&self.take(end).await?).into_owned();
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| io::Error::other(format!("not a chunk size: {line:?}")))?;
        if size == 0 {
            return Ok(None);
        }
        let mut chunk = self.take(size + 2).await?;
        chunk.truncate(size);
        Ok(Some(chunk))
    }
}

/// What a WebSocket's server sent.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Text(String),
    /// With its status code, if it gave one.
    Close(Option<u16>),
    /// Another opcode (ping, binary, ...).
    Other(u8),
}

/// The page's chat box, as a script: `/api/v1/chat`, one line a text frame.
pub struct WebSocket {
    wire: Wire,
    /// Lines received and not yet read.
    lines: VecDeque<String>,
}

impl WebSocket {
    /// Opens a chat box from 127.0.0.1 with the Origin of a page of this server.
    pub async fn join(to: SocketAddr) -> WebSocket {
        let origin = format!("http://{to}");
        WebSocket::open("127.0.0.1", to, Some(&origin))
            .await
            .unwrap_or_else(|answer| panic!("refused: {answer:?}"))
    }

    /// Opens `/api/v1/chat` from `ip`, sending `origin`; the answer if it
    /// is not an upgrade.
    pub async fn open(ip: &str, to: SocketAddr, origin: Option<&str>) -> Result<WebSocket, Answer> {
        let stream = connect_from(ip, to).await.expect("connects to the web");
        WebSocket::upgrade(stream, to, origin)
            .await
            .map_err(|e| e.unwrap_or_else(|e| panic!("no answer to the upgrade: {e}")))
    }

    /// Asks `stream` to upgrade: the WebSocket, or the answer, or what went wrong.
    pub async fn upgrade(
        stream: TcpStream,
        to: SocketAddr,
        origin: Option<&str>,
    ) -> Result<WebSocket, io::Result<Answer>> {
        let mut headers = vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ];
        headers.extend(origin.map(|o| ("Origin", o)));
        let mut wire = Wire::new(stream);
        let asked = wire.request(to, "/api/v1/chat", &headers, "").await;
        let head = match asked {
            Ok(()) => wire.head().await,
            Err(e) => Err(e),
        };
        let (status, headers) = head.map_err(Err)?;
        if status == 101 {
            return Ok(WebSocket {
                wire,
                lines: VecDeque::new(),
            });
        }
        let body = wire.body(&headers).await.map_err(Err)?;
        Err(Ok(Answer {
            status,
            headers,
            body,
        }))
    }

    /// Sends `text` as one masked text frame.
    pub async fn send(&mut self, text: &str) {
        self.send_frame(0x1, text.as_bytes()).await;
    }

    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x5a, 0x17, 0xc3, 0x8e];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.wire.stream.write_all(&frame).await.expect("sent");
    }

    /// Says goodbye with a close frame.
    pub async fn close(&mut self) {
        self.send_frame(0x8, &1000u16.to_be_bytes()).await;
    }

    /// The next frame; None when the connection ends without one.
    pub async fn frame(&mut self) -> Option<Frame> {
        let head = self.wire.take(2).await.ok()?;
        let (opcode, length) = (head[0] & 0x0f, head[1] & 0x7f);
        assert_eq!(head[1] & 0x80, 0, "a server's frames are not masked");
        let length = match length {
            126 => u16::from_be_bytes(self.wire.take(2).await.ok()?.try_into().unwrap()) as usize,
            127 => u64::from_be_bytes(self.wire.take(8).await.ok()?.try_into().unwrap()) as usize,
            n => n as usize,
        };
        let payload = self.wire.take(length).await.ok()?;
        Some(match opcode {
            0x1 => Frame::Text(String::from_utf8(payload).expect("a text frame is UTF-8")),
            0x8 => Frame::Close(
                (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
            ),
            other => Frame::Other(other),
        })
    }

    /// The next line the room sent; None once the chat box is closed.
    pub async fn line(&mut self) -> Option<String> {
        while self.lines.is_empty() {
            match self.frame().await? {
                Frame::Text(text) => self
                    .lines
                    .extend(text.split_inclusive('\n').map(String::from)),
                Frame::Close(_) => return None,
                Frame::Other(_) => {}
            }
        }
        self.lines.pop_front()
    }

    /// Lines up to and including the first that contains `needle`.
    pub async fn until(&mut self, needle: &str) -> Vec<String> {
        until(needle, async || self.line().await).await
    }
}

/// Lines from `next` up to and including the first containing `needle`;
/// panics, with what came, at the end or after [`HANG`].
async fn until(needle: &str, mut next: impl AsyncFnMut() -> Option<String>) -> Vec<String> {
    let mut lines = Vec::new();
    let deadline = Instant::now() + HANG;
    loop {
        match tokio::time::timeout_at(deadline, next()).await {
            Ok(Some(line)) => {
                let found = line.contains(needle);
                lines.push(line);
                if found {
                    return lines;
                }
            }
            Ok(None) => panic!("closed before a line with {needle:?}; got {lines:#?}"),
            Err(_) => panic!("no line with {needle:?} within {HANG:?}; got {lines:#?}"),
        }
    }
}

/// A page's live stream, `/api/v1/stream`.
pub struct EventStream {
    wire: Wire,
    /// Decoded body not yet read as events.
    body: Vec<u8>,
}

/// What a stream gave next.
#[derive(Debug)]
pub enum Next {
    /// An event: its name and its data (lines joined by `\n`).
    Event(String, String),
    /// The server ended the stream or closed the connection.
    Ended,
    /// Nothing within the time given.
    Quiet,
}

impl EventStream {
    /// Opens the stream from `ip`; panics unless it is an event stream.
    pub async fn open(ip: &str, to: SocketAddr) -> EventStream {
        let stream = connect_from(ip, to).await.expect("connects to the web");
        let mut wire = Wire::new(stream);
        let accept = [("Accept", "text/event-stream")];
        wire.request(to, "/api/v1/stream", &accept, "")
            .await
            .unwrap();
        let (status, headers) = wire.head().await.expect("an answer");
        assert_eq!(status, 200, "{headers:?}");
        let kind = headers.iter().find(|(n, _)| n == "content-type");
        assert!(
            kind.is_some_and(|(_, v)| v.starts_with("text/event-stream")),
            "{headers:?}"
        );
        assert!(
            (headers.iter()).any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")),
            "a stream of unknown length is chunked: {headers:?}"
        );
        EventStream {
            wire,
            body: Vec::new(),
        }
    }

    /// The next event, if one comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Next {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = self.body.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.body.drain(..end + 2).collect();
                return parse_event(&String::from_utf8_lossy(&event));
            }
            match tokio::time::timeout_at(deadline, self.wire.chunk()).await {
                Err(_) => return Next::Quiet,
                Ok(Ok(Some(chunk))) => self.body.extend(chunk),
                Ok(Ok(None) | Err(_)) => return Next::Ended,
            }
        }
    }

    /// The next `snapshot` event's data as JSON, skipping others; panics
    /// if none comes within `within`.
    pub async fn snapshot(&mut self, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Event(name, data) if name == "snapshot" => {
                    return serde_json::from_str(&data).expect("a snapshot is JSON");
                }
                Next::Event(..) => {}
                other => panic!("no snapshot within {within:?}: {other:?}"),
            }
        }
    }
}

fn parse_event(text: &str) -> Next {
    let mut name = String::from("message");
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            name = value.trim_start().to_owned();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    Next::Event(name, data.join("\n"))
}

/// A TCP member of the chat room read by lines (as netcat shows them).
pub struct TcpChat {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// The name its welcome gave it.
    pub name: String,
}

impl TcpChat {
    /// Connects and reads the welcome.
    pub async fn join(to: SocketAddr) -> TcpChat {
        let (read, writer) = TcpStream::connect(to).await.unwrap().into_split();
        let mut chat = TcpChat {
            reader: BufReader::new(read),
            writer,
            name: String::new(),
        };
        let welcome = chat.until("*** welcome").await.pop().unwrap();
        chat.name = (welcome.split_once("you are ").map(|(_, rest)| rest))
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_default()
            .to_owned();
        chat
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// The next line; None at the end.
    pub async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }

    /// Lines up to and including the first that contains `needle`.
    pub async fn until(&mut self, needle: &str) -> Vec<String> {
        until(needle, async || self.line().await).await
    }
}
