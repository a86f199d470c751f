//! Reading the value's bytes: a byte, a character (which may be cut by the
//! end of what arrived), and the ways messages quote them.

use super::{NeedMore, Reader, Words, said};

/// Longest word quoted, in bytes; a word that reaches it is quoted cut, with `...`.
const WORD_MAX: usize = 24;

/// A character as read from the text.
pub(super) enum Char {
    Valid(char),
    /// A byte that starts no UTF-8 character.
    Invalid(u8),
    End,
}

impl<P: Fn(usize) -> (usize, usize)> Reader<'_, '_, P> {
    pub(super) fn byte(&self, i: usize) -> Option<u8> {
        self.stop.text.get(i).copied()
    }

    /// `line L, column C` of an offset.
    pub(super) fn place(&self, i: usize) -> String {
        let (line, column) = (self.position)(i);
        format!("line {line}, column {column}")
    }

    /// The character at `i`; NeedMore if it is cut by the end of what arrived.
    pub(super) fn char_at(&self, i: usize) -> Result<Char, NeedMore> {
        let text = self.stop.text;
        let Some(&lead) = text.get(i) else {
            return if self.stop.more {
                Err(NeedMore)
            } else {
                Ok(Char::End)
            };
        };
        let len = match lead {
            0x00..=0x7f => return Ok(Char::Valid(char::from(lead))),
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return Ok(Char::Invalid(lead)),
        };
        match text.get(i..i + len) {
            Some(bytes) => Ok(std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.chars().next())
                .map_or(Char::Invalid(lead), Char::Valid)),
            None if self.stop.more => Err(NeedMore),
            None => Ok(Char::Invalid(lead)),
        }
    }

    /// The byte at `i` as a message names it.
    pub(super) fn shown(&self, i: usize) -> Result<String, NeedMore> {
        Ok(match self.char_at(i)? {
            Char::End => "end of input".into(),
            Char::Invalid(b) => format!("byte 0x{b:02X}"),
            Char::Valid(' ') => "space".into(),
            Char::Valid('\n') => "line break".into(),
            Char::Valid('\r') => "carriage return".into(),
            Char::Valid('\t') => "tab".into(),
            Char::Valid('\'') => "\"'\"".into(),
            Char::Valid(c) if c.is_control() => format!("control character U+{:04X}", c as u32),
            Char::Valid(c) if c.is_ascii() => format!("'{c}'"),
            Char::Valid(c) => format!("'{c}' (U+{:04X})", c as u32),
        })
    }

    /// The word that starts at `start` (letters, digits, `_`, and `-` after
    /// the first), up to [`WORD_MAX`] bytes, quoted.
    pub(super) fn word(&self, start: usize) -> Result<String, NeedMore> {
        let mut end = start;
        // A word that reaches WORD_MAX is cut, whether or not it goes on
        // (the bytes after may not have arrived).
        let mut cut = false;
        loop {
            if end >= start + WORD_MAX {
                cut = true;
                break;
            }
            let Char::Valid(c) = self.char_at(end)? else {
                break;
            };
            if !(c.is_alphanumeric() || c == '_' || (c == '-' && end > start)) {
                break;
            }
            if end + c.len_utf8() > start + WORD_MAX {
                cut = true;
                break;
            }
            end += c.len_utf8();
        }
        let word = self
            .stop
            .text
            .get(start..end)
            .and_then(|w| std::str::from_utf8(w).ok())
            .unwrap_or_default();
        Ok(if cut {
            format!("'{word}...'")
        } else {
            format!("'{word}'")
        })
    }

    /// Words about byte `i`, if serde_json went that far (else its words
    /// stand: it found something else wrong first).
    pub(super) fn if_reached(&self, i: usize, message: String) -> Words {
        if i <= self.stop.at {
            said(message, i)
        } else {
            Ok(None)
        }
    }

    /// The text from `start` to `end`, cut to [`WORD_MAX`].
    pub(super) fn quoted(&self, start: usize, end: usize) -> String {
        let cut = end.min(start + WORD_MAX);
        let text = self.stop.text.get(start..cut).unwrap_or_default();
        let mut quoted = String::from_utf8_lossy(text).into_owned();
        if cut < end {
            quoted.push_str("...");
        }
        quoted
    }

    /// A letter (of any script) at the error byte.
    pub(super) fn starts_word(&self) -> Result<bool, NeedMore> {
        Ok(matches!(self.char_at(self.stop.at)?, Char::Valid(c) if c.is_alphabetic()))
    }
}
