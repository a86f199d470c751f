//! Every mistake in MISTAKES and BYTES gets its words at its byte, however
//! the reads cut it; a valid prefix is never called wrong.

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
