//! Field parsers for the config: each turns a TOML value into a plain type or
//! an error that says what was expected, so the user sees why, not just where;
//! and the one writer a type needs to be written back the same way.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{Deserializer, Error};
use serde::{Deserialize, Serializer};

/// Largest UDP payload over IPv4; a reply or announcement must fit in one datagram.
const MAX_DATAGRAM: usize = 65_507;

/// `"250ms"`, `"1s"`, `"5m"`: a human duration string.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        D::Error::custom(format!(
            "invalid duration \"{text}\": {e} (write it like \"250ms\", \"1s\" or \"5m\")"
        ))
    })
}

/// A duration as the file writes it (`"1s 500ms"`), so a config written
/// out loads again.
pub fn write_duration<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*value).to_string())
}

/// A duration that must be above zero (an interval, a quiet time).
pub fn nonzero_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = duration(d)?;
    if value.is_zero() {
        return Err(D::Error::custom("must be longer than zero"));
    }
    Ok(value)
}

/// The shortest announcer interval. Every device on the LAN hears each
/// announcement; a typo of "1ms" for "1s" must not flood a classroom.
pub const MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_millis(100);

/// The longest discovery delay: a reply must arrive within the discover
/// client's default timeout (3 s), with a second to spare for the network.
pub const MAX_DISCOVERY_DELAY: Duration = Duration::from_secs(2);

/// The announcer's interval: above zero and at least [`MIN_ANNOUNCE_INTERVAL`].
pub fn announce_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = nonzero_duration(d)?;
    if value < MIN_ANNOUNCE_INTERVAL {
        return Err(D::Error::custom(format!(
            "must be at least {}: every device on the LAN hears each announcement",
            humantime::format_duration(MIN_ANNOUNCE_INTERVAL)
        )));
    }
    Ok(value)
}

/// Discovery's reply delay: at most [`MAX_DISCOVERY_DELAY`].
pub fn discovery_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = duration(d)?;
    if value > MAX_DISCOVERY_DELAY {
        return Err(D::Error::custom(format!(
            "must be at most {}: `pinetd discover` waits 3s by default, and a later reply is not heard",
            humantime::format_duration(MAX_DISCOVERY_DELAY)
        )));
    }
    Ok(value)
}

/// A busy-poll budget: zero (off) up to 1 ms; past that a spin costs more
/// than the wake-up it saves.
pub fn busy_poll<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = duration(d)?;
    if value > Duration::from_millis(1) {
        return Err(D::Error::custom(
            "must be at most 1ms (\"0s\" turns busy polling off)",
        ));
    }
    Ok(value)
}

/// A tracing filter directive, checked now rather than at the first log line.
pub fn log_filter<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    // A bare word is a target to tracing ("loud" shows only the target
    // "loud", so nothing at all): here it must be a level.
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let bare = text.split(',').map(str::trim).find(|d| {
        !d.is_empty() && !d.contains('=') && !LEVELS.contains(&d.to_ascii_lowercase().as_str())
    });
    if let Some(word) = bare {
        return Err(D::Error::custom(format!(
            "invalid log filter \"{text}\": \"{word}\" is not a level (off, error, warn, info, debug, trace, or TARGET=LEVEL)"
        )));
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(&text)
        .map_err(|e| D::Error::custom(format!("invalid log filter \"{text}\": {e}")))?;
    Ok(text)
}

/// The control socket's path: absolute and short enough for a Unix
/// socket address (107 bytes), or "" for none.
pub fn socket_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    const MAX: usize = 107;
    let text = String::deserialize(d)?;
    if !text.is_empty() && !text.starts_with('/') {
        return Err(D::Error::custom(format!(
            "\"{text}\" is not an absolute path (like \"/run/pinetd/control.sock\"; \"\" for none)"
        )));
    }
    if text.len() > MAX {
        return Err(D::Error::custom(format!(
            "the path is {} bytes long: a Unix socket's path is at most {MAX}",
            text.len()
        )));
    }
    Ok(Some(text))
}

/// A directory: an absolute path, or "" for none.
pub fn directory<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    const MAX: usize = 1024;
    let text = String::deserialize(d)?;
    if !text.is_empty() && !text.starts_with('/') {
        return Err(D::Error::custom(format!(
            "\"{text}\" is not an absolute path (like \"/var/lib/pinetd/chat\"; \"\" for none)"
        )));
    }
    if text.len() > MAX || text.contains('\0') {
        return Err(D::Error::custom(format!(
            "not a usable path: at most {MAX} bytes and no NUL"
        )));
    }
    Ok(text)
}

/// Days of transcript kept: 1 (today only) to 3650.
pub fn transcript_days<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded_u32(d, 1, 3650)
}

pub fn positive_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded_u32(d, 1, u32::MAX)
}

/// A chat line limit: at least one byte, at most 1 MiB (it is buffered per client).
pub fn line_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded_u32(d, 1, 1 << 20)
}

