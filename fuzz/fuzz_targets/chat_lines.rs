//! Bytes from a chat client, in any reads, through the line framer, the
//! sanitiser, the command parser and the name rules.
//!
//! - Nothing panics.
//! - No line comes out longer than `max_line_bytes`, and none holds a byte
//!   the sanitiser forbids; the buffer never holds more than one line's limit.
//! - The same bytes cut into other reads give the same lines.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pinetd::chatline::{
    Line, Lines, Said, action_line, bad_name, claimed_name, line_text, parse, private_line,
    private_sent, relay_line,
};
use pinetd_fuzz::cuts;

/// The hub's read size: `READ_CHUNK.min(max_line_bytes + 1)`.
const READ_CHUNK: usize = 4096;

fuzz_target!(|data: &[u8]| {
    for max in [1, 7, 64, 4096] {
        let [first, rest @ ..] = cuts(data, READ_CHUNK.min(max + 1));
        let lines = frame(max, &first);
        for other in rest {
            assert_eq!(frame(max, &other), lines, "another cut, other lines");
        }
        for line in &lines {
            said(max, line);
        }
    }
});

/// The lines of a client that sent `reads` and closed, as the hub takes them.
fn frame(max: usize, reads: &[&[u8]]) -> Vec<Line> {
    let mut framer = Lines::new(max);
    let mut buf = BytesMut::new();
    let mut lines = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        while let Some(line) = framer.next(&mut buf) {
            lines.push(line);
        }
        // A line's limit, and a `\r` that may start its `\r\n`.
        assert!(
            buf.len() <= max + 1,
            "{} bytes held, limit {max}",
            buf.len()
        );
    }
    lines.extend(framer.flush(&mut buf));
    lines
}

/// One line through what the hub does with it.
fn said(max: usize, line: &Line) {
    assert!(line.bytes.len() <= max);
    let (text, _) = line_text(line, max);
    assert!(
        text.len() <= max,
        "{} bytes of text, limit {max}",
        text.len()
    );
    assert_safe(&text);
    match parse(&text) {
        Said::Message(message) => {
            let name = claimed_name(message).unwrap_or("guest1");
            assert_eq!(bad_name(name), None);
            for prefix in ["[{name}] ", "", "{name}: "] {
                let relayed = relay_line(prefix, name, message);
                let body = relayed.strip_suffix('\n').expect("one line");
                assert_safe(body);
                assert!(body.len() <= max + prefix.len() + name.len());
            }
        }
        Said::Nick(name) | Said::Unknown(name) => {
            if bad_name(name).is_none() {
                assert!(!name.is_empty() && !name.chars().any(char::is_whitespace));
            }
        }
        Said::Msg(to, text) => {
            assert!(!to.chars().any(char::is_whitespace));
            for line in [private_line(to, text), private_sent(to, text)] {
                assert_safe(line.strip_suffix('\n').expect("one line"));
            }
        }
        Said::Me(text) => {
            assert_eq!(text, text.trim());
            let line = action_line("guest1", text);
            assert_safe(line.strip_suffix('\n').expect("one line"));
        }
        Said::Quit | Said::Who | Said::Help | Said::Nothing => {}
    }
}

fn assert_safe(text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\t'),
        "a control character in {text:?}"
    );
}
