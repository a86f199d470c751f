//! The JSON echo's wire format, with no I/O: finds complete JSON values at the
//! front of a byte buffer (separated by whitespace, or simply concatenated),
//! writes them back compact, and keeps the stream position so an error names
//! the line and column the client would count.

use std::ops::Range;

use bytes::{Buf, BytesMut};
use serde_json::value::RawValue;

use crate::jsonerror::{self, Stop};

/// Deepest nesting accepted, as serde_json's own default: deeper values are
/// refused (pinetd's scan does not recurse, but a client's parser may).
pub const MAX_DEPTH: usize = 128;

/// What the front of the buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A complete value in these bytes of the buffer; consume up to `end`.
    Value(Range<usize>),
    /// A number or `true`, `false`, `null` that reaches the end of the
    /// buffer: whole, unless more follows (`12` may be the start of `1234`,
    /// and `true0` is an error).
    ScalarAtEnd(Range<usize>),
    /// Not JSON, but the words for it depend on bytes that have not arrived
    /// (`Tru` may be Python's `True`): the error, unless more follows; the
    /// value starts at `start`.
    ErrorAtEnd { start: usize, error: JsonError },
    /// The start of a value; more bytes are needed.
    Incomplete,
    /// Nothing but whitespace.
    Empty,
    /// Not JSON; the connection gets this and is closed.
    Error(JsonError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

impl JsonError {
    /// The error object, compact JSON plus `\n`.
    pub fn to_line(&self) -> Vec<u8> {
        error_line(&self.message, Some((self.line, self.column)))
    }
}

/// `{"error":"...","line":L,"column":C}` and a newline; without a position
/// for errors that are not about the input (shutdown, idle).
pub fn error_line(message: &str, at: Option<(usize, usize)>) -> Vec<u8> {
    let message = serde_json::Value::from(message);
    let line = match at {
        Some((line, column)) => {
            format!("{{\"error\":{message},\"line\":{line},\"column\":{column}}}\n")
        }
        None => format!("{{\"error\":{message}}}\n"),
    };
    line.into_bytes()
}

/// Tracks where in the connection's stream the buffer starts.
#[derive(Debug, Clone)]
pub struct Splitter {
    max: usize,
    /// 1-based line of the buffer's first byte.
    line: usize,
    /// Bytes of that line before the buffer's first byte.
    column: usize,
    /// A value came before the buffer (so a stray word is text after it).
    after_value: bool,
}

impl Splitter {
    /// `max`: the largest value accepted, in bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            line: 1,
            column: 0,
            after_value: false,
        }
    }

    /// Looks at the front of `buf`. `complete`: no more bytes will follow
    /// (end of stream), so a value cut short is an error.
    ///
    /// A value fails at the first thing wrong with it in stream order, so
    /// the answer never depends on how its bytes were cut into reads: a
    /// bracket nested too deep, its `max + 1`th byte, or a syntax error.
    pub fn next(&self, buf: &[u8], complete: bool) -> Next {
        let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<&RawValue>();
        let start = buf
            .iter()
            .position(|b| !is_whitespace(*b))
            .unwrap_or(buf.len());
        // What serde_json found, and the bytes it read to find it.
        let (found, reach) = match values.next() {
            None => return Next::Empty,
            Some(Ok(_)) => {
                let end = values.byte_offset();
                (Ok(Some(end)), end)
            }
            Some(Err(e)) if !complete && (e.is_eof() || number_cut_short(buf, &e)) => {
                (Ok(None), buf.len())
            }
            Some(Err(e)) => {
                let at = error_offset(buf, &e).clamp(start, buf.len().saturating_sub(1));
                (Err((e, at)), at + 1)
            }
        };
        let reach = reach.max(start);
        let seen = &buf[start..reach.min(start + self.max + 1)];
        if let Some(at) = too_deep(seen) {
            return Next::Error(self.too_deep(buf, start + at));
        }
        if reach - start > self.max {
            return Next::Error(self.too_large(buf, start));
        }
        match found {
            Ok(Some(end)) => {
                // serde_json reads what follows these to know they ended.
                let bare = matches!(buf[start], b'-' | b'0'..=b'9' | b't' | b'f' | b'n');
                if bare && end == buf.len() && !complete {
                    Next::ScalarAtEnd(start..end)
                } else {
                    Next::Value(start..end)
                }
            }
            Ok(None) => Next::Incomplete,
            Err((e, at)) => {
                let more = !complete && buf.len() < start.saturating_add(self.max);
                match self.syntax_error(buf, start, at, &e, complete, more) {
                    Some(error) => Next::Error(error),
                    // Words that may change with more bytes; without them, these.
                    None => Next::ErrorAtEnd {
                        start,
                        error: self
                            .syntax_error(buf, start, at, &e, complete, false)
                            .unwrap_or_else(|| self.serde_error(&e)),
                    },
                }
            }
        }
    }

    /// The error object for serde_json's error `e` at `at` in the value that
    /// starts at `start`, in words for people learning JSON where they can
    /// be found; None if they depend on bytes that may still come (`more`).
    fn syntax_error(
        &self,
        buf: &[u8],
        start: usize,
        at: usize,
        e: &serde_json::Error,
        complete: bool,
        more: bool,
    ) -> Option<JsonError> {
        let stop = Stop {
            text: &buf[start..buf.len().min(start.saturating_add(self.max))],
            at: at - start,
            eof: e.is_eof(),
            complete,
            more,
            after_value: self.after_value,
        };
        let position = |i: usize| self.offset_position(buf, (start + i).min(buf.len()));
        match jsonerror::explain(&stop, position) {
            Err(jsonerror::NeedMore) => None,
            Ok(None) => Some(self.serde_error(e)),
            Ok(Some(explained)) => {
                let (line, column) = match explained.at {
                    Some(i) => position(i),
                    None => self.position(e.line(), e.column()),
                };
                Some(JsonError {
                    message: explained.message,
                    line,
                    column,
                })
            }
        }
    }

    /// serde_json's own words and position.
    fn serde_error(&self, e: &serde_json::Error) -> JsonError {
        let text = e.to_string();
        let message = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(message, _)| message)
            .to_owned();
        let (line, column) = self.position(e.line(), e.column());
        JsonError {
            message,
            line,
            column,
        }
    }

    /// Marks `consumed` (the front of the buffer) as gone.
    pub fn advance(&mut self, consumed: &[u8]) {
        // Only a value ends in other than whitespace.
        if consumed.last().is_some_and(|b| !is_whitespace(*b)) {
            self.after_value = true;
        }
        match consumed.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                self.line += consumed.iter().filter(|&&b| b == b'\n').count();
                self.column = consumed.len() - last - 1;
            }
            None => self.column += consumed.len(),
        }
    }

    /// Where `offset` in the buffer is, as the client counts.
    fn offset_position(&self, buf: &[u8], offset: usize) -> (usize, usize) {
        let before = &buf[..offset];
        match before.iter().rposition(|&b| b == b'\n') {
            Some(last) => (
                self.line + before.iter().filter(|&&b| b == b'\n').count(),
                offset - last,
            ),
            None => (self.line, self.column + offset + 1),
        }
    }

    /// serde_json's position in the buffer, as a position in the stream.
    fn position(&self, line: usize, column: usize) -> (usize, usize) {
        if line <= 1 {
            (self.line, self.column + column)
        } else {
            (self.line + line - 1, column)
        }
    }

    fn too_deep(&self, buf: &[u8], at: usize) -> JsonError {
        let (line, column) = self.offset_position(buf, at);
        JsonError {
            message: format!("nesting deeper than {MAX_DEPTH}"),
            line,
            column,
        }
    }

    fn too_large(&self, buf: &[u8], start: usize) -> JsonError {
        let (line, column) = self.offset_position(buf, start);
        JsonError {
            message: format!("value larger than max_message_bytes ({})", self.max),
            line,
            column,
        }
    }
}

