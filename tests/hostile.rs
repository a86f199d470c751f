//! Hostile inputs, each with SIGTERM arriving in the middle of it: a chat
//! client sending 100,000 lines without reading, 10,000 connections in one
//! burst, 10 MB of whitespace to JSON echo, a datagram storm from spoofed
//! source ports 0 to 1023 (as root, in a network namespace), and a storm of
//! SIGHUPs. Well-behaved clients talk in lock-step all along (two chat clients
//! whose lines are relayed once and in order, a JSON echo client, a UDP echo
//! client, a discovery prober); each must get everything it should, then the
//! documented goodbye, and the real binary must exit 0 within the grace time.
//!
//! The well-behaved clients finish their exchange in flight before SIGTERM is
//! sent (the hostile input goes on), so "everything said before SIGTERM was
//! answered" is exact, not a race.

mod common;

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::netns::Netns;
use common::{HANG, Proc, temp_dir, try_connect_from, write_config};

/// `[daemon] shutdown_grace` of every daemon here.
const GRACE: Duration = Duration::from_secs(2);
/// How long past the grace an exit may take on a loaded machine.
const EXIT_MARGIN: Duration = Duration::from_secs(8);
/// A UDP request without an answer this long is sent again: a storm may
/// fill the socket's buffer, and the kernel then drops datagrams.
const UDP_RETRY: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------- the daemon

/// Keys added to each table (each ending in a newline); discovery is
/// disabled unless given, the announcer always.
#[derive(Default, Clone, Copy)]
struct Tables<'a> {
    chat: &'a str,
    json_echo: &'a str,
    udp_echo: &'a str,
    discovery: Option<&'a str>,
}

/// Every service on 127.0.0.1:0, the grace at [`GRACE`].
fn config_text(tables: Tables<'_>) -> String {
    let discovery = match tables.discovery {
        Some(keys) => format!("listen = \"127.0.0.1:0\"\n{keys}"),
        None => "enabled = false\n".to_owned(),
    };
    format!(
        "[daemon]\nshutdown_grace = \"{}s\"\n\
         [chat]\nlisten = \"127.0.0.1:0\"\n{}\
         [json_echo]\nlisten = \"127.0.0.1:0\"\n{}\
         [udp_echo]\nlisten = \"127.0.0.1:0\"\n{}\
         [announcer]\nenabled = false\n\
         [discovery]\n{discovery}",
        GRACE.as_secs(),
        tables.chat,
        tables.json_echo,
        tables.udp_echo,
    )
}

/// Where the daemon's services listen.
#[derive(Clone, Copy)]
struct Addrs {
    chat: SocketAddr,
    json: SocketAddr,
    udp: SocketAddr,
    discovery: Option<SocketAddr>,
}

impl Addrs {
    fn read(daemon: &mut Proc, discovery: bool) -> Addrs {
        let mut services = vec!["chat", "json_echo", "udp_echo"];
        if discovery {
            services.push("discovery");
        }
        let addrs = daemon.addrs(&services);
        Addrs {
            chat: addrs["chat"],
            json: addrs["json_echo"],
            udp: addrs["udp_echo"],
            discovery: addrs.get("discovery").copied(),
        }
    }
}

/// The real binary on a config file written for the test named `name`.
fn daemon(name: &str, tables: Tables<'_>) -> (Proc, Addrs) {
    let path = write_config(&temp_dir(name), &config_text(tables));
    let mut daemon = Proc::start(&["--config", path.to_str().unwrap()]);
    let addrs = Addrs::read(&mut daemon, tables.discovery.is_some());
    (daemon, addrs)
}

/// SIGTERM has been sent: the daemon exits 0 within the grace (and a
/// margin for a loaded machine), with no panic and no error in its log.
fn exits_cleanly(daemon: &mut Proc) {
    let code = daemon.exit_code(GRACE + EXIT_MARGIN);
    let log = daemon.log.join("\n");
    assert_eq!(code, Some(0), "exit code; log:\n{log}");
    assert!(
        daemon.log.iter().any(|l| l.contains("shutting down")),
        "{log}"
    );
    assert!(
        !daemon
            .log
            .iter()
            .any(|l| l.contains("panic") || l.contains(" ERROR ")),
        "{log}"
    );
}

