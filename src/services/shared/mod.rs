//! Plumbing the services share, no service itself: how a TCP service takes
//! its connections ([`accept`]) and how a UDP service judges and answers
//! its datagrams ([`datagram`]).

pub mod accept;
pub mod datagram;
