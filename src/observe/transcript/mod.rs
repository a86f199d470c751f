//! The room's transcript: every line the chat room hears (its clients'
//! lines, the hub's notices, the other hubs' lines, the teacher's actions)
//! appended to one file a day, `YYYY-MM-DD.tsv` (local time) in `[chat]
//! transcript`: time, address, name and text, tab-separated, one line each.
//!
//! A thread of its own writes it, so the room never waits for a disk: the
//! room hands each item over without blocking (what does not fit in a queue
//! of [`QUEUE`] items is counted and told), the thread writes each batch at
//! once and syncs it to disk within [`SYNC_WITHIN`]. A directory it cannot
//! write to or a full disk is told once in the log and the room goes on;
//! the thread tries again every [`RETRY_EVERY`] and tells when it writes
//! again, with how many lines were lost. Days older than `transcript_days`
//! are removed when the first file is opened and whenever a day begins.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::lock;
use day::Second;
pub use day::{Day, local, today};

mod day;

/// Items waiting for the thread; beyond, they are counted as lost.
pub const QUEUE: usize = 16 * 1024;
/// What is written is on disk within this long.
pub const SYNC_WITHIN: Duration = Duration::from_secs(1);
/// After a failure to write, the next try is this much later.
pub const RETRY_EVERY: Duration = Duration::from_secs(10);
/// The name the teacher's actions are written under.
const TEACHER: &str = "teacher";

/// Where the transcript is written, and for how long it is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub dir: PathBuf,
    pub days: u32,
    /// The chat's `prefix`, taken off a client's lines (the name has its
    /// own column).
    pub prefix: String,
}

/// One item of the room, as handed to the thread.
struct Entry {
    at: SystemTime,
    addr: Option<SocketAddr>,
    name: Option<String>,
    lines: Bytes,
    /// The room's own line (no prefix to take off).
    plain: bool,
}

/// What the thread is asked.
enum Order {
    Write(Entry),
    /// Sync now and answer.
    Finish(mpsc::Sender<()>),
}

/// The transcript of one room; off (and no thread) until [`configure`]d
/// with a directory.
///
/// [`configure`]: Transcript::configure
#[derive(Default)]
pub struct Transcript {
    on: AtomicBool,
    /// Read by the thread at each batch: a reload may move or stop it.
    place: Arc<Mutex<Option<Place>>>,
    thread: OnceLock<SyncSender<Order>>,
    /// Lines lost because the thread was behind, not yet told.
    dropped: AtomicU64,
}

impl Transcript {
    /// Writes to `place` from now on (None: stops writing).
    pub fn configure(&self, place: Option<Place>) {
        let on = place.is_some();
        *lock(&self.place) = place;
        if on && self.thread.get().is_none() {
            let (tx, rx) = mpsc::sync_channel(QUEUE);
            match spawn(rx, self.place.clone()) {
                Ok(()) => {
                    let _ = self.thread.set(tx);
                }
                Err(e) => warn!(error = %e, "the transcript's thread did not start: no transcript"),
            }
        }
        self.on.store(on && self.thread.get().is_some(), Relaxed);
    }

    /// Whether lines are written now.
    pub fn on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// The room heard `lines` (whole lines, each ending in `\n`) from the
    /// client at `addr` called `name`, or from the hub (both None).
    pub fn said(
        &self,
        at: SystemTime,
        addr: Option<SocketAddr>,
        name: Option<String>,
        lines: &Bytes,
    ) {
        let plain = addr.is_none();
        self.hand(Entry {
            at,
            addr,
            name,
            lines: lines.clone(),
            plain,
        });
    }

    /// The teacher, at `from`, did `what` (one line, no newline).
    pub fn teacher(&self, from: SocketAddr, what: &str) {
        self.hand(Entry {
            at: SystemTime::now(),
            addr: Some(from),
            name: Some(TEACHER.into()),
            lines: Bytes::from(format!("{}\n", what.replace('\n', " "))),
            plain: true,
        });
    }

