//! The man pages, generated from the command line's definitions: pinetd(1),
//! with the sections a Debian user looks for (configuration, signals, exit
//! status, environment, files), and one pinetd-NAME(1) per subcommand, so
//! that every page the SUBCOMMANDS section names exists. What clap cannot
//! know (exit codes, signals, files) is written here, next to nothing else.

use std::io;

use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

/// A subcommand's page beyond its options: what its exit codes mean, a few
/// examples, and the pages it relates to.
pub(super) struct Notes {
    pub name: &'static str,
    exit: &'static [(&'static str, &'static str)],
    examples: &'static [(&'static str, &'static str)],
    see_also: &'static [&'static str],
}

/// Every visible subcommand's notes (a test checks each has one).
pub(super) const NOTES: &[Notes] = &[
    Notes {
        name: "check",
        exit: &[
            (
                "0",
                "The file is valid. A warning that max_clients does not fit the open-files \
                 limit (and would be lowered) is printed, and still exits 0.",
            ),
            (
                "1",
                "The file cannot be read, or has problems: each is printed on stderr, as \
                 FILE:LINE:COLUMN: key: what is wrong.",
            ),
            USAGE_ERROR,
        ],
        examples: &[(
            "pinetd check --config /etc/pinetd/pinetd.toml && sudo systemctl reload pinetd",
            "Apply an edit of the packaged file only if it is valid.",
        )],
        see_also: &["pinetd(1)"],
    },
    Notes {
        name: "status",
        exit: &[
            (
                "0",
                "The daemon answered, and every service its file enables runs as configured.",
            ),
            (
                "1",
                "An enabled service does not run (failing and waiting to restart, or its \
                 reloaded table could not be bound: the reason is printed), or no daemon \
                 answers at the control socket, or the socket is not this user's to open.",
            ),
            USAGE_ERROR,
        ],
        examples: &[
            (
                "sudo pinetd status",
                "The packaged daemon: services, clients, rates, refusals, the last problems.",
            ),
            (
                "sudo pinetd status --json | jq '.services[] | {name, clients}'",
                "The same, for a script.",
            ),
        ],
        see_also: &["pinetd(1)", "systemctl(1)", "journalctl(1)"],
    },
    Notes {
        name: "doctor",
        exit: &[
            (
                "0",
                "Every check passed (✓), or did not apply here (–: no systemd, the web page \
                 disabled).",
            ),
            (
                "1",
                "A check failed (✗) or warned (!: it works, but students cannot reach it); \
                 each such line is followed by its fix.",
            ),
            USAGE_ERROR,
        ],
        examples: &[
            (
                "sudo pinetd doctor",
                "On the Pi, before class: the packaged file, the unit, the daemon, the \
                 ports, the firewall, every service on every address, the announcements.",
            ),
            (
                "pinetd doctor raspberrypi.local",
                "On a student's machine: every service of that Pi, from here.",
            ),
            (
                "pinetd doctor --lan",
                "On a student's machine: every pinetd that answers discovery.",
            ),
        ],
        see_also: &[
            "pinetd(1)",
            "pinetd-status(1)",
            "nft(8)",
            "iptables-save(8)",
        ],
    },
    Notes {
        name: "chat",
        exit: &[
            (
                "0",
                "The hub closed the connection: after bye, /quit or the end of stdin, or when \
                 it shut down.",
            ),
            (
                "1",
                "The hub cannot be reached, or the connection failed (the reason on stderr).",
            ),
            USAGE_ERROR,
        ],
        examples: &[
            (
                "pinetd chat 127.0.0.1 9999 --name syjung",
                "Type lines; bye leaves.",
            ),
            (
                "echo hello | pinetd chat raspberrypi.local 9999",
                "Say one line, print what the hub answers, leave.",
            ),
        ],
        see_also: &["pinetd(1)", "nc(1)"],
    },
    Notes {
        name: "json",
        exit: &[
            ("0", "Every value was answered."),
            (
                "1",
                "The server cannot be reached, the connection failed, the server answered \
                 with an error object (its message on stderr), or it closed before answering.",
            ),
            USAGE_ERROR,
        ],
        examples: &[
            (
                "echo '{\"name\": \"jung\", \"count\": 3} [1, 2]' | pinetd json 127.0.0.1 9000",
                "Two values, two replies.",
            ),
            (
                "pinetd json 127.0.0.1 9000 --count 3",
                "The course's demo object, three exchanges.",
            ),
        ],
        see_also: &["pinetd(1)"],
    },
    Notes {
        name: "listen",
        exit: &[
            (
                "0",
                "--count announcements were printed. Without --count it runs until \
                 interrupted (Ctrl-C: the shell reports 130).",
            ),
            (
                "1",
                "The port cannot be bound or reading from it failed (the reason on stderr).",
            ),
            USAGE_ERROR,
        ],
        examples: &[
            ("pinetd listen", "Every announcement heard on port 37020."),
            (
                "pinetd listen --json --count 1",
                "One announcement's JSON, for a script.",
            ),
        ],
        see_also: &["pinetd(1)", "pinetd-discover(1)"],
    },
    Notes {
        name: "discover",
        exit: &[
            (
                "0",
                "The scan ran, whoever answered (with --require N: at least N devices \
                 answered).",
            ),
            (
                "1",
                "Fewer than --require N devices answered, no network is up to probe, or the \
                 probe cannot be sent (the reason on stderr).",
            ),
            USAGE_ERROR,
        ],
        examples: &[
            (
                "pinetd discover",
                "Every pinetd on the networks this machine is on.",
            ),
            (
                "pinetd discover --to 127.255.255.255 --timeout 1s",
                "The daemons on this machine.",
            ),
            (
                "pinetd discover --require 40 --json",
                "A script's check that the whole class is up.",
            ),
        ],
        see_also: &["pinetd(1)", "pinetd-listen(1)"],
    },
    Notes {
        name: "udp",
        exit: &[
            ("0", "A reply came back within --timeout."),
            (
                "1",
                "No reply within --timeout, the host answered that nothing listens on the \
                 port (ICMP port unreachable), or the host cannot be resolved or sent to (the \
                 reason on stderr).",
            ),
            USAGE_ERROR,
        ],
        examples: &[
            (
                "pinetd udp 127.0.0.1 20001",
                "Sends \"Hello UDP Listener\", like the course's client.",
            ),
            (
                "pinetd udp raspberrypi.local 20001 hello --timeout 500ms",
                "A message of its own, and a shorter wait.",
            ),
        ],
        see_also: &["pinetd(1)", "nc(1)"],
    },
];

