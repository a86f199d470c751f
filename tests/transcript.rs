//! The chat room's transcript (`[chat] transcript`), with the real binary:
//! the lines of the room in today's file, kept across a restart; a
//! directory that cannot be written and a full file system (a small tmpfs,
//! as root) told once in the log while the room goes on; old days removed.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use common::peer::Peer;
use common::{HANG, Proc, program, skip, temp_dir, wait_until};
use pinetd::observe::transcript::{local, today};

const CHAT_ONLY: &str = "[json_echo]\nenabled = false\n[udp_echo]\nenabled = false\n[announcer]\nenabled = false\n[discovery]\nenabled = false\n[web]\nenabled = false\n";

fn config(dir: &Path, more: &str) -> String {
    format!(
        "{CHAT_ONLY}[chat]\nlisten = \"127.0.0.1:0\"\ntranscript = \"{}\"\n{more}",
        dir.display()
    )
}

/// A client that named itself `name` and heard its own welcome.
fn named(addr: std::net::SocketAddr, name: &str) -> Peer {
    let mut peer = Peer::connect(addr);
    peer.send(format!("/nick {name}\n").as_bytes());
    peer.until(&format!("you are now {name}"));
    peer
}

/// Today's transcript in `dir`, or "" before it exists.
fn transcript(dir: &Path) -> String {
    fs::read_to_string(today(dir)).unwrap_or_default()
}

/// Waits until today's file in `dir` has a line from `name` whose text
/// starts with `text`.
fn wait_for_line(dir: &Path, name: &str, text: &str) -> String {
    let needle = format!("\t{name}\t{text}");
    let mut found = String::new();
    wait_until(&format!("{needle:?} in the transcript"), || {
        found = transcript(dir);
        found.contains(&needle)
    });
    found
}

/// Stops `daemon` (it exits 0) and reads its whole log: the failure to
/// write the transcript was told exactly once.
fn stopped_having_told_once(mut daemon: Proc) {
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(HANG), Some(0));
    let told = (daemon.log.iter()).filter(|l| l.contains("transcript cannot be written"));
    assert_eq!(told.count(), 1, "{}", daemon.log.join("\n"));
}

#[test]
fn the_rooms_lines_are_in_todays_file_and_kept_across_a_restart() {
    let dir = temp_dir("transcript-restart").join("chat");
    let _ = fs::remove_dir_all(&dir);
    let (mut daemon, config_path) = Proc::on_config("transcript-restart", &config(&dir, ""));
    let addr = daemon.addrs(&["chat"])["chat"];
    let mut alice = named(addr, "alice");
    let mut bob = named(addr, "bob");
    alice.send(b"hello\tworld\n");
    bob.until("[alice] hello");
    let text = wait_for_line(&dir, "alice", "hello\tworld");

    // time, address, name, text: the prefix is not repeated in the text.
    let line = (text.lines())
        .find(|l| l.ends_with("\talice\thello\tworld"))
        .unwrap();
    let fields: Vec<&str> = line.splitn(4, '\t').collect();
    let (day, _) = local(SystemTime::now());
    let date = format!("{:04}-{:02}-{:02}T", day.year, day.month, day.day);
    assert!(fields[0].starts_with(&date), "{line}");
    let from: std::net::SocketAddr = fields[1].parse().expect("an address");
    assert!(from.ip().is_loopback(), "{line}");
    // The hub's notices are there too, with no address and no name.
    assert!(text.contains("\t-\t-\t*** alice joined\n"), "{text}");

    // A line heard just before the exit is in the file after it.
    bob.send(b"bye for now\n");
    alice.until("[bob] bye for now");
    daemon.signal("TERM");
    assert_eq!(daemon.exit_code(HANG), Some(0));
    let before = transcript(&dir);
    assert!(before.contains("\tbob\tbye for now\n"), "{before}");

    let mut daemon = Proc::start(&["--config", config_path.to_str().unwrap()]);
    let addr = daemon.addrs(&["chat"])["chat"];
    let mut carol = named(addr, "carol");
    let _dave = named(addr, "dave");
    carol.send(b"again\n");
    let after = wait_for_line(&dir, "carol", "again");
    assert!(after.starts_with(&before), "appended, not rewritten");
}

