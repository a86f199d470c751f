//! Bytes a peer sent, as text a page can show faithfully: valid UTF-8 as it
//! is (Korean intact), control characters and invalid bytes escaped, long
//! input cut with its length given. What a student typed is never markup:
//! the page sets it as text, and this is only what that text is.

use std::fmt::Write;

use serde::Serialize;

/// At most this many bytes of an input are shown ...
pub const SHOWN_BYTES: usize = 1024;
/// ... as at most this many bytes of text (escapes are longer than bytes).
const TEXT_BYTES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shown {
    pub text: String,
    /// The length of what arrived.
    pub bytes: usize,
    /// Only some of the bytes are in `text`: at most [`SHOWN_BYTES`].
    pub cut: bool,
    /// The offset of the first byte in `text`: 0, or more when an error
    /// far into a long input is shown with what is around it.
    pub from: usize,
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

    /// The first bytes of an input of `len` bytes (no more are needed).
    pub fn start_of(head: &[u8], len: usize) -> Self {
        let mut shown = Self::new(head);
        shown.cut |= len > shown.bytes;
        shown.bytes = shown.bytes.max(len);
        shown
    }

    /// The same, with the character at byte `at` of `bytes` marked (at the
    /// end of `text` when `at` is the input's length). A mark far into a
    /// long input is shown with what is around it.
    pub fn marked(bytes: &[u8], at: Option<usize>) -> Self {
        let from = match at {
            Some(at) if at > SHOWN_BYTES / 2 && bytes.len() > SHOWN_BYTES => {
                let from = (at - SHOWN_BYTES / 2).min(bytes.len() - SHOWN_BYTES);
                // Not inside a character: continuation bytes are 0b10xxxxxx.
                (from..at)
                    .find(|&i| bytes[i] & 0xc0 != 0x80)
                    .unwrap_or(from)
            }
            _ => 0,
        };
        let mut end = bytes.len().min(from + SHOWN_BYTES);
        // Nor cut inside one at the end: its start goes too.
        if end < bytes.len() {
            end = (end.saturating_sub(3).max(from)..=end)
                .rev()
                .find(|&i| bytes[i] & 0xc0 != 0x80)
                .unwrap_or(end);
        }
        let kept = &bytes[from..end];
        let mut shown = Shown {
            text: String::with_capacity(kept.len()),
            bytes: bytes.len(),
            cut: kept.len() < bytes.len(),
            from,
            invalid_utf8: false,
            mark: None,
        };
        let at = at.map(|at| at.wrapping_sub(from));
        let mut chars = 0;
        let mut offset = 0;
        'all: for chunk in kept.utf8_chunks() {
            for c in chunk.valid().chars() {
                if shown.text.len() >= TEXT_BYTES {
                    shown.cut = true;
                    break 'all;
                }
                if at == Some(offset) {
                    shown.mark = Some(chars);
                }
                offset += c.len_utf8();
                chars += shown.push_char(c);
            }
            for &b in chunk.invalid() {
                if shown.text.len() >= TEXT_BYTES {
                    shown.cut = true;
                    break 'all;
                }
                if at == Some(offset) {
                    shown.mark = Some(chars);
                }
                offset += 1;
                shown.invalid_utf8 = true;
                let _ = write!(shown.text, "\\x{b:02x}");
                chars += 4;
            }
        }
        if at == Some(offset) && shown.mark.is_none() && !shown.cut {
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
    fn escapes_count_against_what_is_shown() {
        let shown = Shown::new(&[0xff; SHOWN_BYTES]);
        assert!(shown.cut);
        assert!(shown.text.len() <= TEXT_BYTES + 4, "{}", shown.text.len());
    }

    #[test]
    fn an_error_far_into_a_long_input_is_shown_with_what_is_around_it() {
        let mut input = vec![b' '; 5000];
        input[4000] = b'x';
        let shown = Shown::marked(&input, Some(4000));
        assert_eq!(shown.from, 4000 - SHOWN_BYTES / 2);
        assert_eq!(shown.text.chars().nth(shown.mark.unwrap()), Some('x'));
        assert!(shown.cut);
        // Never from inside a character.
        let input = "가".repeat(2000).into_bytes();
        let shown = Shown::marked(&input, Some(3000));
        assert_eq!(shown.from % 3, 0);
        assert!(!shown.invalid_utf8);
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
