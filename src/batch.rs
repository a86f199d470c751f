//! Datagrams in batches: one `recvmmsg` takes every datagram waiting (up to
//! the batch size) and one `sendmmsg` sends every reply, so a busy UDP
//! service makes two system calls per batch instead of two per datagram.
//!
//! With UDP GRO enabled on the socket, one slot may hold several datagrams
//! that one sender sent together (a `UDP_GRO` control message gives their
//! size); `Replies` sends datagrams back coalesced per peer with UDP GSO
//! (`UDP_SEGMENT`), so a burst from one peer costs the kernel one trip
//! through the stack each way instead of one per datagram.
//!
//! Most of pinetd's `unsafe` is here: the calls need raw `mmsghdr` arrays
//! pointing into buffers these structs own, rebuilt before each call. The
//! safe API keeps them sound: `Replies::add` takes only ranges within a
//! slot, and `send` slices each range whole before pointing at it.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::SockAddr;

/// Large enough for any UDP payload (65,507 over IPv4, 65,527 over IPv6).
pub const MAX_PAYLOAD: usize = 65_536;

/// A fixed number of datagram slots, each with its payload and peer address.
pub struct Datagrams {
    /// `slots × slot_size` bytes; pages are touched only as large datagrams arrive.
    data: Vec<u8>,
    slot_size: usize,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    /// Per slot, the size of each datagram GRO put in it (0: one datagram).
    segments: Vec<u16>,
    /// Slots holding a datagram, from 0.
    filled: usize,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    control: Vec<Control>,
}

/// Room for one control message carrying an int, aligned as `cmsghdr` is.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; 32]);

impl Control {
    const EMPTY: Self = Self([0; 32]);
}

// SAFETY: the raw pointers in `iov` and `hdrs` are scratch space, rewritten
// from owned buffers before every call and never dereferenced otherwise.
unsafe impl Send for Datagrams {}

impl Datagrams {
    pub fn new(slots: usize, slot_size: usize) -> Self {
        // SAFETY: all-zero bytes are valid values of these plain C structs.
        let (storage, iovec, hdr) = unsafe { (mem::zeroed(), mem::zeroed(), mem::zeroed()) };
        Self {
            data: vec![0; slots * slot_size],
            slot_size,
            lens: vec![0; slots],
            addrs: vec![storage; slots],
            addr_lens: vec![0; slots],
            segments: vec![0; slots],
            filled: 0,
            iov: vec![iovec; slots],
            hdrs: vec![hdr; slots],
            control: vec![Control::EMPTY; slots],
        }
    }

    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    pub fn clear(&mut self) {
        self.filled = 0;
    }

    /// Datagram `i`'s payload.
    pub fn payload(&self, i: usize) -> &[u8] {
        let start = i * self.slot_size;
        &self.data[start..start + self.lens[i]]
    }

    /// The datagrams in slot `i`: one, or those GRO coalesced into it, each
    /// as a byte range of `payload(i)`.
    pub fn datagrams(&self, i: usize) -> impl Iterator<Item = Range<usize>> + use<> {
        let len = self.lens[i];
        let size = match self.segments[i] {
            0 => len.max(1),
            n => usize::from(n),
        };
        (0..len.div_ceil(size).max(1)).map(move |k| k * size..((k + 1) * size).min(len))
    }

