//! Network namespaces made by a test and removed when it ends (even when it
//! fails), with `ip` (iproute2) as root: traffic in them never leaves them.

use std::io;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{Proc, quiet_env, temp_dir, write_config};

pub fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("ip runs")
}

pub fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A prefix for this test's namespace names, unique in this process; None
/// (with a message) when this machine cannot make namespaces.
pub fn prefix() -> Option<String> {
    if !can_make_namespaces() {
        return None;
    }
    static NEXT: AtomicU32 = AtomicU32::new(0);
    Some(format!(
        "pinetd{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A network namespace with its loopback up, deleted on drop (and with it
/// the veth ends and bridges inside it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn add(name: String) -> Netns {
        ip_ok(&["netns", "add", &name]);
        let ns = Netns { name };
        ip_ok(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// `program args` run inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> Command {
        let mut command = quiet_env(Command::new("ip"));
        command
            .args(["netns", "exec", &self.name, program])
            .args(args);
        command
    }

    /// The daemon inside the namespace on `config`, just spawned: its
    /// stderr not read yet (so [`Proc::addrs`] sees every `listening` line).
    pub fn spawn_daemon(&self, config: &str) -> Proc {
        let path = write_config(&temp_dir(&self.name), config);
        Proc::spawn(self.exec(
            env!("CARGO_BIN_EXE_pinetd"),
            &["--config", path.to_str().unwrap()],
        ))
    }

    /// The daemon inside the namespace on `config`, once it has started.
    pub fn daemon(&self, config: &str) -> Proc {
        let mut daemon = self.spawn_daemon(config);
        daemon.wait_for("started");
        daemon
    }

    /// Runs `make` on a thread moved into the namespace: the sockets it
    /// makes belong to the namespace wherever they are used.
    pub fn enter<T: Send + 'static>(&self, make: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: setns on an open namespace file moves only this
            // thread; nothing here runs outside the namespace if it fails.
            let moved = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(moved, 0, "setns: {}", io::Error::last_os_error());
            make()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Whether this machine can make network namespaces (root, and `ip`);
/// says why not, as a skip.
fn can_make_namespaces() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        super::skip(format_args!(
            "network namespaces need root (CI runs as root)"
        ));
        return false;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        super::skip(format_args!(
            "`ip` is not installed (apt-get install iproute2)"
        ));
        return false;
    }
    true
}