/// The daemon's peak resident memory so far, in KiB.
fn peak_memory_kib(daemon: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

// ------------------------------------------------------- well-behaved clients

/// What a chat client's reader thread hears.
enum Heard {
    Line(String),
    Closed(io::Result<()>),
}

/// What a chat client heard that the test acts on (flood lines and plain
/// notices are checked and passed over).
enum Event {
    /// `[name] TAG-INDEX` from a well-behaved client.
    Relayed(String, usize),
    Goodbye,
    Closed(io::Result<()>),
}

/// A chat client that reads all the time (a thread per client), so the hub
/// never sees it lag.
struct ChatClient {
    who: &'static str,
    stream: TcpStream,
    heard: mpsc::Receiver<Heard>,
    /// `flood-N` lines heard: each must be the next, none lost or twice.
    floods: Arc<AtomicUsize>,
}

impl ChatClient {
    fn connect(who: &'static str, addr: SocketAddr) -> ChatClient {
        let stream = TcpStream::connect(addr).unwrap();
        let reader = stream.try_clone().unwrap();
        let (tx, heard) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            loop {
                let mut line = Vec::new();
                let heard = match reader.read_until(b'\n', &mut line) {
                    Ok(0) => Heard::Closed(Ok(())),
                    Ok(_) => Heard::Line(String::from_utf8_lossy(&line).into_owned()),
                    Err(e) => Heard::Closed(Err(e)),
                };
                let closed = matches!(heard, Heard::Closed(_));
                if tx.send(heard).is_err() || closed {
                    return;
                }
            }
        });
        let client = ChatClient {
            who,
            stream,
            heard,
            floods: Arc::default(),
        };
        let welcome = client.recv();
        assert!(
            matches!(&welcome, Heard::Line(l) if l.starts_with("*** welcome")),
            "{who}: no welcome"
        );
        client
    }

    fn recv(&self) -> Heard {
        self.heard
            .recv_timeout(HANG)
            .unwrap_or_else(|_| panic!("{}: heard nothing for {HANG:?}", self.who))
    }

    fn say(&mut self, text: &str) {
        self.stream
            .write_all(format!("{text}\n").as_bytes())
            .unwrap_or_else(|e| panic!("{}: cannot send {text:?}: {e}", self.who));
    }

    /// The next line worth acting on; flood lines must come in order.
    fn next(&mut self) -> Event {
        loop {
            let line = match self.recv() {
                Heard::Closed(result) => return Event::Closed(result),
                Heard::Line(line) => line,
            };
            if line == "*** server shutting down\n" {
                return Event::Goodbye;
            }
            if line.starts_with("*** ") && line.ends_with('\n') {
                assert!(!line.contains("skipped"), "{}: {line:?}", self.who);
                continue;
            }
            let Some((tag, index)) = relayed(&line) else {
                panic!("{}: a garbled line: {line:?}", self.who);
            };
            if tag == "flood" {
                let expected = self.floods.load(SeqCst);
                assert_eq!(index, expected, "{}: flood line lost or twice", self.who);
                self.floods.store(expected + 1, SeqCst);
                continue;
            }
            return Event::Relayed(tag.to_owned(), index);
        }
    }

    /// Waits for `TAG-INDEX` from the other client: the next of its lines.
    fn hear(&mut self, tag: &str, index: usize) {
        let who = self.who;
        match self.next() {
            Event::Relayed(t, i) => assert!(
                t == tag && i == index,
                "{who}: waiting for {tag}-{index}, heard {t}-{i}"
            ),
            Event::Goodbye => panic!("{who}: told of a shutdown before SIGTERM"),
            Event::Closed(end) => panic!("{who}: closed waiting for {tag}-{index}: {end:?}"),
        }
    }

    /// After SIGTERM: the goodbye, then the end of the stream, nothing between.
    fn goodbye(mut self) {
        let who = self.who;
        match self.next() {
            Event::Goodbye => {}
            Event::Relayed(t, i) => panic!("{who}: {t}-{i} relayed after its exchange"),
            Event::Closed(end) => panic!("{who}: closed with no goodbye: {end:?}"),
        }
        match self.recv() {
            Heard::Closed(Ok(())) => {}
            Heard::Closed(Err(e)) => panic!("{who}: after the goodbye, {e}"),
            Heard::Line(line) => panic!("{who}: after the goodbye, {line:?}"),
        }
    }
}

/// `[name] TAG-INDEX\n`: the tag and index.
fn relayed(line: &str) -> Option<(&str, usize)> {
    let (_, text) = line.strip_prefix('[')?.split_once("] ")?;
    let (tag, index) = text.strip_suffix('\n')?.rsplit_once('-')?;
    Some((tag, index.parse().ok()?))
}

/// The course's JSON client: one value per send, no newline, one reply line.
struct JsonClient {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl JsonClient {
    fn connect(addr: SocketAddr) -> JsonClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(HANG)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        JsonClient { stream, reader }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        if let Err(e) = self.reader.read_line(&mut line) {
            panic!("json client: {e} (after {line:?})");
        }
        line
    }

    /// Sends `value`; its reply must be `compact`.
    fn echo(&mut self, value: &str, compact: &str) {
        self.send(value.as_bytes());
        assert_eq!(self.line(), format!("{compact}\n"), "the echo of {value}");
    }