    /// Slot `i`'s peer (its source after a receive).
    pub fn peer(&self, i: usize) -> Option<SocketAddr> {
        let storage = self.addrs.get(i)?;
        let len = *self.addr_lens.get(i)? as usize;
        match i32::from(storage.ss_family) {
            libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says this storage holds a sockaddr_in.
                let v4 = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(v4.sin_port))))
            }
            libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: the family says this storage holds a sockaddr_in6.
                let v6 = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                    ip,
                    u16::from_be(v6.sin6_port),
                    v6.sin6_flowinfo,
                    v6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// Replaces datagram `i`'s payload; false if it does not fit a slot.
    pub fn set_payload(&mut self, i: usize, payload: &[u8]) -> bool {
        if payload.len() > self.slot_size {
            return false;
        }
        let start = i * self.slot_size;
        self.data[start..start + payload.len()].copy_from_slice(payload);
        self.lens[i] = payload.len();
        self.segments[i] = 0;
        true
    }

    /// Replaces slot `i`'s payload with `times` copies of `payload`; false
    /// if they do not fit a slot.
    pub fn set_repeated(&mut self, i: usize, payload: &[u8], times: usize) -> bool {
        let len = payload.len() * times;
        if len > self.slot_size {
            return false;
        }
        let start = i * self.slot_size;
        for copy in self.data[start..start + len].chunks_exact_mut(payload.len().max(1)) {
            copy.copy_from_slice(payload);
        }
        self.lens[i] = len;
        self.segments[i] = 0;
        true
    }

    /// Marks slot `i` as GRO does: datagrams of `size` bytes each, the last
    /// maybe shorter (0: one datagram). For tests and fuzzing; a receive
    /// sets it from the kernel's control message.
    pub fn set_segment_size(&mut self, i: usize, size: u16) {
        self.segments[i] = size;
    }

    /// Adds a datagram to send; false when the batch is full or it is too large.
    pub fn push(&mut self, payload: &[u8], to: SocketAddr) -> bool {
        let i = self.filled;
        if i == self.capacity() || !self.set_payload(i, payload) {
            return false;
        }
        let to = SockAddr::from(to);
        // SAFETY: a SockAddr's storage is valid for its length, which fits sockaddr_storage.
        unsafe {
            std::ptr::copy_nonoverlapping(
                to.as_ptr().cast::<u8>(),
                (&raw mut self.addrs[i]).cast::<u8>(),
                to.len() as usize,
            );
        }
        self.addr_lens[i] = to.len();
        self.filled += 1;
        true
    }

    /// Receives every datagram waiting, up to the capacity, without blocking
    /// (`WouldBlock` when there is none). Replaces what the batch held.
    pub fn recv(&mut self, socket: BorrowedFd<'_>) -> io::Result<usize> {
        let slots = self.capacity();
        for i in 0..slots {
            self.point(i, self.slot_size);
            self.addr_lens[i] = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: every header points into buffers owned by self, sized as declared.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.filled = 0;
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = self.hdrs[i].msg_len as usize;
            self.addr_lens[i] = self.hdrs[i].msg_hdr.msg_namelen;
            self.segments[i] = gro_size(&self.hdrs[i].msg_hdr);
        }
        self.filled = n;
        Ok(n)
    }

    /// Points header `i` at slot `i`, `len` bytes, and at its address storage.
    fn point(&mut self, i: usize, len: usize) {
        let start = i * self.slot_size;
        self.iov[i] = libc::iovec {
            iov_base: self.data[start..].as_mut_ptr().cast(),
            iov_len: len,
        };
        let hdr = &mut self.hdrs[i].msg_hdr;
        hdr.msg_name = (&raw mut self.addrs[i]).cast();
        hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdr.msg_iov = &raw mut self.iov[i];
        hdr.msg_iovlen = 1;
        hdr.msg_control = (&raw mut self.control[i]).cast();
        hdr.msg_controllen = mem::size_of::<Control>() as _;
        hdr.msg_flags = 0;
    }
}

/// The datagram size of a `UDP_GRO` control message in a received header, or 0.
fn gro_size(hdr: &libc::msghdr) -> u16 {
    // SAFETY: the kernel filled `msg_control` with `msg_controllen` bytes of
    // well-formed control messages; the CMSG macros stay inside them.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned();
                return u16::try_from(size).unwrap_or(0);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    0
}