    fn hand(&self, entry: Entry) {
        if !self.on() {
            return;
        }
        let Some(tx) = self.thread.get() else { return };
        match tx.try_send(Order::Write(entry)) {
            Ok(()) => {}
            Err(TrySendError::Full(Order::Write(entry))) => {
                let lines = memchr::memchr_iter(b'\n', &entry.lines).count() as u64;
                if self.dropped.fetch_add(lines, Relaxed) == 0 {
                    warn!(
                        queue = QUEUE,
                        "the transcript's disk is slower than the room: lines are left out of it"
                    );
                }
            }
            Err(_) => {}
        }
    }

    /// Everything handed over so far is on disk (or given up on), within
    /// `within`: for a clean shutdown.
    pub fn finish(&self, within: Duration) {
        let Some(tx) = self.thread.get() else { return };
        let (done, wait) = mpsc::channel();
        if tx.send(Order::Finish(done)).is_ok() {
            let _ = wait.recv_timeout(within);
        }
        let lost = self.dropped.swap(0, Relaxed);
        if lost > 0 {
            warn!(
                lost,
                "lines were left out of the transcript: its disk was too slow"
            );
        }
    }
}

fn spawn(rx: Receiver<Order>, place: Arc<Mutex<Option<Place>>>) -> io::Result<()> {
    let mut writer = Writer::new(place);
    std::thread::Builder::new()
        .name("pinetd-transcript".into())
        .spawn(move || writer.run(rx))
        .map(drop)
}

/// The file being written.
struct Open {
    dir: PathBuf,
    day: Day,
    file: File,
}

/// Writing failed: since then, how many lines were lost, when to try again.
struct Failing {
    lost: u64,
    retry_at: Instant,
}

/// The thread's side: the open file, what is not synced yet, a failure.
struct Writer {
    /// As the room's [`Transcript`] has it.
    shared: Arc<Mutex<Option<Place>>>,
    /// As read for the batch being taken.
    place: Option<Place>,
    open: Option<Open>,
    buf: Vec<u8>,
    lines: u64,
    /// Written but not synced since then.
    dirty_since: Option<Instant>,
    failing: Option<Failing>,
    /// The second of the last line taken.
    second: Option<Second>,
}

impl Writer {
    fn new(shared: Arc<Mutex<Option<Place>>>) -> Self {
        Writer {
            shared,
            place: None,
            open: None,
            buf: Vec::new(),
            lines: 0,
            dirty_since: None,
            failing: None,
            second: None,
        }
    }

    fn run(&mut self, rx: Receiver<Order>) {
        loop {
            self.look_at_place();
            let wait = match self.dirty_since {
                Some(since) => (since + SYNC_WITHIN).saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            let mut finished = Vec::new();
            match rx.recv_timeout(wait) {
                Ok(order) => {
                    self.look_at_place();
                    let more = std::iter::once(order).chain(rx.try_iter().take(QUEUE));
                    for order in more {
                        match order {
                            Order::Write(entry) => self.take(entry),
                            Order::Finish(done) => finished.push(done),
                        }
                    }
                    self.write_out();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.write_out();
                    self.sync();
                    return;
                }
            }
            let due = self.dirty_since.is_some_and(|s| s.elapsed() >= SYNC_WITHIN);
            if due || !finished.is_empty() {
                self.sync();
            }
            for done in finished {
                let _ = done.send(());
            }
        }
    }

    /// Takes the place as the room has it now; a new one has its old days
    /// removed at once, before anyone speaks.
    fn look_at_place(&mut self) {
        let place = lock(&self.shared).clone();
        if place != self.place {
            if let Some(new) = &place {
                remove_old(&new.dir, local(SystemTime::now()).0, new.days);
            }
            self.place = place;
        }
    }

    /// Adds `entry` to what is to be written, to its day's file.
    fn take(&mut self, entry: Entry) {
        if entry.lines.is_empty() {
            return;
        }
        let Some(place) = self.place.clone() else {
            // Stopped by a reload: nothing more is written.
            self.write_out();
            self.sync();
            self.open = None;
            return;
        };
        let since = entry.at.duration_since(UNIX_EPOCH).unwrap_or_default();
        if self
            .second
            .as_ref()
            .is_none_or(|s| s.secs != since.as_secs())
        {
            self.second = Some(Second::of(since.as_secs()));
        }
        let Some(second) = &self.second else { return };
        let (day, time) = (second.day, second.at(since.subsec_millis()));
        let same = (self.open.as_ref()).is_some_and(|o| o.day == day && o.dir == place.dir);
        if !same {
            self.write_out();
            self.sync();
            self.open = None;
            self.open_day(&place, day);
        }
        let count = memchr::memchr_iter(b'\n', &entry.lines).count() as u64;
        if self.open.is_none() {
            if let Some(failing) = &mut self.failing {
                failing.lost += count;
            }
            return;
        }
        let addr = entry.addr.map_or("-".into(), |a| a.to_string());
        let name = entry.name.as_deref().unwrap_or("-");
        let prefix = (!entry.plain).then(|| place.prefix.replace("{name}", name));
        for line in entry.lines.split_inclusive(|&b| b == b'\n') {
            let text = prefix
                .as_deref()
                .and_then(|p| line.strip_prefix(p.as_bytes()))
                .unwrap_or(line);
            let _ = write!(self.buf, "{time}\t{addr}\t{name}\t");
            self.buf.extend_from_slice(text);
            if !text.ends_with(b"\n") {
                self.buf.push(b'\n');
            }
        }
        self.lines += count;
    }

    /// Opens the file of `day` in `place` (unless failing and not due for
    /// another try); removes the days that are too old.
    fn open_day(&mut self, place: &Place, day: Day) {
        if (self.failing.as_ref()).is_some_and(|f| Instant::now() < f.retry_at) {
            return;
        }
        let path = place.dir.join(day.file_name());
        let opened = fs::create_dir_all(&place.dir).and_then(|()| {
            // Read too: a line a full disk cut is looked for at its end.
            let file = OpenOptions::new()
                .read(true)
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&path)?;
            end_cut_line(&file)?;
            Ok(file)
        });
        match opened {
            Ok(file) => {
                if let Some(failing) = self.failing.take() {
                    info!(
                        path = %path.display(),
                        lost = failing.lost,
                        "the transcript is written again; lines lost in between: {}",
                        failing.lost
                    );
                }
                self.open = Some(Open {
                    dir: place.dir.clone(),
                    day,
                    file,
                });
                remove_old(&place.dir, day, place.days);
            }
            Err(e) => self.failed(&path, &e),
        }
    }

