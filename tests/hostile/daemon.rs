//! The daemon under test: the real binary on a config file with every
//! service on 127.0.0.1:0, the addresses it reports, and a clean exit once
//! SIGTERM is sent.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::Proc;

/// `[daemon] shutdown_grace` of every daemon here.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long past the grace an exit may take on a loaded machine.
pub const EXIT_MARGIN: Duration = Duration::from_secs(8);

/// Keys added to each table (each ending in a newline); discovery is
/// disabled unless given, the announcer always.
#[derive(Default, Clone, Copy)]
pub struct Tables<'a> {
    pub chat: &'a str,
    pub json_echo: &'a str,
    pub udp_echo: &'a str,
    pub discovery: Option<&'a str>,
}

/// Every service on 127.0.0.1:0, the grace at [`GRACE`].
pub fn config_text(tables: Tables<'_>) -> String {
    let discovery = match tables.discovery {
        Some(keys) => format!("listen = \"127.0.0.1:0\"\n{keys}"),
        None => "enabled = false\n".to_owned(),
    };
    format!(
        "[daemon]\nshutdown_grace = \"{}s\"\n\
         [chat]\nlisten = \"127.0.0.1:0\"\n{}\
         [json_echo]\nlisten = \"127.0.0.1:0\"\n{}\
         [udp_echo]\nlisten = \"127.0.0.1:0\"\n{}\
         [announcer]\nenabled = false\n\
         [discovery]\n{discovery}",
        GRACE.as_secs(),
        tables.chat,
        tables.json_echo,
        tables.udp_echo,
    )
}

/// Where the daemon's services listen.
#[derive(Clone, Copy)]
pub struct Addrs {
    pub chat: SocketAddr,
    pub json: SocketAddr,
    pub udp: SocketAddr,
    pub discovery: Option<SocketAddr>,
}

impl Addrs {
    pub fn read(daemon: &mut Proc, discovery: bool) -> Addrs {
        let mut services = vec!["chat", "json_echo", "udp_echo"];
        if discovery {
            services.push("discovery");
        }
        let addrs = daemon.addrs(&services);
        Addrs {
            chat: addrs["chat"],
            json: addrs["json_echo"],
            udp: addrs["udp_echo"],
            discovery: addrs.get("discovery").copied(),
        }
    }
}

/// The real binary on a config file written for the test named `name`.
pub fn daemon(name: &str, tables: Tables<'_>) -> (Proc, Addrs) {
    let (mut daemon, _) = Proc::on_config(name, &config_text(tables));
    let addrs = Addrs::read(&mut daemon, tables.discovery.is_some());
    (daemon, addrs)
}

/// SIGTERM has been sent: the daemon exits 0 within the grace (and a
/// margin for a loaded machine), with no panic and no error in its log.
pub fn exits_cleanly(daemon: &mut Proc) {
    let code = daemon.exit_code(GRACE + EXIT_MARGIN);
    let log = daemon.log.join("\n");
    assert_eq!(code, Some(0), "exit code; log:\n{log}");
    assert!(
        daemon.log.iter().any(|l| l.contains("shutting down")),
        "{log}"
    );
    assert!(
        !daemon
            .log
            .iter()
            .any(|l| l.contains("panic") || l.contains(" ERROR ")),
        "{log}"
    );
}

/// The daemon's peak resident memory so far, in KiB.
pub fn peak_memory_kib(daemon: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}
