//! One source cannot lock the class out: the real binary under a small
//! open-files limit, one address opening more connections than it allows,
//! and other addresses still served by both TCP services.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::{Proc, connect_from, quiet_env, temp_dir, write_config};

const TCP_ONLY: &str = "[udp_echo]\nenabled = false\n[announcer]\nenabled = false\n[discovery]\nenabled = false\n[chat]\nlisten = \"127.0.0.1:0\"\n[json_echo]\nlisten = \"127.0.0.1:0\"\n";

/// `pinetd ARGS` with its open-files limit at `limit`, as on a Pi started
/// without the unit's LimitNOFILE.
fn with_open_files(limit: u64, args: &[&str]) -> Command {
    let mut command = quiet_env(Command::new(env!("CARGO_BIN_EXE_pinetd")));
    command.args(args);
    // SAFETY: pre_exec runs between fork and exec; setrlimit is
    // async-signal-safe, and rlimit's wrapper only calls it.
    unsafe {
        command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, limit, limit));
    }
    command
}

/// This test process holds thousands of sockets: its soft limit goes up to the hard one.
fn raise_own_limit(needed: u64) -> bool {
    rlimit::increase_nofile_limit(u64::MAX).is_ok_and(|limit| limit >= needed)
}

fn read_line(stream: &TcpStream) -> String {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

/// Reads `stream` until a line contains `needle`; that line.
fn until(stream: &TcpStream, needle: &str) -> String {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "closed before {needle:?}"
        );
        if line.contains(needle) {
            return line;
        }
    }
}

#[test]
fn one_address_with_1100_connections_locks_nobody_out() {
    if !raise_own_limit(3000) {
        common::skip(format_args!("the open-files hard limit is below 3000"));
        return;
    }
    let dir = temp_dir("limits");
    let path = write_config(&dir, TCP_ONLY);
    let mut daemon = Proc::spawn(with_open_files(1024, &["--config", path.to_str().unwrap()]));
    // Two services of 1000 clients each cannot fit in 1024 descriptors.
    let warning = daemon.wait_for("open-files limit");
    assert!(
        warning.contains("(1024)") && warning.contains("chat.max_clients 1000 -> "),
        "{warning}"
    );
    let addrs = daemon.addrs(&["chat", "json_echo"]);
    let (chat, json) = (addrs["chat"], addrs["json_echo"]);

    // A runaway loop on one address: 1,100 connections to each service, kept open.
    let mut flood = Vec::new();
    for to in [json, chat] {
        for _ in 0..1100 {
            flood.push(connect_from("127.0.0.1", to));
        }
    }
    // The 17th and later from that address are told why and closed.
    let mut refused = String::new();
    flood[1099].read_to_string(&mut refused).unwrap();
    assert!(
        refused.contains("too many connections from your address"),
        "{refused}"
    );
    let mut refused = String::new();
    flood[2199].read_to_string(&mut refused).unwrap();
    assert_eq!(
        refused,
        "*** too many connections from your address, try again later\n"
    );

    // Two other students still chat, and JSON echo still answers.
    let a = connect_from("127.0.0.2", chat);
    let b = connect_from("127.0.0.3", chat);
    until(&a, "welcome");
    until(&b, "welcome");
    until(&a, "joined");
    (&b).write_all(b"still here\n").unwrap();
    assert!(until(&a, "still here").ends_with("] still here\n"));
    let ask = connect_from("127.0.0.2", json);
    (&ask)
        .write_all(br#"{"name": "jung", "count": 3}"#)
        .unwrap();
    assert_eq!(read_line(&ask), "{\"name\":\"jung\",\"count\":3}\n");

    // `pinetd check` under the same limit says the same.
    let check = with_open_files(1024, &["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("warning: the open-files limit (1024)"),
        "{stderr}"
    );
    drop(flood);
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
}
