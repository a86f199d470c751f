//! The error is inside a string: the first thing wrong in it, character by
//! character (a line break, a tab, a control character, a bad escape,
//! invalid UTF-8), or the input ended before its closing quote.

use super::read::Char;
use super::{NeedMore, Reader, Words, said};

/// One character of a string, read for what is wrong with it.
enum Read {
    /// Nothing: the next character starts at this offset.
    Fine(usize),
    /// The string ended, or what arrived of it did, with nothing found wrong.
    End,
    /// What is wrong, and the offset it is about.
    Wrong(String, usize),
}

impl<P: Fn(usize) -> (usize, usize)> Reader<'_, '_, P> {
    /// The error is inside the string that opens at `open`: the first
    /// thing wrong in it (serde_json points at the byte before a control
    /// character, and past the four digits of a bad `\u`).
    pub(super) fn in_string(&self, open: usize) -> Words {
        if self.stop.eof {
            let message = format!(
                "unclosed string from {}: the input ended without its closing \"",
                self.place(open)
            );
            return said(message, None);
        }
        let mut i = open + 1;
        while i <= self.stop.at + 1 {
            match self.string_char(open, i)? {
                Read::Fine(next) => i = next,
                Read::End => break,
                Read::Wrong(message, at) => return said(message, at),
            }
        }
        Ok(None)
    }

    /// The character at `i` of the string that opens at `open`.
    fn string_char(&self, open: usize, i: usize) -> Result<Read, NeedMore> {
        let Some(b) = self.byte(i) else {
            return Ok(Read::End);
        };
        Ok(match b {
            b'"' => Read::End,
            b'\\' => return self.escape(i),
            b'\n' | b'\r' => {
                let message = format!(
                    "unclosed string from {}: a string must end on the line it starts \
                     (write \\n for a line break in it)",
                    self.place(open)
                );
                Read::Wrong(message, i)
            }
            b'\t' => Read::Wrong("tab inside a string: write it as \\t".into(), i),
            0x00..=0x1f => {
                let message =
                    format!("control character U+{b:04X} inside a string: write it as \\u{b:04X}");
                Read::Wrong(message, i)
            }
            0x80.. => match self.char_at(i)? {
                Char::Valid(c) => Read::Fine(i + c.len_utf8()),
                _ => {
                    let message = format!(
                        "invalid UTF-8 in a string: byte 0x{b:02X} (send text encoded as UTF-8)"
                    );
                    Read::Wrong(message, i)
                }
            },
            _ => Read::Fine(i + 1),
        })
    }

    /// The escape that starts with the `\` at `backslash`.
    fn escape(&self, backslash: usize) -> Result<Read, NeedMore> {
        let i = backslash;
        Ok(match self.byte(i + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Read::Fine(i + 2),
            Some(b'u') => self.unicode_escape(i),
            Some(b'\'') => Read::Wrong(
                "invalid escape '\\'': a ' needs no backslash in a JSON string".into(),
                i + 1,
            ),
            Some(c) => {
                let escape = if c.is_ascii_graphic() {
                    format!("'\\{}'", char::from(c))
                } else {
                    format!("\\ before {}", self.shown(i + 1)?)
                };
                let message = format!(
                    "invalid escape {escape}: write \\\\ for a backslash \
                     (escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"
                );
                Read::Wrong(message, i + 1)
            }
            None => Read::End,
        })
    }

    /// `\u` at `backslash`: four hex digits must follow.
    fn unicode_escape(&self, backslash: usize) -> Read {
        let digits = (backslash + 2..backslash + 6)
            .find(|&d| !self.byte(d).is_some_and(|h| h.is_ascii_hexdigit()));
        match digits {
            Some(bad) if bad < self.stop.text.len() => self.bad_unicode_escape(backslash, bad),
            // The digits have not all arrived.
            Some(_) => Read::End,
            None => Read::Fine(backslash + 6),
        }
    }

    /// `\u` at `backslash` with a non-hex byte at `bad`.
    fn bad_unicode_escape(&self, backslash: usize, bad: usize) -> Read {
        let mut escape = self
            .stop
            .text
            .get(backslash..bad)
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .unwrap_or_default();
        if let Some(c) = self.byte(bad).filter(|c| c.is_ascii_graphic()) {
            escape.push(char::from(c));
        }
        let message = format!(
            "invalid escape '{escape}': \\u must be followed by four hex digits (0-9, a-f)"
        );
        Read::Wrong(message, bad)
    }
}