    /// After SIGTERM: the error object, then the end of the stream.
    fn goodbye(mut self) {
        assert_eq!(self.line(), "{\"error\":\"server shutting down\"}\n");
        assert_eq!(self.line(), "", "closed after the error object");
    }
}

/// Sends `msg` to `to` until a reply that `wanted` takes comes back (again
/// after each [`UDP_RETRY`] without one); replies `stale` takes (to an
/// earlier request sent twice) are passed over. The number of resends.
fn udp_exchange(
    socket: &UdpSocket,
    to: SocketAddr,
    msg: &[u8],
    wanted: impl Fn(&[u8]) -> bool,
    stale: impl Fn(&[u8]) -> bool,
) -> usize {
    let deadline = Instant::now() + HANG;
    let mut buf = vec![0u8; 65_536];
    let mut resends = 0;
    socket.send_to(msg, to).unwrap();
    loop {
        assert!(Instant::now() < deadline, "no reply from {to} to {msg:?}");
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, to, "a reply from elsewhere");
                if wanted(&buf[..n]) {
                    return resends;
                }
                assert!(stale(&buf[..n]), "a wrong reply: {:?}", &buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                resends += 1;
                socket.send_to(msg, to).unwrap();
            }
            Err(e) => panic!("udp client: {e}"),
        }
    }
}

/// What a well-behaved client leaves when paused: what says goodbye.
enum Ending {
    Chat(ChatClient, ChatClient),
    Json(JsonClient),
    /// UDP: there is no goodbye.
    Quiet,
}

impl Ending {
    fn goodbye(self) {
        match self {
            Ending::Chat(a, b) => {
                a.goodbye();
                b.goodbye();
            }
            Ending::Json(client) => client.goodbye(),
            Ending::Quiet => {}
        }
    }
}

struct Talker {
    what: &'static str,
    /// Exchanges completed, each checked.
    done: Arc<AtomicUsize>,
    /// Exchanges to wait for at a checkpoint.
    step: usize,
    thread: Option<JoinHandle<Ending>>,
}

impl Talker {
    /// Its thread ended before it was paused: its panic, or a failure.
    fn check_alive(&mut self) {
        let finished = self.thread.as_ref().is_some_and(|t| t.is_finished());
        if finished {
            let thread = self.thread.take().unwrap();
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
            panic!("{} stopped before it was paused", self.what);
        }
    }
}

/// The well-behaved clients, each in its own thread, talking in lock-step
/// (one exchange at a time, each checked) until paused.
struct Talkers {
    pause: Arc<AtomicBool>,
    talkers: Vec<Talker>,
    /// Flood lines heard by the two chat clients.
    floods: [Arc<AtomicUsize>; 2],
}

impl Talkers {
    /// Two chat clients, a JSON client, a UDP echo client and, if the
    /// daemon runs discovery, a prober; their sockets made in this thread
    /// (and so in its network namespace).
    fn start(addrs: Addrs) -> Talkers {
        let a = ChatClient::connect("chat client a", addrs.chat);
        let b = ChatClient::connect("chat client b", addrs.chat);
        let mut talkers = Talkers {
            pause: Arc::default(),
            talkers: Vec::new(),
            floods: [a.floods.clone(), b.floods.clone()],
        };
        talkers.spawn("chat clients", 20, move |pause, done| {
            chat_pair(a, b, pause, done)
        });
        let json = JsonClient::connect(addrs.json);
        talkers.spawn("json client", 50, move |pause, done| {
            json_talk(json, pause, done)
        });
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        talkers.spawn("udp client", 50, move |pause, done| {
            udp_talk(udp, addrs.udp, pause, done)
        });
        if let Some(discovery) = addrs.discovery {
            let prober = UdpSocket::bind("127.0.0.1:0").unwrap();
            talkers.spawn("discovery prober", 3, move |pause, done| {
                probe(prober, discovery, pause, done)
            });
        }
        talkers
    }

    fn spawn(
        &mut self,
        what: &'static str,
        step: usize,
        talk: impl FnOnce(&AtomicBool, &AtomicUsize) -> Ending + Send + 'static,
    ) {
        let (pause, done) = (self.pause.clone(), Arc::<AtomicUsize>::default());
        let counted = done.clone();
        let thread = thread::spawn(move || talk(&pause, &counted));
        self.talkers.push(Talker {
            what,
            done,
            step,
            thread: Some(thread),
        });
    }

