//! Bytes a peer sent, as text a page can show faithfully: valid UTF-8 as it
//! is (Korean intact), control characters and invalid bytes escaped, long
//! input cut with its length given. What a student typed is never markup:
//! the page sets it as text, and this is only what that text is.

use std::fmt::Write;

use serde::Serialize;

/// At most this many bytes of an input are shown.
pub const SHOWN_BYTES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shown {
    pub text: String,
    /// The length of what arrived.
    pub bytes: usize,
    /// Only the first [`SHOWN_BYTES`] are in `text`.
    pub cut: bool,
    /// Some bytes were not UTF-8 (each shown as `\xNN`).
    pub invalid_utf8: bool,
    /// Where an error points: the index, in characters of `text`, of the
    /// character at that byte of the input.
    pub mark: Option<usize>,
}

impl Shown {
    pub fn new(bytes: &[u8]) -> Self {
        Self::marked(bytes, None)
    }

    /// The same, with the character at byte `at` of `bytes` marked (at the
    /// end of `text` when `at` is the input's length).
    pub fn marked(bytes: &[u8], at: Option<usize>) -> Self {
        let cut = bytes.len() > SHOWN_BYTES;
        let kept = &bytes[..bytes.len().min(SHOWN_BYTES)];
        let mut shown = Shown {
            text: String::with_capacity(kept.len()),
            bytes: bytes.len(),
            cut,
            invalid_utf8: false,
            mark: None,
        };
        let mut chars = 0;
        let mut offset = 0;
        for chunk in kept.utf8_chunks() {
            for c in chunk.valid().chars() {
                if at == Some(offset) {
                    shown.mark = Some(chars);
                }
                offset += c.len_utf8();
                chars += shown.push_char(c);
            }
            for &b in chunk.invalid() {
                if at == Some(offset) {
                    shown.mark = Some(chars);
                }
                offset += 1;
                shown.invalid_utf8 = true;
                let _ = write!(shown.text, "\\x{b:02x}");
                chars += 4;
            }
        }
        if at == Some(offset) && shown.mark.is_none() {
            shown.mark = Some(chars);
        }
        shown
    }

    /// Adds `c`, escaped if it is a control character; how many characters that took.
    fn push_char(&mut self, c: char) -> usize {
        let escaped = match c {
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\\' => "\\\\",
            c if c.is_control() => {
                let before = self.text.len();
                let _ = write!(self.text, "\\u{{{:x}}}", c as u32);
                return self.text.len() - before;
            }
            c => {
                self.text.push(c);
                return 1;
            }
        };
        self.text.push_str(escaped);
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stays_and_what_is_not_text_is_escaped() {
        let shown = Shown::new("안녕 <b>\n\t\\\x07".as_bytes());
        assert_eq!(shown.text, "안녕 <b>\\n\\t\\\\\\u{7}");
        assert!(!shown.invalid_utf8 && !shown.cut);
        let shown = Shown::new(b"ab\xffc\xc3");
        assert_eq!(shown.text, "ab\\xffc\\xc3");
        assert!(shown.invalid_utf8);
        assert_eq!(shown.bytes, 5);
    }

    #[test]
    fn long_input_is_cut_and_its_length_given() {
        let shown = Shown::new(&[b'a'; SHOWN_BYTES + 10]);
        assert!(shown.cut);
        assert_eq!(shown.bytes, SHOWN_BYTES + 10);
        assert_eq!(shown.text.len(), SHOWN_BYTES);
    }

    #[test]
    fn a_mark_counts_characters_of_the_text() {
        // `\n` is two characters of text, `é` two bytes of input.
        let shown = Shown::marked("a\né{".as_bytes(), Some(4));
        assert_eq!(shown.text, "a\\né{");
        assert_eq!(shown.mark, Some(4));
        assert_eq!(Shown::marked(b"\xff", Some(1)).mark, Some(4));
        assert_eq!(Shown::marked(b"ab", Some(2)).mark, Some(2));
        assert_eq!(Shown::marked(b"ab", None).mark, None);
    }
}
