//! Reading a config file into a [`Config`], or into a list of *every* problem
//! in it, each with its file, line, column and key.
//!
//! serde stops at the first error, so each error's key is blanked out (the line
//! becomes spaces, keeping every offset) and the document is read again, until
//! it reads cleanly; then the checks that span tables (address clashes) run.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use toml::de::DeTable;

use super::{Config, Listener};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    /// The key as written in the file, `chat.max_clients`; empty for syntax errors.
    pub key: String,
    pub message: String,
}

/// Everything wrong with one config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            // A file that cannot be read has no line to name.
            if p.line == 0 {
                write!(f, "{}: ", self.file)?;
            } else {
                write!(f, "{}:{}:{}: ", self.file, p.line, p.column)?;
            }
            if !p.key.is_empty() {
                write!(f, "{}: ", p.key)?;
            }
            write!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

/// A key of the file and the bytes it covers, from its name to its value's end.
struct Entry {
    path: String,
    span: Range<usize>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut config = Config::parse(&text, &file)?;
                config.read_secrets(&text, &file)?;
                Ok(config)
            }
            Err(e) => Err(ConfigError {
                file,
                problems: vec![Problem {
                    line: 0,
                    column: 0,
                    key: String::new(),
                    message: format!("cannot read: {e}"),
                }],
            }),
        }
    }

    /// Reads the files the config names for secrets (the teacher's token):
    /// a file that cannot be read is a problem of its key's line.
    fn read_secrets(&mut self, text: &str, file: &str) -> Result<(), ConfigError> {
        let Err(message) = self.web.read_admin_token() else {
            return Ok(());
        };
        let key = "web.admin_token_file";
        let at = DeTable::parse(text).map_or(0, |doc| key_start(&index(doc.get_ref()), key));
        Err(ConfigError {
            file: file.to_owned(),
            problems: vec![problem_at(text, at, key, &message)],
        })
    }

    /// Validates `text`; `file` names it in messages.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError {
            file: file.to_owned(),
            problems,
        };
        let doc = DeTable::parse(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            fail(vec![problem_at(text, at, "", e.message())])
        })?;
        let entries = index(doc.get_ref());
        let mut problems = Vec::new();
        let mut working = text.as_bytes().to_vec();
        loop {
            // Blanking only ever replaces bytes of whole lines with spaces: still UTF-8.
            let current = String::from_utf8_lossy(&working).into_owned();
            match toml::from_str::<Config>(&current) {
                // The checks across tables only on the file as written: with a
                // bad key blanked, its default would stand in and be blamed.
                Ok(config) if problems.is_empty() => {
                    problems.extend(clashes(&config, text, &entries));
                    problems.extend(listens_nowhere(&config, text, &entries));
                    problems.extend(announces_outside_allow(&config, text, &entries));
                    problems.sort_by_key(|p| (p.line, p.column));
                    return if problems.is_empty() {
                        Ok(config)
                    } else {
                        Err(fail(problems))
                    };
                }
                Ok(_) => {
                    problems.sort_by_key(|p| (p.line, p.column));
                    return Err(fail(problems));
                }
                Err(e) => {
                    let at = e.span().map_or(0, |s| s.start);
                    let entry = entries
                        .iter()
                        .filter(|en| en.span.contains(&at))
                        .min_by_key(|en| en.span.len());
                    let key = entry.map_or("", |en| en.path.as_str());
                    problems.push(problem_at(text, at, key, e.message()));
                    if !entry.is_some_and(|en| blank_lines(&mut working, &en.span)) {
                        problems.sort_by_key(|p| (p.line, p.column));
                        return Err(fail(problems));
                    }
                }
            }
        }
    }
}

/// Every key of the document with its span: sections and the keys inside them.
fn index(doc: &DeTable<'_>) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (key, value) in doc {
        let mut span = key.span().start..value.span().end.max(key.span().end);
        if let Some(table) = value.get_ref().as_table() {
            for (inner, inner_value) in table {
                let inner_span = inner.span().start..inner_value.span().end;
                span.end = span.end.max(inner_span.end);
                span.start = span.start.min(inner_span.start);
                entries.push(Entry {
                    path: format!("{}.{}", key.get_ref(), inner.get_ref()),
                    span: inner_span,
                });
            }
        }
        entries.push(Entry {
            path: key.get_ref().to_string(),
            span,
        });
    }
    entries
}