/// The chat's channel: at least one message, at most 2^20 (the channel's
/// slots are made at start; 4 billion of them would not fit in memory).
pub fn queue_length<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded_u32(d, 1, 1 << 20)
}

/// Host names for the web page: letters, digits, `-` and `.`, lower case.
pub fn host_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    for name in &names {
        let valid = !name.is_empty()
            && name.len() <= 253
            && (name.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return Err(D::Error::custom(format!(
                "{name:?} is not a host name (letters, digits, '-' and '.')"
            )));
        }
    }
    Ok(names.into_iter().map(|n| n.to_ascii_lowercase()).collect())
}

/// The chat room's lines given to a new client: 0 (none) to 1,000 (each
/// joiner is sent them all; the room keeps the items that hold them).
pub fn chat_history<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded_u32(d, 0, 1_000)
}

/// What the web page keeps of a kind (lines, events, connections): 0 to
/// 2,000 (each is held in memory, up to a few kilobytes, for every service).
pub fn kept<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded_u32(d, 0, 2_000)
}

/// A JSON message limit: room for `{}` at least, 64 MiB at most.
pub fn message_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded_u32(d, 2, 64 << 20)
}

fn bounded_u32<'de, D: Deserializer<'de>>(d: D, min: u32, max: u32) -> Result<u32, D::Error> {
    let value = i64::deserialize(d)
        .map_err(|_| D::Error::custom(format!("expected a whole number from {min} to {max}")))?;
    u32::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| D::Error::custom(format!("{value} is out of range ({min} to {max})")))
}

/// A fixed payload text: it must fit in one UDP datagram.
pub fn datagram_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    if text.len() > MAX_DATAGRAM {
        return Err(D::Error::custom(format!(
            "is {} bytes, more than fits in one UDP datagram ({MAX_DATAGRAM})",
            text.len()
        )));
    }
    Ok(text)
}

/// `interfaces`: network interface names as `ip link` shows them. Whether
/// they exist is not checked: a Wi-Fi interface or a hotspot may appear
/// after the daemon starts.
pub fn interface_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)
        .map_err(|_| D::Error::custom("expected a list of interface names like [\"eth0\"]"))?;
    for name in &names {
        // Linux: at most IFNAMSIZ - 1 bytes, no '/', ':' or whitespace.
        if name.is_empty()
            || name.len() > 15
            || name == "."
            || name == ".."
            || name
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(D::Error::custom(format!(
                "\"{}\" is not an interface name (1 to 15 characters, no '/', ':' or spaces)",
                name.escape_debug()
            )));
        }
    }
    Ok(names)
}

/// `allow`: CIDR networks; a bare address means just that host.
pub fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(d)
        .map_err(|_| D::Error::custom("expected a list of networks like [\"192.168.0.0/24\"]"))?;
    texts
        .iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    D::Error::custom(format!(
                        "\"{text}\" is not a network like \"192.168.0.0/24\" or an address"
                    ))
                })
        })
        .collect()
}

/// `listen`: one `"IP:PORT"` or a list of them; port 0 asks the kernel for one.
pub fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    addresses(d, true)
}

/// `to`: where the announcer sends; port 0 is no destination.
pub fn destinations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    addresses(d, false)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn addresses<'de, D: Deserializer<'de>>(
    d: D,
    port_zero: bool,
) -> Result<Vec<SocketAddr>, D::Error> {
    let texts = match OneOrMany::deserialize(d)
        .map_err(|_| D::Error::custom("expected an address \"IP:PORT\" or a list of them"))?
    {
        OneOrMany::One(text) => vec![text],
        OneOrMany::Many(texts) => texts,
    };
    let mut addrs = Vec::with_capacity(texts.len());
    for text in &texts {
        let addr = parse_addr(text).map_err(D::Error::custom)?;
        if addr.port() == 0 && !port_zero {
            return Err(D::Error::custom(format!(
                "\"{text}\": port 0 is not a destination"
            )));
        }
        if addrs.contains(&addr) {
            return Err(D::Error::custom(format!("\"{text}\" is listed twice")));
        }
        addrs.push(addr);
    }
    Ok(addrs)
}

/// Parses `"IP:PORT"` / `"[IPv6]:PORT"`, naming what is wrong with it.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "\"{text}\" is not \"IP:PORT\" (IPv6 as \"[::]:9999\")"
        ));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<IpAddr>().is_err() {
        return Err(format!("\"{text}\": \"{host}\" is not an IP address"));
    }
    match port.parse::<u64>() {
        Ok(_) if !text.starts_with('[') && host.contains(':') => Err(format!(
            "\"{text}\": write an IPv6 address in brackets, like \"[{host}]:{port}\""
        )),
        Ok(p) if p > u64::from(u16::MAX) => {
            Err(format!("\"{text}\": port {p} is out of range (0 to 65535)"))
        }
        _ => Err(format!("\"{text}\": \"{port}\" is not a port number")),
    }
}