/// Asks the kernel to hand over bursts from one sender as one slot (UDP
/// GRO); false where the kernel cannot.
pub fn enable_gro(socket: BorrowedFd<'_>) -> bool {
    set_int_option(socket, libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Whether this socket can send with UDP GSO (Linux 4.18 and later).
pub fn gso_supported(socket: BorrowedFd<'_>) -> bool {
    // Setting the socket's default segment size to 0 changes nothing but
    // fails where the option does not exist.
    set_int_option(socket, libc::SOL_UDP, libc::UDP_SEGMENT, 0)
}

/// Makes the kernel report ICMP errors (a closed port's "port
/// unreachable") on this UDP socket although it is not connected: a
/// receive then fails with `ConnectionRefused`.
pub fn report_icmp_errors(socket: BorrowedFd<'_>, ipv6: bool) -> bool {
    if ipv6 {
        set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)
    } else {
        set_int_option(socket, libc::IPPROTO_IP, libc::IP_RECVERR, 1)
    }
}

fn set_int_option(
    socket: BorrowedFd<'_>,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> bool {
    // SAFETY: a valid fd and a pointer to an int of the size given.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

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
        // Each message's datagrams, in order, as consecutive iovecs: message
        // m's start at offsets[m].
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
}

/// Whether a send error says GSO itself is not possible here (rather than
/// something about the peer or route).
pub fn gso_refused(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
    )
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    /// Two peers' datagrams in one received-like batch.
    fn batch_of(datagrams: &[(&[u8], SocketAddr)]) -> Datagrams {
        let mut batch = Datagrams::new(datagrams.len(), 2048);
        for (payload, to) in datagrams {
            assert!(batch.push(payload, *to));
        }
        batch
    }

    #[test]
    fn replies_coalesce_per_peer_in_order() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let batch = batch_of(&[
            (&[1; 10], a),
            (&[2; 10], a),
            (&[3; 10], b),
            (&[4; 5], a),
            (&[5; 10], a),
            (&[6; 11], b),
            (b"", b),
            (&[7; 1453], b),
        ]);
        let mut plan = Replies::new(true);
        for i in 0..batch.len() {
            plan.add(&batch, i, 0..batch.payload(i).len());
        }
        let messages: Vec<_> = (0..plan.len())
            .map(|m| (plan.peer(m), plan.datagrams(m)))
            .collect();
        // a: 10, 10, then the short 5 closes the message; b: 10, and the
        // longer 11 starts another; an empty datagram and one above the GSO
        // size stand alone.
        assert_eq!(
            messages,
            vec![(a, 3), (b, 1), (a, 1), (b, 1), (b, 1), (b, 1)]
        );

        let mut plain = Replies::new(false);
        for i in 0..batch.len() {
            plain.add(&batch, i, 0..batch.payload(i).len());
        }
        assert_eq!(plain.len(), batch.len(), "one message per datagram");
    }

    #[test]
    fn a_range_outside_its_slot_is_refused() {
        let to: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let batch = batch_of(&[(b"abc", to), (b"def", to)]);
        let mut plan = Replies::new(false);
        assert!(!plan.add(&batch, 0, 0..100_000), "past the buffer");
        assert!(!plan.add(&batch, 0, 0..2049), "into the next slot");
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 3..1;
        assert!(!plan.add(&batch, 0, backwards));
        assert!(!plan.add(&batch, 7, 0..3), "no such slot");
        assert!(plan.is_empty());
        assert!(plan.add(&batch, 1, 0..2048), "the whole slot is fine");
        assert_eq!(plan.len(), 1);
    }

    #[test]
    #[should_panic]
    fn a_plan_sent_with_a_smaller_batch_panics_instead_of_reading_past_it() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = socket.local_addr().unwrap();
        let big = batch_of(&[(b"abc", to), (b"def", to)]);
        let mut plan = Replies::new(false);
        assert!(plan.add(&big, 1, 0..2048));
        let mut small = Datagrams::new(1, 16);
        assert!(small.push(b"x", to));
        let _ = plan.send(&mut small, socket.as_fd(), 0);
    }

    #[test]
    fn a_gso_send_arrives_as_datagrams_or_one_gro_slot() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        if !gso_supported(a.as_fd()) {
            eprintln!("SKIPPED: this kernel has no UDP GSO");
            return;
        }
        let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let gro = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable_gro(gro.as_fd()));
        let (to_plain, to_gro) = (plain.local_addr().unwrap(), gro.local_addr().unwrap());
        let batch = batch_of(&[
            (b"abc", to_plain),
            (b"def", to_gro),
            (b"ghi", to_plain),
            (b"jk", to_plain),
            (b"lmn", to_gro),
        ]);
        let mut batch = batch;
        let mut plan = Replies::new(true);
        for i in 0..batch.len() {
            plan.add(&batch, i, 0..batch.payload(i).len());
        }
        assert_eq!(plan.len(), 2);
        assert_eq!(plan.send(&mut batch, a.as_fd(), 0).unwrap(), 2);

        let mut buf = [0u8; 64];
        for want in [&b"abc"[..], b"ghi", b"jk"] {
            let (n, from) = plain.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (want, a.local_addr().unwrap()));
        }
        let mut inbox = Datagrams::new(4, MAX_PAYLOAD);
        assert_eq!(inbox.recv(gro.as_fd()).unwrap(), 1, "one slot");
        let got: Vec<&[u8]> = inbox.datagrams(0).map(|r| &inbox.payload(0)[r]).collect();
        assert_eq!(got, vec![&b"def"[..], b"lmn"]);
    }

    #[test]
    fn a_refused_gso_send_goes_again_one_by_one() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Without UDP checksums the kernel refuses GSO (EINVAL).
        let off: libc::c_int = 1;
        // SAFETY: a valid fd and a pointer to an int.
        let set = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&raw const off).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0);
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        let mut batch = batch_of(&[(b"one", to), (b"two", to), (b"six", to)]);
        let mut plan = Replies::new(true);
        for i in 0..batch.len() {
            plan.add(&batch, i, 0..3);
        }
        assert_eq!(plan.len(), 1);
        let refused = plan.send(&mut batch, a.as_fd(), 0).unwrap_err();
        assert!(gso_refused(&refused), "{refused}");
        plan.ungroup(&batch, 0);
        assert!(plan.gso(), "kept for the next batch");
        assert_eq!(plan.len(), 3);
        assert_eq!(plan.send(&mut batch, a.as_fd(), 0).unwrap(), 3);
        let mut buf = [0u8; 8];
        for want in [b"one", b"two", b"six"] {
            let n = b.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], want);
        }
        plan.disable_gso();
        plan.clear();
        for i in 0..batch.len() {
            plan.add(&batch, i, 0..3);
        }
        assert_eq!(plan.len(), 3, "no longer coalesced");
    }

    #[test]
    fn a_batch_round_trip() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        let mut out = Datagrams::new(4, 2048);
        assert!(out.push(b"one", to));
        assert!(out.push("두".as_bytes(), to));
        assert!(out.push(b"", to));
        assert!(!out.push(&[0; 4096], to), "larger than a slot");
        let mut plan = Replies::new(false);
        for i in 0..out.len() {
            plan.add(&out, i, 0..out.payload(i).len());
        }
        assert_eq!(plan.send(&mut out, a.as_fd(), 0).unwrap(), 3);

        let mut inbox = Datagrams::new(8, MAX_PAYLOAD);
        b.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            match inbox.recv(b.as_fd()) {
                Ok(n) => got.extend((0..n).map(|i| (inbox.payload(i).to_vec(), inbox.peer(i)))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        let from = Some(a.local_addr().unwrap());
        assert_eq!(
            got,
            vec![
                (b"one".to_vec(), from),
                ("두".as_bytes().to_vec(), from),
                (vec![], from)
            ]
        );
        assert_eq!(
            inbox.recv(b.as_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
}
