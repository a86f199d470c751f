//! `pinetd listen [--port 37020]`: print each announcement heard on the port,
//! one line each: sender, host, services, seq (raw text for other payloads),
//! or with `--json` the raw JSON lines, for scripts.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};

use crate::describe::Description;
use crate::net::bind_udp;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on udp port {port}: {source}")]
    Bind { port: u16, source: io::Error },
    #[error("receive failed: {0}")]
    Io(#[from] io::Error),
}

/// One announcement as a line for people.
pub fn describe_line(from: SocketAddr, payload: &[u8]) -> String {
    match Description::parse(payload) {
        Some(d) => format!(
            "{from}  {}  {}  {}  seq {}",
            escape_controls(&d.host),
            d.addrs_text(),
            escape_controls(&d.services_text()),
            d.seq
        ),
        None => format!("{from}  {}", printable(payload))
            .trim_end()
            .to_owned(),
    }
}

/// A payload as one line of text: invalid UTF-8 replaced, control characters escaped.
pub fn printable(payload: &[u8]) -> String {
    escape_controls(String::from_utf8_lossy(payload).trim_end_matches(['\r', '\n']))
}

/// Text from the network made safe for a terminal: control characters
/// (escape sequences, newlines) shown escaped.
pub fn escape_controls(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Listens until `count` announcements were printed (forever without).
pub async fn main(port: u16, json: bool, count: Option<u64>) -> Result<(), ListenError> {
    // Shared, so several listeners (and tests) can hear the same broadcasts.
    let socket = bind_udp((Ipv4Addr::UNSPECIFIED, port).into(), true)
        .map_err(|source| ListenError::Bind { port, source })?;
    if let Ok(addr) = socket.local_addr() {
        eprintln!("listening for announcements on udp {addr}");
    }
    let mut buf = vec![0u8; 65_536];
    let mut printed = 0;
    while count.is_none_or(|n| printed < n) {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e.into()),
        };
        let payload = &buf[..len];
        let line = if json {
            // Only pinetd's JSON: scripts get lines they can parse.
            if Description::parse(payload).is_none() {
                continue;
            }
            printable(payload)
        } else {
            describe_line(from, payload)
        };
        let mut out = io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        printed += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found writing the datagrams fuzz target (its corpus holds this
    /// payload): a description's host and service names reached the
    /// terminal raw.
    #[test]
    fn a_hostile_description_cannot_drive_the_terminal() {
        let payload = br#"{"pinetd":1,"host":"\u001b[2J\u001b]0;pwned\u0007","instance":"x","services":{"\u001b[31mchat":9999}}"#;
        let from = SocketAddr::from(([192, 168, 0, 23], 37020));
        let line = describe_line(from, payload);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert_eq!(
            line,
            "192.168.0.23:37020  \\u{1b}[2J\\u{1b}]0;pwned\\u{7}  -  \\u{1b}[31mchat 9999  seq 0"
        );
        let device = crate::client::discover::Device {
            from,
            rtt: std::time::Duration::from_millis(1),
            description: Description::parse(payload),
            raw: printable(payload),
        };
        let table = crate::client::discover::table(&[device]);
        assert!(
            !table.lines().any(|l| l.chars().any(char::is_control)),
            "{table:?}"
        );
    }
}
