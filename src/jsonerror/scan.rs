//! The bytes before the error, read for where they leave the value: the
//! brackets open, the last thing seen, and whether the error is inside a
//! string, a number or a word.

/// The last thing before the error, outside strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Last {
    Nothing,
    Open,
    /// A comma, at this offset.
    Comma(usize),
    Colon,
    Key,
    Value,
}

/// Where the bytes before the error leave the value; serde_json has
/// accepted them, so they are read without checking.
#[derive(Debug, Clone)]
pub(super) struct Scan {
    /// Offsets of the brackets still open, outermost first.
    pub(super) open: Vec<usize>,
    /// Their bytes, `{` or `[`.
    pub(super) kinds: Vec<u8>,
    pub(super) last: Last,
    /// Inside a string that opens at this offset; true if it is a key.
    pub(super) string: Option<(usize, bool)>,
    /// Inside a number or a word that starts at this offset.
    pub(super) token: Option<usize>,
}

impl Scan {
    pub(super) fn new(before: &[u8]) -> Self {
        let mut scan = Scan {
            open: Vec::new(),
            kinds: Vec::new(),
            last: Last::Nothing,
            string: None,
            token: None,
        };
        // Within an escape: after `\`, or this many of the four bytes after
        // `\u` to come (serde_json reads all four before it checks them).
        let mut backslash = false;
        let mut hex = 0;
        for (i, &b) in before.iter().enumerate() {
            if let Some((_, key)) = scan.string {
                if backslash {
                    backslash = false;
                    hex = if b == b'u' { 4 } else { 0 };
                } else if hex > 0 {
                    hex -= 1;
                } else if b == b'\\' {
                    backslash = true;
                } else if b == b'"' {
                    scan.string = None;
                    scan.last = if key { Last::Key } else { Last::Value };
                }
                continue;
            }
            let ends_token = matches!(
                b,
                b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'}' | b'[' | b']' | b',' | b':' | b'"'
            );
            if scan.token.is_some() && ends_token {
                scan.token = None;
                scan.last = Last::Value;
            }
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'{' | b'[' => {
                    scan.open.push(i);
                    scan.kinds.push(b);
                    scan.last = Last::Open;
                }
                b'}' | b']' => {
                    scan.open.pop();
                    scan.kinds.pop();
                    scan.last = Last::Value;
                }
                b',' => scan.last = Last::Comma(i),
                b':' => scan.last = Last::Colon,
                b'"' => scan.string = Some((i, scan.expects_key())),
                _ => {
                    if scan.token.is_none() {
                        scan.token = Some(i);
                    }
                }
            }
        }
        scan
    }

    fn in_object(&self) -> bool {
        self.kinds.last() == Some(&b'{')
    }

    pub(super) fn expects_key(&self) -> bool {
        self.in_object() && matches!(self.last, Last::Open | Last::Comma(_))
    }
}
