//! pinetd: the socket services of an introductory network-programming course
//! (chat hub, JSON echo, UDP echo, announcer, discovery) as one daemon.
//!
//! - [`config`]: the TOML file into plain, validated types, every problem named.
//! - [`net`]: binding listeners (socket2), keeping them across reloads, judging datagram sources.
//! - [`limit`]: per-source token buckets.
//! - [`stats`]: live counters for systemd's STATUS= line.
//! - [`services`]: one file per service; each binds from its table, then runs.
//! - [`supervisor`]: runs services as tasks, restarting the ones that fail.
//! - [`daemon`]: describe, bind, run; reload by table; drain on shutdown.
//! - [`process`]: signals and systemd notifications around a [`daemon::Daemon`].
//! - [`logging`], [`notify`]: tracing to stderr or journald, sd_notify.
//! - [`cli`], [`client`]: the command line and the client subcommands.

pub mod batch;
pub mod chatline;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod describe;
mod jsonerror;
pub mod jsonstream;
pub mod limit;
pub mod logging;
pub mod net;
pub mod notify;
pub mod process;
pub mod services;
pub mod stats;
pub mod supervisor;
