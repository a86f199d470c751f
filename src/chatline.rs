//! The chat hub's wire format, with no I/O: lines out of a byte buffer (with
//! a length limit that never lets the buffer grow), text made safe to relay,
//! names, and what a client's line means. What the hub says back is in
//! [`notices`](crate::services::chat::notices).

use bytes::{Buf, BytesMut};

/// Longest nickname, in characters.
pub const MAX_NAME: usize = 32;

/// One line taken from a client's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub bytes: Vec<u8>,
    /// It was longer than the limit: this is its start, the rest is dropped.
    pub cut: bool,
}

/// Splits a client's bytes into lines of at most `max` bytes.
#[derive(Debug)]
pub struct Lines {
    max: usize,
    /// Dropping the rest of a line that was too long, up to its newline.
    discarding: bool,
    /// The client has ended a line with `\n`: it is a line client, whose
    /// lines quiet never cuts.
    ended_a_line: bool,
}

impl Lines {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            discarding: false,
            ended_a_line: false,
        }
    }

    /// A new limit, from the next line on.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Has the client ever ended a line with `\n`? Until it has, quiet ends
    /// a message (the course's client sends none); after, only a newline,
    /// the length limit or the client closing do.
    pub fn ended_a_line(&self) -> bool {
        self.ended_a_line
    }

    /// The next complete line in `buf` (`\n` or `\r\n` ended), consumed from it.
    /// A line over the limit comes back cut, at once, and the buffer is
    /// emptied: it never holds more than `max` bytes of one line (and a `\r`
    /// that may start its `\r\n`).
    pub fn next(&mut self, buf: &mut BytesMut) -> Option<Line> {
        loop {
            let newline = memchr::memchr(b'\n', buf);
            self.ended_a_line |= newline.is_some();
            if self.discarding {
                match newline {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        buf.clear();
                        return None;
                    }
                }
            }
            return match newline {
                Some(i) => {
                    let mut bytes = buf.split_to(i + 1);
                    bytes.truncate(i);
                    if bytes.last() == Some(&b'\r') {
                        bytes.truncate(i - 1);
                    }
                    Some(self.limit(bytes.to_vec()))
                }
                // One byte over, a carriage return may be the start of the
                // line's `\r\n`: wait for the next byte.
                None if buf.len() == self.max + 1 && buf.last() == Some(&b'\r') => None,
                None if buf.len() > self.max => {
                    let line = self.limit(buf.to_vec());
                    buf.clear();
                    self.discarding = true;
                    Some(line)
                }
                None => None,
            };
        }
    }

    /// What is left without a newline, as one line: the course's client
    /// sends each message with no newline, so quiet ends it.
    pub fn flush(&mut self, buf: &mut BytesMut) -> Option<Line> {
        if buf.is_empty() || self.discarding {
            buf.clear();
            self.discarding = false;
            return None;
        }
        let line = self.limit(buf.to_vec());
        buf.clear();
        Some(line)
    }

    fn limit(&self, mut bytes: Vec<u8>) -> Line {
        let cut = bytes.len() > self.max;
        if cut {
            bytes.truncate(self.max);
        }
        Line { bytes, cut }
    }
}

/// Text safe to show on anyone's terminal: invalid UTF-8 and every control
/// character but tab (ESC and the other C0 and C1 controls, DEL) become U+FFFD.
pub fn clean(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// A line's text as relayed: [`clean`]ed, and at most `max` bytes, cut at a
/// character boundary where cleaning made it longer (a byte replaced by
/// U+FFFD takes three). True if that cut it.
pub fn line_text(line: &Line, max: usize) -> (String, bool) {
    let mut text = clean(&line.bytes);
    let grew = text.len() > max;
    if grew {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    (text, grew)
}

/// Why a nickname is refused, or None if it is fine.
pub fn bad_name(name: &str) -> Option<&'static str> {
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME {
        Some("a name is 1 to 32 characters")
    } else if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == char::REPLACEMENT_CHARACTER)
    {
        Some("a name has no spaces and only printable characters")
    } else if name.starts_with('/') || name.starts_with("***") {
        Some("a name cannot start with / or ***")
    } else {
        None
    }
}

