//! The error is in or right after a number: a leading zero, a digit
//! missing after `-`, `.` or an exponent, or a byte that cannot follow it.

use super::scan::{Last, Scan};
use super::word::is_not_a_number;
use super::{Reader, Words, said};

/// How far a number goes right, from its start.
enum Number {
    /// A whole number, up to this offset.
    Whole(usize),
    /// A digit at this offset follows a leading 0.
    LeadingZero(usize),
    /// A digit of this part should be at this offset.
    WantsDigit(usize, Part),
}

/// The parts of a number that must have a digit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// After `-`.
    Integer,
    /// After `.`.
    Fraction,
    /// After `e`, `E`, and a sign.
    Exponent,
}

impl<P: Fn(usize) -> (usize, usize)> Reader<'_, '_, P> {
    /// How far a number that starts at `start` goes right.
    fn scan_number(&self, start: usize) -> Number {
        let digit = |i: usize| self.byte(i).is_some_and(|b| b.is_ascii_digit());
        let digits = |mut i: usize| {
            while digit(i) {
                i += 1;
            }
            i
        };
        let mut i = start + usize::from(self.byte(start) == Some(b'-'));
        if self.byte(i) == Some(b'0') {
            i += 1;
            if digit(i) {
                return Number::LeadingZero(i);
            }
        } else if digit(i) {
            i = digits(i);
        } else {
            return Number::WantsDigit(i, Part::Integer);
        }
        if self.byte(i) == Some(b'.') {
            i += 1;
            if !digit(i) {
                return Number::WantsDigit(i, Part::Fraction);
            }
            i = digits(i);
        }
        if matches!(self.byte(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(self.byte(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digit(i) {
                return Number::WantsDigit(i, Part::Exponent);
            }
            i = digits(i);
        }
        Number::Whole(i)
    }

    /// The error is in or right after the number that starts at `start`.
    pub(super) fn number(&self, start: usize, scan: &Scan) -> Words {
        let at = self.stop.at;
        let i = match self.scan_number(start) {
            Number::LeadingZero(i) => {
                let message = format!(
                    "leading zero in '{}': a number does not start with 0 (0 and 0.5 are fine)",
                    self.quoted(start, i + 1)
                );
                return self.if_reached(i, message);
            }
            Number::WantsDigit(i, part) => return self.wants_digit(start, i, part),
            Number::Whole(i) => i,
        };
        if i != at {
            return Ok(None);
        }
        let Some(b) = self.byte(i) else {
            return Ok(None);
        };
        if !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+')) {
            // The number is whole, and what follows it is wrong there.
            let mut after = scan.clone();
            after.token = None;
            after.last = Last::Value;
            return self.at_slot(&after);
        }
        let number = self.quoted(start, i);
        let why = match b {
            b'.' => ": a number has one decimal point at most",
            b'x' | b'X' if number == "0" => ": JSON numbers are decimal",
            _ => "",
        };
        let message = format!(
            "unexpected {} right after the number '{number}'{why}",
            self.shown(i)?
        );
        said(message, i)
    }

    /// A number from `start` wants a digit of `part` at `i`, which is not there.
    fn wants_digit(&self, start: usize, i: usize, part: Part) -> Words {
        let at = self.stop.at;
        if part == Part::Integer && self.byte(i).is_some_and(|b| b.is_ascii_alphabetic()) {
            let word = self.word(i)?;
            if is_not_a_number(&word) && i <= at {
                let message = format!(
                    "'-{}' is not JSON: JSON numbers cannot be NaN or Infinity (use null)",
                    word.trim_matches('\'')
                );
                return said(message, start);
            }
        }
        let before = self.quoted(start, i);
        let why = match part {
            Part::Integer => "a digit must follow the minus sign".to_owned(),
            Part::Fraction => format!("a digit must follow the decimal point (write {before}0)"),
            Part::Exponent => "the exponent needs digits (like 1e5)".to_owned(),
        };
        let message = format!("unexpected {} after '{before}': {why}", self.shown(i)?);
        if i == self.stop.text.len() && self.stop.complete {
            return said(message, None);
        }
        self.if_reached(i, message)
    }
}
