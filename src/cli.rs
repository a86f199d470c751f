//! The command line: the daemon, `check`, and the client subcommands.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod man;

#[derive(Debug, Parser)]
#[command(
    name = "pinetd",
    version,
    about = "The socket services of a network-programming course, as one daemon",
    long_about = "The socket services of a network-programming course, as one daemon.\n\n\
        Without a subcommand, runs the daemon: on the embedded default (every service on \
        its course port, loopback only), or on --config FILE."
)]
pub struct Cli {
    /// Run the daemon with this config file instead of the embedded default.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the man pages (pinetd.1, pinetd-NAME.1 for each subcommand) and
    /// the bash, zsh and fish completions into DIR, from these definitions:
    /// for packaging.
    #[command(hide = true)]
    GenerateAssets {
        /// The directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
    /// Validate a config file and exit: 0 if valid, 1 with every problem named.
    ///
    /// Reads the file as the daemon would, and prints every problem at once,
    /// each as FILE:LINE:COLUMN: key: what is wrong, then FILE: N problem(s);
    /// or FILE: ok. Run it before systemctl reload pinetd: a reload refuses
    /// an invalid file and keeps the running config.
    Check {
        /// The config file to validate, like /etc/pinetd/pinetd.toml.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// What the running daemon is doing: services, clients, rates, problems.
    ///
    /// Asks the daemon running with FILE (by default /etc/pinetd/pinetd.toml,
    /// else the embedded default) over its control socket ([daemon]
    /// control_socket, /run/pinetd/control.sock under the packaged unit), on
    /// this machine, whether [web] is on or not. Prints the version, uptime,
    /// each service with its addresses, clients against their limit, the
    /// last minute's rate and refusals, then the last problems logged.
    /// Exits 0 when every enabled service runs as configured, 1 otherwise
    /// (and when no daemon answers), with the reason. The socket is for root
    /// and the daemon's group: run it with sudo.
    Status {
        /// The config file the daemon runs with.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the daemon's answer as one JSON line, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Check everything before class: one ✓/✗ line per check, with the fix.
    ///
    /// On the Pi (--config FILE, or no argument where /etc/pinetd/pinetd.toml
    /// or /run/pinetd/control.sock exists): the config is valid, the unit is
    /// enabled and active (a – line where there is no systemd), the daemon
    /// answers status, no other program holds the ports, the firewall (nft,
    /// else iptables-save) drops none of them, each enabled service answers a
    /// round trip with the course's own messages on every address of every
    /// network, and announcements are heard on each network. From a
    /// student's machine (HOST, or --lan, or no argument elsewhere): the Pi's
    /// discovery answers, each of its services answers from here, and its
    /// announcements arrive. ! is a warning (it works, not for students),
    /// – a check that does not apply. Each probe gives up after 2 s. Exits 0
    /// only when every line is ✓ or –, 1 otherwise.
    Doctor {
        /// The Pi's config file (on the Pi): by default /etc/pinetd/pinetd.toml, else the embedded default.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["host", "lan"])]
        config: Option<PathBuf>,
        /// The Pi to check from this machine (a name or an address).
        #[arg(conflicts_with = "lan")]
        host: Option<String>,
        /// From this machine, check every pinetd that answers discovery on its networks.
        #[arg(long)]
        lan: bool,
    },
    /// Chat: lines from stdin to the hub, the hub's lines to stdout; bye leaves.
    ///
    /// Each line typed (or piped) goes to the hub; what the hub sends is
    /// printed as it arrives, while you type. bye or /quit leaves, and so
    /// does the end of stdin, once the hub has answered. The hub's commands
    /// work as typed: /nick NAME, /who, /msg NAME TEXT, /me ACTION, /help.
    Chat {
        /// Server name or address.
        host: String,
        /// The hub's TCP port (9999 on pinetd).
        port: u16,
        /// Your nickname (1-32 printable characters, no spaces).
        #[arg(long)]
        name: Option<String>,
    },
    /// Send JSON values from stdin to a JSON echo and print each reply.
    ///
    /// Values on stdin may be separated by whitespace or newlines, or simply
    /// concatenated; each reply is printed on its own line, as compact JSON.
    /// An error object from the server ends the command with its message.
    Json {
        /// Server name or address.
        host: String,
        /// The JSON echo's TCP port (9000 on pinetd).
        port: u16,
        /// Instead of stdin, send the course's demo object {"name": "jung", "count": i} N times.
        #[arg(long, value_name = "N")]
        count: Option<u32>,
    },
    /// Print the announcements heard on a port, one line each.
    ///
    /// Each line gives the sender's address, then for a pinetd announcement
    /// its host name, its services with their ports and its sequence number;
    /// any other datagram is printed as text, control characters escaped.
    /// Runs until interrupted, or until --count announcements.
    Listen {
        /// The UDP port to listen on: the port the announcers send to (37020 on pinetd).
        #[arg(long, default_value_t = 37020)]
        port: u16,
        /// Print the raw JSON lines (pinetd's announcements only), for scripts.
        #[arg(long)]
        json: bool,
        /// Exit after this many announcements.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Find the devices running pinetd: one probe, then a table of who answered.
    ///
    /// Sends one probe, collects the replies until --timeout, one row per
    /// daemon (a daemon heard twice is listed once): its host name, the
    /// address it answered from, its addresses, its services with their
    /// ports, and how long it took to answer.
    Discover {
        /// The UDP port of the discovery responders (37021 on pinetd).
        #[arg(long, default_value_t = 37021)]
        port: u16,
        /// How long to collect replies, like "3s".
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        timeout: Duration,
        /// Where the probe goes: by default the broadcast address of every
        /// network this machine is on (each interface that is up, IPv4 and
        /// broadcast-capable); 127.255.255.255 finds the daemons on this machine.
        #[arg(long, value_name = "ADDR")]
        to: Option<std::net::IpAddr>,
        /// Print each reply's JSON line instead of the table.
        #[arg(long)]
        json: bool,
        /// Exit 1 unless at least N devices answered.
        #[arg(long, value_name = "N")]
        require: Option<usize>,
    },
    /// Send one UDP datagram and print the reply and who sent it.
    ///
    /// The reply goes to stdout; who sent it and the round-trip time to
    /// stderr.
    Udp {
        /// Server name or address.
        host: String,
        /// The UDP echo's port (20001 on pinetd).
        port: u16,
        /// What to send.
        #[arg(default_value = crate::client::udp::COURSE_MESSAGE)]
        message: String,
        /// How long to wait for the reply, like "5s" or "500ms".
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write it like \"5s\" or \"500ms\")"))
}

/// The man pages and shell completions, generated from the definitions above
/// (never written by hand), into `dir`: `pinetd.1`, `pinetd-NAME.1` for each
/// subcommand, `pinetd.bash`, `_pinetd` and `pinetd.fish`.
pub fn generate_assets(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    std::fs::create_dir_all(dir)?;
    let mut command = Cli::command();
    for (name, page) in man::pages(command.clone())? {
        std::fs::write(dir.join(name), page)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, "pinetd", dir)?;
    }
    Ok(())
}
