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

/// Longest word quoted, in bytes; a word that reaches it is quoted cut, with `...`.
const WORD_MAX: usize = 24;
/// Closers named for a value the input ended inside.
const CLOSERS_MAX: usize = 8;

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

/// The last thing before the error, outside strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Last {
    Nothing,
    Open,
    /// A comma, at this offset.
    Comma(usize),
    Colon,
    Key,
    Value,
}

/// Where the bytes before the error leave the value; serde_json has
/// accepted them, so they are read without checking.
#[derive(Debug, Clone)]
struct Scan {
    /// Offsets of the brackets still open, outermost first.
    open: Vec<usize>,
    /// Their bytes, `{` or `[`.
    kinds: Vec<u8>,
    last: Last,
    /// Inside a string that opens at this offset; true if it is a key.
    string: Option<(usize, bool)>,
    /// Inside a number or a word that starts at this offset.
    token: Option<usize>,
}

impl Scan {
    fn new(before: &[u8]) -> Self {
        let mut scan = Scan {
            open: Vec::new(),
            kinds: Vec::new(),
            last: Last::Nothing,
            string: None,
            token: None,
        };
        // Within an escape: after `\`, or this many of the four bytes after
        // `\u` to come (serde_json reads all four before it checks them).
        let mut backslash = false;
        let mut hex = 0;
        for (i, &b) in before.iter().enumerate() {
            if let Some((_, key)) = scan.string {
                if backslash {
                    backslash = false;
                    hex = if b == b'u' { 4 } else { 0 };
                } else if hex > 0 {
                    hex -= 1;
                } else if b == b'\\' {
                    backslash = true;
                } else if b == b'"' {
                    scan.string = None;
                    scan.last = if key { Last::Key } else { Last::Value };
                }
                continue;
            }
            let ends_token = matches!(
                b,
                b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'}' | b'[' | b']' | b',' | b':' | b'"'
            );
            if scan.token.is_some() && ends_token {
                scan.token = None;
                scan.last = Last::Value;
            }
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'{' | b'[' => {
                    scan.open.push(i);
                    scan.kinds.push(b);
                    scan.last = Last::Open;
                }
                b'}' | b']' => {
                    scan.open.pop();
                    scan.kinds.pop();
                    scan.last = Last::Value;
                }
                b',' => scan.last = Last::Comma(i),
                b':' => scan.last = Last::Colon,
                b'"' => scan.string = Some((i, scan.expects_key())),
                _ => {
                    if scan.token.is_none() {
                        scan.token = Some(i);
                    }
                }
            }
        }
        scan
    }

    fn in_object(&self) -> bool {
        self.kinds.last() == Some(&b'{')
    }

    fn expects_key(&self) -> bool {
        self.in_object() && matches!(self.last, Last::Open | Last::Comma(_))
    }
}

/// How far a number goes right, from its start.
enum Number {
    /// A whole number, up to this offset.
    Whole(usize),
    /// A digit at this offset follows a leading 0.
    LeadingZero(usize),
    /// A digit of this part should be at this offset.
    WantsDigit(usize, Part),
}

/// The parts of a number that must have a digit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// After `-`.
    Integer,
    /// After `.`.
    Fraction,
    /// After `e`, `E`, and a sign.
    Exponent,
}

fn closer(open: u8) -> char {
    if open == b'{' { '}' } else { ']' }
}

/// A character as read from the text.
enum Char {
    Valid(char),
    /// A byte that starts no UTF-8 character.
    Invalid(u8),
    End,
}

/// The error's context, and the ways of reading its bytes.
struct Reader<'a, 'b, P> {
    stop: &'a Stop<'b>,
    position: P,
}

impl<P: Fn(usize) -> (usize, usize)> Reader<'_, '_, P> {
    fn byte(&self, i: usize) -> Option<u8> {
        self.stop.text.get(i).copied()
    }

    /// `line L, column C` of an offset.
    fn place(&self, i: usize) -> String {
        let (line, column) = (self.position)(i);
        format!("line {line}, column {column}")
    }