const USAGE_ERROR: (&str, &str) = (
    "2",
    "The command line is wrong (an unknown option, a missing or invalid argument).",
);

/// Every page as (file name, roff): `pinetd.1`, then `pinetd-NAME.1` for
/// each visible subcommand.
pub(super) fn pages(cli: clap::Command) -> io::Result<Vec<(String, Vec<u8>)>> {
    // `pinetd help X` is `pinetd X --help`: no page of its own, and none named.
    let mut cli = cli.disable_help_subcommand(true);
    // Gives each subcommand its page name (pinetd-chat) and usage (pinetd chat).
    cli.build();
    let mut pages = vec![(
        "pinetd.1".to_owned(),
        render(&cli, main_description(), main_sections(&cli))?,
    )];
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let notes = NOTES.iter().find(|n| n.name == sub.get_name());
        let page = render(sub, Roff::new(), sub_sections(notes))?;
        pages.push((Man::new(sub.clone()).get_filename(), page));
    }
    Ok(pages)
}

/// clap_mangen's sections, `description` after its DESCRIPTION and
/// `sections` after its SUBCOMMANDS (its VERSION left out: the footer has it).
fn render(cmd: &clap::Command, description: Roff, sections: Roff) -> io::Result<Vec<u8>> {
    // Every page's footer names the package's version (a subcommand has none of its own).
    let man = Man::new(cmd.clone()).source(concat!("pinetd ", env!("CARGO_PKG_VERSION")));
    let part = |section: fn(&Man, &mut dyn io::Write) -> io::Result<()>| {
        let mut part = Vec::new();
        section(&man, &mut part).map(|()| part)
    };
    // Each part starts with the same preamble (a string for apostrophes): keep the first.
    let preamble = Roff::new().render();
    let mut page = preamble.clone().into_bytes();
    let mut add = |part: &[u8]| {
        page.extend_from_slice(part.strip_prefix(preamble.as_bytes()).unwrap_or(part));
    };
    add(&part(Man::render_title)?);
    add(&part(Man::render_name_section)?);
    add(&part(Man::render_synopsis_section)?);
    add(&part(Man::render_description_section)?);
    add(description.render().as_bytes());
    add(&part(Man::render_options_section)?);
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        add(&part(Man::render_subcommands_section)?);
    }
    add(sections.render().as_bytes());
    Ok(page)
}

/// Writes sections as paragraphs and tagged items.
struct Sections(Roff);

impl Sections {
    fn new() -> Self {
        Self(Roff::new())
    }

    fn section(&mut self, heading: &str) -> &mut Self {
        self.0.control("SH", [heading]);
        self
    }

    fn para(&mut self, text: &str) -> &mut Self {
        self.0.control("PP", []).text([roman(text)]);
        self
    }

    /// A tagged paragraph: `tag` in bold, `text` indented below it.
    fn item(&mut self, tag: &str, text: &str) -> &mut Self {
        self.0
            .control("TP", [])
            .text([bold(tag)])
            .text([roman(text)]);
        self
    }

