//! The replies to a received batch, coalesced per peer with UDP GSO and sent
//! with one `sendmmsg`.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{Control, Datagrams};

/// At most this many datagrams in one GSO send (the kernel's UDP_MAX_SEGMENTS
/// has been 64 since GSO came, 128 since Linux 6.9).
const GSO_MAX_SEGMENTS: usize = 64;
/// Coalesced datagrams must each fit a 1500-byte MTU over IPv6, so GSO never
/// turns into IP fragments on a LAN.
const GSO_MAX_SIZE: usize = 1452;
/// The most bytes one UDP message may carry over IPv4.
const GSO_MAX_BYTES: usize = 65_507;

/// Replies planned from a received batch, coalesced per peer: datagrams to
/// the same peer of the same size (the last may be shorter) go out as one
/// GSO message. The order of datagrams to any one peer is kept.
pub struct Replies {
    gso: bool,
    /// Every datagram added, in order.
    parts: Vec<Part>,
    messages: Vec<Message>,
    /// Scratch for `send`, kept to spare allocations.
    offsets: Vec<usize>,
    next: Vec<usize>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    control: Vec<Control>,
}

/// One datagram of a reply: bytes of a slot of the batch, and the message
/// it goes out in.
struct Part {
    slot: usize,
    /// Within the slot: `add` checks it.
    range: Range<usize>,
    message: usize,
}

#[derive(Clone, Copy)]
struct Message {
    peer: SocketAddr,
    /// The slot whose address the message goes to.
    slot: usize,
    size: usize,
    datagrams: usize,
    bytes: usize,
    /// Its last datagram is shorter than `size`, so nothing can follow it.
    closed: bool,
}

// SAFETY: as for `Datagrams`: the raw pointers are scratch space, rewritten
// before every call and never dereferenced otherwise.
unsafe impl Send for Replies {}

impl Replies {
    /// Coalesces with GSO when `gso` is true; otherwise one message per datagram.
    pub fn new(gso: bool) -> Self {
        Self {
            gso,
            parts: Vec::new(),
            messages: Vec::new(),
            offsets: Vec::new(),
            next: Vec::new(),
            iov: Vec::new(),
            hdrs: Vec::new(),
            control: Vec::new(),
        }
    }

    pub fn clear(&mut self) {
        self.parts.clear();
        self.messages.clear();
    }

    /// Messages planned (`send` counts in these).
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Datagrams in message `m`.
    pub fn datagrams(&self, m: usize) -> usize {
        self.messages[m].datagrams
    }

    /// The peer of message `m`.
    pub fn peer(&self, m: usize) -> SocketAddr {
        self.messages[m].peer
    }

