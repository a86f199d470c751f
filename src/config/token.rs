//! The teacher's token, `[web] admin_token_file`: read from its file when
//! the config is loaded (at start and on every reload), never written in
//! `pinetd.toml`, never printed (its `Debug` says only whether it is set)
//! and compared in constant time.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use subtle::{Choice, ConstantTimeEq};

/// The most bytes of a token file: a token, not a document.
const TOKEN_MAX: usize = 4096;

/// The token, once read; none when `admin_token_file` is unset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AdminToken(Option<Arc<[u8]>>);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.0.is_some() { "set" } else { "none" };
        write!(f, "AdminToken({state})")
    }
}

impl AdminToken {
    /// Reads the token in `file`, its trailing newline trimmed; why not,
    /// in words that name the file.
    pub fn read(file: &str) -> Result<AdminToken, String> {
        let bytes =
            std::fs::read(Path::new(file)).map_err(|e| format!("cannot read {file}: {e}"))?;
        if bytes.len() > TOKEN_MAX {
            return Err(format!(
                "{file} is longer than {TOKEN_MAX} bytes: it should hold only the token"
            ));
        }
        let token = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let token = token.strip_suffix(b"\r").unwrap_or(token);
        if token.is_empty() {
            return Err(format!("{file} is empty: write the teacher's token in it"));
        }
        // It travels in an HTTP header: visible ASCII only.
        if !token.iter().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{file} holds a token with spaces, control characters or non-ASCII: use letters, digits and punctuation"
            ));
        }
        Ok(AdminToken(Some(token.into())))
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Whether `given` is the token, in time that depends on neither where
    /// they differ nor how long the token is: what was given is compared
    /// as if it had the token's length (cut or padded), the lengths apart,
    /// so a guesser learns nothing from how long a wrong answer took.
    pub fn matches(&self, given: &[u8]) -> bool {
        let Some(token) = self.0.as_deref() else {
            return false;
        };
        let mut same_length = vec![0u8; token.len()];
        let n = given.len().min(token.len());
        same_length[..n].copy_from_slice(&given[..n]);
        let lengths = Choice::from(u8::from(given.len() == token.len()));
        bool::from(same_length.ct_eq(token) & lengths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: &[u8]) -> String {
        let dir = std::env::temp_dir().join(format!("pinetd-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }

    #[test]
    fn the_token_is_read_with_its_newline_trimmed_and_never_shown() {
        let token = AdminToken::read(&file("ok", b"s3cret-token\n")).unwrap();
        assert!(token.matches(b"s3cret-token"));
        assert!(!token.matches(b"s3cret-token\n"));
        assert!(!token.matches(b"s3cret-tokeN"));
        assert!(!token.matches(b""));
        assert_eq!(format!("{token:?}"), "AdminToken(set)");
        assert!(!AdminToken::default().matches(b""), "none matches nothing");
    }

    #[test]
    fn only_the_whole_token_matches() {
        let token = AdminToken(Some(Arc::from(&b"s3cret-token"[..])));
        assert!(token.matches(b"s3cret-token"));
        for wrong in [
            &b""[..],
            b"s3cret",
            b"s3cret-tokem",
            b"s3cret-token!",
            b"S3CRET-TOKEN",
        ] {
            assert!(
                !token.matches(wrong),
                "{:?}",
                String::from_utf8_lossy(wrong)
            );
        }
        assert!(!AdminToken(None).matches(b""), "no token: nothing matches");
    }

    #[test]
    fn a_bad_token_file_is_named() {
        let missing = AdminToken::read("/nonexistent/pinetd-token").unwrap_err();
        assert!(
            missing.starts_with("cannot read /nonexistent/pinetd-token"),
            "{missing}"
        );
        let empty = file("empty", b"\n");
        assert!(AdminToken::read(&empty).unwrap_err().contains("is empty"));
        let spaced = file("spaced", b"two words\n");
        assert!(AdminToken::read(&spaced).unwrap_err().contains("spaces"));
        let long = file("long", &[b'a'; TOKEN_MAX + 1]);
        assert!(AdminToken::read(&long).unwrap_err().contains("longer than"));
    }
}
