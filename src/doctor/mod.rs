//! `pinetd doctor`: one ✓/✗ line per check, with the fix in words.
//!
//! Where it runs decides what it checks:
//! - `pinetd doctor HOST` or `--lan`: a student's machine ([`student`]):
//!   every service of that Pi (or of every pinetd answering discovery)
//!   checked from here;
//! - `pinetd doctor --config FILE`: the Pi ([`pi`]);
//! - `pinetd doctor` alone: the Pi when it looks like one (the packaged
//!   file `/etc/pinetd/pinetd.toml`, or the packaged unit's control socket
//!   `/run/pinetd/control.sock`, exists), else a student's machine, as `--lan`.
//!
//! [`report`] prints the lines, [`probe`] makes the round trips,
//! [`system`] reads the unit and the ports, [`firewall`] the host firewall.

pub mod firewall;
pub mod pi;
pub mod probe;
pub mod report;
pub mod student;
pub mod system;

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Where the doctor checks from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// On the Pi, of this config file (None: the packaged one, else the embedded default).
    Pi(Option<PathBuf>),
    /// On a student's machine, of the Pi at this name or address.
    Host(String),
    /// On a student's machine, of every pinetd that answers discovery.
    Lan,
}

/// `pinetd doctor`'s arguments into a side; `looks_like_a_pi` is asked
/// only when they say nothing.
pub fn side(
    config: Option<PathBuf>,
    host: Option<String>,
    lan: bool,
    looks_like_a_pi: impl FnOnce() -> bool,
) -> Side {
    match (config, host) {
        (_, Some(host)) => Side::Host(host),
        (Some(file), None) => Side::Pi(Some(file)),
        (None, None) if lan => Side::Lan,
        (None, None) if looks_like_a_pi() => Side::Pi(None),
        (None, None) => Side::Lan,
    }
}

/// The packaged file or the packaged unit's control socket is here.
pub fn looks_like_a_pi() -> bool {
    Path::new(crate::client::status::PACKAGED_CONFIG).exists()
        || Path::new(crate::config::CONTROL_SOCKET).exists()
}

/// Not every check passed (the lines said which, with their fixes).
#[derive(Debug, Error)]
#[error("doctor: {0}")]
pub struct Unwell(String);

pub async fn main(side: Side) -> Result<(), Unwell> {
    let mut report = report::Report::default();
    let student = !matches!(side, Side::Pi(_));
    match side {
        Side::Pi(file) => pi::run(file.as_deref(), &mut report).await,
        Side::Host(host) => student::host(&host, &mut report).await,
        Side::Lan => student::lan(&mut report).await,
    }
    println!();
    if !report.passed() {
        return Err(Unwell(report.summary()));
    }
    println!("{}", report.summary());
    if student {
        println!("{}", student::ALL_WELL);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_side_comes_from_the_arguments_then_the_machine() {
        let never = || panic!("not asked");
        assert_eq!(
            side(None, Some("pi".into()), false, never),
            Side::Host("pi".into())
        );
        assert_eq!(
            side(Some("f.toml".into()), None, false, never),
            Side::Pi(Some("f.toml".into()))
        );
        assert_eq!(side(None, None, true, never), Side::Lan);
        assert_eq!(side(None, None, false, || true), Side::Pi(None));
        assert_eq!(side(None, None, false, || false), Side::Lan);
    }
}
