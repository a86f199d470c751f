//! Property tests: the framers give the same lines and values however a
//! stream is cut into reads, and a running hub relays random interleavings
//! of 2 to 8 senders intact and in each sender's order. The fuzz targets
//! (fuzz/) push the same properties much further; these run in every
//! `cargo test`.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::thread;

use bytes::BytesMut;
use pinetd::chatline::{Line, Lines};
use pinetd::jsonstream::Unanswered;
use proptest::prelude::*;
use serde_json::Value;

/// `data` cut at `cuts` (positions taken modulo its length, in any order).
fn cut<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    at.push(0);
    at.push(data.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

fn chat_lines(max: usize, reads: &[&[u8]]) -> Vec<Line> {
    let mut framer = Lines::new(max);
    let mut buf = BytesMut::new();
    let mut lines = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        while let Some(line) = framer.next(&mut buf) {
            lines.push(line);
        }
    }
    lines.extend(framer.flush(&mut buf));
    lines
}

/// Bytes that are mostly text, with many line ends among them.
fn chat_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => b'a'..=b'z',
            1 => Just(b'\n'),
            1 => Just(b'\r'),
            1 => any::<u8>(),
        ],
        0..600,
    )
}

/// Echoes `reads` as a connection does: each read takes at most the room
/// offered, and the stream ends after the last.
fn json_replies(max: usize, reads: &[&[u8]]) -> (Vec<u8>, bool) {
    let mut input = Unanswered::new(max);
    let mut out = Vec::new();
    for read in reads {
        let mut read = *read;
        while !read.is_empty() {
            let take = input.room(16 * 1024).min(read.len());
            input.buf_mut().extend_from_slice(&read[..take]);
            read = &read[take..];
            if input.answer(false, false, &mut out).error.is_some() {
                return (out, false);
            }
        }
    }
    let ok = input.answer(true, true, &mut out).error.is_none();
    (out, ok)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        "[a-z \"\\\\/\u{e9}\u{ac00}-\u{ac10}\u{1f600}\t\n]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{0,4}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn chat_lines_do_not_depend_on_how_reads_cut_the_stream(
        data in chat_bytes(),
        max in 1usize..80,
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let whole = chat_lines(max, &[&data]);
        prop_assert_eq!(chat_lines(max, &cut(&data, &cuts)), whole.clone());
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        prop_assert_eq!(chat_lines(max, &bytes), whole.clone());
        for line in &whole {
            prop_assert!(line.bytes.len() <= max);
        }
    }

    #[test]
    fn json_values_do_not_depend_on_how_reads_cut_the_stream(
        values in prop::collection::vec((json_value(), any::<bool>(), "[ \t\r\n]{1,3}"), 1..8),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (value, pretty, space) in &values {
            let text = if *pretty {
                serde_json::to_string_pretty(value)
            } else {
                serde_json::to_string(value)
            };
            stream.extend_from_slice(text.unwrap().as_bytes());
            stream.extend_from_slice(space.as_bytes());
            expected.extend_from_slice(serde_json::to_string(value).unwrap().as_bytes());
            expected.push(b'\n');
        }
        let (whole, ok) = json_replies(1 << 20, &[&stream]);
        prop_assert!(ok);
        prop_assert_eq!(String::from_utf8_lossy(&whole), String::from_utf8_lossy(&expected));
        let (cut_up, ok) = json_replies(1 << 20, &cut(&stream, &cuts));
        prop_assert!(ok);
        prop_assert_eq!(cut_up, whole);
    }

    #[test]
    fn bad_json_gets_the_same_answer_however_it_is_cut(
        data in prop::collection::vec(
            prop_oneof![Just(b'['), Just(b']'), Just(b'1'), Just(b'e'), Just(b'-'), Just(b'.'),
                        Just(b'"'), Just(b' '), Just(b't'), Just(b','), any::<u8>(),
                        // A beginner's mistakes: the words for them must not
                        // depend on the cut either (`Tr` may be `True`).
                        Just(b'{'), Just(b'}'), Just(b':'), Just(b'\''), Just(b'T'), Just(b'N'),
                        Just(b'/'), Just(b'\\'), Just(b'u'), Just(b'0'), Just(b'\n')],
            0..200,
        ),
        max in 4usize..64,
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        let whole = json_replies(max, &[&data]);
        prop_assert_eq!(json_replies(max, &cut(&data, &cuts)), whole.clone());
        prop_assert_eq!(json_replies(max, &bytes), whole);
    }
}

/// One sender's lines, as it types them: no command, no `bye`, no claimed
/// `[name] `, and (as relayed) without trailing spaces.
fn said_line() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9\u{ac00}-\u{ac20}][a-zA-Z0-9 .,!?\u{ac00}-\u{ac20}\u{1f600}]{0,50}"
        .prop_filter("a word the hub reads as a command", |l| l.trim() != "bye")
}

