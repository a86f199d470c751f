//! The error is a word where a value should be: Python's `True`, `NaN`,
//! a misspelt `true`, or text that wants quotes.

use super::scan::{Last, Scan};
use super::{Reader, Words, said};

impl<P: Fn(usize) -> (usize, usize)> Reader<'_, '_, P> {
    /// A word where a value should be, from `start`.
    pub(super) fn value_word(&self, start: usize, scan: &Scan) -> Words {
        let quoted = self.word(start)?;
        let word = quoted.trim_matches('\'');
        let lower = word.to_lowercase();
        let literal = ["true", "false", "null"]
            .into_iter()
            .find(|l| *l == lower || near(&lower, l));
        let after = scan.open.is_empty() && (self.stop.after_value || scan.last == Last::Value);
        let message = match (word, literal) {
            ("True", _) => "Python's True is not JSON: write true".into(),
            ("False", _) => "Python's False is not JSON: write false".into(),
            ("None", _) => "Python's None is not JSON: write null".into(),
            _ if matches!(lower.as_str(), "none" | "nil" | "undefined") => {
                format!("{quoted} is not JSON: write null")
            }
            _ if is_not_a_number(&quoted) => {
                format!("{quoted} is not JSON: JSON numbers cannot be NaN or Infinity (use null)")
            }
            (_, Some(literal)) if literal == lower => {
                format!("{quoted} is not JSON: write {literal} in lower case")
            }
            (_, Some(literal)) => format!("{quoted} is not JSON: did you mean {literal}?"),
            _ if after => format!("unexpected text after the value: {quoted}"),
            _ => format!("unquoted text {quoted}: a string must be in double quotes"),
        };
        // The word is what is wrong: the error points at its start.
        said(message, start)
    }
}

/// `'NaN'`, `'Infinity'` and the like, quoted.
pub(super) fn is_not_a_number(quoted: &str) -> bool {
    let word = quoted.trim_matches('\'').to_lowercase();
    matches!(word.as_str(), "nan" | "infinity" | "inf")
}

/// `word` (lower case) is a misspelling of `literal`: a start of it, it with
/// more after, or one letter added, dropped, changed or swapped with the next.
fn near(word: &str, literal: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    if literal.starts_with(word) || word.starts_with(literal) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (word.chars().collect(), literal.chars().collect());
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    match long.len() - short.len() {
        0 => {
            let differ: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
            match differ[..] {
                [_] => true,
                [i, j] => j == i + 1 && a[i] == b[j] && a[j] == b[i],
                _ => false,
            }
        }
        1 => (0..long.len()).any(|dropped| {
            let rest = long.iter().enumerate().filter(|&(i, _)| i != dropped);
            rest.map(|(_, c)| c).eq(short.iter())
        }),
        _ => false,
    }
}