    /// Writes what was taken to the open file.
    fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.lines);
        let Some(open) = &mut self.open else {
            self.buf.clear();
            return;
        };
        match open.file.write_all(&self.buf) {
            Ok(()) => {
                self.dirty_since.get_or_insert_with(Instant::now);
            }
            Err(e) => {
                let path = open.dir.join(open.day.file_name());
                self.open = None;
                self.failed(&path, &e);
                if let Some(failing) = &mut self.failing {
                    failing.lost += lines;
                }
            }
        }
        self.buf.clear();
    }

    fn sync(&mut self) {
        if self.dirty_since.take().is_none() {
            return;
        }
        let Some(open) = &self.open else { return };
        if let Err(e) = open.file.sync_data() {
            let path = open.dir.join(open.day.file_name());
            self.open = None;
            self.failed(&path, &e);
        }
    }

    /// Writing to `path` failed: told once, until it works again.
    fn failed(&mut self, path: &Path, e: &io::Error) {
        let retry_at = Instant::now() + RETRY_EVERY;
        match &mut self.failing {
            Some(failing) => failing.retry_at = retry_at,
            None => {
                warn!(
                    path = %path.display(),
                    error = %e,
                    "the transcript cannot be written ({e}); the room goes on without it, \
                     and it is tried again every {}s",
                    RETRY_EVERY.as_secs()
                );
                self.failing = Some(Failing { lost: 0, retry_at });
            }
        }
    }
}

/// A line cut by a full disk last time is ended, so the next starts on a
/// line of its own.
fn end_cut_line(file: &File) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] != b'\n' {
        (&*file).write_all(b"\n")?;
    }
    Ok(())
}

/// Removes the transcripts in `dir` older than the `days` ending `today`;
/// other files are left alone.
fn remove_old(dir: &Path, today: Day, days: u32) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let oldest = today.number() - i64::from(days.max(1)) + 1;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(day) = name.to_str().and_then(Day::of_file) else {
            continue;
        };
        if day.number() < oldest {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    info!(file = %entry.path().display(), "an old day of the transcript was removed")
                }
                Err(e) => {
                    debug!(file = %entry.path().display(), error = %e, "an old day of the transcript stays")
                }
            }
        }
    }
}
