//! A batch of datagram slots, filled by one `recvmmsg` (or by `push`, to
//! send), each with its payload, peer and GRO segment size.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::SockAddr;

use super::Control;

/// A fixed number of datagram slots, each with its payload and peer address.
pub struct Datagrams {
    /// `slots × slot_size` bytes; pages are touched only as large datagrams arrive.
    pub(super) data: Vec<u8>,
    pub(super) slot_size: usize,
    lens: Vec<usize>,
    pub(super) addrs: Vec<libc::sockaddr_storage>,
    pub(super) addr_lens: Vec<libc::socklen_t>,
    /// Per slot, the size of each datagram GRO put in it (0: one datagram).
    segments: Vec<u16>,
    /// Slots holding a datagram, from 0.
    filled: usize,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    control: Vec<Control>,
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