    fn see_also(&mut self, pages: &[&str]) -> &mut Self {
        self.section("SEE ALSO").0.text([roman(pages.join(", "))]);
        self
    }
}

fn sub_sections(notes: Option<&Notes>) -> Roff {
    let generic = Notes {
        name: "",
        exit: &[
            ("0", "Success."),
            ("1", "Failure, the reason on stderr."),
            USAGE_ERROR,
        ],
        examples: &[],
        see_also: &["pinetd(1)"],
    };
    let notes = notes.unwrap_or(&generic);
    let mut page = Sections::new();
    page.section("EXIT STATUS");
    for (code, meaning) in notes.exit {
        page.item(code, meaning);
    }
    if !notes.examples.is_empty() {
        page.section("EXAMPLES");
        for (command, what) in notes.examples {
            page.item(command, what);
        }
    }
    page.see_also(notes.see_also);
    page.0
}

/// The services, after the daemon's DESCRIPTION.
fn main_description() -> Roff {
    let mut page = Sections::new();
    page.para("The services, one table each in the config file, on their course ports:")
        .item(
            "chat (9999/tcp)",
            "A chat hub: each line a client sends goes to every other client as [name] text. \
             Reach it with pinetd-chat(1), nc(1) or socat(1).",
        )
        .item(
            "json_echo (9000/tcp)",
            "Answers each JSON value with the same value as compact JSON, and malformed input \
             with an error object. See pinetd-json(1).",
        )
        .item(
            "udp_echo (20001/udp)",
            "Answers each datagram with the same bytes (RFC 862) or a fixed reply, and never \
             as a reflector. See pinetd-udp(1).",
        )
        .item(
            "announcer (to 37020/udp)",
            "Broadcasts the daemon's self-description (host, addresses, services and their \
             ports, as one JSON line) every interval. See pinetd-listen(1).",
        )
        .item(
            "discovery (37021/udp)",
            "Answers any datagram with the same self-description, after a random delay, to \
             senders on a local subnet only. See pinetd-discover(1).",
        )
        .item(
            "web (8080/tcp)",
            "The live page of the class, for a browser: every service, the chat room with a \
             chat box, each JSON error and refused datagram in words, a JSON API under \
             /api/v1/, and /metrics for Prometheus. It shows what students sent: reachable only \
             where its allow says.",
        )
        .para(
            "Without --config, every service is reachable from this machine only: chat, JSON \
             echo, UDP echo and the web page listen on 127.0.0.1, discovery answers loopback \
             only and the announcer sends to 127.255.255.255. The package's systemd unit runs pinetd \
             --config /etc/pinetd/pinetd.toml, which opens them to the LAN.",
        );
    page.0
}

/// The daemon's page after its SUBCOMMANDS: what the daemon does with its
/// file, signals and environment, and how each of its commands exits.
fn main_sections(cli: &clap::Command) -> Roff {
    let mut page = Sections::new();
    configuration(&mut page);
    signals(&mut page);
    exit_status(&mut page);
    environment(&mut page);
    files(&mut page);
    see_also(&mut page, cli);
    page.0
}

/// The config file: its tables, the packaged file, the kinds of values.
fn configuration(page: &mut Sections) {
    page.section("CONFIGURATION")
        .para(
            "One TOML file: a [daemon] table and one table per service (chat, json_echo, \
             udp_echo, announcer, discovery, web). Every key has a default, the embedded default's \
             value, so an empty file is valid and keeps every service on loopback. Unknown \
             keys, wrong types and impossible values are errors that name the file, line and \
             key; pinetd-check(1) reports them all at once.",
        )
        .para(
            "[web] admin_token_file names a file holding the teacher's token (under systemd, \
             a LoadCredential= in a drop-in gives one): whoever has it may kick, mute and \
             rename chat clients, say a line to the room and block an address for a time, \
             from the page or the API. Unset, the page is read-only. A file that cannot be \
             read or is empty is a config error; the token never goes in the config file.",
        )
        .para(
            "The package installs /etc/pinetd/pinetd.toml, the file its systemd unit runs \
             with: every service open to the LAN, the announcer sending to 255.255.255.255, \
             and a comment on every key saying what it does. Edit it, check it with pinetd \
             check --config /etc/pinetd/pinetd.toml, then apply it with systemctl reload \
             pinetd.",
        )
        .para(
            "Durations are strings like \"250ms\", \"1s\" or \"5m\"; addresses are \"IP:PORT\", \
             IPv6 as \"[::]:9999\", and listen takes one address or a list. Every service \
             table takes allow = [\"CIDR\", ...]: peers outside it are refused. \
             /usr/share/doc/pinetd/README.md describes every service and key in full.",
        );
}

