//! The man pages and the help text, as a user at the terminal meets them:
//! one page per subcommand, every page named in a page exists, each has the
//! sections a Debian user looks for and renders without a warning, and every
//! argument of every command says what it is.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use pinetd::cli::Cli;

/// Runs the hidden `generate-assets` (what packaging/deb.sh runs) into a
/// fresh directory, one per test (`name`): the tests run at once.
fn generate(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("man-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_pinetd"))
        .args(["generate-assets", "--out-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// Page file names present in `dir`.
fn pages_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".1"))
        .collect()
}

/// The page's text with roff's escapes for hyphens and fonts taken out.
fn plain(page: &str) -> String {
    let mut text = page.replace("\\-", "-");
    for font in ["\\fB", "\\fI", "\\fR", "\\fP"] {
        text = text.replace(font, "");
    }
    text
}

/// Every `pinetd-NAME(1)` a page names.
fn references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("pinetd-") {
        let rest = &text[at..];
        let name_len = rest["pinetd-".len()..]
            .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
            .map_or(rest.len(), |n| n + "pinetd-".len());
        if rest[name_len..].starts_with("(1)") {
            found.insert(format!("{}.1", &rest[..name_len]));
        }
    }
    found
}

/// The headings of a page's sections, in order.
fn sections(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix(".SH "))
        .map(|heading| heading.trim_matches('"').to_owned())
        .collect()
}

fn visible_subcommands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_owned())
        .collect()
}

#[test]
fn one_page_per_subcommand_and_every_page_named_exists() {
    let dir = generate("names");
    let mut want: BTreeSet<String> = visible_subcommands()
        .iter()
        .map(|name| format!("pinetd-{name}.1"))
        .collect();
    want.insert("pinetd.1".to_owned());
    assert_eq!(pages_in(&dir), want, "the pages generated");
    for page in &want {
        let text = plain(&std::fs::read_to_string(dir.join(page)).unwrap());
        for named in references(&text) {
            assert!(
                want.contains(&named),
                "{page} names {named}, which is not generated"
            );
        }
    }
    let main = plain(&std::fs::read_to_string(dir.join("pinetd.1")).unwrap());
    let named = references(&main);
    for page in want.iter().filter(|p| *p != "pinetd.1") {
        assert!(named.contains(page), "pinetd.1 does not name {page}");
    }
}

#[test]
fn pages_have_the_sections_a_user_looks_for() {
    let dir = generate("sections");
    let main = sections(&std::fs::read_to_string(dir.join("pinetd.1")).unwrap());
    for heading in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "SUBCOMMANDS",
        "CONFIGURATION",
        "SIGNALS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "SEE ALSO",
    ] {
        assert!(
            main.iter().any(|h| h == heading),
            "pinetd.1 has no {heading}: {main:?}"
        );
    }
    for name in visible_subcommands() {
        let page = format!("pinetd-{name}.1");
        let text = std::fs::read_to_string(dir.join(&page)).unwrap();
        let found = sections(&text);
        for heading in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "EXIT STATUS",
            "SEE ALSO",
        ] {
            assert!(
                found.iter().any(|h| h == heading),
                "{page} has no {heading}: {found:?}"
            );
        }
        assert!(
            plain(&text).contains(&format!("pinetd {name}")),
            "{page}'s synopsis is not `pinetd {name}`"
        );
    }
}

/// `man --warnings` is what lintian runs on every page it finds.
#[test]
fn pages_render_without_warnings() {
    let dir = generate("warnings");
    for page in pages_in(&dir) {
        let out = match Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z"])
            .arg(dir.join(&page))
            .env("MANWIDTH", "80")
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                common::skip(format_args!("man is not installed"));
                return;
            }
            Err(e) => panic!("man: {e}"),
        };
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && warnings.is_empty(),
            "{page}: {warnings}"
        );
    }
}

#[test]
fn every_argument_of_every_command_has_help() {
    fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            check(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    let mut cli = Cli::command();
    cli.build();
    check(&cli, "pinetd", &mut missing);
    assert!(missing.is_empty(), "no help text: {missing:?}");
}
