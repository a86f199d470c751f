//! pinetd: the socket services of an introductory network-programming course
//! (chat hub, JSON echo, UDP echo, announcer, discovery) as one daemon.
//!
//! This is the one map of the code; a module's own `//!` says the rest.
//! Lower layers never import higher ones, and no two modules import each
//! other in a circle (checked off the `use` lines: CONTRIBUTING.md).
//!
//! The wire formats, with no I/O (fuzzed: `fuzz/`):
//! - [`chatline`]: a chat client's bytes into lines, names and commands.
//! - [`jsonstream`]: JSON values out of a byte stream, with a depth limit;
//!   `jsonerror`: the words a student reads when a value is wrong.
//! - [`describe`]: what the announcer and discovery say about this Pi.
//!
//! Below the services:
//! - [`config`]: the TOML file into plain, validated types, every problem named.
//! - [`net`]: binding listeners (socket2), keeping them across reloads, judging datagram sources.
//! - [`batch`]: many datagrams a system call (recvmmsg/sendmmsg, GRO/GSO): most of the unsafe code.
//! - [`limit`]: per-source token buckets.
//! - [`stats`]: live counters for systemd's STATUS= line.
//! - [`logging`], [`notify`]: tracing to stderr or journald, sd_notify.
//! - [`observe`]: the seam the services publish their live state through
//!   (connections, activity, the room, its transcript on disk) and the web
//!   page reads; the teacher's hand on the room (`observe::Moderator`) and
//!   the teacher's blocks and actions ([`observe::teacher`]).
//!
//! The services ([`services`]), each binding from its table, then running:
//! - `services::shared`: the plumbing they share, TCP accepts ([`services::shared::accept`],
//!   refusing what the teacher blocked: [`services::shared::block`])
//!   and datagram judging ([`services::shared::datagram`]).
//! - [`services::chat`]: the chat hub, a folder: the room (`hub`, `pace`,
//!   `history`), a client (`member`, `hears`, `conn`, its `mailbox` of
//!   private lines and `orders`), the teacher's hand (`teacher`), what the
//!   hub says ([`services::chat::notices`]) and the NATS bridge
//!   ([`services::chat::bridge`]).
//! - [`services::json_echo`], [`services::udp_echo`], [`services::announcer`],
//!   [`services::discovery`]: one file each.
//! - [`services::web`]: the page of the class, its API and chat box, and
//!   the teacher's controls behind the token of `[web] admin_token_file`.
//! - [`services::registry`]: the one place that names every service.
//!
//! Above them:
//! - [`supervisor`]: runs services as tasks, restarting the ones that fail.
//! - [`daemon`]: describe, bind, run; reload by table; drain on shutdown.
//! - [`process`]: signals and systemd notifications around a [`daemon::Daemon`].
//! - [`cli`], [`client`]: the command line and the client subcommands.
//! - [`doctor`]: `pinetd doctor`, every check before class, on the Pi or
//!   from a student's machine.

pub mod batch;
pub mod chatline;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod daemon;
pub mod describe;
pub mod doctor;
mod jsonerror;
pub mod jsonstream;
pub mod limit;
pub mod logging;
pub mod net;
pub mod notify;
pub mod observe;
pub mod problems;
pub mod process;
pub mod services;
pub mod stats;
pub mod supervisor;
