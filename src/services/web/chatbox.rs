//! The page's chat box: a WebSocket that joins the chat room as a member
//! like any other. The web service opens a loopback TCP connection for it
//! and hands one end to the chat through the door it publishes, under the
//! browser's own address: the chat's `allow`, `max_clients`,
//! `max_per_source`, `rate_limit`, `max_line_bytes` and name rules apply
//! exactly as to a TCP client. Each text frame is one line; what the room
//! sends comes back as text frames of whole lines.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State as Extract;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Peer;
use super::api::State;
use super::guard::same_origin;
use crate::config::WebConfig;
use crate::net::allowed;
use crate::observe::Door;

/// The largest frame or message a browser may send: more than any chat line.
const MAX_FRAME: usize = 64 * 1024;
/// What the room sends is forwarded in reads of at most this much.
const READ_CHUNK: usize = 16 * 1024;
/// A browser that takes nothing this long is let go (as the chat's own
/// `write_timeout` lets a TCP client go).
const SEND_WITHIN: Duration = Duration::from_secs(10);
/// On shutdown, the room's goodbye is passed on within this long.
const GOODBYE_WITHIN: Duration = Duration::from_secs(1);

/// `GET /api/v1/chat`: upgrades to the chat box's WebSocket, from a page
/// of this server only.
pub async fn join(
    Extract(state): Extract<State>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !same_origin(&headers) {
        let why = "the chat box takes pages of this server only (Origin)\n";
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    let Some(door) = state.observatory.window("chat").door() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the chat is not running\n").into_response();
    };
    let shutdown = state.shutdown.clone();
    let settings = state.settings.clone();
    upgrade
        .max_frame_size(MAX_FRAME)
        .max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| async move {
            // Counted as the page's connection for as long as it lives.
            let _hold = peer.hold;
            if let Err(e) = chat(socket, door, peer.addr, settings, shutdown).await {
                debug!(error = %e, "chat box");
            }
        })
}

/// The length of the UTF-8 character that starts with byte `b`.
fn utf8_len(b: u8) -> usize {
    match b {
        b if b >= 0xf0 => 4,
        b if b >= 0xe0 => 3,
        b if b >= 0xc0 => 2,
        _ => 1,
    }
}

/// A connected pair of loopback TCP sockets.
async fn pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let (ours, (theirs, from)) = tokio::try_join!(TcpStream::connect(addr), listener.accept())?;
    // Another local process could have connected first.
    if ours.local_addr()? != from {
        return Err(std::io::Error::other("the loopback pair was not ours"));
    }
    Ok((ours, theirs))
}

/// Relays between the browser and the room until either ends.
async fn chat(
    mut socket: WebSocket,
    door: Arc<dyn Door>,
    peer: SocketAddr,
    settings: watch::Receiver<Arc<WebConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (ours, theirs) = pair().await?;
    let _ = ours.set_nodelay(true);
    if let Err(told) = door.enter(theirs, peer) {
        let told = if told.is_empty() {
            "*** your address is not in the chat's allow list\n".to_owned()
        } else {
            String::from_utf8_lossy(&told).into_owned()
        };
        let _ = socket.send(Message::Text(told.into())).await;
        let _ = socket.send(Message::Close(None)).await;
        return Ok(());
    }
    let mut chatbox = ChatBox {
        socket,
        ours,
        heard: BytesMut::with_capacity(READ_CHUNK),
        shutdown,
        closing: false,
        settings,
        peer: peer.ip(),
    };
    let relayed = chatbox.relay().await;
    let _ = chatbox.ours.shutdown().await;
    relayed
}

/// A joined chat box: the browser's socket and the member's.
struct ChatBox {
    socket: WebSocket,
    ours: TcpStream,
    /// What the room sent and the browser has not been sent yet.
    heard: BytesMut,
    shutdown: CancellationToken,
    /// The daemon shuts down: the room's goodbye is passed on, briefly.
    closing: bool,
    /// `[web]`: a page its `allow` no longer admits is closed.
    settings: watch::Receiver<Arc<WebConfig>>,
    peer: IpAddr,
}

impl ChatBox {
    async fn relay(&mut self) -> std::io::Result<()> {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    // The room says goodbye on shutdown; pass it on.
                    self.closing = true;
                    let _ = timeout(GOODBYE_WITHIN, self.relay_rest()).await;
                    return Ok(());
                }
                changed = self.settings.changed() => {
                    let allow = self.settings.borrow_and_update().allow.clone();
                    if changed.is_err() || !allowed(&allow, self.peer) {
                        self.send(Message::Close(None)).await;
                        return Ok(());
                    }
                }
                message = self.socket.recv() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let line = text.as_str().trim_end_matches(['\r', '\n']);
                        self.ours.write_all(format!("{line}\n").as_bytes()).await?;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let reason = Utf8Bytes::from_static("text frames only");
                        let close = CloseFrame { code: 1003, reason };
                        self.send(Message::Close(Some(close))).await;
                        return Ok(());
                    }
                    Some(Ok(_)) => {}
                    // The page went away: the room hears it leave.
                    Some(Err(_)) | None => return Ok(()),
                },
                read = self.ours.read_buf(&mut self.heard) => {
                    if read? == 0 {
                        self.send_lines(true).await;
                        self.send(Message::Close(None)).await;
                        return Ok(());
                    }
                    if !self.send_lines(false).await {
                        return Ok(());
                    }
                    self.heard.reserve(READ_CHUNK);
                }
            }
        }
    }

    /// Reads what the room still sends until it closes, and passes it on.
    async fn relay_rest(&mut self) {
        while let Ok(n) = self.ours.read_buf(&mut self.heard).await {
            if n == 0 || !self.send_lines(false).await {
                break;
            }
        }
        self.send_lines(true).await;
    }

    /// Sends the whole lines heard as one text frame (all of it when `all`,
    /// or when a line is longer than a frame): a frame never splits a
    /// character. False if the browser is gone or takes nothing.
    async fn send_lines(&mut self, all: bool) -> bool {
        let heard = &mut self.heard;
        let end = if all {
            heard.len()
        } else if heard.len() >= READ_CHUNK * 2 {
            // A line longer than a frame: up to the last whole character.
            let tail = heard.len().saturating_sub(3);
            (tail..heard.len())
                .rev()
                .find(|&i| heard[i] & 0xc0 != 0x80)
                .map_or(heard.len(), |start| match heard[start] {
                    b if b < 0x80 => start + 1,
                    b if heard.len() - start >= utf8_len(b) => start + utf8_len(b),
                    _ => start,
                })
        } else {
            match memchr::memrchr(b'\n', heard) {
                Some(at) => at + 1,
                None => return true,
            }
        };
        if end == 0 {
            return true;
        }
        let lines = heard.split_to(end);
        let text = String::from_utf8_lossy(&lines).into_owned();
        self.send(Message::Text(text.into())).await
    }

    /// Sends `message` unless the browser takes nothing for
    /// [`SEND_WITHIN`] or the daemon shuts down (then within
    /// [`GOODBYE_WITHIN`]); false then.
    async fn send(&mut self, message: Message) -> bool {
        if self.closing {
            let sent = timeout(GOODBYE_WITHIN, self.socket.send(message)).await;
            return matches!(sent, Ok(Ok(())));
        }
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            sent = timeout(SEND_WITHIN, self.socket.send(message)) => matches!(sent, Ok(Ok(()))),
        }
    }
}