    /// The character at `i`; NeedMore if it is cut by the end of what arrived.
    fn char_at(&self, i: usize) -> Result<Char, NeedMore> {
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
    fn shown(&self, i: usize) -> Result<String, NeedMore> {
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
    fn word(&self, start: usize) -> Result<String, NeedMore> {
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

    /// The error is inside the string that opens at `open`: the first
    /// thing wrong in it (serde_json points at the byte before a control
    /// character, and past the four digits of a bad `\u`).
    fn in_string(&self, open: usize) -> Words {
        let at = self.stop.at;
        if self.stop.eof {
            let message = format!(
                "unclosed string from {}: the input ended without its closing \"",
                self.place(open)
            );
            return said(message, None);
        }
        let mut i = open + 1;
        while i <= at + 1 {
            let Some(b) = self.byte(i) else { break };
            match b {
                b'"' => break,
                b'\\' => match self.byte(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => {
                        let digits = (i + 2..i + 6)
                            .find(|&d| !self.byte(d).is_some_and(|h| h.is_ascii_hexdigit()));
                        match digits {
                            Some(bad) if bad < self.stop.text.len() => {
                                return self.bad_unicode_escape(i, bad);
                            }
                            Some(_) => break,
                            None => i += 6,
                        }
                    }
                    Some(b'\'') => {
                        return said(
                            "invalid escape '\\'': a ' needs no backslash in a JSON string".into(),
                            i + 1,
                        );
                    }
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
                        return said(message, i + 1);
                    }
                    None => break,
                },
                b'\n' | b'\r' => {
                    let message = format!(
                        "unclosed string from {}: a string must end on the line it starts \
                         (write \\n for a line break in it)",
                        self.place(open)
                    );
                    return said(message, i);
                }
                b'\t' => return said("tab inside a string: write it as \\t".into(), i),
                0x00..=0x1f => {
                    let message = format!(
                        "control character U+{b:04X} inside a string: write it as \\u{b:04X}"
                    );
                    return said(message, i);
                }
                0x80.. => match self.char_at(i)? {
                    Char::Valid(c) => i += c.len_utf8(),
                    _ => {
                        let message = format!(
                            "invalid UTF-8 in a string: byte 0x{b:02X} (send text encoded as UTF-8)"
                        );
                        return said(message, i);
                    }
                },
                _ => i += 1,
            }
        }
        Ok(None)
    }

    /// `\u` at `backslash` with a non-hex byte at `bad`.
    fn bad_unicode_escape(&self, backslash: usize, bad: usize) -> Words {
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
        said(message, bad)
    }

    /// The input ended inside brackets (serde_json points at the last byte).
    fn unclosed(&self, scan: &Scan) -> Words {
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

    /// The error is in the number or word that starts at `start`.
    fn in_token(&self, start: usize, scan: &Scan) -> Words {
        match self.byte(start) {
            Some(b'-' | b'0'..=b'9') => self.number(start, scan),
            _ => self.value_word(start, scan),
        }
    }

    /// How far a number that starts at `start` goes right.
    fn scan_number(&self, start: usize) -> Number {
        let digit = |i: usize| self.byte(i).is_some_and(|b| b.is_ascii_digit());
        let digits = |mut i: usize| {
            while digit(i) {
                i += 1;
            }
            i
        };
        let mut i = start + usize::from(self.byte(start) == Some(b'-'));
        if self.byte(i) == Some(b'0') {
            i += 1;
            if digit(i) {
                return Number::LeadingZero(i);
            }
        } else if digit(i) {
            i = digits(i);
        } else {
            return Number::WantsDigit(i, Part::Integer);
        }
        if self.byte(i) == Some(b'.') {
            i += 1;
            if !digit(i) {
                return Number::WantsDigit(i, Part::Fraction);
            }
            i = digits(i);
        }
        if matches!(self.byte(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(self.byte(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digit(i) {
                return Number::WantsDigit(i, Part::Exponent);
            }
            i = digits(i);
        }
        Number::Whole(i)
    }

    /// The error is in or right after the number that starts at `start`.
    fn number(&self, start: usize, scan: &Scan) -> Words {
        let at = self.stop.at;
        let i = match self.scan_number(start) {
            Number::LeadingZero(i) => {
                let message = format!(
                    "leading zero in '{}': a number does not start with 0 (0 and 0.5 are fine)",
                    self.quoted(start, i + 1)
                );
                return self.if_reached(i, message);
            }
            Number::WantsDigit(i, part) => return self.wants_digit(start, i, part),
            Number::Whole(i) => i,
        };
        if i != at {
            return Ok(None);
        }
        let Some(b) = self.byte(i) else {
            return Ok(None);
        };
        if !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+')) {
            // The number is whole, and what follows it is wrong there.
            let mut after = scan.clone();
            after.token = None;
            after.last = Last::Value;
            return self.at_slot(&after);
        }
        let number = self.quoted(start, i);
        let why = match b {
            b'.' => ": a number has one decimal point at most",
            b'x' | b'X' if number == "0" => ": JSON numbers are decimal",
            _ => "",
        };
        let message = format!(
            "unexpected {} right after the number '{number}'{why}",
            self.shown(i)?
        );
        said(message, i)
    }

    /// A number from `start` wants a digit of `part` at `i`, which is not there.
    fn wants_digit(&self, start: usize, i: usize, part: Part) -> Words {
        let at = self.stop.at;
        if part == Part::Integer && self.byte(i).is_some_and(|b| b.is_ascii_alphabetic()) {
            let word = self.word(i)?;
            if is_not_a_number(&word) && i <= at {
                let message = format!(
                    "'-{}' is not JSON: JSON numbers cannot be NaN or Infinity (use null)",
                    word.trim_matches('\'')
                );
                return said(message, start);
            }
        }
        let before = self.quoted(start, i);
        let why = match part {
            Part::Integer => "a digit must follow the minus sign".to_owned(),
            Part::Fraction => format!("a digit must follow the decimal point (write {before}0)"),
            Part::Exponent => "the exponent needs digits (like 1e5)".to_owned(),
        };
        let message = format!("unexpected {} after '{before}': {why}", self.shown(i)?);
        if i == self.stop.text.len() && self.stop.complete {
            return said(message, None);
        }
        self.if_reached(i, message)
    }

    /// Words about byte `i`, if serde_json went that far (else its words
    /// stand: it found something else wrong first).
    fn if_reached(&self, i: usize, message: String) -> Words {
        if i <= self.stop.at {
            said(message, i)
        } else {
            Ok(None)
        }
    }

    /// The text from `start` to `end`, cut to [`WORD_MAX`].
    fn quoted(&self, start: usize, end: usize) -> String {
        let cut = end.min(start + WORD_MAX);
        let text = self.stop.text.get(start..cut).unwrap_or_default();
        let mut quoted = String::from_utf8_lossy(text).into_owned();
        if cut < end {
            quoted.push_str("...");
        }
        quoted
    }

    /// The error byte, where `scan` says what is expected.
    fn at_slot(&self, scan: &Scan) -> Words {
        let at = self.stop.at;
        let Some(b) = self.byte(at) else {
            return Ok(None);
        };
        let found = self.shown(at)?;
        if b == b'/' || b == b'#' {
            return said(format!("unexpected {found}: JSON has no comments"), at);
        }
        if b >= 0x80 {
            let message = match self.char_at(at)? {
                Char::Valid(
                    c @ ('\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{2018}' | '\u{2019}'),
                ) => {
                    format!("curly quote '{c}' is not JSON: use straight double quotes \"")
                }
                Char::Valid('\u{feff}') => {
                    "unexpected byte order mark (U+FEFF): send the JSON without it".into()
                }
                Char::Valid('\u{a0}') => {
                    "unexpected non-breaking space (U+00A0): use a plain space".into()
                }
                Char::Valid(_) => String::new(),
                Char::Invalid(_) | Char::End => {
                    format!("unexpected {found}: JSON text must be UTF-8")
                }
            };
            if !message.is_empty() {
                return said(message, at);
            }
        }
        let (Some(&open), Some(&kind)) = (scan.open.last(), scan.kinds.last()) else {
            return self.top_level(b, &found, scan);
        };
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
            (Last::Value, _) => self.comma_or_close(b, &found, kind == b'{'),
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
            _ if scan.expects_key() => self.key(b, &found),
            _ => self.value(b, &found, scan),
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

    /// A letter (of any script) at the error byte.
    fn starts_word(&self) -> Result<bool, NeedMore> {
        Ok(matches!(self.char_at(self.stop.at)?, Char::Valid(c) if c.is_alphabetic()))
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

    /// A word where a value should be, from `start`.
    fn value_word(&self, start: usize, scan: &Scan) -> Words {
        let quoted = self.word(start)?;
        let word = quoted.trim_matches('\'');
        let lower = word.to_lowercase();
        let literal = ["true", "false", "null"]
            .into_iter()
            .find(|l| *l == lower || near(&lower, l));
        let after = scan.open.is_empty() && (self.stop.after_value || scan.last == Last::Value);
        let message = match (word, literal) {
            ("True", _) => "Python's True is not JSON: write true".into(),
            ("False", _) => "Python's False is not JSON: write false".into(),
            ("None", _) => "Python's None is not JSON: write null".into(),
            _ if matches!(lower.as_str(), "none" | "nil" | "undefined") => {
                format!("{quoted} is not JSON: write null")
            }
            _ if is_not_a_number(&quoted) => {
                format!("{quoted} is not JSON: JSON numbers cannot be NaN or Infinity (use null)")
            }
            (_, Some(literal)) if literal == lower => {
                format!("{quoted} is not JSON: write {literal} in lower case")
            }
            (_, Some(literal)) => format!("{quoted} is not JSON: did you mean {literal}?"),
            _ if after => format!("unexpected text after the value: {quoted}"),
            _ => format!("unquoted text {quoted}: a string must be in double quotes"),
        };
        // The word is what is wrong: the error points at its start.
        said(message, start)
    }
}

/// `'NaN'`, `'Infinity'` and the like, quoted.
fn is_not_a_number(quoted: &str) -> bool {
    let word = quoted.trim_matches('\'').to_lowercase();
    matches!(word.as_str(), "nan" | "infinity" | "inf")
}

/// `word` (lower case) is a misspelling of `literal`: a start of it, it with
/// more after, or one letter added, dropped, changed or swapped with the next.
fn near(word: &str, literal: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    if literal.starts_with(word) || word.starts_with(literal) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (word.chars().collect(), literal.chars().collect());
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    match long.len() - short.len() {
        0 => {
            let differ: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
            match differ[..] {
                [_] => true,
                [i, j] => j == i + 1 && a[i] == b[j] && a[j] == b[i],
                _ => false,
            }
        }
        1 => (0..long.len()).any(|dropped| {
            let rest = long.iter().enumerate().filter(|&(i, _)| i != dropped);
            rest.map(|(_, c)| c).eq(short.iter())
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::jsonstream::{JsonError, Unanswered};

    /// A beginner's mistakes, the line and column of the error, its words.
    ///
    /// The position is the byte where serde_json found the value wrong, as
    /// before, except where another byte is plainly what to fix: a trailing
    /// comma points at the comma (serde_json: the closer after it); a wrong
    /// word at its first letter (serde_json: where its spelling went wrong,
    /// or the byte after `tru`); a control character in a string at itself
    /// (serde_json: the byte before it); a bad `\u` at its first byte that is
    /// not a hex digit (serde_json: the fourth byte after `u`). When the input
    /// ends inside a value, at its last byte, as before.
    #[rustfmt::skip]
    const MISTAKES: &[(&str, (usize, usize), &str)] = &[
        // Trailing commas.
        ("{\"a\": 1,}", (1, 8), "trailing comma before '}': remove the ','"),
        ("[1, 2,]", (1, 6), "trailing comma before ']': remove the ','"),
        ("[\n  1,\n]", (2, 4), "trailing comma before ']': remove the ','"),
        // Quotes.
        ("['a']", (1, 2), "single quotes are not JSON: a string must be in double quotes"),
        ("{'a': 1}", (1, 2), "single quotes are not JSON: a key must be in double quotes"),
        ("{a: 1}", (1, 2), "unquoted key 'a': a key must be in double quotes"),
        ("{first_name: 1}", (1, 2), "unquoted key 'first_name': a key must be in double quotes"),
        ("{이름: 1}", (1, 2), "unquoted key '이름': a key must be in double quotes"),
        ("[hello]", (1, 2), "unquoted text 'hello': a string must be in double quotes"),
        ("\u{201c}a\u{201d}", (1, 1), "curly quote '\u{201c}' is not JSON: use straight double quotes \""),
        // Other languages' words.
        ("[True]", (1, 2), "Python's True is not JSON: write true"),
        ("{\"ok\": False}", (1, 8), "Python's False is not JSON: write false"),
        ("{\"a\": None}", (1, 7), "Python's None is not JSON: write null"),
        ("[TRUE]", (1, 2), "'TRUE' is not JSON: write true in lower case"),
        ("[undefined]", (1, 2), "'undefined' is not JSON: write null"),
        ("{\"bad\": tru }", (1, 9), "'tru' is not JSON: did you mean true?"),
        ("[flase]", (1, 2), "'flase' is not JSON: did you mean false?"),
        ("[NaN]", (1, 2), "'NaN' is not JSON: JSON numbers cannot be NaN or Infinity (use null)"),
        ("[Infinity]", (1, 2), "'Infinity' is not JSON: JSON numbers cannot be NaN or Infinity (use null)"),
        ("-Infinity", (1, 1), "'-Infinity' is not JSON: JSON numbers cannot be NaN or Infinity (use null)"),
        // Comments.
        ("[1 // one\n]", (1, 4), "unexpected '/': JSON has no comments"),
        ("/* c */ 1", (1, 1), "unexpected '/': JSON has no comments"),
        ("# c\n1", (1, 1), "unexpected '#': JSON has no comments"),
        // Commas and colons.
        ("[1 2]", (1, 4), "missing ',' between array elements, before '2'"),
        ("{\"a\": 1 \"b\": 2}", (1, 9), "missing ',' between object members, before '\"'"),
        ("[1,,2]", (1, 4), "unexpected ',': two commas in a row (a value is missing)"),
        ("{\"a\": 1,,}", (1, 9), "unexpected ',': two commas in a row (a member is missing)"),
        ("{,}", (1, 2), "unexpected ',' after '{': a key must come first"),
        ("{\"a\" 1}", (1, 6), "missing ':' after the key, before '1'"),
        ("{\"a\" = 1}", (1, 6), "unexpected '=': write ':' between a key and its value"),
        ("{\"a\"}", (1, 5), "unexpected '}': a key must be followed by ':' and a value"),
        ("{\"a\":}", (1, 6), "unexpected '}': the value after ':' is missing"),
        ("[1: 2]", (1, 3), "unexpected ':' in an array: a key and its value belong in an object { }"),
        // Strings.
        ("{\"a\": \"abc\n\"}", (1, 11), "unclosed string from line 1, column 7: a string must end on the line it starts (write \\n for a line break in it)"),
        ("\"abc", (1, 4), "unclosed string from line 1, column 1: the input ended without its closing \""),
        ("[\"a\tb\"]", (1, 4), "tab inside a string: write it as \\t"),
        ("\"\t\"", (1, 2), "tab inside a string: write it as \\t"),
        ("{\"\t\": 1}", (1, 3), "tab inside a string: write it as \\t"),
        ("[\"a\u{1}b\"]", (1, 4), "control character U+0001 inside a string: write it as \\u0001"),
        ("[\"C:\\Users\"]", (1, 6), "invalid escape '\\U': write \\\\ for a backslash (escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"),
        ("[\"\\'\"]", (1, 4), "invalid escape '\\'': a ' needs no backslash in a JSON string"),
        ("[\"\\u12G4\"]", (1, 7), "invalid escape '\\u12G': \\u must be followed by four hex digits (0-9, a-f)"),
        // Brackets.
        ("{\"a\": [1, 2", (1, 11), "unclosed '[' from line 1, column 7: the input ended without ']}'"),
        ("[1}", (1, 3), "mismatched '}': the '[' from line 1, column 1 must be closed with ']'"),
        ("{\"a\": 1]", (1, 8), "mismatched ']': the '{' from line 1, column 1 must be closed with '}'"),
        ("{\"a\":1}}", (1, 8), "unexpected '}': no '{' is open"),
        // Numbers.
        ("01", (1, 2), "leading zero in '01': a number does not start with 0 (0 and 0.5 are fine)"),
        ("[007]", (1, 3), "leading zero in '00': a number does not start with 0 (0 and 0.5 are fine)"),
        ("+1", (1, 1), "unexpected '+': write numbers without a plus sign"),
        ("[.5]", (1, 2), "unexpected '.': a number must start with a digit (write 0.5, not .5)"),
        ("[1.]", (1, 4), "unexpected ']' after '1.': a digit must follow the decimal point (write 1.0)"),
        ("-", (1, 1), "unexpected end of input after '-': a digit must follow the minus sign"),
        ("[1e]", (1, 4), "unexpected ']' after '1e': the exponent needs digits (like 1e5)"),
        ("[0x1F]", (1, 3), "unexpected 'x' right after the number '0': JSON numbers are decimal"),
        // After the value.
        ("{\"a\":1} trailing garbage", (1, 9), "unexpected text after the value: 'trailing'"),
        ("{\"a\":1}\n\n  hello", (3, 3), "unexpected text after the value: 'hello'"),
        ("{\"a\":1},{\"b\":2}", (1, 8), "unexpected ',' after the value: separate values with whitespace, not commas"),
        ("\"a\": 1", (1, 4), "unexpected ':' after the value: a key and its value belong inside { }"),
        ("1x", (1, 2), "unexpected 'x' right after the number '1'"),
    ];

    /// Mistakes that are not UTF-8 text.
    #[rustfmt::skip]
    const BYTES: &[(&[u8], (usize, usize), &str)] = &[
        (b"[\"caf\xe9\"]", (1, 6), "invalid UTF-8 in a string: byte 0xE9 (send text encoded as UTF-8)"),
        (b"\xe9", (1, 1), "unexpected byte 0xE9: JSON text must be UTF-8"),
        (b"\xef\xbb\xbf{}", (1, 1), "unexpected byte order mark (U+FEFF): send the JSON without it"),
    ];

    fn mistakes() -> impl Iterator<Item = (&'static [u8], (usize, usize), &'static str)> {
        MISTAKES
            .iter()
            .map(|&(input, at, message)| (input.as_bytes(), at, message))
            .chain(BYTES.iter().copied())
    }

    /// What a client that sent `input` in reads of `size` bytes, then
    /// closed, gets: its replies and the error.
    fn answered(input: &[u8], size: usize) -> (String, Option<JsonError>) {
        let mut unanswered = Unanswered::new(1000);
        let mut out = Vec::new();
        for read in input.chunks(size.max(1)) {
            unanswered.buf_mut().extend_from_slice(read);
            if let Some(e) = unanswered.answer(false, false, &mut out).error {
                return (String::from_utf8_lossy(&out).into_owned(), Some(e));
            }
        }
        let error = unanswered.answer(true, true, &mut out).error;
        (String::from_utf8_lossy(&out).into_owned(), error)
    }

    #[test]
    fn each_mistake_gets_its_words_at_its_byte() {
        for (input, (line, column), message) in mistakes() {
            let shown = String::from_utf8_lossy(input);
            let Some(e) = answered(input, input.len()).1 else {
                panic!("{shown:?} was accepted");
            };
            assert_eq!(
                (e.message.as_str(), e.line, e.column),
                (message, line, column),
                "{shown:?}"
            );
            // The words survive the error object's JSON string.
            let object: serde_json::Value = serde_json::from_slice(&e.to_line()).unwrap();
            assert_eq!(object["error"], message, "{shown:?}");
        }
    }

    #[test]
    fn the_words_do_not_depend_on_how_reads_cut_the_input() {
        for (input, _, _) in mistakes() {
            let whole = answered(input, input.len());
            for size in [1, 2, 3, 7] {
                assert_eq!(
                    answered(input, size),
                    whole,
                    "{:?} in reads of {size}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    /// The start of a value, valid so far, is never called wrong: every
    /// prefix of a mistake either waits or gets the mistake's own error,
    /// and every prefix of a valid value waits.
    #[test]
    fn a_prefix_is_not_misdiagnosed() {
        let valid = [
            &b"{\"name\": \"jung\", \"count\": 3, \"ok\": true, \"none\": null}"[..],
            b"[-1.5e3, 0, 0.25, \"a\\\"b\\u00e9\", [], {}, false]",
            b"{\"nested\": {\"list\": [1, [2, {\"k\": \"v\"}]]}}",
        ];
        for (input, _, _) in mistakes() {
            let whole = answered(input, input.len()).1;
            for n in 0..input.len() {
                let mut unanswered = Unanswered::new(1000);
                unanswered.buf_mut().extend_from_slice(&input[..n]);
                let error = unanswered.answer(false, false, &mut Vec::new()).error;
                if error.is_some() {
                    assert_eq!(error, whole, "{:?}", String::from_utf8_lossy(&input[..n]));
                }
            }
        }
        for input in valid {
            for n in 0..=input.len() {
                let mut unanswered = Unanswered::new(1000);
                unanswered.buf_mut().extend_from_slice(&input[..n]);
                let answered = unanswered.answer(false, false, &mut Vec::new());
                assert_eq!(
                    answered.error,
                    None,
                    "{:?}",
                    String::from_utf8_lossy(&input[..n])
                );
            }
        }
    }

    /// `Tru` may be Python's `True`: the words wait for more, as a number
    /// at the end does, until a moment of quiet.
    #[test]
    fn a_word_at_the_end_waits_for_more_or_quiet() {
        let mut unanswered = Unanswered::new(1000);
        let mut out = Vec::new();
        unanswered
            .buf_mut()
            .extend_from_slice(b"{\"a\": 1}\n{\"ok\": Tru");
        let answered = unanswered.answer(false, false, &mut out);
        assert_eq!(
            (answered.values, answered.waiting, answered.error),
            (1, true, None)
        );
        unanswered.buf_mut().extend_from_slice(b"e}");
        let e = unanswered.answer(false, false, &mut out).error.unwrap();
        assert_eq!(e.message, "Python's True is not JSON: write true");
        assert_eq!((e.line, e.column), (2, 8));

        let mut unanswered = Unanswered::new(1000);
        unanswered.buf_mut().extend_from_slice(b"[Tr");
        assert!(unanswered.answer(false, false, &mut out).waiting);
        let e = unanswered.answer(true, false, &mut out).error.unwrap();
        assert_eq!(e.message, "'Tr' is not JSON: did you mean true?");
    }

    /// A word is quoted to 24 bytes, however much of it has arrived.
    #[test]
    fn a_long_word_is_quoted_cut() {
        let input = format!("[{}]", "x".repeat(100));
        let whole = answered(input.as_bytes(), input.len());
        assert_eq!(
            whole.1.as_ref().unwrap().message,
            format!(
                "unquoted text '{}...': a string must be in double quotes",
                "x".repeat(24)
            )
        );
        for size in [1, 5, 24, 25] {
            assert_eq!(answered(input.as_bytes(), size), whole, "reads of {size}");
        }
    }
}
