//! The JSON echo's wire format, with no I/O: finds complete JSON values at the
//! front of a byte buffer (separated by whitespace, or simply concatenated),
//! writes them back compact, and keeps the stream position so an error names
//! the line and column the client would count.

use std::ops::Range;

use serde_json::value::RawValue;

/// Deepest nesting accepted, as serde_json's own default: deeper values are
/// refused (pinetd's scan does not recurse, but a client's parser may).
pub const MAX_DEPTH: usize = 128;

/// What the front of the buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A complete value in these bytes of the buffer; consume up to `end`.
    Value(Range<usize>),
    /// A number that reaches the end of the buffer: whole, unless more digits
    /// follow (`12` may be the start of `1234`).
    NumberAtEnd(Range<usize>),
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
}

impl Splitter {
    /// `max`: the largest value accepted, in bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            line: 1,
            column: 0,
        }
    }

    /// Looks at the front of `buf`. `complete`: no more bytes will follow
    /// (end of stream), so a value cut short is an error.
    pub fn next(&self, buf: &[u8], complete: bool) -> Next {
        let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<&RawValue>();
        match values.next() {
            None => Next::Empty,
            Some(Ok(raw)) => {
                let start = raw.get().as_ptr() as usize - buf.as_ptr() as usize;
                let end = values.byte_offset();
                let bare_number = matches!(buf[start], b'-' | b'0'..=b'9');
                if let Some(at) = too_deep(&buf[start..end]) {
                    Next::Error(self.too_deep(buf, start + at))
                } else if end - start > self.max {
                    Next::Error(self.too_large(buf, start))
                } else if bare_number && end == buf.len() && !complete {
                    Next::NumberAtEnd(start..end)
                } else {
                    Next::Value(start..end)
                }
            }
            Some(Err(e)) if e.is_eof() && !complete => {
                let start = buf
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(0);
                if let Some(at) = too_deep(&buf[start..]) {
                    Next::Error(self.too_deep(buf, start + at))
                } else if buf.len() - start > self.max {
                    Next::Error(self.too_large(buf, start))
                } else {
                    Next::Incomplete
                }
            }
            Some(Err(e)) => {
                let text = e.to_string();
                let message = text
                    .rsplit_once(" at line ")
                    .map_or(text.as_str(), |(message, _)| message)
                    .to_owned();
                let (line, column) = self.position(e.line(), e.column());
                Next::Error(JsonError {
                    message,
                    line,
                    column,
                })
            }
        }
    }

    /// Marks `consumed` (the front of the buffer) as gone.
    pub fn advance(&mut self, consumed: &[u8]) {
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
        if strings.outside(b) && matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            out.extend_from_slice(&raw[run_start..i]);
            run_start = i + 1;
        }
    }
    out.extend_from_slice(&raw[run_start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(input: &[u8]) -> (Vec<String>, Option<JsonError>) {
        let mut splitter = Splitter::new(1000);
        let mut buf = input;
        let mut out = Vec::new();
        loop {
            match splitter.next(buf, true) {
                Next::Value(range) => {
                    let mut compact = Vec::new();
                    write_compact(&buf[range.clone()], &mut compact);
                    out.push(String::from_utf8(compact).unwrap());
                    splitter.advance(&buf[..range.end]);
                    buf = &buf[range.end..];
                }
                Next::Empty => return (out, None),
                Next::Error(e) => return (out, Some(e)),
                Next::Incomplete | Next::NumberAtEnd(_) => unreachable!("complete input"),
            }
        }
    }

    #[test]
    fn concatenated_and_separated_values() {
        let (got, err) = values(
            b"{\"name\": \"jung\", \"count\": 3}{\"a\":[1, 2]}\n\n [ true , null ] 7 \"s p\"",
        );
        assert_eq!(
            got,
            [
                "{\"name\":\"jung\",\"count\":3}",
                "{\"a\":[1,2]}",
                "[true,null]",
                "7",
                "\"s p\""
            ]
        );
        assert_eq!(err, None);
    }

    #[test]
    fn numbers_and_strings_keep_their_text() {
        let input =
            r#"[1e308, -0, 18446744073709551617, 1.50, "\u00e9 \" \\ 안녕", {"k":1,"k":2}]"#;
        let (got, _) = values(input.as_bytes());
        assert_eq!(
            got,
            [r#"[1e308,-0,18446744073709551617,1.50,"\u00e9 \" \\ 안녕",{"k":1,"k":2}]"#]
        );
    }

    #[test]
    fn errors_name_the_stream_position() {
        let (got, err) = values(b"{\"ok\":1}\n{\"ok\":2}\n  {\"bad\": tru }");
        assert_eq!(got.len(), 2);
        let err = err.unwrap();
        assert_eq!((err.line, err.column), (3, 14), "{err:?}");
        assert_eq!(err.message, "expected ident");
        let (_, err) = values(b"{} {]");
        assert_eq!(err.unwrap().column, 5);
    }

    #[test]
    fn partial_values_wait_for_more() {
        let splitter = Splitter::new(100);
        assert_eq!(splitter.next(b"  {\"a\": [1, 2", false), Next::Incomplete);
        assert_eq!(splitter.next(b"tr", false), Next::Incomplete);
        assert_eq!(splitter.next(b" 12", false), Next::NumberAtEnd(1..3));
        assert_eq!(splitter.next(b"12", true), Next::Value(0..2));
        assert_eq!(splitter.next(b"12 ", false), Next::Value(0..2));
        assert_eq!(splitter.next(b" \n\t", false), Next::Empty);
        assert!(matches!(splitter.next(b"{\"a\": 1", true), Next::Error(_)));
    }

    #[test]
    fn oversize_is_refused_before_it_is_whole() {
        let splitter = Splitter::new(10);
        let Next::Error(e) = splitter.next(b"\n  [1,2,3,4,5,6", false) else {
            panic!()
        };
        assert_eq!((e.line, e.column), (2, 3));
        assert_eq!(e.message, "value larger than max_message_bytes (10)");
        assert!(matches!(
            splitter.next(b"[1,2,3,4,5,6]", false),
            Next::Error(_)
        ));
        assert_eq!(splitter.next(b"[1,2,3,4]", false), Next::Value(0..9));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = vec![b'['; 100_000];
        let splitter = Splitter::new(1 << 20);
        let Next::Error(e) = splitter.next(&deep, false) else {
            panic!("not refused")
        };
        assert_eq!(e.message, "nesting deeper than 128");
        assert_eq!((e.line, e.column), (1, 129));
        let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(splitter.next(ok.as_bytes(), false), Next::Value(0..256));
        let brackets_in_strings = format!("[\"{}\"]", "[".repeat(1000));
        assert!(matches!(
            splitter.next(brackets_in_strings.as_bytes(), false),
            Next::Value(_)
        ));
    }

    #[test]
    fn error_object_is_one_line() {
        let e = JsonError {
            message: "expected value".into(),
            line: 1,
            column: 2,
        };
        assert_eq!(
            e.to_line(),
            b"{\"error\":\"expected value\",\"line\":1,\"column\":2}\n"
        );
        assert_eq!(
            error_line("a \"b\"", None),
            b"{\"error\":\"a \\\"b\\\"\"}\n"
        );
    }
}