    /// The datagrams of message `m`, in order, as the bytes of `batch` that
    /// `send` would point at.
    pub fn message_datagrams<'a>(
        &'a self,
        batch: &'a Datagrams,
        m: usize,
    ) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.parts
            .iter()
            .filter(move |part| part.message == m)
            .map(move |part| {
                let start = part.slot * batch.slot_size + part.range.start;
                &batch.data[start..start + part.range.len()]
            })
    }

    /// The size of every datagram of message `m` but the last, which may be
    /// shorter: GSO's segment size.
    pub fn segment_size(&self, m: usize) -> usize {
        self.messages[m].size
    }

    /// Whether GSO is still in use (it is given up after a refused send).
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Plans `range` of slot `slot` of `batch` as one datagram to the slot's
    /// peer. False, and nothing planned, if the slot has no peer or the
    /// range is not within the slot.
    pub fn add(&mut self, batch: &Datagrams, slot: usize, range: Range<usize>) -> bool {
        if range.start > range.end || range.end > batch.slot_size {
            return false;
        }
        let Some(peer) = batch.peer(slot) else {
            return false;
        };
        self.plan(peer, slot, range);
        true
    }

    fn plan(&mut self, peer: SocketAddr, slot: usize, range: Range<usize>) {
        let len = range.len();
        let joins = self
            .messages
            .iter()
            .rposition(|m| m.peer == peer)
            .filter(|_| self.gso && len > 0)
            .filter(|&m| {
                let m = &self.messages[m];
                !m.closed
                    && len <= m.size
                    && m.datagrams < GSO_MAX_SEGMENTS
                    && m.bytes + len <= GSO_MAX_BYTES
            });
        let m = match joins {
            Some(m) => {
                let message = &mut self.messages[m];
                message.datagrams += 1;
                message.bytes += len;
                message.closed = len < message.size;
                m
            }
            None => {
                self.messages.push(Message {
                    peer,
                    slot,
                    size: len,
                    datagrams: 1,
                    bytes: len,
                    closed: len == 0 || len > GSO_MAX_SIZE,
                });
                self.messages.len() - 1
            }
        };
        self.parts.push(Part {
            slot,
            range,
            message: m,
        });
    }

    /// Plans the messages from `m` on again, one per datagram: after a
    /// coalesced send was refused, each datagram gets its own chance.
    pub fn ungroup(&mut self, batch: &Datagrams, m: usize) {
        let gso = mem::replace(&mut self.gso, false);
        let parts = mem::take(&mut self.parts);
        self.messages.truncate(m);
        for part in parts {
            if part.message < m {
                self.parts.push(part);
            } else if let Some(peer) = batch.peer(part.slot) {
                self.plan(peer, part.slot, part.range);
            }
        }
        self.gso = gso;
    }

    /// Stops coalescing for good: for a kernel or device that cannot send
    /// with GSO at all.
    pub fn disable_gso(&mut self) {
        self.gso = false;
    }

    /// Sends the messages from `from` on without blocking; returns how many
    /// of them (from the front) went out.
    pub fn send(
        &mut self,
        batch: &mut Datagrams,
        socket: BorrowedFd<'_>,
        from: usize,
    ) -> io::Result<usize> {
        let count = self.messages.len().saturating_sub(from);
        if count == 0 {
            return Ok(0);
        }
        self.point_iovecs(batch, from, count);
        self.point_headers(batch, from, count);
        // SAFETY: every header points into buffers owned by self or batch,
        // which outlive the call, sized as declared.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Points the iovecs at each message's datagrams from `from` on, in
    /// order and consecutive: message `from + m`'s start at `offsets[m]`.
    fn point_iovecs(&mut self, batch: &mut Datagrams, from: usize, count: usize) {
        self.offsets.clear();
        self.offsets.push(0);
        for m in 0..count {
            self.offsets
                .push(self.offsets[m] + self.messages[from + m].datagrams);
        }
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        self.iov.clear();
        self.iov.resize(self.offsets[count], empty);
        self.next.clone_from(&self.offsets);
        for part in &self.parts {
            if part.message < from {
                continue;
            }
            let k = &mut self.next[part.message - from];
            // Sliced whole, so a batch other than the one planned with can
            // panic here but never be read past its end.
            let start = part.slot * batch.slot_size + part.range.start;
            let bytes = &mut batch.data[start..start + part.range.len()];
            self.iov[*k] = libc::iovec {
                iov_base: bytes.as_mut_ptr().cast(),
                iov_len: bytes.len(),
            };
            *k += 1;
        }
    }

    /// Points a header per message from `from` on at its peer's address,
    /// its iovecs, and (for more than one datagram) its GSO segment size.
    fn point_headers(&mut self, batch: &mut Datagrams, from: usize, count: usize) {
        // SAFETY: all-zero bytes are a valid mmsghdr.
        self.hdrs.resize(count, unsafe { mem::zeroed() });
        self.control.resize(count, Control::EMPTY);
        for m in 0..count {
            let message = self.messages[from + m];
            let hdr = &mut self.hdrs[m].msg_hdr;
            hdr.msg_name = (&raw mut batch.addrs[message.slot]).cast();
            hdr.msg_namelen = batch.addr_lens[message.slot];
            hdr.msg_iov = &raw mut self.iov[self.offsets[m]];
            hdr.msg_iovlen = message.datagrams as _;
            hdr.msg_flags = 0;
            if message.datagrams > 1 {
                segment_control(hdr, &mut self.control[m], message.size);
            } else {
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
            }
        }
    }
}

/// Points `hdr` at `control`, holding one `UDP_SEGMENT` message of `size`.
fn segment_control(hdr: &mut libc::msghdr, control: &mut Control, size: usize) {
    let size = u16::try_from(size).unwrap_or(u16::MAX);
    hdr.msg_control = (&raw mut *control).cast();
    // SAFETY: CMSG_SPACE of a u16 (24 bytes) fits the 32-byte, 8-aligned buffer.
    unsafe {
        hdr.msg_controllen = libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
        libc::CMSG_DATA(cmsg).cast::<u16>().write_unaligned(size);
    }
}
