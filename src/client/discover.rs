//! `pinetd discover`: one probe to the discovery port (by default to the
//! broadcast address of every network this machine is on, so a Pi on a LAN
//! and a hotspot scans both), replies collected until the timeout,
//! de-duplicated by instance, then a table (or `--json` lines).

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use if_addrs::{IfAddr, IfOperStatus};
use tokio::net::UdpSocket;
use tokio::time::timeout_at;

use crate::client::listen::{escape_controls, printable};
use crate::describe::Description;

/// What a probe says; any datagram would do.
pub const PROBE: &[u8] = b"pinetd discover\n";

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error(
        "no network to probe: no interface is up with an IPv4 broadcast address (give --to; 127.255.255.255 finds the daemons on this machine)"
    )]
    NoNetwork,
    #[error("cannot send the probe to {to}: {source}")]
    Send { to: SocketAddr, source: io::Error },
    #[error("{found} device(s) answered within {waited:?}, {required} required")]
    TooFew {
        found: usize,
        required: usize,
        waited: Duration,
    },
}

/// One device that answered.
#[derive(Debug, Clone)]
pub struct Device {
    pub from: SocketAddr,
    pub rtt: Duration,
    /// None for a responder that is not pinetd (any text reply).
    pub description: Option<Description>,
    pub raw: String,
}

impl Device {
    fn key(&self) -> String {
        match &self.description {
            Some(d) => d.instance.clone(),
            None => self.from.to_string(),
        }
    }
}

/// The broadcast address of every network this machine is on: each
/// interface that is up, IPv4 and broadcast-capable, loopback aside.
pub fn local_broadcasts() -> Vec<Ipv4Addr> {
    let mut found: Vec<Ipv4Addr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| matches!(i.oper_status, IfOperStatus::Up | IfOperStatus::Unknown))
        .filter(|i| !i.is_loopback())
        .filter_map(|i| match i.addr {
            IfAddr::V4(v4) => v4.broadcast,
            IfAddr::V6(_) => None,
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Probes every address of `to` (one family) once, from one socket, and
/// collects the replies until `wait` is over.
pub async fn scan(to: &[SocketAddr], wait: Duration) -> Result<Vec<Device>, DiscoverError> {
    let Some(&first) = to.first() else {
        return Err(DiscoverError::NoNetwork);
    };
    let send_err = |to, source| DiscoverError::Send { to, source };
    let local: SocketAddr = match first.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| send_err(first, e))?;
    socket.set_broadcast(true).map_err(|e| send_err(first, e))?;
    let started = Instant::now();
    for &to in to {
        socket
            .send_to(PROBE, to)
            .await
            .map_err(|e| send_err(to, e))?;
    }
    let deadline = tokio::time::Instant::from_std(started + wait);
    let mut found: BTreeMap<String, Device> = BTreeMap::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok(received) = timeout_at(deadline, socket.recv_from(&mut buf)).await {
        let Ok((len, from)) = received else { continue };
        let device = Device {
            from,
            rtt: started.elapsed(),
            description: Description::parse(&buf[..len]),
            raw: printable(&buf[..len]),
        };
        // The first reply of each instance counts (a host answers once per socket it hears on).
        found.entry(device.key()).or_insert(device);
    }
    let mut devices: Vec<Device> = found.into_values().collect();
    devices.sort_by_key(|d| d.rtt);
    Ok(devices)
}

/// The table people see.
pub fn table(devices: &[Device]) -> String {
    let rows: Vec<[String; 5]> = devices
        .iter()
        .map(|d| match &d.description {
            Some(desc) => {
                let addrs = if desc.addrs.is_empty() {
                    d.from.ip().to_string()
                } else {
                    desc.addrs_text()
                };
                [
                    escape_controls(&desc.host),
                    d.from.ip().to_string(),
                    addrs,
                    escape_controls(&desc.services_text()),
                    format!("{:.0?}", d.rtt),
                ]
            }
            None => [
                d.from.to_string(),
                d.from.ip().to_string(),
                d.from.ip().to_string(),
                d.raw.clone(),
                format!("{:.0?}", d.rtt),
            ],
        })
        .collect();
    let header = ["HOST", "FROM", "ADDRESSES", "SERVICES", "REPLY"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub async fn main(
    to: Option<IpAddr>,
    port: u16,
    wait: Duration,
    json: bool,
    require: Option<usize>,
) -> Result<(), DiscoverError> {
    let to: Vec<SocketAddr> = match to {
        Some(to) => vec![SocketAddr::new(to, port)],
        None => local_broadcasts()
            .into_iter()
            .map(|b| SocketAddr::from((b, port)))
            .collect(),
    };
    let devices = scan(&to, wait).await?;
    if json {
        for device in &devices {
            println!("{}", device.raw);
        }
    } else {
        print!("{}", table(&devices));
        eprintln!("{} device(s) answered within {wait:?}", devices.len());
    }
    match require {
        Some(required) if devices.len() < required => Err(DiscoverError::TooFew {
            found: devices.len(),
            required,
            waited: wait,
        }),
        _ => Ok(()),
    }
}
