//! The configuration: plain, validated types for every table of the TOML file,
//! with the embedded default (loopback only) as every key's default value.
//!
//! `load` turns a file into a [`Config`] or a list of every problem in it;
//! `de` holds the field parsers (durations, addresses) that give clear errors.
//!
//! (A little over 600 lines: one plain struct per table with each key's
//! comment and default, read best side by side.)

mod de;
mod load;
mod token;

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use de::{NatsAuth, NatsUrl};
pub use load::{ConfigError, Problem};
pub use token::AdminToken;

/// A student may run a few clients at once, but not take every slot.
const DEFAULT_PER_SOURCE: u32 = 16;

/// The whole file: one table per service plus `[daemon]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub chat: ChatConfig,
    pub json_echo: JsonEchoConfig,
    pub udp_echo: UdpEchoConfig,
    pub announcer: AnnouncerConfig,
    pub discovery: DiscoveryConfig,
    pub web: WebConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// SIGTERM: stop accepting, tell clients, drain for at most this long.
    #[serde(
        deserialize_with = "de::duration",
        serialize_with = "de::write_duration"
    )]
    pub shutdown_grace: Duration,
    /// A tracing filter (`info`, `pinetd=debug`); RUST_LOG overrides it.
    #[serde(deserialize_with = "de::log_filter")]
    pub log: String,
    /// Where `pinetd status` reaches the daemon: unset, systemd's
    /// `$RUNTIME_DIRECTORY/control.sock` (else [`CONTROL_SOCKET`]); "" for none.
    #[serde(
        deserialize_with = "de::socket_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub control_socket: Option<String>,
}

/// The control socket where `[daemon] control_socket` is unset and systemd
/// gave no runtime directory: the packaged unit's (`RuntimeDirectory=pinetd`).
pub const CONTROL_SOCKET: &str = "/run/pinetd/control.sock";

impl DaemonConfig {
    /// Where the daemon of this table serves `pinetd status`, if anywhere.
    pub fn control_socket(&self) -> Option<std::path::PathBuf> {
        match self.control_socket.as_deref() {
            Some("") => None,
            Some(path) => Some(path.into()),
            None => Some(match std::env::var_os("RUNTIME_DIRECTORY") {
                // systemd gives one directory per RuntimeDirectory= (the
                // first is the unit's own), separated by colons.
                Some(dirs) if !dirs.is_empty() => {
                    let dirs = dirs.to_string_lossy().into_owned();
                    let first = dirs.split(':').next().unwrap_or_default().to_owned();
                    std::path::Path::new(&first).join("control.sock")
                }
                _ => CONTROL_SOCKET.into(),
            }),
        }
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(5),
            log: "info".into(),
            control_socket: None,
        }
    }
}

