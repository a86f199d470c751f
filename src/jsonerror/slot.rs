//! The error byte where a key, a value, `,`, `:` or a closer should be,
//! as the brackets around it and the last thing before it say; and the
//! input ended inside brackets.

use super::read::Char;
use super::scan::{Last, Scan};
use super::{NeedMore, Reader, Words, said};

/// Closers named for a value the input ended inside.
const CLOSERS_MAX: usize = 8;

fn closer(open: u8) -> char {
    if open == b'{' { '}' } else { ']' }
}

impl<P: Fn(usize) -> (usize, usize)> Reader<'_, '_, P> {
    /// The input ended inside brackets (serde_json points at the last byte).
    pub(super) fn unclosed(&self, scan: &Scan) -> Words {
        let (Some(&open), Some(&kind)) = (scan.open.last(), scan.kinds.last()) else {
            return Ok(None);
        };
        let mut closers: String = scan
            .kinds
            .iter()
            .rev()
            .take(CLOSERS_MAX)
            .map(|&k| closer(k))
            .collect();
        if scan.kinds.len() > CLOSERS_MAX {
            closers.push_str("...");
        }
        let message = format!(
            "unclosed '{}' from {}: the input ended without '{closers}'",
            char::from(kind),
            self.place(open)
        );
        said(message, None)
    }

    /// The error byte, where `scan` says what is expected.
    pub(super) fn at_slot(&self, scan: &Scan) -> Words {
        let at = self.stop.at;
        let Some(b) = self.byte(at) else {
            return Ok(None);
        };
        let found = self.shown(at)?;
        if b == b'/' || b == b'#' {
            return said(format!("unexpected {found}: JSON has no comments"), at);
        }
        if let Some(message) = self.not_ascii(b, &found)? {
            return said(message, at);
        }
        match (scan.open.last(), scan.kinds.last()) {
            (Some(&open), Some(&kind)) => self.in_brackets(b, &found, scan, open, kind),
            _ => self.top_level(b, &found, scan),
        }
    }

    /// The mistake a byte beyond ASCII at the error byte is, if it is a
    /// known one: a curly quote, a byte order mark, a non-breaking space,
    /// or not UTF-8 at all.
    fn not_ascii(&self, b: u8, found: &str) -> Result<Option<String>, NeedMore> {
        if b < 0x80 {
            return Ok(None);
        }
        Ok(match self.char_at(self.stop.at)? {
            Char::Valid(c @ ('\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{2018}' | '\u{2019}')) => {
                Some(format!(
                    "curly quote '{c}' is not JSON: use straight double quotes \""
                ))
            }
            Char::Valid('\u{feff}') => {
                Some("unexpected byte order mark (U+FEFF): send the JSON without it".into())
            }
            Char::Valid('\u{a0}') => {
                Some("unexpected non-breaking space (U+00A0): use a plain space".into())
            }
            Char::Valid(_) => None,
            Char::Invalid(_) | Char::End => {
                Some(format!("unexpected {found}: JSON text must be UTF-8"))
            }
        })
    }

    /// The error byte `b` inside the bracket `kind` that opens at `open`.
    fn in_brackets(&self, b: u8, found: &str, scan: &Scan, open: usize, kind: u8) -> Words {
        let at = self.stop.at;
        let closes = char::from(b) == closer(kind);
        let mismatched = || {
            if closes {
                return Ok(None);
            }
            let message = format!(
                "mismatched {found}: the '{}' from {} must be closed with '{}'",
                char::from(kind),
                self.place(open),
                closer(kind)
            );
            said(message, at)
        };
        match (scan.last, b) {
            (Last::Value, b'}' | b']') => mismatched(),
            (Last::Value, _) => self.comma_or_close(b, found, kind == b'{'),
            (Last::Key, b'=') => said(
                "unexpected '=': write ':' between a key and its value".into(),
                at,
            ),
            (Last::Key, b'}' | b',') => said(
                format!("unexpected {found}: a key must be followed by ':' and a value"),
                at,
            ),
            (Last::Key, _) => said(format!("missing ':' after the key, before {found}"), at),
            (Last::Colon, b'}' | b']' | b',') => said(
                format!("unexpected {found}: the value after ':' is missing"),
                at,
            ),
            // The comma is what to remove, so the error points at it.
            (Last::Comma(comma), b'}' | b']') if closes => said(
                format!("trailing comma before {found}: remove the ','"),
                comma,
            ),
            (_, b'}' | b']') => mismatched(),
            (Last::Comma(_), b',') => {
                let missing = if kind == b'{' { "a member" } else { "a value" };
                said(
                    format!("unexpected ',': two commas in a row ({missing} is missing)"),
                    at,
                )
            }
            (_, b',') => {
                let first = if kind == b'{' { "a key" } else { "a value" };
                let message = format!(
                    "unexpected ',' after '{}': {first} must come first",
                    char::from(kind)
                );
                said(message, at)
            }
            _ if scan.expects_key() => self.key(b, found),
            _ => self.value(b, found, scan),
        }
    }

