//! Bytes from a JSON echo client, in any reads, through the splitter and the
//! compact writer, as a connection takes them.
//!
//! - Nothing panics.
//! - Every value sent back is accepted by serde_json and equals the value
//!   the client sent; the size and depth limits hold, and the buffer never
//!   holds more than one value's limit.
//! - The same bytes cut into other reads give the same replies.
#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use pinetd::jsonstream::{MAX_DEPTH, Unanswered};
use pinetd_fuzz::cuts;
use serde_json::Value;

/// The connection's read size.
const READ_CHUNK: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    for max in [16, 65_536] {
        let [first, rest @ ..] = cuts(data, READ_CHUNK);
        let (replies, error) = exchange(max, &first);
        for other in rest {
            assert_eq!(
                exchange(max, &other),
                (replies.clone(), error.clone()),
                "another cut, other replies"
            );
        }
        check(data, max, &replies, error.is_some());
    }
});

/// What a client that sent `reads` and closed gets back: its values, then
/// the error object if there is one.
fn exchange(max: usize, reads: &[&[u8]]) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut input = Unanswered::new(max);
    let mut out = Vec::new();
    let mut reads: VecDeque<&[u8]> = reads.iter().copied().collect();
    loop {
        let answered = input.answer(false, false, &mut out);
        if let Some(e) = answered.error {
            return (out, Some(e.to_line()));
        }
        assert!(
            input.len() <= max,
            "{} bytes held, limit {max}",
            input.len()
        );
        // A read takes what has arrived, up to the room the connection offers.
        let Some(read) = reads.front_mut() else { break };
        let take = input.room(READ_CHUNK).min(read.len());
        input.buf_mut().extend_from_slice(&read[..take]);
        *read = &read[take..];
        if read.is_empty() {
            reads.pop_front();
        }
    }
    let answered = input.answer(true, true, &mut out);
    (out, answered.error.map(|e| e.to_line()))
}

/// The replies against serde_json's own reading of the stream.
fn check(data: &[u8], max: usize, replies: &[u8], failed: bool) {
    let mut sent = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let mut count = 0;
    for reply in replies.split(|&b| b == b'\n').filter(|r| !r.is_empty()) {
        count += 1;
        assert!(
            reply.len() <= max,
            "a reply of {} bytes, limit {max}",
            reply.len()
        );
        assert!(depth(reply) <= MAX_DEPTH);
        serde_json::from_slice::<serde::de::IgnoredAny>(reply)
            .expect("serde_json takes each reply");
        match sent.next() {
            Some(Ok(value)) => {
                // Numbers out of f64's range fail as a Value, but not as text.
                if let Ok(echoed) = serde_json::from_slice::<Value>(reply) {
                    assert_eq!(echoed, value, "the value sent back is the value sent");
                }
            }
            // serde_json stops where a number is out of range; pinetd echoes its text.
            Some(Err(_)) => return,
            None => panic!("more replies than values sent"),
        }
    }
    if !failed {
        // Every value the client sent was answered.
        if let Some(Ok(value)) = sent.next() {
            panic!("{value} was not answered ({count} were)");
        }
    }
}

/// Nesting depth of valid JSON text.
fn depth(json: &[u8]) -> usize {
    let (mut depth, mut most, mut inside, mut escaped) = (0usize, 0, false, false);
    for &b in json {
        if inside {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => inside = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => inside = true,
            b'[' | b'{' => {
                depth += 1;
                most = most.max(depth);
            }
            b']' | b'}' => depth -= 1,
            _ => {}
        }
    }
    most
}
