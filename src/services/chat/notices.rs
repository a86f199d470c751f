//! Every line the hub itself says, with no I/O: the `*** ...` notices to the
//! room and to one client, the answers to commands, and what the bridge
//! says of the other hubs. Each ends in `\n`.

/// Names listed by one notice before "and N others".
const NAMES_SHOWN: usize = 5;
/// Names listed by /who before "and N more".
const WHO_SHOWN: usize = 100;
/// Hubs named by /who.
const OTHERS_SHOWN: usize = 10;

pub const HELP: &str = "*** commands: /nick NAME to rename, /who to list who is online, /msg NAME text to say something to one person, /me text to act (* you text), /help, bye or /quit to leave\n";
pub const MSG_USAGE: &str = "*** usage: /msg NAME text\n";
pub const ME_USAGE: &str = "*** usage: /me text, e.g. /me waves\n";
pub const MSG_YOURSELF: &str = "*** that is you: /msg NAME text reaches someone else\n";
pub const REMOVED: &str = "*** removed by the teacher\n";
pub const UNMUTED: &str = "*** the teacher lifted your mute\n";
pub const MUTE_ENDED: &str = "*** your mute has ended; you can talk again\n";
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

/// A /msg to a name not on this hub; `bridged`: private lines do not
/// cross to the other hubs, which may have someone of that name.
pub fn not_here(name: &str, bridged: bool) -> String {
    let elsewhere = if bridged {
        " (private lines reach this hub only)"
    } else {
        ""
    };
    format!("*** nobody called {name} is here{elsewhere}; /who lists who is\n")
}

/// A /msg to a client with too many private lines unread.
pub fn not_reading(name: &str) -> String {
    format!("*** {name} is not reading; your message was not delivered\n")
}

/// `seconds`, rounded up: "1 second", "42 seconds".
fn seconds(time: std::time::Duration) -> String {
    let whole = (time.as_secs()).saturating_add(u64::from(time.subsec_nanos() > 0));
    format!("{whole} second{}", if whole == 1 { "" } else { "s" })
}

/// To a client the teacher mutes.
pub fn muted(time: std::time::Duration) -> String {
    format!(
        "*** the teacher muted you for {}; you can still read\n",
        seconds(time)
    )
}

/// To a muted client, for each line it sends: `left` of the mute.
pub fn still_muted(left: std::time::Duration) -> String {
    format!(
        "*** you are muted by the teacher for {} more; not sent\n",
        seconds(left)
    )
}

/// To a client the teacher renames.
pub fn renamed_you(name: &str) -> String {
    format!("*** the teacher renamed you to {name}\n")
}

/// To the room, of a client the teacher renames.
pub fn renamed_by_teacher(old: &str, new: &str) -> String {
    format!("*** the teacher renamed {old} to {new}\n")
}

/// The teacher's line to the room.
pub fn teacher(text: &str) -> String {
    format!("*** teacher: {text}\n")
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
            MSG_USAGE.into(),
            ME_USAGE.into(),
            MSG_YOURSELF.into(),
            REMOVED.into(),
            UNMUTED.into(),
            not_here("bob", true),
            not_reading("bob"),
            muted(std::time::Duration::from_millis(300)),
            still_muted(std::time::Duration::from_secs(42)),
            renamed_you("b"),
            renamed_by_teacher("a", "b"),
            teacher("hello"),
            hub_stopped(4, "pi"),
        ];
        for line in all {
            assert!(line.starts_with("*** "), "{line}");
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert!(line.ends_with('\n'), "{line}");
        }
        assert_eq!(
            still_muted(std::time::Duration::from_millis(41_200)),
            "*** you are muted by the teacher for 42 seconds more; not sent\n"
        );
        assert_eq!(
            muted(std::time::Duration::from_millis(300)),
            "*** the teacher muted you for 1 second; you can still read\n"
        );
        assert_eq!(
            not_here("bob", false),
            "*** nobody called bob is here; /who lists who is\n"
        );
        assert_eq!(
            line_cut(10, false),
            "*** your line was longer than 10 bytes and was cut\n"
        );
    }
}
