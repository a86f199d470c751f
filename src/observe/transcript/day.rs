//! Local days and times for the transcript: a file per local day, and each
//! line's time with its offset from UTC, from the C library's `localtime_r`
//! (the zone of the Pi, `/etc/localtime`).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A local day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Day {
    /// The file of this day.
    pub fn file_name(self) -> String {
        format!("{:04}-{:02}-{:02}.tsv", self.year, self.month, self.day)
    }

    /// The day a file is of, if it is a transcript's.
    pub fn of_file(name: &str) -> Option<Day> {
        let date = name.strip_suffix(".tsv")?;
        let bytes = date.as_bytes();
        let shaped = bytes.len() == 10 && bytes[4] == b'-' && bytes[7] == b'-';
        let digits =
            (bytes.iter().enumerate()).all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shaped || !digits {
            return None;
        }
        Some(Day {
            year: date[0..4].parse().ok()?,
            month: date[5..7].parse().ok()?,
            day: date[8..10].parse().ok()?,
        })
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    pub fn number(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
}

/// `at` in local time: its day, and as `2026-12-06T21:03:04.123+09:00`.
pub fn local(at: SystemTime) -> (Day, String) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let second = Second::of(since.as_secs());
    let text = second.at(since.subsec_millis());
    (second.day, text)
}

/// One second of local time, worked out once for every line said in it.
pub(super) struct Second {
    pub secs: u64,
    pub day: Day,
    /// `2026-12-06T21:03:04`
    head: String,
    /// `+09:00`
    offset: String,
}

impl Second {
    pub fn of(secs: u64) -> Second {
        let t = secs as libc::time_t;
        // SAFETY: an all-zero `tm` is a valid value of the plain C struct
        // (its zone name a null pointer, never read here).
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: localtime_r reads `t` and writes only the `tm` it is
        // given; it is the reentrant one, safe from any thread.
        if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
            // Out of range for the C library: the epoch rather than nothing.
            tm = libc::tm {
                tm_year: 70,
                tm_mday: 1,
                ..tm
            };
        }
        let day = Day {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1).clamp(1, 12) as u32,
            day: tm.tm_mday.clamp(1, 31) as u32,
        };
        let offset = i64::from(tm.tm_gmtoff as i32);
        let sign = if offset < 0 { '-' } else { '+' };
        Second {
            secs,
            day,
            head: format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                day.year, day.month, day.day, tm.tm_hour, tm.tm_min, tm.tm_sec
            ),
            offset: format!(
                "{sign}{:02}:{:02}",
                offset.abs() / 3600,
                offset.abs() % 3600 / 60
            ),
        }
    }

    pub fn at(&self, millis: u32) -> String {
        format!("{}.{millis:03}{}", self.head, self.offset)
    }
}

/// Today's file in `dir`.
pub fn today(dir: &Path) -> PathBuf {
    dir.join(local(SystemTime::now()).0.file_name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn day_numbers_and_file_names() {
        let epoch = Day {
            year: 1970,
            month: 1,
            day: 1,
        };
        assert_eq!(epoch.number(), 0);
        let leap = Day {
            year: 2024,
            month: 3,
            day: 1,
        };
        assert_eq!(
            leap.number()
                - Day {
                    year: 2024,
                    month: 2,
                    day: 28
                }
                .number(),
            2
        );
        assert_eq!(
            Day::of_file("2026-12-06.tsv"),
            Some(Day {
                year: 2026,
                month: 12,
                day: 6
            })
        );
        assert_eq!(
            Day {
                year: 2026,
                month: 1,
                day: 2
            }
            .file_name(),
            "2026-01-02.tsv"
        );
        for other in [
            "2026-12-06.txt",
            "notes.tsv",
            "2026-1-06.tsv",
            "20261206.tsv",
            "2026-12-0x.tsv",
        ] {
            assert_eq!(Day::of_file(other), None, "{other}");
        }
    }

    #[test]
    fn local_time_has_its_offset() {
        let (day, text) = local(UNIX_EPOCH + Duration::from_millis(86_400_000 + 5));
        assert!(day.number() == 0 || day.number() == 1, "{day:?}");
        assert_eq!(text.len(), "1970-01-02T00:00:00.005+00:00".len(), "{text}");
        assert!(text.contains(".005"), "{text}");
    }
}