    /// After a value, inside an object or array.
    fn comma_or_close(&self, b: u8, found: &str, object: bool) -> Words {
        let at = self.stop.at;
        let (what, closer) = if object {
            ("object members", '}')
        } else {
            ("array elements", ']')
        };
        let message = match b {
            b':' if !object => {
                "unexpected ':' in an array: a key and its value belong in an object { }".into()
            }
            b';' => format!("unexpected ';': separate {what} with ','"),
            b'"' | b'\'' | b'{' | b'[' | b'-' | b'0'..=b'9' => {
                format!("missing ',' between {what}, before {found}")
            }
            _ if self.starts_word()? => format!("missing ',' between {what}, before {found}"),
            _ => format!("unexpected {found}: expected ',' or '{closer}'"),
        };
        said(message, at)
    }

    /// Where a key should start.
    fn key(&self, b: u8, found: &str) -> Words {
        let at = self.stop.at;
        let message = if b == b'"' {
            // serde_json points at the quote when the string's first byte is wrong.
            return self.in_string(at);
        } else if b == b'\'' {
            "single quotes are not JSON: a key must be in double quotes".into()
        } else if b.is_ascii_alphanumeric() || b == b'_' || self.starts_word()? {
            let key = self.word(at)?;
            format!("unquoted key {key}: a key must be in double quotes")
        } else {
            format!("unexpected {found}: a key must be a string in double quotes")
        };
        said(message, at)
    }

    /// Where a value should start.
    fn value(&self, b: u8, found: &str, scan: &Scan) -> Words {
        let at = self.stop.at;
        let message = match b {
            // serde_json points at the quote when the string's first byte is wrong.
            b'"' => return self.in_string(at),
            b'\'' => "single quotes are not JSON: a string must be in double quotes".into(),
            b'+' => "unexpected '+': write numbers without a plus sign".into(),
            b'.' => "unexpected '.': a number must start with a digit (write 0.5, not .5)".into(),
            b'-' | b'0'..=b'9' => return self.number(at, scan),
            _ if self.starts_word()? => return self.value_word(at, scan),
            _ => format!("unexpected {found} where a value should be"),
        };
        said(message, at)
    }

    /// Outside any brackets.
    fn top_level(&self, b: u8, found: &str, scan: &Scan) -> Words {
        let at = self.stop.at;
        let after = self.stop.after_value || scan.last == Last::Value;
        let message = match b {
            b'}' | b']' => {
                let opener = if b == b'}' { '{' } else { '[' };
                format!("unexpected {found}: no '{opener}' is open")
            }
            b',' if after => {
                "unexpected ',' after the value: separate values with whitespace, not commas".into()
            }
            b':' if after => {
                "unexpected ':' after the value: a key and its value belong inside { }".into()
            }
            b'"' | b'\'' | b'+' | b'.' | b'-' | b'0'..=b'9' => return self.value(b, found, scan),
            _ if self.starts_word()? => return self.value(b, found, scan),
            _ if after => format!("unexpected {found} after the value"),
            _ => return self.value(b, found, scan),
        };
        said(message, at)
    }
}