/// What the chat hub does with a client that falls `queue` messages behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLag {
    Skip,
    Disconnect,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "de::listen")]
    pub listen: Vec<SocketAddr>,
    #[serde(deserialize_with = "de::networks")]
    pub allow: Vec<IpNet>,
    /// Clients at once, over all of `listen`.
    #[serde(deserialize_with = "de::positive_u32")]
    pub max_clients: u32,
    /// Clients at once from one address (IPv6: one /64); 0 means no limit.
    pub max_per_source: u32,
    #[serde(deserialize_with = "de::line_bytes")]
    pub max_line_bytes: u32,
    pub echo_self: bool,
    pub prefix: String,
    #[serde(
        deserialize_with = "de::nonzero_duration",
        serialize_with = "de::write_duration"
    )]
    pub flush_after: Duration,
    #[serde(deserialize_with = "de::queue_length")]
    pub queue: u32,
    pub on_lag: OnLag,
    pub rate_limit: u32,
    /// A client that takes nothing of what it is sent this long is dropped.
    #[serde(
        deserialize_with = "de::nonzero_duration",
        serialize_with = "de::write_duration"
    )]
    pub write_timeout: Duration,
    /// "" (no bridge) or `nats://HOST:PORT` (comma separated for a
    /// cluster): the room is shared with every hub on `bridge_subject`.
    #[serde(deserialize_with = "de::bridge_url")]
    pub bridge_url: String,
    #[serde(deserialize_with = "de::bridge_subject")]
    pub bridge_subject: String,
    /// Lines a second taken from the other hubs together (0: no limit).
    pub bridge_rate_limit: u32,
    /// "" (none) or a directory: every line the room hears is appended to
    /// a file of the day there, `YYYY-MM-DD.tsv` (local time).
    #[serde(deserialize_with = "de::directory")]
    pub transcript: String,
    /// Days of transcript kept, today's included; older files are removed.
    #[serde(deserialize_with = "de::transcript_days")]
    pub transcript_days: u32,
    /// The room's last lines a new client gets first (0: none).
    #[serde(deserialize_with = "de::chat_history")]
    pub history: u32,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 9999))],
            allow: Vec::new(),
            max_clients: 1000,
            max_per_source: DEFAULT_PER_SOURCE,
            max_line_bytes: 4096,
            echo_self: false,
            prefix: "[{name}] ".into(),
            flush_after: Duration::from_millis(50),
            queue: 1024,
            on_lag: OnLag::Skip,
            rate_limit: 100,
            write_timeout: Duration::from_secs(10),
            bridge_url: String::new(),
            bridge_subject: "pinetd.chat".into(),
            bridge_rate_limit: 5000,
            transcript: String::new(),
            transcript_days: 30,
            history: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonEchoConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "de::listen")]
    pub listen: Vec<SocketAddr>,
    #[serde(deserialize_with = "de::networks")]
    pub allow: Vec<IpNet>,
    /// Connections at once, over all of `listen`.
    #[serde(deserialize_with = "de::positive_u32")]
    pub max_clients: u32,
    /// Connections at once from one address (IPv6: one /64); 0 means no limit.
    pub max_per_source: u32,
    #[serde(deserialize_with = "de::message_bytes")]
    pub max_message_bytes: u32,
    /// A connection with nothing sent (or nothing read of its replies) this long is closed.
    #[serde(
        deserialize_with = "de::nonzero_duration",
        serialize_with = "de::write_duration"
    )]
    pub idle_timeout: Duration,
    /// After a reply, how long to keep checking for the client's next value
    /// instead of sleeping, while the client asks again that fast (0: never).
    #[serde(
        deserialize_with = "de::busy_poll",
        serialize_with = "de::write_duration"
    )]
    pub busy_poll: Duration,
}

impl Default for JsonEchoConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 9000))],
            allow: Vec::new(),
            max_clients: 1000,
            max_per_source: DEFAULT_PER_SOURCE,
            max_message_bytes: 65536,
            idle_timeout: Duration::from_secs(60),
            busy_poll: Duration::from_micros(50),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UdpEchoConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "de::listen")]
    pub listen: Vec<SocketAddr>,
    #[serde(deserialize_with = "de::networks")]
    pub allow: Vec<IpNet>,
    /// "" echoes the datagram (RFC 862); anything else is sent instead.
    #[serde(deserialize_with = "de::datagram_text")]
    pub reply: String,
    /// Replies per second per source address; 0 means no limit.
    pub rate_limit: u32,
}

impl Default for UdpEchoConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 20001))],
            allow: Vec::new(),
            reply: String::new(),
            rate_limit: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnouncerConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "de::destinations")]
    pub to: Vec<SocketAddr>,
    #[serde(deserialize_with = "de::networks")]
    pub allow: Vec<IpNet>,
    #[serde(
        deserialize_with = "de::announce_interval",
        serialize_with = "de::write_duration"
    )]
    pub interval: Duration,
    /// "" sends the JSON self-description.
    #[serde(deserialize_with = "de::datagram_text")]
    pub message: String,
    /// Where a `to` of 255.255.255.255 goes: every interface that is up,
    /// IPv4 and broadcast-capable (loopback aside), or only those named.
    #[serde(deserialize_with = "de::interface_names")]
    pub interfaces: Vec<String>,
}

impl AnnouncerConfig {
    /// How long a listener may take the daemon's self-description as
    /// current: three announcements, so one lost datagram is no departure.
    /// Discovery replies carry it too.
    pub fn ttl(&self) -> Duration {
        self.interval * 3
    }
}

impl Default for AnnouncerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            to: vec![SocketAddr::from(([127, 255, 255, 255], 37020))],
            allow: Vec::new(),
            interval: Duration::from_secs(1),
            message: String::new(),
            interfaces: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "de::listen")]
    pub listen: Vec<SocketAddr>,
    #[serde(deserialize_with = "de::networks")]
    pub allow: Vec<IpNet>,
    #[serde(deserialize_with = "de::datagram_text")]
    pub reply: String,
    #[serde(
        deserialize_with = "de::discovery_delay",
        serialize_with = "de::write_duration"
    )]
    pub max_delay: Duration,
    pub rate_limit: u32,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 37021))],
            allow: vec![IpNet::V4(
                ipnet::Ipv4Net::new([127, 0, 0, 0].into(), 8).expect("valid prefix"),
            )],
            reply: String::new(),
            max_delay: Duration::from_millis(120),
            rate_limit: 10,
        }
    }
}