#[test]
fn a_directory_that_cannot_be_made_is_told_once_and_the_room_goes_on() {
    let base = temp_dir("transcript-unwritable");
    // A file where the directory should be: even root cannot write there.
    let file = base.join("not-a-directory");
    fs::write(&file, "x").unwrap();
    let dir = file.join("chat");
    let (mut daemon, _) = Proc::on_config("transcript-unwritable", &config(&dir, ""));
    let addr = daemon.addrs(&["chat"])["chat"];
    let mut alice = named(addr, "alice");
    let mut bob = named(addr, "bob");
    for i in 0..50 {
        alice.send(format!("line {i}\n").as_bytes());
    }
    bob.until("[alice] line 49");
    let told = daemon.wait_for("transcript cannot be written");
    assert!(told.contains("not-a-directory"), "{told}");
    // Once: a last line through the room, then the whole log is read.
    alice.send(b"the end\n");
    bob.until("[alice] the end");
    stopped_having_told_once(daemon);
}

/// A small tmpfs mounted at a directory of the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None (after a skip) when not root or without `mount`.
    fn mount(name: &str, options: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            skip(format_args!("{name}: mounting a tmpfs needs root"));
            return None;
        }
        let mount = program("mount", "mount")?;
        let dir = temp_dir(name).join("mnt");
        fs::create_dir_all(&dir).unwrap();
        let status = Command::new(mount)
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount -o {options}");
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_directory_is_told_once_and_the_room_goes_on() {
    let Some(mnt) = Tmpfs::mount("transcript-ro", "ro,size=64k") else {
        return;
    };
    let (mut daemon, _) = Proc::on_config("transcript-ro", &config(&mnt.0, ""));
    let addr = daemon.addrs(&["chat"])["chat"];
    let mut alice = named(addr, "alice");
    let mut bob = named(addr, "bob");
    alice.send(b"anyone there?\n");
    bob.until("[alice] anyone there?");
    let told = daemon.wait_for("transcript cannot be written");
    assert!(told.contains("Read-only file system"), "{told}");
    bob.send(b"yes\n");
    alice.until("[bob] yes");
    stopped_having_told_once(daemon);
}

#[test]
fn a_full_file_system_is_told_once_the_room_goes_on_and_writing_resumes() {
    let Some(mnt) = Tmpfs::mount("transcript-full", "size=64k") else {
        return;
    };
    // Fill it up.
    let filler = mnt.0.join("filler");
    let mut file = fs::File::create(&filler).unwrap();
    while file.write_all(&[b'x'; 4096]).is_ok() {}
    drop(file);
    let (mut daemon, _) = Proc::on_config("transcript-full", &config(&mnt.0, ""));
    let addr = daemon.addrs(&["chat"])["chat"];
    let mut alice = named(addr, "alice");
    let mut bob = named(addr, "bob");
    for i in 0..200 {
        alice.send(format!("line {i} {}\n", "y".repeat(100)).as_bytes());
    }
    bob.until("[alice] line 199");
    let told = daemon.wait_for("transcript cannot be written");
    assert!(told.contains("No space left on device"), "{told}");

    // Room made: within the retry time, the transcript is written again.
    fs::remove_file(&filler).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let talker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return alice;
                }
                alice.send(format!("after {i}\n").as_bytes());
                std::thread::sleep(Duration::from_millis(200));
            }
            unreachable!()
        })
    };
    daemon.wait_for("transcript is written again");
    stop.store(true, Ordering::Relaxed);
    let _alice = talker.join().unwrap();
    let text = wait_for_line(&mnt.0, "alice", "after");
    assert!(text.contains("\talice\tafter "), "{text}");
    stopped_having_told_once(daemon);
}

#[test]
fn days_older_than_transcript_days_are_removed_and_nothing_else() {
    let dir = temp_dir("transcript-days").join("chat");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let yesterday = local(SystemTime::now() - Duration::from_secs(86_400)).0;
    let kept = [
        yesterday.file_name(),
        "notes.txt".into(),
        "2000-01-01.log".into(),
    ];
    let removed = ["2000-01-01.tsv", "1999-12-31.tsv"];
    for name in kept.iter().map(String::as_str).chain(removed) {
        fs::write(dir.join(name), "old\n").unwrap();
    }
    let (mut daemon, _) =
        Proc::on_config("transcript-days", &config(&dir, "transcript_days = 2\n"));
    let _addr = daemon.addrs(&["chat"])["chat"];
    // Removed at start, before anyone speaks.
    wait_until("the old days removed", || {
        removed.iter().all(|name| !dir.join(name).exists())
    });
    for name in &kept {
        assert!(dir.join(name).exists(), "{name} was removed");
    }
}
