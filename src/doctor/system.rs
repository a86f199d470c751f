//! What the Pi's system says: whether the systemd unit is enabled and
//! active (a neutral line where there is no systemd: a container, a test),
//! and who holds the services' ports (the sockets of `/proc/net/{tcp,udp}[6]`
//! matched to their owners' open files in `/proc/PID/fd`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::time::Duration;

use if_addrs::{IfAddr, IfOperStatus};
use tokio::process::Command;

use super::report::Check;
use crate::config::{Listener, Transport};

/// The unit the package installs.
const UNIT: &str = "pinetd";
/// How long `systemctl` may take.
const SYSTEMCTL_PATIENCE: Duration = Duration::from_secs(2);

/// What `systemctl ARG pinetd` printed (stdout, then stderr); None when
/// there is no `systemctl` to run, or it did not answer in time.
async fn systemctl(arg: &str) -> Option<String> {
    let run = Command::new("systemctl")
        .args([arg, UNIT])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(SYSTEMCTL_PATIENCE, run)
        .await
        .ok()?
        .ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some(text.trim().to_owned())
}

/// Whether systemd runs this machine, from what systemctl said.
fn no_systemd(said: &str) -> bool {
    said.contains("not been booted with systemd") || said.contains("Failed to connect to bus")
}

/// The unit's lines: enabled, active. `outside`: the daemon answered and
/// said it was not started by systemd (its pid), so the unit is not its.
pub async fn unit(outside: Option<u32>) -> Vec<Check> {
    if let Some(pid) = outside {
        return vec![Check::skip(format!(
            "unit {UNIT}: the daemon (pid {pid}) runs outside systemd, the unit is not checked"
        ))];
    }
    // sd_booted(3): systemd made this directory, or it does not run here.
    if !std::path::Path::new("/run/systemd/system").exists() {
        return vec![Check::skip(format!(
            "unit {UNIT}: this machine was not booted with systemd (a container?), the unit is not checked"
        ))];
    }
    let Some(enabled) = systemctl("is-enabled").await else {
        return vec![Check::skip(format!(
            "unit {UNIT}: no systemctl here, the unit is not checked"
        ))];
    };
    if no_systemd(&enabled) {
        let first = enabled.lines().last().unwrap_or_default();
        return vec![Check::skip(format!(
            "unit {UNIT}: no systemd here ({first}), the unit is not checked"
        ))];
    }
    if enabled.contains("No such file") || enabled.contains("not-found") {
        return vec![Check::fail(
            format!("unit {UNIT} is not installed"),
            "install the package (sudo apt install ./pinetd_VERSION_ARCH.deb): it installs, enables and starts the unit",
        )];
    }
    let mut checks = vec![if enabled.lines().next() == Some("enabled") {
        Check::pass(format!("unit {UNIT} is enabled"))
    } else {
        Check::fail(
            format!(
                "unit {UNIT} is {}, not enabled: it will not start at boot",
                first_word(&enabled)
            ),
            format!("sudo systemctl enable --now {UNIT}"),
        )
    }];
    let active = systemctl("is-active").await.unwrap_or_default();
    checks.push(if active.lines().next() == Some("active") {
        Check::pass(format!("unit {UNIT} is active"))
    } else {
        Check::fail(
            format!("unit {UNIT} is {}, not active", first_word(&active)),
            format!(
                "sudo systemctl start {UNIT}; if it stops again, `journalctl -u {UNIT} -n 50` says why"
            ),
        )
    });
    checks
}

fn first_word(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or("unknown")
}

/// One address of a network this machine is on.
#[derive(Debug, Clone)]
pub struct Network {
    /// The interface's name, like `eth0`.
    pub name: String,
    pub ip: IpAddr,
    pub prefix: u8,
    pub broadcast: Option<Ipv4Addr>,
}

impl Network {
    /// Whether `ip` is on this network.
    pub fn holds(&self, ip: IpAddr) -> bool {
        ipnet::IpNet::new(self.ip, self.prefix).is_ok_and(|net| net.contains(&ip))
    }
}

/// Every address of every network this machine is on, loopback and
/// link-local IPv6 aside, of each interface that is up.
pub fn networks() -> Vec<Network> {
    let mut found: Vec<Network> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| matches!(i.oper_status, IfOperStatus::Up | IfOperStatus::Unknown))
        .filter(|i| !i.is_loopback() && !i.is_link_local())
        .map(|i| {
            let (prefix, broadcast) = match &i.addr {
                IfAddr::V4(v4) => (v4.prefixlen, v4.broadcast),
                IfAddr::V6(v6) => (v6.prefixlen, None),
            };
            Network {
                ip: i.ip(),
                name: i.name,
                prefix,
                broadcast,
            }
        })
        .collect();
    found.sort_by(|a, b| (&a.name, a.ip).cmp(&(&b.name, b.ip)));
    found
}

/// The names of `networks`, once each: `eth0, wlan0`.
pub fn names(networks: &[Network]) -> String {
    let mut names: Vec<&str> = networks.iter().map(|n| n.name.as_str()).collect();
    names.dedup();
    names.join(", ")
}

