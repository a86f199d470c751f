//! The shipped systemd unit: `systemd-analyze verify` accepts it, and it has
//! the settings the daemon relies on. Skipped, saying so, without systemd-analyze.

mod common;

use std::process::Command;

const UNIT: &str = include_str!("../systemd/pinetd.service");

#[test]
fn unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        common::skip(format_args!(
            "systemd-analyze is not installed (apt-get install systemd)"
        ));
        return;
    }
    // verify checks that ExecStart exists: point it at the binary just built.
    let dir = std::env::temp_dir().join(format!("pinetd-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pinetd.service");
    std::fs::write(
        &path,
        UNIT.replace("/usr/bin/pinetd", env!("CARGO_BIN_EXE_pinetd")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );
}

#[test]
fn unit_has_the_settings_the_daemon_relies_on() {
    let settings: Vec<&str> = UNIT.lines().map(str::trim).collect();
    for want in [
        "Type=notify",
        "ExecStart=/usr/bin/pinetd --config /etc/pinetd/pinetd.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "MemoryDenyWriteExecute=yes",
        "LockPersonality=yes",
        "SystemCallFilter=@system-service",
        "SystemCallArchitectures=native",
    ] {
        assert!(settings.contains(&want), "unit lacks {want}");
    }
    // Where user namespaces are refused (containers, a chroot) PrivateUsers
    // stops the unit from starting at all (217/USER); packaging/test.sh boots
    // such a systemd.
    assert!(
        !settings.iter().any(|l| l.starts_with("PrivateUsers=")),
        "PrivateUsers= keeps the unit from starting in containers"
    );
    let seconds = |key: &str| -> u64 {
        let line = settings
            .iter()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}"));
        humantime::parse_duration(line).unwrap().as_secs()
    };
    // Longer than the production shutdown_grace, so systemd never kills a drain.
    let grace = pinetd::config::Config::parse(include_str!("../config/pinetd.toml"), "pinetd.toml")
        .unwrap()
        .daemon
        .shutdown_grace
        .as_secs();
    assert!(seconds("TimeoutStopSec=") > grace);
    assert!(seconds("WatchdogSec=") >= 2);
    let nofile: u64 = settings
        .iter()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(nofile > 10_000, "room for 10,000 chat clients");
}
