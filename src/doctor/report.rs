//! The doctor's lines: one per check, a mark, what was found, and for what
//! is wrong the fix in words, printed as each check ends.

use std::fmt;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// ✓ it works.
    Pass,
    /// ✗ it does not: the fix follows.
    Fail,
    /// ! it works, but not for the students (loopback only): the fix follows.
    Warn,
    /// – not applicable here (no systemd, a service the course has not
    /// reached yet): never a failure.
    Skip,
}

impl Mark {
    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Pass => "✓",
            Mark::Fail => "✗",
            Mark::Warn => "!",
            Mark::Skip => "–",
        }
    }
}

/// One line, and its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub mark: Mark,
    pub text: String,
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(text: impl Into<String>) -> Check {
        Check {
            mark: Mark::Pass,
            text: text.into(),
            fix: None,
        }
    }

    pub fn fail(text: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            mark: Mark::Fail,
            text: text.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn warn(text: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            mark: Mark::Warn,
            text: text.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn skip(text: impl Into<String>) -> Check {
        Check {
            mark: Mark::Skip,
            text: text.into(),
            fix: None,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.mark.symbol(), self.text)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n    fix: {fix}")?;
        }
        Ok(())
    }
}

/// Every check of one run, printed as it is added.
#[derive(Debug, Default)]
pub struct Report {
    checks: Vec<Check>,
}

impl Report {
    pub fn add(&mut self, check: Check) {
        println!("{check}");
        self.checks.push(check);
    }

    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        for check in checks {
            self.add(check);
        }
    }

    /// A heading for the checks that follow (one per Pi, from a student's machine).
    pub fn heading(&self, text: &str) {
        if !self.checks.is_empty() {
            println!();
        }
        println!("{text}");
    }

    /// Every check passed or did not apply: a warning is not a pass.
    pub fn passed(&self) -> bool {
        self.checks
            .iter()
            .all(|c| matches!(c.mark, Mark::Pass | Mark::Skip))
    }

    /// The last line: how many passed, or how many did not.
    pub fn summary(&self) -> String {
        let count = |mark| self.checks.iter().filter(|c| c.mark == mark).count();
        let (failed, warned) = (count(Mark::Fail), count(Mark::Warn));
        if self.passed() {
            format!("all {} checks pass", count(Mark::Pass))
        } else {
            format!(
                "{failed} failed, {warned} warning(s), {} passed: see the fixes above",
                count(Mark::Pass)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_prints_its_fix_and_fails_the_run() {
        let mut report = Report::default();
        report.add(Check::pass("config is valid"));
        report.add(Check::skip("no systemd here"));
        assert!(report.passed());
        assert_eq!(report.summary(), "all 1 checks pass");
        let failed = Check::fail("chat at 10.0.0.1:9999: refused", "start it");
        assert_eq!(
            failed.to_string(),
            "✗ chat at 10.0.0.1:9999: refused\n    fix: start it"
        );
        report.add(Check::warn("loopback only", "listen on 0.0.0.0"));
        assert!(!report.passed(), "a warning is not a pass");
        report.add(failed);
        assert_eq!(
            report.summary(),
            "1 failed, 1 warning(s), 1 passed: see the fixes above"
        );
    }
}
