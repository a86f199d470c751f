//! What arrives from the other hubs is input like any other: limited in
//! size and cleaned of control characters before a client sees it.

use bytes::Bytes;

use crate::chatline::{bad_name, clean};

/// Room a remote hub's prefix and name may take in a line beyond the local limit.
pub const PREFIX_ROOM: usize = 256;
/// The largest message taken from NATS: a local item is one read's lines.
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// Remote lines are given to the clients in items of about this many bytes.
const ITEM_BYTES: usize = 8 * 1024;
/// Names taken from one remote notice.
const MAX_NAMES: usize = 1000;
/// A remote host name is cut to this many characters.
const MAX_HOST: usize = 64;

/// A remote `say`'s lines: each cleaned of control characters and invalid
/// UTF-8 and cut to `max` bytes, ending in `\n`; empty lines dropped.
pub fn remote_lines(payload: &[u8], max: usize) -> Vec<String> {
    payload
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .map(|line| {
            let text = clean(line);
            let mut line = cut_at(&text, max).to_owned();
            line.push('\n');
            line
        })
        .collect()
}

/// Lines packed into items of about [`ITEM_BYTES`], in order.
pub fn pack(lines: impl IntoIterator<Item = String>) -> Vec<Bytes> {
    let mut items = Vec::new();
    let mut item = String::new();
    for line in lines {
        if !item.is_empty() && item.len() + line.len() > ITEM_BYTES {
            items.push(Bytes::from(std::mem::take(&mut item)));
        }
        item.push_str(&line);
    }
    if !item.is_empty() {
        items.push(Bytes::from(item));
    }
    items
}

/// A remote notice's names: the valid ones, at most [`MAX_NAMES`].
pub fn remote_names(payload: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(payload)
        .split('\n')
        .filter(|name| bad_name(name).is_none())
        .take(MAX_NAMES)
        .map(str::to_owned)
        .collect()
}

/// A remote host name fit to show: cleaned, at most [`MAX_HOST`] characters, never empty.
pub fn remote_host(host: &str) -> String {
    let host: String = clean(host.as_bytes())
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(MAX_HOST)
        .collect();
    if host.is_empty() { "?".into() } else { host }
}

fn cut_at(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_input_is_cleaned_and_limited() {
        let got = remote_lines(b"[a] hi\x1b[2J\r\n\n[b] \xff ok\n[c] no newline", 100);
        assert_eq!(
            got,
            [
                "[a] hi\u{fffd}[2J\n",
                "[b] \u{fffd} ok\n",
                "[c] no newline\n"
            ]
        );
        let long = format!("{}\n", "é".repeat(100));
        assert_eq!(
            remote_lines(long.as_bytes(), 11),
            [format!("{}\n", "é".repeat(5))]
        );
        // Invalid UTF-8 triples in size when cleaned: the cut holds after it.
        let bad = [0xffu8; 1000];
        assert_eq!(remote_lines(&bad, 100)[0].len(), 99 + 1);
        // Packed into items of about 8 KiB, in order, nothing lost.
        let lines: Vec<String> = (0..1000).map(|n| format!("line {n:04}\n")).collect();
        let items = pack(lines.clone());
        assert!(items.len() > 1 && items.iter().all(|i| i.len() <= ITEM_BYTES));
        assert_eq!(items.concat(), lines.concat().into_bytes());
        assert_eq!(
            remote_names(b"alice\nbad name\n\n/x\nbob"),
            ["alice", "bob"]
        );
        assert_eq!(
            remote_host("pi-07\x1b]0;x\x07"),
            "pi-07\u{fffd}]0;x\u{fffd}"
        );
        assert_eq!(remote_host(""), "?");
        assert_eq!(remote_host(&"h".repeat(100)).len(), 64);
    }
}