/// The transport a listener uses; two listeners clash only on the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The web page of the class and its API (`[web]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "de::listen")]
    pub listen: Vec<SocketAddr>,
    /// Who may open the page: it shows students' addresses and what they sent.
    #[serde(deserialize_with = "de::networks")]
    pub allow: Vec<IpNet>,
    /// HTTP connections at once (pages, their streams, chat boxes).
    #[serde(deserialize_with = "de::positive_u32")]
    pub max_clients: u32,
    /// Connections at once from one address (IPv6: one /64); 0 means no limit.
    pub max_per_source: u32,
    /// Names the page may be asked for by, besides an address, `localhost`
    /// and this host's name (with `.local`): a request for any other
    /// `Host` is refused, so another site cannot rebind its name to the Pi.
    #[serde(deserialize_with = "de::host_names")]
    pub hosts: Vec<String>,
    /// A peer that has not sent its request's headers this long is closed.
    #[serde(
        deserialize_with = "de::nonzero_duration",
        serialize_with = "de::write_duration"
    )]
    pub header_timeout: Duration,
    /// Lines of the chat room the page keeps.
    #[serde(deserialize_with = "de::kept")]
    pub history: u32,
    /// Events of each service's recent activity the page keeps.
    #[serde(deserialize_with = "de::kept")]
    pub activity: u32,
    /// Recently closed connections of each service the page keeps.
    #[serde(deserialize_with = "de::kept")]
    pub closed: u32,
    /// A file holding the teacher's token (systemd's `LoadCredential=`
    /// gives one); "" for none, and the page is read-only for everyone.
    pub admin_token_file: String,
    /// The token read from `admin_token_file` ([`WebConfig::read_admin_token`]).
    #[serde(skip)]
    pub admin_token: AdminToken,
}

impl WebConfig {
    /// Reads the token of `admin_token_file` (none if it is ""); why not.
    pub fn read_admin_token(&mut self) -> Result<(), String> {
        self.admin_token = match self.admin_token_file.as_str() {
            "" => AdminToken::default(),
            file => AdminToken::read(file)?,
        };
        Ok(())
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            allow: Vec::new(),
            max_clients: 200,
            max_per_source: 32,
            hosts: Vec::new(),
            header_timeout: Duration::from_secs(10),
            history: 200,
            activity: 100,
            closed: 100,
            admin_token_file: String::new(),
            admin_token: AdminToken::default(),
        }
    }
}

/// One address a service listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub service: &'static str,
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// What a service's table tells the daemon about the service, whatever the
/// service: enough to bind it, check it against the others and fit it under
/// the open-files limit.
pub trait Table {
    /// The table's name in the file; also the service's name in logs, stats
    /// and self-descriptions.
    fn name(&self) -> &'static str;
    fn enabled(&self) -> bool;
    /// Where it listens and on which transport; None for a service that only sends.
    fn listen(&self) -> Option<(Transport, &[SocketAddr])>;
    /// The peers it serves (`allow`; [] is everyone); [] for a service that
    /// only sends.
    fn serves(&self) -> &[IpNet];
    /// Its limit of clients at once, for a service that holds a descriptor per client.
    fn max_clients_mut(&mut self) -> Option<&mut u32> {
        None
    }
}

/// A table's place in [`Config`], for code that knows which table it wants.
pub trait TableIn: Table + Clone + PartialEq + Sized + 'static {
    const NAME: &'static str;
    fn of(config: &Config) -> &Self;
    fn of_mut(config: &mut Config) -> &mut Self;
}

/// Makes `$type` the table `$field` of [`Config`]: [`Table`] and [`TableIn`].
/// `listens: Tcp` (or `Udp`) says its `listen` key's transport, `sends_only`
/// that it has none; `max_clients` that it holds a descriptor per client.
macro_rules! table {
    ($type:ty, $field:ident, sends_only) => {
        table!(@impl $type, $field, [],);
    };
    ($type:ty, $field:ident, listens: $transport:ident $(, $max:ident)?) => {
        table!(
            @impl $type, $field, [$transport],
            $(fn max_clients_mut(&mut self) -> Option<&mut u32> {
                Some(&mut self.$max)
            })?
        );
    };
    (@listen $table:ident) => {
        None
    };
    (@listen $table:ident, $transport:ident) => {
        Some((Transport::$transport, $table.listen.as_slice()))
    };
    (@serves $table:ident) => {
        &[]
    };
    (@serves $table:ident, $transport:ident) => {
        $table.allow.as_slice()
    };
    (@impl $type:ty, $field:ident, [$($transport:ident)?], $($extra:item)?) => {
        impl Table for $type {
            fn name(&self) -> &'static str {
                stringify!($field)
            }
            fn enabled(&self) -> bool {
                self.enabled
            }
            fn listen(&self) -> Option<(Transport, &[SocketAddr])> {
                table!(@listen self $(, $transport)?)
            }
            fn serves(&self) -> &[IpNet] {
                table!(@serves self $(, $transport)?)
            }
            $($extra)?
        }
        impl TableIn for $type {
            const NAME: &'static str = stringify!($field);
            fn of(config: &Config) -> &Self {
                &config.$field
            }
            fn of_mut(config: &mut Config) -> &mut Self {
                &mut config.$field
            }
        }
    };
}

