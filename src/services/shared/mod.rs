//! Plumbing the services share, no service itself: how a TCP service takes
//! its connections ([`accept`], counting why each closed in `closing`,
//! refusing what the teacher blocked in [`block`]) and how a UDP service
//! judges and answers its datagrams ([`datagram`]).

pub mod accept;
pub mod block;
mod closing;
pub mod datagram;
