//! Datagrams in batches: one `recvmmsg` takes every datagram waiting (up to
//! the batch size) and one `sendmmsg` sends every reply, so a busy UDP
//! service makes two system calls per batch instead of two per datagram.
//!
//! The only `unsafe` in pinetd is here: the two calls need raw `mmsghdr`
//! arrays pointing into buffers this struct owns, rebuilt before each call.

use std::io;
use std::mem;
use std::net::SocketAddr;
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
    /// Slots holding a datagram, from 0.
    filled: usize,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iov` and `hdrs` are scratch space, rewritten
// from owned buffers before every call and never dereferenced otherwise.
unsafe impl Send for Datagrams {}
unsafe impl Sync for Datagrams {}

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
            filled: 0,
            iov: vec![iovec; slots],
            hdrs: vec![hdr; slots],
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

    /// Datagram `i`'s peer (its source after a receive).
    pub fn peer(&self, i: usize) -> Option<SocketAddr> {
        let storage = &self.addrs[i];
        let len = self.addr_lens[i] as usize;
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
        true
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
        }
        self.filled = n;
        Ok(n)
    }

    /// Sends the datagrams whose indexes are in `which`, without blocking;
    /// returns how many of them (from the front) went out.
    pub fn send(&mut self, socket: BorrowedFd<'_>, which: &[usize]) -> io::Result<usize> {
        for (k, &i) in which.iter().enumerate() {
            let start = i * self.slot_size;
            self.iov[k] = libc::iovec {
                iov_base: self.data[start..].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            };
            let hdr = &mut self.hdrs[k].msg_hdr;
            hdr.msg_name = (&raw mut self.addrs[i]).cast();
            hdr.msg_namelen = self.addr_lens[i];
            hdr.msg_iov = &raw mut self.iov[k];
            hdr.msg_iovlen = 1;
        }
        // SAFETY: as in `recv`; `which` has at most `capacity` entries.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                which.len().min(self.capacity()) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
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
        hdr.msg_control = std::ptr::null_mut();
        hdr.msg_controllen = 0;
        hdr.msg_flags = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

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
        assert_eq!(out.send(a.as_fd(), &[0, 1, 2]).unwrap(), 3);

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
