//! Every line the hub itself says, with no I/O: the `*** ...` notices to the
//! room and to one client, the answers to commands, and what the bridge
//! says of the other hubs. Each ends in `\n`.

/// Names listed by one notice before "and N others".
const NAMES_SHOWN: usize = 5;
/// Names listed by /who before "and N more".
const WHO_SHOWN: usize = 100;
/// Hubs named by /who.
const OTHERS_SHOWN: usize = 10;

pub const HELP: &str = "*** commands: /nick NAME to rename, /who to list who is online, /help, bye or /quit to leave\n";
pub const BYE: &str = "*** bye\n";
pub const SHUTTING_DOWN: &str = "*** server shutting down\n";
pub const FELL_BEHIND: &str = "*** you fell too far behind, disconnected\n";
pub const FULL: &str = "*** the hub is full, try again later\n";
pub const CROWDED: &str = "*** too many connections from your address, try again later\n";

/// `a`, `a and b`, `a, b and c`, `a, b, c, d, e and 95 others`.
pub fn names_line(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] if names.len() <= NAMES_SHOWN => {
            format!("{} and {last}", rest.join(", "))
        }
        _ => format!(
            "{} and {} others",
            names[..NAMES_SHOWN].join(", "),
            names.len() - NAMES_SHOWN
        ),
    }
}

pub fn joined(names: &[String]) -> String {
    format!("*** {} joined\n", names_line(names))
}

pub fn left(names: &[String]) -> String {
    format!("*** {} left\n", names_line(names))
}

pub fn renamed(old: &str, new: &str) -> String {
    format!("*** {old} is now {new}\n")
}

pub fn welcome(name: &str) -> String {
    format!("*** welcome to pinetd chat, you are {name}; /help for commands\n")
}

pub fn you_are_now(name: &str) -> String {
    format!("*** you are now {name}\n")
}

pub fn cannot_rename(why: &str) -> String {
    format!("*** cannot rename: {why}\n")
}

pub fn unknown_command(command: &str) -> String {
    format!("*** unknown command /{command}; /help lists them\n")
}

pub fn skipped(messages: u64) -> String {
    format!("*** {messages} messages skipped\n")
}

/// A line cut at `max_line_bytes`; `grew`: only once cleaned.
pub fn line_cut(limit: u32, grew: bool) -> String {
    if grew {
        format!(
            "*** your line was longer than {limit} bytes once its control characters and invalid UTF-8 were replaced, and was cut\n"
        )
    } else {
        format!("*** your line was longer than {limit} bytes and was cut\n")
    }
}

/// The /who line: `names` sorted by the caller.
pub fn online(names: &[String]) -> String {
    let total = names.len();
    let mut line = format!("*** online ({total}): ");
    line.push_str(&names[..total.min(WHO_SHOWN)].join(", "));
    if total > WHO_SHOWN {
        line.push_str(&format!(" and {} more", total - WHO_SHOWN));
    }
    line.push('\n');
    line
}

/// The /who line about the other hubs, `(host, clients)` busiest first:
/// `*** and 12 more on 2 other hubs: pi-07 (5), pi-09 (7)`.
pub fn elsewhere(hubs: &[(&str, u64)]) -> String {
    let total = hubs.iter().fold(0u64, |sum, h| sum.saturating_add(h.1));
    let count = hubs.len();
    let shown: Vec<String> = (hubs.iter().take(OTHERS_SHOWN))
        .map(|(host, online)| format!("{host} ({online})"))
        .collect();
    let mut line = format!(
        "*** and {total} more on {count} other hub{}: {}",
        if count == 1 { "" } else { "s" },
        shown.join(", ")
    );
    if count > OTHERS_SHOWN {
        line.push_str(&format!(" and {} more hubs", count - OTHERS_SHOWN));
    }
    line.push('\n');
    line
}

/// Joins or leaves (`did`: "joined", "left") on another hub.
pub fn on_other_hub(names: &[String], did: &str, host: &str) -> String {
    format!("*** {} {did} on {host}\n", names_line(names))
}

pub fn renamed_on_other_hub(old: &str, new: &str, host: &str) -> String {
    format!("*** {old} is now {new} on {host}\n")
}

/// Another hub said it stops, with `online` clients.
pub fn hub_stopped(online: u64, host: &str) -> String {
    format!("*** {online} left on {host} (its hub stopped)\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("u{i}")).collect()
    }

    #[test]
    fn names_are_listed_then_counted() {
        assert_eq!(names_line(&[]), "");
        assert_eq!(names_line(&names(1)), "u1");
        assert_eq!(names_line(&names(2)), "u1 and u2");
        assert_eq!(names_line(&names(5)), "u1, u2, u3, u4 and u5");
        assert_eq!(names_line(&names(100)), "u1, u2, u3, u4, u5 and 95 others");
        assert_eq!(joined(&names(2)), "*** u1 and u2 joined\n");
        assert_eq!(left(&names(1)), "*** u1 left\n");
        assert_eq!(
            on_other_hub(&names(3), "left", "pi-07"),
            "*** u1, u2 and u3 left on pi-07\n"
        );
    }

    #[test]
    fn who_lists_a_hundred_then_counts() {
        assert_eq!(online(&names(2)), "*** online (2): u1, u2\n");
        let long = online(&names(150));
        assert!(long.starts_with("*** online (150): u1, u2, "));
        assert!(long.ends_with(", u100 and 50 more\n"));
        assert_eq!(
            elsewhere(&[("pi-07", 3), ("pi-09", 0)]),
            "*** and 3 more on 2 other hubs: pi-07 (3), pi-09 (0)\n"
        );
        assert_eq!(
            elsewhere(&[("pi-07", 3)]),
            "*** and 3 more on 1 other hub: pi-07 (3)\n"
        );
        let hubs: Vec<(String, u64)> = (0..12).map(|i| (format!("h{i}"), u64::MAX)).collect();
        let hubs: Vec<(&str, u64)> = hubs.iter().map(|(h, n)| (h.as_str(), *n)).collect();
        let line = elsewhere(&hubs);
        assert!(line.starts_with(&format!("*** and {} more on 12 other hubs: h0 (", u64::MAX)));
        assert!(line.ends_with(" and 2 more hubs\n") && !line.contains("h10"));
    }

    #[test]
    fn every_notice_is_one_line_of_the_hub() {
        let all = [
            HELP.to_owned(),
            BYE.into(),
            SHUTTING_DOWN.into(),
            FELL_BEHIND.into(),
            FULL.into(),
            CROWDED.into(),
            renamed("a", "b"),
            welcome("user1"),
            you_are_now("b"),
            cannot_rename("b is taken"),
            unknown_command("x"),
            skipped(3),
            line_cut(10, false),
            line_cut(10, true),
            renamed_on_other_hub("a", "b", "pi"),
            hub_stopped(4, "pi"),
        ];
        for line in all {
            assert!(line.starts_with("*** "), "{line}");
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert!(line.ends_with('\n'), "{line}");
        }
        assert_eq!(
            line_cut(10, false),
            "*** your line was longer than 10 bytes and was cut\n"
        );
    }
}
