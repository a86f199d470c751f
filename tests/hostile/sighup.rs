//! A storm of SIGHUPs, each after an edit of the config file.

use std::net::UdpSocket;
use std::path::Path;
use std::thread;
use std::time::Duration;

use crate::clients::{Talkers, UDP_RETRY, goodbyes};
use crate::common::Proc;
use crate::daemon::{Addrs, Tables, config_text, exits_cleanly};

/// Version `n` of the config file: every table changed (chat and JSON echo
/// take it in place, UDP echo is restarted on its socket), and discovery
/// answers `vN`, so the running version can be seen.
fn hup_config(n: usize) -> String {
    let chat = format!("flush_after = \"{}ms\"\n", 40 + n % 20);
    let json_echo = format!("max_message_bytes = {}\n", 65_536 - n);
    let udp_echo = format!("rate_limit = {}\n", 1000 + n);
    let discovery = format!("reply = \"v{n}\"\nmax_delay = \"5ms\"\n");
    config_text(Tables {
        chat: &chat,
        json_echo: &json_echo,
        udp_echo: &udp_echo,
        discovery: Some(&discovery),
    })
}

/// Writes version `n` whole (renamed into place: a reload never reads half
/// a file), then sends SIGHUP.
fn edit_and_hup(daemon: &Proc, path: &Path, n: usize) {
    let next = path.with_extension("next");
    std::fs::write(&next, crate::common::without_web(&hup_config(n))).unwrap();
    std::fs::rename(&next, path).unwrap();
    daemon.signal("HUP");
}

/// 100 SIGHUPs in a second, each after an edit: signals that coalesce are
/// fine, but the last file must run, nobody may be dropped or miss a
/// thing, and a second storm with SIGTERM half way through it ends in a
/// clean exit.
#[test]
fn a_storm_of_sighups_drops_nobody_and_the_last_file_runs() {
    let (mut daemon, path) = Proc::on_config("hostile-sighup", &hup_config(0));
    let addrs = Addrs::read(&mut daemon, true);
    let mut talkers = Talkers::start(addrs);
    // The pace is the storm tested: 100 SIGHUPs a second.
    let every = Duration::from_millis(10);
    for n in 1..=100 {
        edit_and_hup(&daemon, &path, n);
        thread::sleep(every);
    }
    talkers.progress();
    // Its own address: discovery's rate limit is per source.
    let checker = UdpSocket::bind("127.0.0.2:0").unwrap();
    checker.set_read_timeout(Some(UDP_RETRY)).unwrap();
    let discovery = addrs.discovery.unwrap();
    talkers.wait_until("discovery answering v100", || {
        let mut buf = [0u8; 64];
        checker.send_to(b"?", discovery).unwrap();
        matches!(checker.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == b"v100")
    });
    for n in 101..=150 {
        edit_and_hup(&daemon, &path, n);
        thread::sleep(every);
    }
    let endings = talkers.pause();
    daemon.signal("TERM");
    for n in 151..=200 {
        edit_and_hup(&daemon, &path, n);
        thread::sleep(every);
    }
    goodbyes(endings);
    exits_cleanly(&mut daemon);
    let log = daemon.log.join("\n");
    let reloads = daemon.log.iter().filter(|l| l.contains("reloaded")).count();
    eprintln!("{reloads} reloads for 200 SIGHUPs");
    assert!(reloads >= 1, "{log}");
    assert!(!log.contains("reload refused"), "{log}");
    let stopping = daemon
        .log
        .iter()
        .position(|l| l.contains("shutting down"))
        .unwrap();
    assert!(
        !daemon.log[stopping..]
            .iter()
            .any(|l| l.contains("reloaded")),
        "no reload once shutting down: {log}"
    );
}
