//! Words for bad JSON that a person learning JSON understands. When
//! serde_json rejects a value, the bytes before the byte it stopped at say
//! what is expected there (a key, a value, `,` or a closer); with that byte
//! they name the usual mistake (a trailing comma, single quotes, an unquoted
//! key, Python's `True`, a comment...) and how to write it instead. Runs only
//! on an error: valid input never comes here.
//!
//! The words depend only on the value's own bytes, never on how they were
//! cut into reads: when they would depend on bytes not yet arrived (`Tru`
//! may be `True`), the answer is [`NeedMore`].
//!
//! [`explain`] reads the bytes before the error ([`scan`]), then hands the
//! error byte to the part that knows its place: inside a string
//! ([`string`]), a number ([`number`]) or a word ([`word`]), or where a key,
//! a value, `,` or a closer should be ([`slot`]). [`read`] has the ways of
//! reading and quoting bytes they share.

mod number;
mod read;
mod scan;
mod slot;
mod string;
#[cfg(test)]
mod tests;
mod word;

use scan::Scan;

/// Where serde_json stopped in a value.
pub struct Stop<'a> {
    /// The value's bytes from its first, as far as the value may reach.
    pub text: &'a [u8],
    /// The byte serde_json's error points at (the last one when it ran out).
    pub at: usize,
    /// serde_json ran out of bytes inside the value.
    pub eof: bool,
    /// No byte will follow `text`: the stream ended.
    pub complete: bool,
    /// Bytes may still follow `text` (the stream goes on, and the value may
    /// be longer than `text`).
    pub more: bool,
    /// A value came before this one in the stream.
    pub after_value: bool,
}

/// Teaching words for an error, and the byte they are about.
#[derive(Debug, PartialEq, Eq)]
pub struct Explained {
    pub message: String,
    /// An offset in `text`; None: where serde_json pointed (the end, when
    /// the input ended).
    pub at: Option<usize>,
}

/// The words depend on bytes after `text`, which may still come.
#[derive(Debug, PartialEq, Eq)]
pub struct NeedMore;

type Words = Result<Option<Explained>, NeedMore>;

fn said(message: String, at: impl Into<Option<usize>>) -> Words {
    Ok(Some(Explained {
        message,
        at: at.into(),
    }))
}

/// Explains the error at `stop`. `position`: an offset in `text` as the
/// client counts it (line, column). None: no better words than serde_json's.
pub fn explain(stop: &Stop, position: impl Fn(usize) -> (usize, usize)) -> Words {
    let at = stop.at;
    // Out of bytes, serde_json points at the last: everything was read.
    let before = if stop.eof {
        stop.text
    } else {
        match stop.text.get(..at) {
            Some(before) => before,
            None => return Ok(None),
        }
    };
    let scan = Scan::new(before);
    let words = Reader { stop, position };
    if let Some((open, _)) = scan.string {
        return words.in_string(open);
    }
    if let Some(start) = scan.token {
        // Out of bytes after a number, the number is whole.
        let number = matches!(stop.text.get(start), Some(b'-' | b'0'..=b'9'));
        if !(stop.eof && number) {
            return words.in_token(start, &scan);
        }
    }
    if stop.eof {
        return words.unclosed(&scan);
    }
    words.at_slot(&scan)
}

/// The error's context; its methods, in the parts, read its bytes.
struct Reader<'a, 'b, P> {
    stop: &'a Stop<'b>,
    position: P,
}

impl<P: Fn(usize) -> (usize, usize)> Reader<'_, '_, P> {
    /// The error is in the number or word that starts at `start`.
    fn in_token(&self, start: usize, scan: &Scan) -> Words {
        match self.byte(start) {
            Some(b'-' | b'0'..=b'9') => self.number(start, scan),
            _ => self.value_word(start, scan),
        }
    }
}