/// What SIGTERM, SIGINT and SIGHUP do.
fn signals(page: &mut Sections) {
    page.section("SIGNALS")
        .item(
            "SIGTERM, SIGINT",
            "Shut down: stop accepting, tell every chat client \"*** server shutting down\", let \
             the connections drain for [daemon] shutdown_grace (5s by default), abort what is \
             left (logging it), and exit 0. A second SIGTERM or SIGINT during the drain exits \
             at once, with status 130. systemctl stop pinetd sends SIGTERM.",
        )
        .item(
            "SIGHUP",
            "Reload: read the --config file again and apply what changed, logging the changed \
             keys; systemctl reload pinetd sends it. [daemon] log and shutdown_grace apply at \
             once. The chat hub and JSON echo take their new \
             table in place and keep every connection (added listeners start accepting, \
             removed ones stop; allow and the limits apply to new connections); the other \
             services restart on the same sockets; disabling a service closes its \
             connections. A file that does not load is refused, each problem logged, and the \
             running config stays. On the embedded default (no --config) there is no file to \
             read: SIGHUP only logs a warning.",
        );
}

/// How the daemon exits, and where its commands' codes are told.
fn exit_status(page: &mut Sections) {
    page.section("EXIT STATUS")
        .para("The daemon:")
        .item(
            "0",
            "Stopped by SIGTERM or SIGINT, after the drain (connections still open after \
             shutdown_grace are aborted, and it still exits 0).",
        )
        .item(
            "1",
            "It could not start: the config file cannot be read or is invalid (every problem \
             on stderr), a listener cannot be bound (the service and address named), or the \
             signal handlers or the runtime cannot be set up.",
        )
        .item(USAGE_ERROR.0, USAGE_ERROR.1)
        .item("130", "A second SIGTERM or SIGINT cut the drain short.")
        .para(
            "pinetd check exits 0 when the file is valid and 1 when it is not; each client \
             command exits 0 when it did its job and 1 with the reason on stderr. Their pages \
             say exactly when. --help and --version exit 0.",
        );
}

/// The variables the daemon reads.
fn environment(page: &mut Sections) {
    page.section("ENVIRONMENT")
        .item(
            "RUST_LOG",
            "Overrides [daemon] log, as a tracing filter: debug, or info,pinetd=debug. The \
             client commands log warnings only unless it is set.",
        )
        .item(
            "NOTIFY_SOCKET, WATCHDOG_USEC",
            "Set by systemd for the Type=notify unit: pinetd reports READY=1 once every \
             listener is bound, RELOADING=1 and READY=1 around a reload, STOPPING=1, and a \
             STATUS= line of clients, messages and refusals (systemctl status pinetd shows \
             it), and pings the watchdog every half WatchdogSec.",
        )
        .item(
            "RUNTIME_DIRECTORY",
            "Set by systemd for the unit's RuntimeDirectory=: where [daemon] control_socket \
             is unset, the daemon serves pinetd status at control.sock in it.",
        )
        .item(
            "JOURNAL_STREAM",
            "Set by systemd when stderr goes to the journal: log lines then carry no \
             timestamps or colours.",
        );
}

/// The files the package installs.
fn files(page: &mut Sections) {
    page.section("FILES")
        .item(
            "/etc/pinetd/pinetd.toml",
            "The config file the systemd unit runs with, every key commented; a conffile, \
             so an edited file survives upgrades.",
        )
        .item(
            "/usr/lib/systemd/system/pinetd.service",
            "The systemd unit: pinetd --config /etc/pinetd/pinetd.toml, hardened, \
             LimitNOFILE=65536.",
        )
        .item(
            "/run/pinetd/control.sock",
            "Where pinetd status asks the daemon the unit runs (mode 0660, in a directory \
             of mode 0750 made by systemd for the daemon's own user and group).",
        )
        .item(
            "/usr/share/doc/pinetd/README.md",
            "The documentation: every service, the config keys, the NATS bridge, packaging.",
        );
}

/// Every subcommand's page, and the tools a user reaches it with.
fn see_also(page: &mut Sections, cli: &clap::Command) {
    let mut pages: Vec<String> = cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("pinetd-{}(1)", s.get_name()))
        .collect();
    pages.extend(["systemctl(1)", "journalctl(1)", "nc(1)", "socat(1)"].map(String::from));
    page.see_also(&pages.iter().map(String::as_str).collect::<Vec<_>>());
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::NOTES;
    use crate::cli::Cli;

    #[test]
    fn every_subcommand_has_notes_and_every_note_a_subcommand() {
        let cli = Cli::command();
        let visible: Vec<&str> = cli
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name())
            .collect();
        let noted: Vec<&str> = NOTES.iter().map(|n| n.name).collect();
        for name in &visible {
            assert!(
                noted.contains(name),
                "no man page notes for `pinetd {name}`"
            );
        }
        for name in &noted {
            assert!(visible.contains(name), "notes for no subcommand: {name}");
        }
    }
}