    /// Polls `done` until it holds (a hang after [`HANG`]), failing at once
    /// if a client's check failed meanwhile.
    fn wait_until(&mut self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + HANG;
        while !done() {
            for talker in &mut self.talkers {
                talker.check_alive();
            }
            assert!(Instant::now() < deadline, "still waiting for {what}");
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until every client has completed its step of exchanges more.
    fn progress(&mut self) {
        let targets: Vec<usize> = self
            .talkers
            .iter()
            .map(|t| t.done.load(SeqCst) + t.step)
            .collect();
        for (i, target) in targets.into_iter().enumerate() {
            let talker = &self.talkers[i];
            let what = format!(
                "the {} to complete {} exchanges more",
                talker.what, talker.step
            );
            let done = talker.done.clone();
            self.wait_until(&what, || done.load(SeqCst) >= target);
        }
    }

    /// Stops every client after its exchange in flight (checked); what each
    /// leaves to say goodbye.
    fn pause(mut self) -> Vec<Ending> {
        self.pause.store(true, SeqCst);
        self.talkers
            .iter_mut()
            .map(|talker| {
                let thread = talker.thread.take().expect("not paused twice");
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    }
}

/// Every well-behaved client gets its goodbye (chat, JSON) after SIGTERM.
fn goodbyes(endings: Vec<Ending>) {
    for ending in endings {
        ending.goodbye();
    }
}

/// A says `a-I`, B must hear it next; B says `b-I`, A must hear it next.
fn chat_pair(
    mut a: ChatClient,
    mut b: ChatClient,
    pause: &AtomicBool,
    done: &AtomicUsize,
) -> Ending {
    for i in 0.. {
        if pause.load(SeqCst) {
            break;
        }
        a.say(&format!("a-{i}"));
        b.hear("a", i);
        b.say(&format!("b-{i}"));
        a.hear("b", i);
        done.fetch_add(1, SeqCst);
    }
    Ending::Chat(a, b)
}

fn json_talk(mut client: JsonClient, pause: &AtomicBool, done: &AtomicUsize) -> Ending {
    for i in 0.. {
        if pause.load(SeqCst) {
            break;
        }
        client.echo(
            &format!("{{\"name\": \"jung\", \"count\": {i}}}"),
            &format!("{{\"name\":\"jung\",\"count\":{i}}}"),
        );
        done.fetch_add(1, SeqCst);
    }
    Ending::Json(client)
}

/// `u-I`, echoed; paced under udp_echo's default rate limit (1000/s).
fn udp_talk(socket: UdpSocket, to: SocketAddr, pause: &AtomicBool, done: &AtomicUsize) -> Ending {
    socket.set_read_timeout(Some(UDP_RETRY)).unwrap();
    let mut resends = 0;
    for i in 0.. {
        if pause.load(SeqCst) {
            break;
        }
        let msg = format!("u-{i}");
        let earlier = |reply: &[u8]| {
            std::str::from_utf8(reply)
                .ok()
                .and_then(|r| r.strip_prefix("u-")?.parse::<usize>().ok())
                .is_some_and(|j| j < i)
        };
        resends += udp_exchange(
            &socket,
            to,
            msg.as_bytes(),
            |r| r == msg.as_bytes(),
            earlier,
        );
        done.fetch_add(1, SeqCst);
        thread::sleep(Duration::from_millis(1));
    }
    if resends > 0 {
        eprintln!("udp echo client: {resends} request(s) sent again");
    }
    Ending::Quiet
}

/// A discovery probe and its reply, paced under discovery's default rate
/// limit (10/s per source).
fn probe(socket: UdpSocket, to: SocketAddr, pause: &AtomicBool, done: &AtomicUsize) -> Ending {
    socket.set_read_timeout(Some(UDP_RETRY)).unwrap();
    while !pause.load(SeqCst) {
        udp_exchange(&socket, to, b"who is there?", |r| !r.is_empty(), |_| false);
        done.fetch_add(1, SeqCst);
        thread::sleep(Duration::from_millis(110));
    }
    Ending::Quiet
}

// ---------------------------------------------- a chat client flooding lines

const FLOOD_LINES: usize = 100_000;

/// A chat client that sends `flood-0` … `flood-99999` and reads nothing,
/// waiting at `halfway` (if given) after half of them; what its sends came to.
fn flooder(addr: SocketAddr, halfway: Option<Checkpoint>) -> JoinHandle<io::Result<()>> {
    let mut stream = TcpStream::connect(addr).unwrap();
    thread::spawn(move || {
        let lines = |range: std::ops::Range<usize>| -> String {
            range.map(|i| format!("flood-{i}\n")).collect()
        };
        let half = FLOOD_LINES / 2;
        stream.write_all(lines(0..half).as_bytes())?;
        if let Some(halfway) = halfway {
            halfway.arrive_and_wait();
        }
        stream.write_all(lines(half..FLOOD_LINES).as_bytes())
    })
}

/// Flood lines the two chat clients heard.
fn heard(floods: &[Arc<AtomicUsize>; 2]) -> [usize; 2] {
    [floods[0].load(SeqCst), floods[1].load(SeqCst)]
}

/// Sets its flag when dropped: a thread of hostile input waiting for it or
/// looping on it ends even when the test fails first.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// With the default settings the flooder is read 100 lines a second (TCP
/// pushes back on it, nothing is cut): SIGTERM finds most of its lines unsent.
#[test]
fn a_chat_client_sending_100000_lines_without_reading_is_slowed_and_harms_nobody() {
    let (mut daemon, addrs) = daemon("hostile-flood", Tables::default());
    let mut talkers = Talkers::start(addrs);
    let flood = flooder(addrs.chat, None);
    let floods = talkers.floods.clone();
    // Past its first second's allowance (100 lines): read at the rate limit now.
    talkers.wait_until("flood lines", || {
        floods.iter().all(|heard| heard.load(SeqCst) >= 150)
    });
    talkers.progress();
    let endings = talkers.pause();
    daemon.signal("TERM");
    goodbyes(endings);
    exits_cleanly(&mut daemon);
    let heard = heard(&floods);
    assert!(
        heard.iter().all(|&n| n < FLOOD_LINES),
        "SIGTERM came in the middle of the flood: {heard:?}"
    );
    // Its sends fail once the daemon is gone (or all sat in its kernel buffer).
    let _ = flood.join().unwrap();
}

/// Without a rate limit the hub reads the flood as fast as it comes, and
/// both readers get every line, in order, none skipped; SIGTERM arrives
/// while the second half is on its way.
#[test]
fn a_chat_flood_without_a_rate_limit_reaches_everyone_whole() {
    let tables = Tables {
        chat: "rate_limit = 0\n",
        ..Tables::default()
    };
    let (mut daemon, addrs) = daemon("hostile-flood-unlimited", tables);
    let mut talkers = Talkers::start(addrs);
    let halfway = Checkpoint::default();
    let _guard = halfway.guard();
    let flood = flooder(addrs.chat, Some(halfway.clone()));
    let floods = talkers.floods.clone();
    talkers.wait_until("the first half of the flood", || {
        floods
            .iter()
            .all(|heard| heard.load(SeqCst) >= FLOOD_LINES / 2)
    });
    talkers.progress();
    let endings = talkers.pause();
    halfway.open();
    daemon.signal("TERM");
    goodbyes(endings);
    exits_cleanly(&mut daemon);
    eprintln!(
        "flood lines heard before the goodbye: {:?} of {FLOOD_LINES}",
        heard(&floods)
    );
    let _ = flood.join().unwrap();
}

// ------------------------------------------------- 10,000 connections at once

const BURST: usize = 10_000;
const BURST_THREADS: usize = 4;

/// Where the threads of a hostile input wait for the test.
#[derive(Clone, Default)]
struct Checkpoint {
    arrived: Arc<AtomicUsize>,
    go: Arc<AtomicBool>,
}

impl Checkpoint {
    fn arrive_and_wait(&self) {
        self.arrived.fetch_add(1, SeqCst);
        while !self.go.load(SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn reached_by(&self, threads: usize) -> bool {
        self.arrived.load(SeqCst) >= threads
    }

    /// Lets the threads go on, and so does dropping the guard (a failed test).
    fn guard(&self) -> SetOnDrop {
        SetOnDrop(self.go.clone())
    }

    fn open(&self) {
        self.go.store(true, SeqCst);
    }
}

/// Connections opened by one thread of the burst, and those that failed
/// before and after its last checkpoint.
#[derive(Default)]
struct Opened {
    opened: usize,
    failed_before: usize,
    failed_after: usize,
}

/// Thread `t` of the burst: its share of connections, each from an address
/// of its own (127.2T.X.Y: max_per_source never refuses them), alternately
/// to chat and JSON echo. The first half are opened and kept, and at
/// `closing` all closed at once; the second half are opened and kept, with
/// `last` a quarter before the end, and closed when the thread ends.
fn burst_thread(
    t: usize,
    targets: [SocketAddr; 2],
    closing: Checkpoint,
    last: Checkpoint,
) -> JoinHandle<Opened> {
    thread::spawn(move || {
        let share = BURST / BURST_THREADS;
        let mut held = Vec::with_capacity(share);
        let mut opened = Opened::default();
        for k in 0..share {
            if k == share / 2 {
                closing.arrive_and_wait();
                held.clear();
            }
            if k == share * 3 / 4 {
                last.arrive_and_wait();
            }
            let from = Ipv4Addr::new(127, 20 + t as u8, (k / 250) as u8, (k % 250) as u8 + 1);
            // Given up after a second (a full backlog drops SYNs): the burst goes on.
            match try_connect_from(from.into(), targets[k % 2], Duration::from_secs(1)) {
                Ok(stream) => {
                    held.push(stream);
                    opened.opened += 1;
                }
                Err(_) if k < share * 3 / 4 => opened.failed_before += 1,
                Err(_) => opened.failed_after += 1,
            }
        }
        opened
    })
}

/// Raises this process's open-files limit to the hard limit (and, as root,
/// the hard limit to `needed`); false (with a skip) if it stays below.
fn raise_open_files(needed: u64) -> bool {
    let mut limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if limit < needed && rlimit::Resource::NOFILE.set(needed, needed).is_ok() {
        limit = needed;
    }
    if limit < needed {
        common::skip(format_args!(
            "the open-files hard limit ({limit}) is below {needed}"
        ));
        return false;
    }
    true
}

/// 5,000 connections opened and kept (the hub and JSON echo full, the rest
/// told so), then closed at once (a thousand leaves), then 5,000 more, with
/// SIGTERM arriving three quarters of the way: the clients already in go on
/// talking all along and are told of the shutdown.
#[test]
fn a_burst_of_10000_connections_disturbs_no_client_already_in() {
    if !raise_open_files(BURST as u64 + 1000) {
        return;
    }
    let (mut daemon, addrs) = daemon("hostile-burst", Tables::default());
    let mut talkers = Talkers::start(addrs);
    let (closing, last) = (Checkpoint::default(), Checkpoint::default());
    let _guards = (closing.guard(), last.guard());
    let burst: Vec<_> = (0..BURST_THREADS)
        .map(|t| burst_thread(t, [addrs.chat, addrs.json], closing.clone(), last.clone()))
        .collect();
    talkers.wait_until("5,000 connections", || closing.reached_by(BURST_THREADS));
    talkers.progress();
    closing.open();
    talkers.wait_until("7,500 connections", || last.reached_by(BURST_THREADS));
    talkers.progress();
    let endings = talkers.pause();
    last.open();
    daemon.signal("TERM");
    goodbyes(endings);
    exits_cleanly(&mut daemon);
    let mut total = Opened::default();
    for thread in burst {
        let opened = thread.join().unwrap();
        total.opened += opened.opened;
        total.failed_before += opened.failed_before;
        total.failed_after += opened.failed_after;
    }
    eprintln!(
        "burst: {} connections opened; {} failed before SIGTERM, {} after",
        total.opened, total.failed_before, total.failed_after
    );
}

// ------------------------------------------- 10 MB of whitespace to JSON echo

const WHITESPACE: usize = 10 * 1024 * 1024;
/// Eight bytes of whitespace with one newline.
const BLANKS: &[u8; 8] = b"\t  \r\n   ";

/// A JSON client streaming whitespace (after one value) until the
/// connection fails; `sent` counts the bytes.
fn whitespace_stream(client: &mut JsonClient, sent: Arc<AtomicUsize>) -> JoinHandle<()> {
    client.echo("{\"stream\": 1}", "{\"stream\":1}");
    let mut stream = client.stream.try_clone().unwrap();
    thread::spawn(move || {
        let chunk = BLANKS.repeat(8 * 1024);
        while stream.write_all(&chunk).is_ok() {
            sent.fetch_add(chunk.len(), SeqCst);
        }
    })
}

/// Whitespace between values is allowed, so it is passed over as it comes:
/// 10 MB of it cost no memory, the value after it is echoed, and an error
/// after it names the line the client counts. SIGTERM arrives while another
/// client streams whitespace: it gets the error object, then the close.
#[test]
fn ten_megabytes_of_whitespace_to_json_echo_are_passed_over() {
    let (mut daemon, addrs) = daemon("hostile-whitespace", Tables::default());
    let mut talkers = Talkers::start(addrs);
    let peak_before = peak_memory_kib(&daemon);
    let mut client = JsonClient::connect(addrs.json);
    client.echo("{\"before\": 1}", "{\"before\":1}");
    client.send(&BLANKS.repeat(WHITESPACE / BLANKS.len()));
    client.echo("[1, 2]", "[1,2]");
    client.send(b"\n{\"bad\": tru}");
    let line = WHITESPACE / BLANKS.len() + 2;
    assert_eq!(
        client.line(),
        format!(
            "{{\"error\":\"'tru' is not JSON: did you mean true?\",\"line\":{line},\"column\":9}}\n"
        )
    );
    assert_eq!(client.line(), "", "closed after the error object");
    let grown = peak_memory_kib(&daemon).saturating_sub(peak_before);
    eprintln!("json echo: peak memory grew {grown} KiB over 10 MB of whitespace");
    assert!(grown < 4 * 1024, "10 MB of whitespace held: {grown} KiB");

    let mut streaming = JsonClient::connect(addrs.json);
    let sent = Arc::new(AtomicUsize::new(0));
    let stream = whitespace_stream(&mut streaming, sent.clone());
    talkers.wait_until("whitespace streaming", || {
        sent.load(SeqCst) >= 2 * 1024 * 1024
    });
    talkers.progress();
    let endings = talkers.pause();
    daemon.signal("TERM");
    goodbyes(endings);
    // What it sent is unread, so the close may come as a reset.
    assert_eq!(streaming.line(), "{\"error\":\"server shutting down\"}\n");
    let mut rest = String::new();
    match streaming.reader.read_line(&mut rest) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("after the error object: {other:?} {rest:?}"),
    }
    exits_cleanly(&mut daemon);
    stream.join().unwrap();
}

// ------------------------------------- a storm from spoofed source ports

/// The spoofed datagrams' source address: loopback (on-link, inside
/// discovery's default allow), but not the well-behaved clients' 127.0.0.1,
/// so the per-source rate limits of the two never mix.
const STORM_FROM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

/// The source ports that must never be answered: below 1024, and NFS.
fn bad_ports() -> impl Iterator<Item = u16> {
    (0..1024).chain([2049])
}

/// An IPv4 header and a UDP datagram from `from` to `to`, for a raw socket
/// (the kernel fills in the header checksum and the id).
fn udp_packet(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut packet = vec![0u8; total];
    packet[0] = 0x45; // IPv4, a header of five words
    packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    packet[8] = 64; // TTL
    packet[9] = libc::IPPROTO_UDP as u8;
    packet[12..16].copy_from_slice(&from.ip().octets());
    packet[16..20].copy_from_slice(&to.ip().octets());
    packet[20..22].copy_from_slice(&from.port().to_be_bytes());
    packet[22..24].copy_from_slice(&to.port().to_be_bytes());
    packet[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    // A UDP checksum of zero: none (IPv4 allows it).
    packet[28..].copy_from_slice(payload);
    packet
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => panic!("an IPv4 address: {addr}"),
    }
}

/// Sends spoofed datagrams from every bad port of [`STORM_FROM`] to UDP
/// echo and discovery, round after round until `stop`. After each 64
/// ports, one crafted the same way from `control`'s (good) port: its echo
/// clocks the storm (the daemon has taken what came before it) and shows
/// that such datagrams do reach the daemon. The replies `control` got from
/// echo and from discovery.
fn storm(
    raw: socket2::Socket,
    control: UdpSocket,
    targets: [SocketAddrV4; 2],
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
) -> JoinHandle<[usize; 2]> {
    thread::spawn(move || {
        let good = v4(control.local_addr().unwrap());
        control
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let send = |from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]| {
            let packet = udp_packet(from, to, payload);
            raw.send_to(&packet, &SocketAddr::V4(to).into())
                .expect("a raw send");
        };
        let bad: Vec<u16> = bad_ports().collect();
        let mut answered = [0, 0];
        let mut buf = [0u8; 2048];
        let per_round = bad.chunks(64).count();
        for (n, chunk) in bad.chunks(64).cycle().enumerate() {
            for &port in chunk {
                for to in targets {
                    send(SocketAddrV4::new(STORM_FROM, port), to, b"storm");
                }
            }
            let tag = format!("control {n}");
            for to in targets {
                send(good, to, tag.as_bytes());
            }
            while let Ok((len, from)) = control.recv_from(&mut buf) {
                if from == SocketAddr::V4(targets[1]) {
                    answered[1] += 1;
                } else if from == SocketAddr::V4(targets[0]) {
                    answered[0] += 1;
                    if &buf[..len] == tag.as_bytes() {
                        break;
                    }
                }
            }
            if (n + 1) % per_round == 0 {
                rounds.fetch_add(1, SeqCst);
            }
            if stop.load(SeqCst) {
                return answered;
            }
        }
        unreachable!()
    })
}

/// Datagrams from source ports 0 to 1023 (and 2049) are never answered,
/// however many come (UDP echo and discovery would reflect them to a
/// spoofed victim's privileged service); the well-behaved clients are
/// answered all along, and SIGTERM in the middle of the storm stops the
/// daemon cleanly. All of it inside a network namespace of its own.
#[test]
fn a_datagram_storm_from_spoofed_ports_0_to_1023_is_never_answered() {
    let Some(ns) = common::netns::prefix().map(|prefix| Netns::add(format!("{prefix}-storm")))
    else {
        return;
    };
    if !raise_open_files(2048) {
        return;
    }
    let tables = Tables {
        discovery: Some("max_delay = \"20ms\"\n"),
        ..Tables::default()
    };
    let mut daemon = ns.spawn_daemon(&config_text(tables));
    let addrs = Addrs::read(&mut daemon, true);
    let targets = [v4(addrs.udp), v4(addrs.discovery.unwrap())];
    // Every socket of the test is made inside the namespace: a catcher on
    // each bad port of the spoofed address, where a reply would land.
    let (mut talkers, raw, control, catchers) = ns.enter(move || {
        let catchers: Vec<UdpSocket> = bad_ports()
            .filter(|&port| port != 0)
            .map(|port| {
                let catcher = UdpSocket::bind((STORM_FROM, port)).unwrap();
                catcher.set_nonblocking(true).unwrap();
                catcher
            })
            .collect();
        let raw = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        )
        .unwrap();
        let control = UdpSocket::bind((STORM_FROM, 0)).unwrap();
        (Talkers::start(addrs), raw, control, catchers)
    });
    let (stop, rounds) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let _stop_anyway = SetOnDrop(stop.clone());
    let storm = storm(raw, control, targets, stop.clone(), Arc::clone(&rounds));
    talkers.wait_until("two rounds of the storm", || rounds.load(SeqCst) >= 2);
    talkers.progress();
    let endings = talkers.pause();
    daemon.signal("TERM");
    goodbyes(endings);
    exits_cleanly(&mut daemon);
    stop.store(true, SeqCst);
    let answered = storm.join().unwrap();
    eprintln!(
        "storm: {} rounds of {} spoofed datagrams; crafted control datagrams answered {answered:?}",
        rounds.load(SeqCst),
        2 * bad_ports().count()
    );
    assert!(
        answered.iter().all(|&n| n > 0),
        "crafted datagrams from a good port are answered by echo and discovery: {answered:?}"
    );
    let mut buf = [0u8; 16];
    let answered_bad: Vec<u16> = catchers
        .iter()
        .filter(|catcher| catcher.recv_from(&mut buf).is_ok())
        .map(|catcher| catcher.local_addr().unwrap().port())
        .collect();
    assert!(
        answered_bad.is_empty(),
        "replies to spoofed sources on ports {answered_bad:?}"
    );
}

// ------------------------------------------------------------ a SIGHUP storm

/// Version `n` of the config file: every table changed (chat and JSON echo
/// take it in place, UDP echo is restarted on its socket), and discovery
/// answers `vN`, so the running version can be seen.
fn hup_config(n: usize) -> String {
    let chat = format!("flush_after = \"{}ms\"\n", 40 + n % 20);
    let json_echo = format!("max_message_bytes = {}\n", 65_536 - n);
    let udp_echo = format!("rate_limit = {}\n", 1000 + n);
    let discovery = format!("reply = \"v{n}\"\nmax_delay = \"5ms\"\n");
    config_text(Tables {
        chat: &chat,
        json_echo: &json_echo,
        udp_echo: &udp_echo,
        discovery: Some(&discovery),
    })
}

/// Writes version `n` whole (renamed into place: a reload never reads half
/// a file), then sends SIGHUP.
fn edit_and_hup(daemon: &Proc, path: &Path, n: usize) {
    let next = path.with_extension("next");
    std::fs::write(&next, hup_config(n)).unwrap();
    std::fs::rename(&next, path).unwrap();
    daemon.signal("HUP");
}

/// 100 SIGHUPs in a second, each after an edit: signals that coalesce are
/// fine, but the last file must run, nobody may be dropped or miss a
/// thing, and a second storm with SIGTERM half way through it ends in a
/// clean exit.
#[test]
fn a_storm_of_sighups_drops_nobody_and_the_last_file_runs() {
    let path = write_config(&temp_dir("hostile-sighup"), &hup_config(0));
    let mut daemon = Proc::start(&["--config", path.to_str().unwrap()]);
    let addrs = Addrs::read(&mut daemon, true);
    let mut talkers = Talkers::start(addrs);
    let every = Duration::from_millis(10);
    for n in 1..=100 {
        edit_and_hup(&daemon, &path, n);
        thread::sleep(every);
    }
    talkers.progress();
    // Its own address: discovery's rate limit is per source.
    let checker = UdpSocket::bind("127.0.0.2:0").unwrap();
    checker.set_read_timeout(Some(UDP_RETRY)).unwrap();
    let discovery = addrs.discovery.unwrap();
    talkers.wait_until("discovery answering v100", || {
        let mut buf = [0u8; 64];
        checker.send_to(b"?", discovery).unwrap();
        matches!(checker.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == b"v100")
    });
    for n in 101..=150 {
        edit_and_hup(&daemon, &path, n);
        thread::sleep(every);
    }
    let endings = talkers.pause();
    daemon.signal("TERM");
    for n in 151..=200 {
        edit_and_hup(&daemon, &path, n);
        thread::sleep(every);
    }
    goodbyes(endings);
    exits_cleanly(&mut daemon);
    let log = daemon.log.join("\n");
    let reloads = daemon.log.iter().filter(|l| l.contains("reloaded")).count();
    eprintln!("{reloads} reloads for 200 SIGHUPs");
    assert!(reloads >= 1, "{log}");
    assert!(!log.contains("reload refused"), "{log}");
    let stopping = daemon
        .log
        .iter()
        .position(|l| l.contains("shutting down"))
        .unwrap();
    assert!(
        !daemon.log[stopping..]
            .iter()
            .any(|l| l.contains("reloaded")),
        "no reload once shutting down: {log}"
    );
}
