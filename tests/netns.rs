//! A small LAN built of network namespaces: a bridge in a "switch" namespace
//! and hosts on veth pairs, all made by the test and removed when it ends
//! (even when it fails). The daemon runs in some hosts, the clients in
//! another. Needs root and `ip` (iproute2); skipped, saying so, without them.
//! No traffic leaves the namespaces.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Proc;
use common::netns::{Netns, ip_ok};
use pinetd::describe::Description;

const SUBNET: &str = "10.77.0";

/// A LAN of `hosts` namespaces, 10.77.0.1 … 10.77.0.N/24, behind one bridge.
struct Lan {
    switch: Netns,
    hosts: Vec<Netns>,
}

impl Lan {
    /// None (with a message) when this machine cannot build one.
    fn new(hosts: usize) -> Option<Lan> {
        let prefix = common::netns::prefix()?;
        let mut lan = Lan {
            switch: Netns::add(format!("{prefix}-sw")),
            hosts: Vec::new(),
        };
        let switch = &lan.switch.name;
        ip_ok(&["-n", switch, "link", "add", "br0", "type", "bridge"]);
        ip_ok(&["-n", switch, "link", "set", "br0", "up"]);
        for i in 0..hosts {
            let host = Netns::add(format!("{prefix}-h{}", i + 1));
            let port = format!("v{}", i + 1);
            ip_ok(&[
                "link", "add", "eth0", "netns", &host.name, "type", "veth", "peer", "name", &port,
                "netns", switch,
            ]);
            ip_ok(&["-n", switch, "link", "set", &port, "master", "br0", "up"]);
            lan.hosts.push(host);
            lan.address(i, &format!("{SUBNET}.{}/24", i + 1));
            ip_ok(&["-n", &lan.hosts[i].name, "link", "set", "eth0", "up"]);
        }
        Some(lan)
    }

    fn address(&self, host: usize, cidr: &str) {
        ip_ok(&[
            "-n",
            &self.hosts[host].name,
            "addr",
            "add",
            cidr,
            "brd",
            "+",
            "dev",
            "eth0",
        ]);
    }

    /// `program args` run inside host `i`.
    fn exec(&self, host: usize, program: &str, args: &[&str]) -> Command {
        self.hosts[host].exec(program, args)
    }

    /// The daemon in host `i` with `config`, once it has started.
    fn daemon(&self, host: usize, config: &str) -> Proc {
        self.hosts[host].daemon(config)
    }
}

/// The LAN services only; the announcer to the LAN's broadcast address.
fn lan_config(interval: &str) -> String {
    format!(
        "[chat]\nenabled = false\n[json_echo]\nenabled = false\n[udp_echo]\nenabled = false\n\
         [announcer]\nto = [\"{SUBNET}.255:37020\"]\ninterval = \"{interval}\"\n\
         [discovery]\nlisten = \"0.0.0.0:37021\"\nallow = []\nmax_delay = \"50ms\"\n"
    )
}