/// Turns every line that `span` touches into spaces; false if nothing changed.
fn blank_lines(text: &mut [u8], span: &Range<usize>) -> bool {
    let start = text[..span.start.min(text.len())]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let end = text[span.end.min(text.len())..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(text.len(), |i| span.end + i);
    let mut changed = false;
    for byte in &mut text[start..end] {
        if *byte != b'\n' && *byte != b' ' {
            *byte = b' ';
            changed = true;
        }
    }
    changed
}

fn problem_at(text: &str, offset: usize, key: &str, message: &str) -> Problem {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    Problem {
        line: before.iter().filter(|&&b| b == b'\n').count() + 1,
        column: String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1,
        key: key.to_owned(),
        message: message.trim_end().to_owned(),
    }
}

/// Two enabled services on one transport and address (or on overlapping ones:
/// `0.0.0.0:P` covers `127.0.0.1:P`) cannot both bind.
fn clashes(config: &Config, text: &str, entries: &[Entry]) -> Vec<Problem> {
    let listeners = config.listeners();
    let mut problems = Vec::new();
    for (i, listener) in listeners.iter().enumerate() {
        let Some(other) = listeners[..i].iter().find(|other| overlap(other, listener)) else {
            continue;
        };
        let key = format!("{}.listen", listener.service);
        let message = format!(
            "{} clashes with {} of {}.listen: two services cannot share an address",
            listener.addr, other.addr, other.service
        );
        problems.push(problem_at(text, key_start(entries, &key), &key, &message));
    }
    problems
}

/// True if two services' listeners cannot both bind.
fn overlap(a: &Listener, b: &Listener) -> bool {
    let (x, y) = (a.addr.ip(), b.addr.ip());
    a.service != b.service
        && a.transport == b.transport
        && a.addr.port() == b.addr.port()
        && b.addr.port() != 0
        && (x == y || (x.is_ipv4() == y.is_ipv4() && (x.is_unspecified() || y.is_unspecified())))
}

/// An enabled service that listens nowhere would run and answer no one,
/// silently: say so instead.
fn listens_nowhere(config: &Config, text: &str, entries: &[Entry]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for table in config.tables() {
        if table.enabled() && table.listen().is_some_and(|(_, addrs)| addrs.is_empty()) {
            let key = format!("{}.listen", table.name());
            let message = "is empty, so the service would listen nowhere: give it an address, or set enabled = false";
            problems.push(problem_at(text, key_start(entries, &key), &key, message));
        }
    }
    problems
}

/// The announcer's `allow` bounds where it may send: each `to` address must
/// be inside it (an empty list allows any), so a Pi's owner can make sure
/// announcements never leave the LAN.
fn announces_outside_allow(config: &Config, text: &str, entries: &[Entry]) -> Vec<Problem> {
    let announcer = &config.announcer;
    if !announcer.enabled {
        return Vec::new();
    }
    let key = "announcer.to";
    announcer
        .to
        .iter()
        .filter(|to| {
            let ip = to.ip().to_canonical();
            // The limited broadcast never leaves the link: always inside.
            let local_broadcast = ip == std::net::Ipv4Addr::BROADCAST;
            !announcer.allow.is_empty()
                && !local_broadcast
                && !announcer.allow.iter().any(|net| net.contains(&ip))
        })
        .map(|to| {
            let message =
                format!("{to} is outside announcer.allow, which bounds where announcements go");
            problem_at(text, key_start(entries, key), key, &message)
        })
        .collect()
}

/// Where a key starts in the file; the file's start if it is not written there.
fn key_start(entries: &[Entry], key: &str) -> usize {
    entries
        .iter()
        .find(|e| e.path == key)
        .map_or(0, |e| e.span.start)
}
