//! One client's socket: its two halves, the bytes read and not yet handled,
//! and the buffers waiting to be written, written in one vectored write
//! when the socket takes them. An idle client holds no buffer at all.

use std::io::{self, IoSlice};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncWriteExt, Interest, Ready};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

/// Read at most this much at a time.
const READ_CHUNK: usize = 4096;
/// The kernel's send buffer per client (Linux doubles it).
const SEND_BUFFER: usize = 64 * 1024;
/// The kernel's receive buffer per client (doubled too): what a client can
/// have sent that the hub has not read, so what is relayed when it is dropped.
pub const RECV_BUFFER: usize = 64 * 1024;
/// Buffers written in one vectored write.
pub const WRITE_BATCH: usize = 64;

pub struct Conn {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    /// What it sent and the hub has not handled yet.
    pub inbox: BytesMut,
    /// When bytes last arrived: quiet is measured from here.
    pub heard_at: Instant,
    /// Buffers waiting for its socket, written in one go.
    out: Vec<Bytes>,
    /// Bytes of its own replies queued since `out` was last empty.
    pub own: usize,
    /// Output has been waiting since then with none of it taken.
    pub stuck_since: Option<Instant>,
    /// Its socket refused a write: nothing more is written to it.
    pub failed: bool,
    /// Bytes its socket has taken, ever.
    pub taken: u64,
    /// The longest its socket took nothing with output waiting and then
    /// took it again, in milliseconds.
    pub slowest_ms: u32,
}

impl Conn {
    /// The connection of a new client.
    pub fn new(stream: TcpStream) -> Self {
        // Chat lines are small: a fixed kernel buffer bounds what a client
        // that reads nothing holds there, and lets the hub see it lag.
        let socket = socket2::SockRef::from(&stream);
        let _ = socket.set_send_buffer_size(SEND_BUFFER);
        let _ = socket.set_recv_buffer_size(RECV_BUFFER);
        let (read, write) = stream.into_split();
        Self {
            read,
            write,
            inbox: BytesMut::new(),
            heard_at: Instant::now(),
            out: Vec::new(),
            own: 0,
            stuck_since: None,
            failed: false,
            taken: 0,
            slowest_ms: 0,
        }
    }

    /// Readiness for what it wants: one wait for both directions, which
    /// every idle client keeps.
    pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        self.read.ready(interest).await
    }

    /// One read of at most `max_line + 1` bytes into `inbox`; None on a
    /// spurious wake.
    pub fn read_some(&mut self, max_line: usize) -> Option<io::Result<usize>> {
        let room = READ_CHUNK.min(max_line + 1);
        self.inbox.reserve(room);
        match self.read.try_read_buf(&mut (&mut self.inbox).limit(room)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            got => Some(got),
        }
    }

    /// Back to holding nothing once everything read was handled.
    pub fn release_inbox(&mut self) {
        if self.inbox.is_empty() {
            self.inbox = BytesMut::new();
        }
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// A whole vectored write is waiting.
    pub fn has_output_batch(&self) -> bool {
        self.out.len() >= WRITE_BATCH
    }

    /// Queues one of its own replies (notices, answers to its commands).
    pub fn push_own(&mut self, bytes: Bytes) {
        if self.failed {
            return;
        }
        self.own += bytes.len();
        self.out.push(bytes);
    }

    /// Queues what the room said.
    pub fn push(&mut self, bytes: Bytes) {
        self.out.push(bytes);
    }

    /// Its socket refused a write: nothing more is queued or written.
    pub fn fail(&mut self) {
        self.failed = true;
        self.out = Vec::new();
        self.own = 0;
        self.stuck_since.get_or_insert_with(Instant::now);
    }

    /// Writes what the socket takes now, never waiting; notes since when
    /// output waits with none of it taken.
    pub fn write_now(&mut self) -> io::Result<()> {
        if self.out.is_empty() || self.failed {
            return Ok(());
        }
        match self.write_some() {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                self.advance(written);
                // Usually the socket takes it all, and no clock is read.
                self.stuck_since = (!self.out.is_empty()).then(Instant::now);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stuck_since.get_or_insert_with(Instant::now);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes what its socket takes now, asking the kernel: the readiness
    /// the task waits for comes only once a third of the send buffer is
    /// free, so a reader taking its output steadily looks stuck between
    /// two wakes.
    pub fn write_all_it_takes(&mut self) {
        let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
        let slices = self.slices(&mut slices);
        let socket = socket2::SockRef::from(self.write.as_ref());
        if let Ok(written) = socket.send_vectored(slices) {
            self.advance(written);
            if written > 0 {
                self.stuck_since = (!self.out.is_empty()).then(Instant::now);
            }
        }
    }

    /// Writes every queued buffer, as few system calls as the socket allows.
    pub async fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.write_some() {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Ends its sending side.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.write.shutdown().await
    }

    /// Drops `written` bytes from the front of the queue; once it is empty,
    /// holds nothing between writes: most clients are idle most of the time.
    fn advance(&mut self, mut written: usize) {
        self.taken += written as u64;
        if let Some(since) = self.stuck_since.filter(|_| written > 0) {
            let ms = since.elapsed().as_millis().min(u32::MAX.into()) as u32;
            self.slowest_ms = self.slowest_ms.max(ms);
        }
        let mut done = 0;
        while written > 0 {
            let first = &mut self.out[done];
            let n = written.min(first.len());
            first.advance(n);
            written -= n;
            if first.is_empty() {
                done += 1;
            }
        }
        self.out.drain(..done);
        if self.out.is_empty() {
            self.out = Vec::new();
            self.own = 0;
        }
    }

    /// One write of the queued buffers: vectored when there are several.
    /// Not async: the slices stay off the task's state, which every idle
    /// client keeps.
    fn write_some(&self) -> io::Result<usize> {
        if let [one] = self.out.as_slice() {
            return self.write.try_write(one);
        }
        let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
        self.write.try_write_vectored(self.slices(&mut slices))
    }

    /// The first [`WRITE_BATCH`] queued buffers, as slices.
    fn slices<'a>(&'a self, slices: &'a mut [IoSlice<'a>; WRITE_BATCH]) -> &'a [IoSlice<'a>] {
        let count = self.out.len().min(WRITE_BATCH);
        for (slice, buf) in slices.iter_mut().zip(&self.out) {
            *slice = IoSlice::new(buf);
        }
        &slices[..count]
    }
}
