//! Values come off the stream whole, compact and in order; errors name the
//! stream's line and column; the answer never depends on how reads cut it.

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
            Next::Incomplete | Next::ScalarAtEnd(_) | Next::ErrorAtEnd { .. } => {
                unreachable!("complete input")
            }
        }
    }
}

#[test]
fn concatenated_and_separated_values() {
    let (got, err) =
        values(b"{\"name\": \"jung\", \"count\": 3}{\"a\":[1, 2]}\n\n [ true , null ] 7 \"s p\"");
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
    let input = r#"[1e308, -0, 18446744073709551617, 1.50, "\u00e9 \" \\ 안녕", {"k":1,"k":2}]"#;
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
    assert_eq!((err.line, err.column), (3, 11), "{err:?}");
    assert_eq!(err.message, "'tru' is not JSON: did you mean true?");
    let (_, err) = values(b"{} {]");
    assert_eq!(err.unwrap().column, 5);
}

#[test]
fn partial_values_wait_for_more() {
    let splitter = Splitter::new(100);
    assert_eq!(splitter.next(b"  {\"a\": [1, 2", false), Next::Incomplete);
    assert_eq!(splitter.next(b"tr", false), Next::Incomplete);
    assert_eq!(splitter.next(b" 12", false), Next::ScalarAtEnd(1..3));
    assert_eq!(splitter.next(b"true", false), Next::ScalarAtEnd(0..4));
    assert_eq!(splitter.next(b"[true]", false), Next::Value(0..6));
    assert_eq!(splitter.next(b"12", true), Next::Value(0..2));
    assert_eq!(splitter.next(b"12 ", false), Next::Value(0..2));
    assert_eq!(splitter.next(b" \n\t", false), Next::Empty);
    assert!(matches!(splitter.next(b"{\"a\": 1", true), Next::Error(_)));
}

/// Found by fuzzing (fuzz/corpus/json_stream/regression-number-cut):
/// `[1e5]` arriving as `[1e` then `5]` was called an invalid number.
#[test]
fn a_number_cut_after_its_sign_point_or_exponent_waits() {
    let splitter = Splitter::new(100);
    for start in ["[1e", "1e", "1E+", "-", "[-", "[1.", "\n [1.5e-", "[1,\n-"] {
        assert_eq!(
            splitter.next(start.as_bytes(), false),
            Next::Incomplete,
            "{start}"
        );
        assert!(matches!(
            splitter.next(start.as_bytes(), true),
            Next::Error(_)
        ));
    }
    assert!(matches!(splitter.next(b"[1x", false), Next::Error(_)));
    assert!(matches!(splitter.next(b"[1e]", false), Next::Error(_)));
    assert!(matches!(splitter.next(b"[--", false), Next::Error(_)));
    let mut input = Unanswered::new(100);
    let mut out = Vec::new();
    for read in [&b"[1e"[..], b"5, -", b"2.", b"5]"] {
        input.buf_mut().extend_from_slice(read);
        assert_eq!(input.answer(false, false, &mut out).error, None);
    }
    assert_eq!(out, b"[1e5,-2.5]\n");
}

/// What a client that sent `input` in reads of `size` bytes and closed gets back.
fn echoed(input: &[u8], max: usize, size: usize) -> Vec<u8> {
    let mut unanswered = Unanswered::new(max);
    let mut out = Vec::new();
    for read in input.chunks(size) {
        let mut read = read;
        while !read.is_empty() {
            let take = unanswered.room(16 * 1024).min(read.len());
            unanswered.buf_mut().extend_from_slice(&read[..take]);
            read = &read[take..];
            if let Some(e) = unanswered.answer(false, false, &mut out).error {
                out.extend(e.to_line());
                return out;
            }
        }
    }
    if let Some(e) = unanswered.answer(true, true, &mut out).error {
        out.extend(e.to_line());
    }
    out
}

/// Every input the json_stream fuzz target failed on (fuzz/corpus/json_stream/regression-*).
#[test]
fn fuzz_regressions_get_one_answer_however_they_are_cut() {
    let inputs: [&[u8]; 3] = [
        include_bytes!("../../fuzz/corpus/json_stream/regression-number-cut"),
        include_bytes!("../../fuzz/corpus/json_stream/regression-deep-before-syntax-error"),
        include_bytes!("../../fuzz/corpus/json_stream/regression-literal-at-end"),
    ];
    for input in inputs {
        for max in [16, 65_536] {
            let whole = echoed(input, max, input.len());
            for size in [1, 2, 3, 7, 64] {
                assert_eq!(
                    String::from_utf8_lossy(&echoed(input, max, size)),
                    String::from_utf8_lossy(&whole),
                    "max {max}, reads of {size}: {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }
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

#[test]
fn an_error_points_into_what_is_left_unanswered() {
    for (input, at) in [
        (&b"{\"ok\":1}\n{\"ok\":2}\n  {\"bad\": tru }"[..], b't'),
        (b"{} {]", b']'),
        (b"{\"a\":\n\n  x}", b'x'),
    ] {
        let mut unanswered = Unanswered::new(1000);
        unanswered.buf_mut().extend_from_slice(input);
        let error = unanswered
            .answer(true, true, &mut Vec::new())
            .error
            .unwrap();
        let offset = unanswered.error_offset(&error);
        assert_eq!(unanswered.unanswered()[offset], at, "{error:?}");
    }
}