table!(ChatConfig, chat, listens: Tcp, max_clients);
table!(JsonEchoConfig, json_echo, listens: Tcp, max_clients);
table!(UdpEchoConfig, udp_echo, listens: Udp);
table!(AnnouncerConfig, announcer, sends_only);
table!(DiscoveryConfig, discovery, listens: Udp);
table!(WebConfig, web, listens: Tcp, max_clients);

/// File descriptors the daemon needs besides its clients: stdio, the
/// runtime, signals, UDP sockets, a connection being refused, the config file.
const FD_RESERVE: u64 = 64;

impl Config {
    /// Fits `max_clients` of the TCP services under the open-files `limit`,
    /// as Redis does with `maxclients`: if their sum and what the daemon
    /// needs do not fit, lowers them in proportion, so one service's clients
    /// can never leave another without a descriptor to accept with. Returns
    /// the warning to log, naming the keys, the limit and the new values.
    pub fn fit_open_files(&mut self, limit: u64) -> Option<String> {
        let reserve = FD_RESERVE + self.listeners().len() as u64;
        let mut tables: Vec<(&str, &mut u32)> = self
            .tables_mut()
            .into_iter()
            .filter(|table| table.enabled())
            .filter_map(|table| Some((table.name(), table.max_clients_mut()?)))
            .collect();
        let wanted: u64 = tables.iter().map(|(_, max)| u64::from(**max)).sum();
        if wanted + reserve <= limit {
            return None;
        }
        let room = limit.saturating_sub(reserve);
        let mut lowered = Vec::new();
        for (table, max) in tables.drain(..) {
            let fitted = (u64::from(*max) * room / wanted).max(1);
            let fitted = u32::try_from(fitted).unwrap_or(u32::MAX);
            lowered.push(format!("{table}.max_clients {} -> {fitted}", *max));
            *max = fitted;
        }
        Some(format!(
            "the open-files limit ({limit}) leaves room for {room} clients, not {wanted}: lowered {} (raise LimitNOFILE, or lower them)",
            lowered.join(", ")
        ))
    }

    /// The keys whose values differ between `self` and `other`, as
    /// `table.key`, sorted: what a reload changes.
    pub fn changed_keys(&self, other: &Config) -> Vec<String> {
        let (Ok(a), Ok(b)) = (serde_json::to_value(self), serde_json::to_value(other)) else {
            return Vec::new();
        };
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        for (table, old) in a {
            let (Some(old), Some(new)) =
                (old.as_object(), b.get(table).and_then(|t| t.as_object()))
            else {
                continue;
            };
            for (key, value) in old {
                if new.get(key) != Some(value) {
                    changed.push(format!("{table}.{key}"));
                }
            }
        }
        // Never written out, but a new token in the same file is a change.
        if self.web.admin_token != other.web.admin_token {
            changed.push("web.admin_token".into());
        }
        changed
    }

    /// Every service table, in start-up order.
    pub fn tables(&self) -> [&dyn Table; 6] {
        [
            &self.chat,
            &self.json_echo,
            &self.udp_echo,
            &self.announcer,
            &self.discovery,
            &self.web,
        ]
    }

    pub fn tables_mut(&mut self) -> [&mut dyn Table; 6] {
        [
            &mut self.chat,
            &mut self.json_echo,
            &mut self.udp_echo,
            &mut self.announcer,
            &mut self.discovery,
            &mut self.web,
        ]
    }

    /// Every enabled listener, in start-up order.
    pub fn listeners(&self) -> Vec<Listener> {
        self.tables()
            .into_iter()
            .filter(|table| table.enabled())
            .flat_map(|table| {
                let (transport, addrs) = table.listen().unwrap_or((Transport::Udp, &[]));
                addrs.iter().map(move |&addr| Listener {
                    service: table.name(),
                    transport,
                    addr,
                })
            })
            .collect()
    }
}
