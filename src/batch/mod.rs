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
//! Most of pinetd's `unsafe` is in this module: the calls need raw
//! `mmsghdr` arrays pointing into buffers these structs own, rebuilt before
//! each call. The safe API keeps them sound: `Replies::add` takes only
//! ranges within a slot, and `send` slices each range whole before pointing
//! at it.
//!
//! [`Datagrams`] (`datagrams.rs`) receives a batch; [`Replies`]
//! (`replies.rs`) plans and sends the answers to one; this file has the
//! control message buffer both use and the socket options a UDP service
//! sets (GRO, GSO, ICMP errors).

mod datagrams;
mod replies;
#[cfg(test)]
mod tests;

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

pub use datagrams::Datagrams;
pub use replies::Replies;

/// Large enough for any UDP payload (65,507 over IPv4, 65,527 over IPv6).
pub const MAX_PAYLOAD: usize = 65_536;

/// Room for one control message carrying an int, aligned as `cmsghdr` is.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; 32]);

impl Control {
    const EMPTY: Self = Self([0; 32]);
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

/// Whether a send error says GSO itself is not possible here (rather than
/// something about the peer or route).
pub fn gso_refused(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
    )
}