/// A socket on one of the ports, as `/proc/net` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    pub port: u16,
    /// TCP's state, `0A` being LISTEN; UDP's means nothing here.
    pub listening: bool,
    pub inode: u64,
}

/// The sockets of one `/proc/net/{tcp,udp}[6]` table.
pub fn parse_net_table(text: &str) -> Vec<Socket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?.parse().ok()?;
            Some(Socket {
                port,
                listening: *state == "0A",
                inode,
            })
        })
        .collect()
}

/// Every socket inode a process has open, with its pid.
fn socket_owners() -> BTreeMap<u64, u32> {
    let mut owners = BTreeMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
            {
                owners.insert(inode, pid);
            }
        }
    }
    owners
}

/// The name of process `pid`, as `ps` shows it.
fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|n| n.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// The sockets of `/proc/net/NAME` and `/proc/net/NAME6`.
fn sockets(name: &str) -> Vec<Socket> {
    ["", "6"]
        .iter()
        .flat_map(|v6| {
            std::fs::read_to_string(format!("/proc/net/{name}{v6}"))
                .map(|t| parse_net_table(&t))
                .unwrap_or_default()
        })
        .collect()
}

/// The pids other than `daemon` holding `listener`'s port (TCP: listening
/// on it), and whether some socket there has an owner not seen.
fn holders(
    sockets: &[Socket],
    listener: &Listener,
    owners: &BTreeMap<u64, u32>,
    daemon: Option<u32>,
) -> (BTreeSet<u32>, bool) {
    let mut others = BTreeSet::new();
    let mut unknown = false;
    let on_port = (sockets.iter()).filter(|s| s.port == listener.addr.port());
    for socket in on_port {
        if listener.transport == Transport::Tcp && !socket.listening {
            continue;
        }
        match owners.get(&socket.inode) {
            Some(&pid) if Some(pid) != daemon => {
                others.insert(pid);
            }
            Some(_) => {}
            None => unknown = true,
        }
    }
    (others, unknown)
}

/// The line for a port held by `pid`, not the daemon.
fn held(listener: &Listener, pid: u32, daemon: Option<u32>) -> Check {
    let name = process_name(pid);
    let whose = match daemon {
        Some(daemon) => format!("not pinetd (pid {daemon})"),
        None => "and the daemon does not answer status".to_owned(),
    };
    let fix = if name == "pinetd" {
        format!(
            "a pinetd that does not answer at this file's control socket: the daemon of another file? Stop it (sudo kill {pid}), or run `sudo pinetd doctor --config` with its file"
        )
    } else {
        format!(
            "stop that program (sudo kill {pid}), or give [{}] listen another port",
            listener.service
        )
    };
    Check::fail(
        format!(
            "port {}/{} of {} is held by pid {pid} ({name}), {whose}",
            listener.addr.port(),
            listener.transport,
            listener.service
        ),
        fix,
    )
}

/// Who holds each listener's port besides `daemon` (its pid, when it
/// answered): one ✓ line when nobody else does, else a ✗ per holder.
pub fn ports(listeners: &[Listener], daemon: Option<u32>) -> Vec<Check> {
    let (tcp, udp) = (sockets("tcp"), sockets("udp"));
    let owners = socket_owners();
    let mut checks = Vec::new();
    let mut unknown = false;
    let mut seen = BTreeSet::new();
    for listener in listeners {
        if !seen.insert((listener.transport.name(), listener.addr.port())) {
            continue;
        }
        let sockets = match listener.transport {
            Transport::Tcp => &tcp,
            Transport::Udp => &udp,
        };
        let (others, unseen) = holders(sockets, listener, &owners, daemon);
        unknown |= unseen;
        checks.extend(others.into_iter().map(|pid| held(listener, pid, daemon)));
    }
    if checks.is_empty() {
        let ports: Vec<String> = (seen.iter())
            .map(|(transport, port)| format!("{port}/{transport}"))
            .collect();
        checks.push(Check::pass(format!(
            "no other program holds the ports ({})",
            ports.join(", ")
        )));
    }
    // SAFETY: geteuid has no preconditions.
    if unknown && unsafe { libc::geteuid() } != 0 {
        checks.push(Check::skip(
            "some sockets on the ports have owners only root can see: run `sudo pinetd doctor` to check them",
        ));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tables_give_port_state_and_inode() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:270F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:2328 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 654321 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(
            parse_net_table(tcp),
            [
                Socket {
                    port: 9999,
                    listening: true,
                    inode: 123456
                },
                Socket {
                    port: 9000,
                    listening: false,
                    inode: 654321
                }
            ]
        );
        let udp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  12: 00000000000000000000000000000000:4E21 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0\n";
        assert_eq!(
            parse_net_table(udp6),
            [Socket {
                port: 20001,
                listening: false,
                inode: 777
            }]
        );
        assert!(parse_net_table("header only\n").is_empty());
    }

    #[test]
    fn no_systemd_is_recognised() {
        assert!(no_systemd(
            "System has not been booted with systemd as init system (PID 1). Can't operate.\nFailed to connect to bus: Host is down"
        ));
        assert!(!no_systemd("enabled"));
    }
}
