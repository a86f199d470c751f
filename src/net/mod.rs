//! Networking shared by the services: binding listeners ([`bind`]), the
//! sockets kept across restarts and reloads ([`sockets`]), the host's
//! interfaces ([`interfaces`]) and where a datagram may come from
//! ([`source`]).

pub mod bind;
pub mod interfaces;
pub mod sockets;
pub mod source;

pub use bind::{BindError, LocalAddr, bind_tcp, bind_udp, local_addrs};
pub use sockets::Sockets;
pub use source::{BadSource, LocalNets, allowed, bad_source, source_of};