/// What one pass over a connection's input did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answered {
    /// Values answered.
    pub values: usize,
    /// A number at the end of the input, or a mistake whose words depend on
    /// what follows it (`Tru`), waits for a moment's quiet.
    pub waiting: bool,
    /// The input is bad: the connection gets this and is closed.
    pub error: Option<JsonError>,
}

/// A connection's bytes not yet answered: complete values come off the
/// front as replies; what is left is the start of one value of at most
/// `max` bytes, so the buffer never holds more than `max + 1`.
#[derive(Debug)]
pub struct Unanswered {
    splitter: Splitter,
    max: usize,
    buf: BytesMut,
}

impl Unanswered {
    pub fn new(max: usize) -> Self {
        Self {
            splitter: Splitter::new(max),
            max,
            buf: BytesMut::new(),
        }
    }

    /// Where the next read appends.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes not answered yet: after an error, the bad value.
    pub fn unanswered(&self) -> &[u8] {
        &self.buf
    }

    /// Where in [`unanswered`](Self::unanswered) the error points; its
    /// length when past the end.
    pub fn error_offset(&self, error: &JsonError) -> usize {
        let splitter = &self.splitter;
        let at = if error.line <= splitter.line {
            error.column.saturating_sub(splitter.column + 1)
        } else {
            let newline = (self.buf.iter().enumerate())
                .filter(|(_, b)| **b == b'\n')
                .nth(error.line - splitter.line - 1)
                .map_or(self.buf.len(), |(i, _)| i);
            newline + error.column
        };
        at.min(self.buf.len())
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// How much the next read may take, at most `chunk`: room for the rest
    /// of a value of `max` bytes and one byte more (which shows it is over),
    /// and at least one byte, so a value can complete.
    pub fn room(&self, chunk: usize) -> usize {
        (self.max + 1)
            .saturating_sub(self.buf.len())
            .clamp(1, chunk)
    }

    /// Answers every complete value at the front, each appended to `out`
    /// compact with `\n`. `quiet`: no byte came for a moment, so a number
    /// (or a mistake) at the end is whole; `eof`: none will come.
    pub fn answer(&mut self, quiet: bool, eof: bool, out: &mut Vec<u8>) -> Answered {
        let mut answered = Answered::default();
        loop {
            match self.splitter.next(&self.buf, eof) {
                Next::ScalarAtEnd(range) if !quiet => {
                    self.consume(range.start);
                    answered.waiting = true;
                    return answered;
                }
                Next::ErrorAtEnd { start, .. } if !quiet => {
                    self.consume(start);
                    answered.waiting = true;
                    return answered;
                }
                Next::Value(range) | Next::ScalarAtEnd(range) => {
                    write_compact(&self.buf[range.clone()], out);
                    out.push(b'\n');
                    self.consume(range.end);
                    answered.values += 1;
                }
                Next::Empty => {
                    self.consume(self.buf.len());
                    return answered;
                }
                Next::Incomplete => {
                    // The whitespace before the value goes, so the buffer
                    // holds the value alone.
                    let start = self
                        .buf
                        .iter()
                        .position(|b| !is_whitespace(*b))
                        .unwrap_or(self.buf.len());
                    self.consume(start);
                    return answered;
                }
                Next::Error(e) | Next::ErrorAtEnd { error: e, .. } => {
                    answered.error = Some(e);
                    return answered;
                }
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.splitter.advance(&self.buf[..n]);
        self.buf.advance(n);
    }
}

/// JSON's whitespace (RFC 8259: space, tab, line feed, carriage return).
fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The offset in `buf` of the byte serde_json's error points at.
fn error_offset(buf: &[u8], e: &serde_json::Error) -> usize {
    let line_start = match e.line() {
        0 | 1 => 0,
        line => buf
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(buf.len(), |(i, _)| i + 1),
    };
    (line_start + e.column()).saturating_sub(1)
}

/// serde_json calls `1e`, `-` or `1.` at the end of its input an invalid
/// number, not an early end: true if this error is such a number, whose
/// next bytes have not arrived (with a digit more, the error goes away or
/// moves on). Runs only on an error, which ends the connection otherwise.
fn number_cut_short(buf: &[u8], e: &serde_json::Error) -> bool {
    if !e.is_syntax() || !matches!(buf.last(), Some(b'-' | b'+' | b'.' | b'e' | b'E')) {
        return false;
    }
    let mut more = buf.to_vec();
    more.push(b'0');
    match serde_json::Deserializer::from_slice(&more)
        .into_iter::<&RawValue>()
        .next()
    {
        Some(Err(again)) => {
            again.is_eof() || (again.line(), again.column()) != (e.line(), e.column())
        }
        _ => true,
    }
}

/// Follows strings through JSON text, byte by byte.
#[derive(Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Takes the next byte; true if it stands outside every string (quotes
    /// count as inside).
    fn outside(&mut self, b: u8) -> bool {
        if self.inside {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.inside = false;
            }
            false
        } else {
            self.inside = b == b'"';
            !self.inside
        }
    }
}

/// The offset of the first bracket nested deeper than [`MAX_DEPTH`], if any.
fn too_deep(json: &[u8]) -> Option<usize> {
    let mut strings = Strings::default();
    let mut depth = 0usize;
    for (i, &b) in json.iter().enumerate() {
        if !strings.outside(b) {
            continue;
        }
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Appends `raw` (valid JSON) without the whitespace outside strings, so every
/// number, escape and key stays exactly as the client wrote it.
pub fn write_compact(raw: &[u8], out: &mut Vec<u8>) {
    let mut strings = Strings::default();
    let mut run_start = 0;
    for (i, &b) in raw.iter().enumerate() {
        if strings.outside(b) && is_whitespace(b) {
            out.extend_from_slice(&raw[run_start..i]);
            run_start = i + 1;
        }
    }
    out.extend_from_slice(&raw[run_start..]);
}

#[cfg(test)]
mod tests;
