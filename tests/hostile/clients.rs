//! The well-behaved clients that talk all through each storm, in lock-step
//! and checking every answer: two chat clients, a JSON echo client, a UDP
//! echo client and a discovery prober; then their goodbyes.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::common::HANG;
use crate::daemon::Addrs;

/// A UDP request without an answer this long is sent again: a storm may
/// fill the socket's buffer, and the kernel then drops datagrams.
pub const UDP_RETRY: Duration = Duration::from_millis(200);

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
pub struct ChatClient {
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
pub struct JsonClient {
    pub stream: TcpStream,
    pub reader: BufReader<TcpStream>,
}

impl JsonClient {
    pub fn connect(addr: SocketAddr) -> JsonClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(HANG)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        JsonClient { stream, reader }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        if let Err(e) = self.reader.read_line(&mut line) {
            panic!("json client: {e} (after {line:?})");
        }
        line
    }

    /// Sends `value`; its reply must be `compact`.
    pub fn echo(&mut self, value: &str, compact: &str) {
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
pub enum Ending {
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
pub struct Talkers {
    pause: Arc<AtomicBool>,
    talkers: Vec<Talker>,
    /// Flood lines heard by the two chat clients.
    pub floods: [Arc<AtomicUsize>; 2],
}

impl Talkers {
    /// Two chat clients, a JSON client, a UDP echo client and, if the
    /// daemon runs discovery, a prober; their sockets made in this thread
    /// (and so in its network namespace).
    pub fn start(addrs: Addrs) -> Talkers {
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
    pub fn wait_until(&mut self, what: &str, mut done: impl FnMut() -> bool) {
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
    pub fn progress(&mut self) {
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
    pub fn pause(mut self) -> Vec<Ending> {
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
pub fn goodbyes(endings: Vec<Ending>) {
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
