//! Any text as a config file.
//!
//! - Nothing panics.
//! - Every problem names a line and a column inside the text.
//! - A file that loads passes `pinetd check` (the open-files fit), and
//!   written back out as TOML it loads again to the same config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinetd::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // `pinetd` reads the file as UTF-8 and names the file if it is not.
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(mut config) => {
            let written = toml::to_string(&config).expect("a loaded config writes out");
            let again = Config::parse(&written, "written.toml")
                .unwrap_or_else(|e| panic!("written out, it does not load:\n{written}\n{e}"));
            assert_eq!(
                again, config,
                "written out and loaded, it changed:\n{written}"
            );
            for limit in [0, 64, 1024, 1 << 20] {
                let _ = config.clone().fit_open_files(limit);
            }
            let _ = config.fit_open_files(u64::MAX);
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error with no problem");
            let lines: Vec<&str> = text.split('\n').collect();
            for p in &e.problems {
                assert!(
                    (1..=lines.len()).contains(&p.line),
                    "line {} of {}: {e}",
                    p.line,
                    lines.len()
                );
                let columns = lines[p.line - 1].chars().count() + 1;
                assert!(
                    (1..=columns).contains(&p.column),
                    "column {} of {columns} on line {}: {e}",
                    p.column,
                    p.line
                );
                assert!(!p.message.is_empty(), "a problem with no message: {e}");
            }
        }
    }
});
