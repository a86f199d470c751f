//! The room's last lines, for a client that joins (`[chat] history`), with
//! no I/O. It keeps the items the channel carried (a refcount clone of
//! their shared buffer, never a copy) and trims them by line count, so the
//! send path pays a push and, now and then, a pop; the cutting of the
//! oldest item down to exactly the last N lines happens at a join.
//!
//! What the room *said* is kept: clients' lines, `/me`, lines from other
//! hubs and the teacher's `say`. Joins, leaves and renames are not (a late
//! student wants what was said, not who came and went), nor private lines,
//! which never enter the channel.

use std::collections::VecDeque;

use bytes::Bytes;

/// The items holding the room's last lines, oldest first.
#[derive(Debug, Default)]
pub struct History {
    /// Each item's lines (each ending in `\n`) and how many they are.
    items: VecDeque<(Bytes, u64)>,
    /// Lines in `items`, all told.
    lines: u64,
}

impl History {
    /// Keeps `lines` (`count` of them), then drops the items no longer
    /// needed for the last `max`.
    pub fn keep(&mut self, lines: &Bytes, count: u64, max: u64) {
        if max == 0 {
            return self.clear();
        }
        if count > 0 {
            self.items.push_back((lines.clone(), count));
            self.lines += count;
        }
        self.trim(max);
    }

    /// Drops the oldest items while the others hold `max` lines.
    fn trim(&mut self, max: u64) {
        while let Some(&(_, oldest)) = self.items.front() {
            if self.lines - oldest < max {
                break;
            }
            self.items.pop_front();
            self.lines -= oldest;
        }
    }

    fn clear(&mut self) {
        if !self.items.is_empty() {
            *self = Self::default();
        }
    }

    /// The last `max` lines, as buffers to write in order: the oldest item
    /// cut (a cheap slice) so that exactly `max` are given, or all there are.
    pub fn last(&mut self, max: u64) -> Vec<Bytes> {
        if max == 0 {
            self.clear();
            return Vec::new();
        }
        // A reload may have lowered it since the last line was kept.
        self.trim(max);
        let mut extra = self.lines.saturating_sub(max);
        let mut out = Vec::with_capacity(self.items.len());
        for (lines, count) in &self.items {
            if extra == 0 {
                out.push(lines.clone());
                continue;
            }
            // Only the oldest item can hold more than is wanted.
            let skip = extra.min(*count);
            extra -= skip;
            let start = memchr::memchr_iter(b'\n', lines)
                .nth(skip as usize - 1)
                .map_or(lines.len(), |i| i + 1);
            if start < lines.len() {
                out.push(lines.slice(start..));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(history: &mut History, text: &'static str, max: u64) {
        let count = text.matches('\n').count() as u64;
        history.keep(&Bytes::from_static(text.as_bytes()), count, max);
    }

    fn text(parts: Vec<Bytes>) -> String {
        String::from_utf8(parts.concat()).unwrap()
    }

    #[test]
    fn exactly_the_last_lines_are_given_however_items_split_them() {
        let mut history = History::default();
        assert!(history.last(3).is_empty());
        keep(&mut history, "a\nb\n", 3);
        assert_eq!(text(history.last(3)), "a\nb\n");
        keep(&mut history, "c\nd\ne\n", 3);
        assert_eq!(text(history.last(3)), "c\nd\ne\n");
        keep(&mut history, "f\n", 3);
        // The item c-e is still held, for its last two lines.
        assert_eq!(history.items.len(), 2);
        assert_eq!(text(history.last(3)), "d\ne\nf\n");
        assert_eq!(text(history.last(1)), "f\n", "lowered by a reload");
        assert_eq!(history.items.len(), 1);
        // Raised: what was dropped is gone, the rest is given.
        keep(&mut history, "g\nh\n", 10);
        assert_eq!(text(history.last(10)), "f\ng\nh\n");
    }

    #[test]
    fn off_keeps_nothing() {
        let mut history = History::default();
        keep(&mut history, "a\n", 0);
        assert!(history.items.is_empty());
        keep(&mut history, "a\n", 5);
        assert!(history.last(0).is_empty());
        assert_eq!((history.items.len(), history.lines), (0, 0));
    }

    #[test]
    fn a_thousand_lines_in_one_item_are_cut_to_the_last_ones() {
        let many: String = (0..1000).map(|i| format!("{i}\n")).collect();
        let mut history = History::default();
        history.keep(&Bytes::from(many), 1000, 20);
        let got = text(history.last(20));
        let want: String = (980..1000).map(|i| format!("{i}\n")).collect();
        assert_eq!(got, want);
    }
}