/// Per sender its lines; each line's bytes cut into 1 to 3 writes; and the
/// order in which the senders' writes go out.
fn conversation() -> impl Strategy<Value = (Vec<Vec<String>>, Vec<usize>, Vec<usize>)> {
    prop::collection::vec(prop::collection::vec(said_line(), 1..20), 2..=8).prop_flat_map(
        |senders| {
            let writes: usize = senders.iter().map(Vec::len).sum::<usize>() * 3;
            (
                Just(senders),
                prop::collection::vec(0usize..8, writes),
                prop::collection::vec(any::<usize>(), writes),
            )
        },
    )
}

/// A client that reads, on its own thread, every relayed line (`[name] `)
/// until it has `expect` of them.
fn reader(stream: TcpStream, expect: usize) -> thread::JoinHandle<Vec<String>> {
    thread::spawn(move || {
        stream.set_read_timeout(Some(common::HANG)).unwrap();
        let mut lines = Vec::new();
        let mut reader = BufReader::new(stream);
        while lines.len() < expect {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.starts_with('[') => lines.push(line),
                Ok(_) => {}
            }
        }
        lines
    })
}

/// Connects, takes the name `name` and waits until the hub says so.
fn member(addr: SocketAddr, name: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(common::HANG)).unwrap();
    stream
        .write_all(format!("/nick {name}\n").as_bytes())
        .unwrap();
    // Byte by byte, so nothing after the rename is taken from the reader.
    let mut line = Vec::new();
    while !line.starts_with(b"*** you are now") || line.last() != Some(&b'\n') {
        if line.last() == Some(&b'\n') {
            line.clear();
        }
        let mut byte = [0u8];
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "closed before the rename"
        );
        line.push(byte[0]);
    }
    stream
}

#[test]
fn a_running_hub_relays_random_interleavings_intact_and_in_each_senders_order() {
    let (_runtime, _daemon, addr) = common::chat::hub(|c| c.chat.rate_limit = 0);
    let case = AtomicUsize::new(0);
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    proptest!(config, |((senders, order, cuts) in conversation())| {
        let case = case.fetch_add(1, Relaxed);
        let names: Vec<String> = (0..senders.len()).map(|i| format!("c{case}s{i}")).collect();
        let relayed: Vec<Vec<String>> = senders
            .iter()
            .zip(&names)
            .map(|(lines, name)| lines.iter().map(|l| format!("[{name}] {}\n", l.trim_end())).collect())
            .collect();
        let total: usize = relayed.iter().map(Vec::len).sum();
        let observer = reader(member(addr, &format!("c{case}obs")), total);
        let mut streams = Vec::new();
        let mut readers = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let stream = member(addr, name);
            readers.push(reader(stream.try_clone().unwrap(), total - relayed[i].len()));
            streams.push(stream);
        }
        // Each sender's bytes in pieces, the pieces of all senders interleaved.
        let mut pieces: Vec<Vec<Vec<u8>>> = senders
            .iter()
            .enumerate()
            .map(|(s, lines)| {
                lines
                    .iter()
                    .enumerate()
                    .flat_map(|(l, line)| {
                        let bytes = format!("{line}\n").into_bytes();
                        let at = cuts[(s * 31 + l) % cuts.len()] % bytes.len();
                        let (a, b) = bytes.split_at(at);
                        [a.to_vec(), b.to_vec()]
                    })
                    .filter(|p| !p.is_empty())
                    .rev()
                    .collect()
            })
            .collect();
        let mut next = order.iter().map(|o| o % senders.len()).collect::<Vec<_>>().into_iter();
        while pieces.iter().any(|p| !p.is_empty()) {
            let start = next.next().unwrap_or(0);
            let Some(s) = (0..senders.len()).map(|k| (start + k) % senders.len()).find(|&s| !pieces[s].is_empty()) else {
                break;
            };
            let piece = pieces[s].pop().unwrap();
            streams[s].write_all(&piece).unwrap();
        }
        let check = |got: Vec<String>, skip: Option<usize>| -> Result<(), TestCaseError> {
            let mut by_sender: HashMap<&str, Vec<String>> = HashMap::new();
            for line in &got {
                let name = line[1..].split(']').next().unwrap_or_default();
                by_sender.entry(names.iter().find(|n| *n == name).map_or("?", |n| n.as_str())).or_default().push(line.clone());
            }
            prop_assert!(!by_sender.contains_key("?"), "a line from no sender: {got:#?}");
            for (i, name) in names.iter().enumerate() {
                if Some(i) == skip {
                    prop_assert!(!by_sender.contains_key(name.as_str()), "{name} got its own lines");
                    continue;
                }
                prop_assert_eq!(by_sender.get(name.as_str()).cloned().unwrap_or_default(), relayed[i].clone(), "{}'s lines", name);
            }
            Ok(())
        };
        check(observer.join().unwrap(), None)?;
        for (i, r) in readers.into_iter().enumerate() {
            check(r.join().unwrap(), Some(i))?;
        }
    });
}