/// The longest bridge subject: NATS allows more, but a room's name is short.
pub const MAX_SUBJECT: usize = 255;

/// `bridge_url`: "" (no bridge), or one or more `nats://[USER:PASS@|TOKEN@]HOST[:PORT]`,
/// comma separated, the servers of one NATS cluster.
pub fn bridge_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(String::new());
    }
    for url in text.split(',') {
        NatsUrl::parse(url.trim()).map_err(D::Error::custom)?;
    }
    if !cfg!(feature = "bridge") {
        return Err(D::Error::custom(
            "this pinetd was built without the NATS bridge (cargo feature \"bridge\"); set bridge_url = \"\"",
        ));
    }
    Ok(text)
}

/// Who the bridge says it is to NATS, from a URL's user part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    None,
    Token(String),
    UserPassword(String, String),
}

/// One `nats://` server of `bridge_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsUrl {
    /// `nats://HOST:PORT`, IPv6 in brackets: what is connected to and
    /// logged (never the credentials).
    pub server: String,
    pub auth: NatsAuth,
}

impl NatsUrl {
    /// Parses `nats://[USER:PASS@|TOKEN@]HOST[:PORT]`, naming what is wrong.
    pub fn parse(url: &str) -> Result<NatsUrl, String> {
        let Some(rest) = url.strip_prefix("nats://") else {
            return Err(format!(
                "\"{}\" is not a NATS server address like \"nats://127.0.0.1:4222\" (only nats://: the bridge does not speak TLS)",
                url.escape_debug()
            ));
        };
        // Credentials are not repeated in an error message.
        let (auth, hostport) = match rest.rsplit_once('@') {
            None => (NatsAuth::None, rest),
            Some((user, hostport)) => (credentials(user)?, hostport),
        };
        let shown = format!("nats://{hostport}");
        let (host, port) = match hostport.strip_prefix('[') {
            // [IPv6] or [IPv6]:PORT
            Some(bracketed) => match bracketed.split_once(']') {
                Some((ip, "")) => (ip, None),
                Some((ip, rest)) => match rest.strip_prefix(':') {
                    Some(port) => (ip, Some(port)),
                    None => return Err(bad_host(&shown, hostport)),
                },
                None => return Err(bad_host(&shown, hostport)),
            },
            None => match hostport.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            },
        };
        let port = match port {
            None => 4222,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    format!(
                        "\"{}\": \"{}\" is not a port (1 to 65535)",
                        shown.escape_debug(),
                        port.escape_debug()
                    )
                })?,
        };
        let bracketed = hostport.starts_with('[');
        let valid = if bracketed {
            host.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            host.parse::<std::net::Ipv4Addr>().is_ok() || host_name(host)
        };
        if !valid {
            return Err(bad_host(&shown, host));
        }
        let server = if bracketed {
            format!("nats://[{host}]:{port}")
        } else {
            format!("nats://{host}:{port}")
        };
        Ok(NatsUrl { server, auth })
    }
}

fn credentials(user: &str) -> Result<NatsAuth, String> {
    let fine = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '/' && c != ',')
    };
    match user.split_once(':') {
        Some((name, password)) if fine(name) && fine(password) => {
            Ok(NatsAuth::UserPassword(name.to_owned(), password.to_owned()))
        }
        None if fine(user) => Ok(NatsAuth::Token(user.to_owned())),
        _ => Err(
            "has credentials that are not USER:PASSWORD@ or TOKEN@ (no spaces, '/' or ',')"
                .to_owned(),
        ),
    }
}

/// A DNS name: dot-separated labels of letters, digits and '-'.
fn host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn bad_host(shown: &str, host: &str) -> String {
    format!(
        "\"{}\": \"{}\" is not a host name or IP address (IPv6 in brackets: nats://[::1]:4222)",
        shown.escape_debug(),
        host.escape_debug()
    )
}

/// `bridge_subject`: a NATS subject without wildcards, like `pinetd.chat`.
pub fn bridge_subject<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    subject(&text).map_err(D::Error::custom)?;
    Ok(text)
}

fn subject(text: &str) -> Result<(), String> {
    let shown = text.escape_debug();
    if text.is_empty() {
        return Err("is empty: hubs on the same subject share a room, like \"pinetd.chat\"".into());
    }
    if text.len() > MAX_SUBJECT {
        return Err(format!("is {} bytes, more than {MAX_SUBJECT}", text.len()));
    }
    if text.split('.').any(|token| token == "*" || token == ">") {
        return Err(format!(
            "\"{shown}\" has a wildcard: a room is one subject, like \"pinetd.chat\""
        ));
    }
    if text.split('.').any(str::is_empty)
        || text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
    {
        return Err(format!(
            "\"{shown}\" is not a NATS subject: words split by dots, no spaces, '*' or '>', like \"pinetd.chat\""
        ));
    }
    Ok(())
}