fn run(mut command: Command) -> (Option<i32>, String, String) {
    let out = command.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn discover_and_listen_find_both_daemons_with_their_real_addresses() {
    let Some(lan) = Lan::new(3) else { return };
    let mut daemons = [
        lan.daemon(0, &lan_config("200ms")),
        lan.daemon(1, &lan_config("200ms")),
    ];

    let broadcast = format!("{SUBNET}.255");
    let discover = lan.exec(
        2,
        env!("CARGO_BIN_EXE_pinetd"),
        &[
            "discover",
            "--to",
            &broadcast,
            "--timeout",
            "1s",
            "--json",
            "--require",
            "2",
        ],
    );
    let (code, stdout, stderr) = run(discover);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let mut found: Vec<String> = stdout
        .lines()
        .map(|line| {
            let description = Description::parse(line.as_bytes()).expect("a description");
            assert_eq!(description.services.get("discovery"), Some(&37021));
            assert_eq!(description.addrs.len(), 1, "{line}");
            description.addrs[0].to_string()
        })
        .collect();
    found.sort();
    assert_eq!(found, [format!("{SUBNET}.1"), format!("{SUBNET}.2")]);

    let listen = lan.exec(
        2,
        "timeout",
        &["10", env!("CARGO_BIN_EXE_pinetd"), "listen", "--count", "6"],
    );
    let (code, stdout, _) = run(listen);
    assert_eq!(code, Some(0), "listen heard six announcements in time");
    for host in [1, 2] {
        let from = format!("{SUBNET}.{host}:");
        assert!(
            stdout.lines().any(|l| l.starts_with(&from)),
            "nothing from .{host}: {stdout}"
        );
    }
    for daemon in &mut daemons {
        daemon.signal("TERM");
        assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
    }
}

/// Sends one probe from `source` to `to` inside host 2; the replies within a second.
fn probe_from(lan: &Lan, source: &str, to: &str) -> usize {
    let script = "import socket, sys\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.bind((sys.argv[1], 0))\n\
        s.settimeout(1.0)\n\
        s.sendto(b'who is there?', (sys.argv[2], 37021))\n\
        n = 0\n\
        try:\n\
        \x20   while True:\n\
        \x20       s.recvfrom(65536)\n\
        \x20       n += 1\n\
        except socket.timeout:\n\
        \x20   pass\n\
        print(n)\n";
    python(lan, 2, script, &[source, to])
        .trim()
        .parse()
        .unwrap()
}

/// Runs a Python `script` with `args` inside host `i`; its standard output.
fn python(lan: &Lan, host: usize, script: &str, args: &[&str]) -> String {
    let mut child = lan
        .exec(host, "python3", &[&["-"], args].concat())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_probe_from_off_every_local_subnet_gets_no_answer() {
    if Command::new("python3").arg("--version").output().is_err() {
        common::skip(format_args!("python3 is not installed"));
        return;
    }
    let Some(lan) = Lan::new(3) else { return };
    let mut daemon = lan.daemon(0, &lan_config("1s"));
    // Host 3 also holds an address of another subnet; the daemon's host could
    // even route a reply there (through host 3), so only its own rule stops it.
    lan.address(2, "10.88.0.3/24");
    ip_ok(&[
        "-n",
        &lan.hosts[0].name,
        "route",
        "add",
        "default",
        "via",
        &format!("{SUBNET}.3"),
    ]);
    let target = format!("{SUBNET}.1");
    assert_eq!(
        probe_from(&lan, &format!("{SUBNET}.3"), &target),
        1,
        "an on-link probe is answered"
    );
    assert_eq!(
        probe_from(&lan, "10.88.0.3", &target),
        0,
        "an off-link probe is not"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
}

#[test]
fn announcing_with_the_network_down_is_retried_not_fatal() {
    let Some(lan) = Lan::new(2) else { return };
    // Host 1 boots with no address, as a Pi whose Wi-Fi is not up yet.
    ip_ok(&["-n", &lan.hosts[0].name, "addr", "flush", "dev", "eth0"]);
    let mut daemon = lan.daemon(0, &lan_config("100ms"));
    daemon.wait_for("cannot announce");
    lan.address(0, &format!("{SUBNET}.1/24"));
    daemon.wait_for("announcing again");
    let listen = lan.exec(
        1,
        "timeout",
        &["10", env!("CARGO_BIN_EXE_pinetd"), "listen", "--count", "2"],
    );
    let (code, stdout, _) = run(listen);
    assert_eq!(code, Some(0), "announcements arrive once the network is up");
    assert!(
        stdout
            .lines()
            .all(|l| l.starts_with(&format!("{SUBNET}.1:"))),
        "{stdout}"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
    let warnings = daemon
        .log
        .iter()
        .filter(|l| l.contains("cannot announce"))
        .count();
    assert_eq!(
        warnings, 1,
        "logged once, not every tick: {:#?}",
        daemon.log
    );
}

/// A burst sent with UDP GSO across the bridge (MTU 1500) comes back as the
/// same datagrams to a plain client, and coalesced to a client taking GRO.
#[test]
fn udp_echo_answers_a_gso_burst_across_the_lan() {
    if Command::new("python3").arg("--version").output().is_err() {
        common::skip(format_args!("python3 is not installed"));
        return;
    }
    let Some(lan) = Lan::new(2) else { return };
    let mut daemon = lan.daemon(
        0,
        "[chat]\nenabled = false\n[json_echo]\nenabled = false\n[announcer]\nenabled = false\n\
         [discovery]\nenabled = false\n[udp_echo]\nlisten = \"0.0.0.0:20001\"\nallow = []\n",
    );
    // Prints, for a plain and a GRO client: datagrams back intact, receive calls.
    let script = "import socket, struct, sys\n\
        UDP_SEGMENT, UDP_GRO = 103, 104\n\
        sent = [bytes([i]) * 1000 for i in range(10)]\n\
        for gro in (0, 1):\n\
        \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        \x20   s.setsockopt(socket.IPPROTO_UDP, UDP_GRO, gro)\n\
        \x20   s.settimeout(2.0)\n\
        \x20   s.sendmsg([b''.join(sent)], [(socket.IPPROTO_UDP, UDP_SEGMENT, struct.pack('H', 1000))], 0, (sys.argv[1], 20001))\n\
        \x20   got, calls = [], 0\n\
        \x20   while len(got) < 10:\n\
        \x20       data, cmsgs, _, _ = s.recvmsg(65536, 64)\n\
        \x20       calls += 1\n\
        \x20       size = next((struct.unpack('i', d)[0] for l, t, d in cmsgs if t == UDP_GRO), len(data))\n\
        \x20       got += [data[i:i + size] for i in range(0, len(data), size)]\n\
        \x20   print(sum(g == w for g, w in zip(got, sent)), calls)\n";
    let out = python(&lan, 1, script, &[&format!("{SUBNET}.1")]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[0], "10 10",
        "plain client: ten datagrams, ten receives"
    );
    let (intact, calls) = lines[1].split_once(' ').unwrap();
    assert_eq!(intact, "10", "GRO client: {out}");
    assert!(
        calls.parse::<u32>().unwrap() < 10,
        "replies coalesced: {out}"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), Some(0));
}

/// The Pi's interfaces, one per LAN, in the order the LANs are made.
const PI_INTERFACES: [&str; 3] = ["eth0", "wlan0", "eth1"];

/// A Pi on several LANs with a student on each: LAN k is a bridge in its
/// own namespace, 10.(81+k).0.0/24, the Pi at .1 (on its interface
/// `PI_INTERFACES[k]`; eth0 holds the default route) and the student at .2.
struct Classroom {
    prefix: String,
    pi: Netns,
    switches: Vec<Netns>,
    students: Vec<Netns>,
}

impl Classroom {
    fn new(lans: usize) -> Option<Classroom> {
        let prefix = common::netns::prefix()?;
        let mut room = Classroom {
            pi: Netns::add(format!("{prefix}-pi")),
            prefix,
            switches: Vec::new(),
            students: Vec::new(),
        };
        for _ in 0..lans {
            room.add_lan();
        }
        let gateway = format!("{}.254", Classroom::subnet(0));
        ip_ok(&[
            "-n",
            &room.pi.name,
            "route",
            "add",
            "default",
            "via",
            &gateway,
            "dev",
            "eth0",
            "onlink",
        ]);
        Some(room)
    }

    fn subnet(lan: usize) -> String {
        format!("10.{}.0", 81 + lan)
    }

    /// One more LAN: its switch, its student, and the Pi's next interface on it.
    fn add_lan(&mut self) {
        let k = self.switches.len();
        let switch = Netns::add(format!("{}-sw{k}", self.prefix));
        let student = Netns::add(format!("{}-st{k}", self.prefix));
        let sw = &switch.name;
        ip_ok(&["-n", sw, "link", "add", "br0", "type", "bridge"]);
        ip_ok(&["-n", sw, "link", "set", "br0", "up"]);
        let subnet = Classroom::subnet(k);
        for (ns, interface, port, host) in [
            (&student.name, "eth0", "s", 2),
            (&self.pi.name, PI_INTERFACES[k], "p", 1),
        ] {
            ip_ok(&[
                "link", "add", interface, "netns", ns, "type", "veth", "peer", "name", port,
                "netns", sw,
            ]);
            ip_ok(&["-n", sw, "link", "set", port, "master", "br0", "up"]);
            let cidr = format!("{subnet}.{host}/24");
            ip_ok(&["-n", ns, "addr", "add", &cidr, "brd", "+", "dev", interface]);
            ip_ok(&["-n", ns, "link", "set", interface, "up"]);
        }
        self.switches.push(switch);
        self.students.push(student);
    }

    /// `pinetd ARGS` run by student `k`.
    fn student(&self, k: usize, args: &[&str]) -> Command {
        self.students[k].exec(env!("CARGO_BIN_EXE_pinetd"), args)
    }

    /// `pinetd listen --count N` run by student `k`: the lines it printed.
    fn hears(&self, k: usize, count: usize) -> Vec<String> {
        let count = count.to_string();
        let mut listen = self.students[k].exec(
            "timeout",
            &[
                "20",
                env!("CARGO_BIN_EXE_pinetd"),
                "listen",
                "--count",
                &count,
            ],
        );
        let out = listen.output().unwrap();
        assert!(
            out.status.success(),
            "student {k} heard {count} announcements"
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The production file's announcer and discovery, every 200 ms.
fn classroom_config(interfaces: &str) -> String {
    format!(
        "[chat]\nenabled = false\n[json_echo]\nenabled = false\n[udp_echo]\nenabled = false\n\
         [announcer]\nto = [\"255.255.255.255:37020\"]\ninterval = \"200ms\"\ninterfaces = {interfaces}\n\
         [discovery]\nlisten = \"0.0.0.0:37021\"\nallow = []\nmax_delay = \"50ms\"\n"
    )
}

#[test]
fn each_student_hears_the_pi_from_its_address_on_their_lan_and_discovers_it() {
    let Some(room) = Classroom::new(2) else {
        return;
    };
    let mut pi = room.pi.daemon(&classroom_config("[]"));
    for k in 0..2 {
        let from = format!("{}.1:", Classroom::subnet(k));
        let heard = room.hears(k, 2);
        assert!(
            heard.iter().all(|l| l.starts_with(&from)),
            "student {k}: {heard:#?}"
        );

        let (code, stdout, stderr) = run(room.student(
            k,
            &["discover", "--timeout", "1s", "--json", "--require", "1"],
        ));
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        let description = Description::parse(stdout.trim().as_bytes()).expect("one reply");
        let mut addrs: Vec<String> = description.addrs.iter().map(|a| a.to_string()).collect();
        addrs.sort();
        assert_eq!(addrs, ["10.81.0.1", "10.82.0.1"], "every address of the Pi");

        let (code, table, _) = run(room.student(k, &["discover", "--timeout", "1s"]));
        assert_eq!(code, Some(0));
        let row = table.lines().nth(1).unwrap_or_default().to_owned();
        let from_ip = format!(" {}.1 ", Classroom::subnet(k));
        assert!(
            row.contains(&from_ip),
            "FROM is the Pi's address on this LAN: {table}"
        );
    }
    pi.signal("TERM");
    assert_eq!(pi.exit_code(Duration::from_secs(10)), Some(0));
    for interface in ["eth0", "wlan0"] {
        assert!(
            pi.log
                .iter()
                .any(|l| l.contains("announcing on interface") && l.contains(interface)),
            "{:#?}",
            pi.log
        );
    }
}

#[test]
fn a_lan_that_comes_up_is_announced_on_and_one_that_goes_is_logged_once() {
    let Some(mut room) = Classroom::new(2) else {
        return;
    };
    let mut pi = room.pi.daemon(&classroom_config("[]"));
    pi.wait_for("interface=wlan0");
    // A hotspot that starts while the daemon runs.
    room.add_lan();
    pi.wait_for("interface=eth1");
    let heard = room.hears(2, 2);
    assert!(
        heard.iter().all(|l| l.starts_with("10.83.0.1:")),
        "{heard:#?}"
    );

    ip_ok(&["-n", &room.pi.name, "link", "del", "eth1"]);
    pi.wait_for("no longer announcing on it");
    // Ten more ticks on the other LANs, with eth1 gone.
    room.hears(0, 10);
    pi.signal("TERM");
    assert_eq!(pi.exit_code(Duration::from_secs(10)), Some(0));
    let about_eth1: Vec<&String> = pi
        .log
        .iter()
        .filter(|l| l.contains("eth1") && !l.contains("announcing on interface"))
        .collect();
    assert_eq!(about_eth1.len(), 1, "gone is said once: {:#?}", pi.log);
    assert!(
        !pi.log.iter().any(|l| l.contains("cannot announce")),
        "{:#?}",
        pi.log
    );
}

#[test]
fn interfaces_restrict_the_announcer_to_the_lans_named() {
    let Some(room) = Classroom::new(2) else {
        return;
    };
    let mut pi = room.pi.daemon(&classroom_config("[\"eth0\", \"wlan9\"]"));
    let warning = pi.wait_for("no such interface");
    assert!(
        warning.contains("wlan9") && warning.contains("WARN"),
        "{warning}"
    );
    let mut wireless = Proc::spawn(room.student(1, &["listen", "--count", "1"]));
    wireless.wait_for("listening for announcements");
    let heard = room.hears(0, 5);
    assert!(
        heard.iter().all(|l| l.starts_with("10.81.0.1:")),
        "{heard:#?}"
    );
    assert!(
        wireless.child.try_wait().unwrap().is_none(),
        "the student on wlan0 heard an announcement"
    );
    pi.signal("TERM");
    assert_eq!(pi.exit_code(Duration::from_secs(10)), Some(0));
}