/// A client's line, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said<'a> {
    Message(&'a str),
    Quit,
    Nick(&'a str),
    Who,
    Help,
    /// `/msg NAME text`: a private line; empty `text` when none was given.
    Msg(&'a str, &'a str),
    /// `/me text`: an action, `* name text`; empty when none was given.
    Me(&'a str),
    Unknown(&'a str),
    Nothing,
}

pub fn parse(text: &str) -> Said<'_> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Said::Nothing;
    }
    if trimmed == "bye" || trimmed == "/quit" {
        return Said::Quit;
    }
    let Some(command) = trimmed.strip_prefix('/') else {
        return Said::Message(text.trim_end());
    };
    let (word, rest) = command
        .split_once(char::is_whitespace)
        .unwrap_or((command, ""));
    match word {
        "nick" => Said::Nick(rest.trim()),
        "who" => Said::Who,
        "help" => Said::Help,
        "msg" => {
            let rest = rest.trim_start();
            let (to, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            Said::Msg(to, text.trim())
        }
        "me" => Said::Me(rest.trim()),
        _ => Said::Unknown(word),
    }
}

/// `[name] text` from a course exercise 4-3 client: the name it claims.
pub fn claimed_name(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('[')?;
    let (name, _) = rest.split_once("] ")?;
    bad_name(name).is_none().then_some(name)
}

/// The relayed line: `prefix` with `{name}` filled, then the text, without
/// doubling a `[name] ` the client already put in front.
pub fn relay_line(prefix: &str, name: &str, text: &str) -> String {
    let own = format!("[{name}] ");
    let text = if !prefix.is_empty() && prefix.replace("{name}", name) == own {
        text.strip_prefix(&own).unwrap_or(text)
    } else {
        text
    };
    let mut line = prefix.replace("{name}", name);
    line.push_str(text);
    line.push('\n');
    line
}

/// A `/me` action as the room hears it: `* alice waves`.
pub fn action_line(name: &str, text: &str) -> String {
    format!("* {name} {text}\n")
}

/// A private line as its addressee reads it: `[alice → you] text`.
pub fn private_line(from: &str, text: &str) -> String {
    format!("[{from} \u{2192} you] {text}\n")
}

/// A private line as its sender is told it went: `[you → bob] text`.
pub fn private_sent(to: &str, text: &str) -> String {
    format!("[you \u{2192} {to}] {text}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize, input: &[&[u8]]) -> Vec<Line> {
        let mut splitter = Lines::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in input {
            buf.extend_from_slice(chunk);
            while let Some(line) = splitter.next(&mut buf) {
                out.push(line);
            }
            assert!(
                buf.len() <= max + 1,
                "buffer holds at most one line's limit"
            );
        }
        out.extend(splitter.flush(&mut buf));
        out
    }

    fn line(text: &str, cut: bool) -> Line {
        Line {
            bytes: text.as_bytes().to_vec(),
            cut,
        }
    }

    #[test]
    fn newline_crlf_and_unterminated() {
        assert_eq!(
            lines(100, &[b"hello\nwor", b"ld\r\n\nlast"]),
            [
                line("hello", false),
                line("world", false),
                line("", false),
                line("last", false)
            ]
        );
    }

    #[test]
    fn a_long_line_is_cut_and_its_rest_dropped() {
        assert_eq!(
            lines(5, &[b"abcdefgh", b"ijkl", b"mn\nok\n"]),
            [line("abcde", true), line("ok", false)]
        );
        assert_eq!(lines(5, &[b"abcdefgh\n"]), [line("abcde", true)]);
        assert_eq!(lines(5, &[b"abcde\n"]), [line("abcde", false)]);
    }

    /// Found by fuzzing (fuzz/corpus/chat_lines/regression-crlf-at-limit): a
    /// line of exactly the limit was cut when its `\r` and `\n` came apart.
    #[test]
    fn a_line_at_the_limit_is_whole_however_its_crlf_arrives() {
        for input in [
            &[&b"abcde\r\n"[..]][..],
            &[b"abcde\r", b"\n"],
            &[b"abc", b"de\r", b"\nx\n"],
        ] {
            let got = lines(5, input);
            assert_eq!(got[0], line("abcde", false), "{input:?}");
        }
        assert_eq!(lines(5, &[b"abcde\r", b"x\n"]), [line("abcde", true)]);
        let found: &[u8] = include_bytes!("../fuzz/corpus/chat_lines/regression-crlf-at-limit");
        let bytes: Vec<&[u8]> = found.chunks(1).collect();
        assert_eq!(lines(1, &bytes), lines(1, &[found]));
        assert_eq!(lines(5, &[b"abcde\r"]), [line("abcde", true)]);
    }

    #[test]
    fn a_megabyte_without_newline_stays_bounded() {
        let chunk = vec![b'x'; 64 * 1024];
        let input: Vec<&[u8]> = std::iter::repeat_n(chunk.as_slice(), 16).collect();
        let got = lines(4096, &input);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].bytes.len(), got[0].cut), (4096, true));
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("안녕하세요 😀 é\tx".as_bytes()), "안녕하세요 😀 é\tx");
        assert_eq!(
            clean(b"\x1b[2Jbad\x07\x7f"),
            "\u{fffd}[2Jbad\u{fffd}\u{fffd}"
        );
        assert_eq!(clean(b"\xff\xfeok"), "\u{fffd}\u{fffd}ok");
        assert_eq!(clean("c1:\u{9b}".as_bytes()), "c1:\u{fffd}");
    }

    #[test]
    fn cleaning_never_grows_a_line_past_the_limit() {
        let escapes = line(&"\x1b".repeat(10), false);
        let (text, grew) = line_text(&escapes, 10);
        assert_eq!((text.as_str(), grew), ("\u{fffd}\u{fffd}\u{fffd}", true));
        let (text, grew) = line_text(&line("héllo", false), 6);
        assert_eq!((text.as_str(), grew), ("héllo", false));
        let (text, grew) = line_text(&line("é\x07", false), 4);
        assert_eq!((text.as_str(), grew), ("é", true));
    }

    #[test]
    fn commands() {
        assert_eq!(parse("bye"), Said::Quit);
        assert_eq!(parse(" /quit "), Said::Quit);
        assert_eq!(parse("bye bye"), Said::Message("bye bye"));
        assert_eq!(parse("/nick  syjung "), Said::Nick("syjung"));
        assert_eq!(parse("/who"), Said::Who);
        assert_eq!(parse("/dance now"), Said::Unknown("dance"));
        assert_eq!(parse("   "), Said::Nothing);
        assert_eq!(parse("hello  "), Said::Message("hello"));
        assert_eq!(parse("/msg bob  hi there "), Said::Msg("bob", "hi there"));
        assert_eq!(parse("/msg  bob"), Said::Msg("bob", ""));
        assert_eq!(parse("/msg"), Said::Msg("", ""));
        assert_eq!(parse("/me waves  "), Said::Me("waves"));
        assert_eq!(parse("/me"), Said::Me(""));
        assert_eq!(parse("/message x"), Said::Unknown("message"));
    }

    #[test]
    fn names() {
        assert_eq!(bad_name("syjung"), None);
        assert_eq!(bad_name("정승연"), None);
        assert!(bad_name("").is_some());
        assert!(bad_name("two words").is_some());
        assert!(bad_name(&"x".repeat(33)).is_some());
        assert!(bad_name("/root").is_some());
        assert_eq!(claimed_name("[syjung] hello"), Some("syjung"));
        assert_eq!(claimed_name("[bad name] hello"), None);
        assert_eq!(claimed_name("[syjung]hello"), None);
    }

    #[test]
    fn relayed_lines_never_double_the_name() {
        assert_eq!(
            relay_line("[{name}] ", "syjung", "hello"),
            "[syjung] hello\n"
        );
        assert_eq!(
            relay_line("[{name}] ", "syjung", "[syjung] hello"),
            "[syjung] hello\n"
        );
        assert_eq!(
            relay_line("", "syjung", "[syjung] hello"),
            "[syjung] hello\n"
        );
        assert_eq!(relay_line("{name}: ", "a", "[a] x"), "a: [a] x\n");
        assert_eq!(action_line("alice", "waves"), "* alice waves\n");
        assert_eq!(private_line("alice", "hi"), "[alice → you] hi\n");
        assert_eq!(private_sent("bob", "hi"), "[you → bob] hi\n");
    }
}
