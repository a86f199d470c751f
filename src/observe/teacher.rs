//! What the teacher's hand leaves behind, shared by every service: the
//! addresses blocked for a time (every TCP service's gate asks here, the
//! web's teacher actions write here), the teacher's recent actions for the
//! page, and the counts of teacher requests refused, for `/metrics`.
//!
//! Everything is bounded: at most [`BLOCKS_MAX`] blocks (an ended one is
//! pruned whenever the list is touched) and [`ACTIONS_MAX`] actions.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant, SystemTime};

use super::lock;
use crate::net::source_of;

/// The most addresses blocked at once: a teacher blocks a few loops, not
/// a network (its `allow` list does that).
pub const BLOCKS_MAX: usize = 1000;
/// The teacher's actions the page shows.
pub const ACTIONS_MAX: usize = 50;
/// The mutes the page shows at once (each is of an open chat client).
pub const MUTES_MAX: usize = 10_000;

/// Why a teacher's request was refused, each counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No `admin_token_file`: nobody may act.
    NoToken,
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that is not the one.
    Wrong,
    /// Too many wrong or missing tokens from one address.
    RateLimited,
    /// `Origin` is another site.
    CrossOrigin,
}

impl Refused {
    pub const ALL: [Refused; 5] = [
        Refused::NoToken,
        Refused::Missing,
        Refused::Wrong,
        Refused::RateLimited,
        Refused::CrossOrigin,
    ];

    /// Its label in `/metrics`.
    pub fn key(self) -> &'static str {
        match self {
            Refused::NoToken => "no_token_configured",
            Refused::Missing => "missing_token",
            Refused::Wrong => "wrong_token",
            Refused::RateLimited => "rate_limited",
            Refused::CrossOrigin => "cross_origin",
        }
    }
}

/// One address blocked.
#[derive(Debug, Clone)]
pub struct Block {
    pub addr: IpAddr,
    pub since: SystemTime,
    until: Instant,
}

impl Block {
    /// How long it still holds.
    pub fn left(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
    }
}

/// One action of the teacher, as the page shows it.
#[derive(Debug, Clone)]
pub struct Action {
    pub at: SystemTime,
    /// The teacher's source address.
    pub by: IpAddr,
    /// `kick`, `mute`, `rename`, `say`, `block`, `unblock`.
    pub what: &'static str,
    /// Whom or what it was done to, in words (a name, an address, the text said).
    pub whom: String,
}

/// The teacher's blocks, actions and refusals.
#[derive(Debug, Default)]
pub struct Teacher {
    blocks: Mutex<HashMap<IpAddr, Block>>,
    /// How many blocks there are: a gate with none to check takes no lock.
    blocked: AtomicUsize,
    actions: Mutex<VecDeque<Action>>,
    /// Chat clients muted, by connection id: until when (for the page).
    mutes: Mutex<HashMap<u64, SystemTime>>,
    refused: [AtomicU64; Refused::ALL.len()],
    /// Moves at every change, so the page's stream sends it.
    changes: AtomicU64,
}

impl Teacher {
    /// Blocks `addr` for `time` (a block already there takes the new time):
    /// an IPv6 address with its whole /64, as the limits count a source
    /// (a host may take any address of its /64).
    pub fn block(&self, addr: IpAddr, time: Duration) -> Result<(), String> {
        let addr = source_of(addr);
        let mut blocks = lock(&self.blocks);
        prune(&mut blocks);
        if blocks.len() >= BLOCKS_MAX && !blocks.contains_key(&addr) {
            return Err(format!("{BLOCKS_MAX} addresses are blocked already"));
        }
        let block = Block {
            addr,
            since: SystemTime::now(),
            until: Instant::now() + time,
        };
        blocks.insert(addr, block);
        self.blocked.store(blocks.len(), Relaxed);
        self.changes.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Lifts the block of `addr`; false if there was none.
    pub fn unblock(&self, addr: IpAddr) -> bool {
        let mut blocks = lock(&self.blocks);
        let had = blocks.remove(&source_of(addr)).is_some();
        self.changes.fetch_add(1, Relaxed);
        prune(&mut blocks);
        self.blocked.store(blocks.len(), Relaxed);
        had
    }

    /// How long `addr` stays blocked, if it is.
    pub fn blocked(&self, addr: IpAddr) -> Option<Duration> {
        if self.blocked.load(Relaxed) == 0 {
            return None;
        }
        let mut blocks = lock(&self.blocks);
        let left = blocks.get(&source_of(addr)).map(Block::left);
        if left == Some(Duration::ZERO) {
            prune(&mut blocks);
            self.blocked.store(blocks.len(), Relaxed);
            return None;
        }
        left
    }

    /// Every block still holding, the one ending first first.
    pub fn blocks(&self) -> Vec<Block> {
        let mut blocks = lock(&self.blocks);
        prune(&mut blocks);
        self.blocked.store(blocks.len(), Relaxed);
        let mut list: Vec<Block> = blocks.values().cloned().collect();
        list.sort_by_key(|b| (b.until, b.addr));
        list
    }

    /// Chat client `id` is muted for `time` (`Duration::ZERO`: lifted), as
    /// the page shows it. Ended mutes are forgotten whenever one is noted;
    /// at most [`MUTES_MAX`] are kept.
    pub fn muted(&self, id: u64, time: Duration) {
        let now = SystemTime::now();
        let mut mutes = lock(&self.mutes);
        mutes.retain(|_, until| *until > now);
        if time.is_zero() {
            mutes.remove(&id);
        } else if mutes.len() < MUTES_MAX || mutes.contains_key(&id) {
            mutes.insert(id, now + time);
        }
        self.changes.fetch_add(1, Relaxed);
    }

    /// Until when chat client `id` is muted, if it is.
    pub fn muted_until(&self, id: u64) -> Option<SystemTime> {
        let until = *lock(&self.mutes).get(&id)?;
        (until > SystemTime::now()).then_some(until)
    }

    /// Keeps `action` among the last [`ACTIONS_MAX`].
    pub fn acted(&self, by: IpAddr, what: &'static str, whom: String) {
        self.changes.fetch_add(1, Relaxed);
        let mut actions = lock(&self.actions);
        if actions.len() >= ACTIONS_MAX {
            actions.pop_front();
        }
        actions.push_back(Action {
            at: SystemTime::now(),
            by,
            what,
            whom,
        });
    }

    /// The last actions, newest first.
    pub fn actions(&self) -> Vec<Action> {
        lock(&self.actions).iter().rev().cloned().collect()
    }

    /// A number that moves whenever a block or an action does.
    pub fn changes(&self) -> u64 {
        self.changes.load(Relaxed) + self.blocked.load(Relaxed) as u64
    }

    pub fn refuse(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    pub fn refused(&self, why: Refused) -> u64 {
        self.refused[why as usize].load(Relaxed)
    }
}

/// Forgets the blocks that have ended.
fn prune(blocks: &mut HashMap<IpAddr, Block>) {
    let now = Instant::now();
    blocks.retain(|_, block| block.until > now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_block_holds_until_its_end_or_until_lifted() {
        let teacher = Teacher::default();
        assert_eq!(teacher.blocked(ip("127.0.0.1")), None);
        teacher
            .block(ip("127.0.0.1"), Duration::from_secs(60))
            .unwrap();
        let left = teacher.blocked(ip("::ffff:127.0.0.1")).unwrap();
        assert!(left > Duration::from_secs(50), "mapped v4 is v4");
        assert_eq!(teacher.blocked(ip("127.0.0.2")), None);
        teacher
            .block(ip("2001:db8:1:2::7"), Duration::from_secs(60))
            .unwrap();
        assert!(
            teacher.blocked(ip("2001:db8:1:2:ffff::1")).is_some(),
            "its /64"
        );
        assert_eq!(teacher.blocked(ip("2001:db8:1:3::7")), None);
        assert!(teacher.unblock(ip("2001:db8:1:2::7")));
        teacher.block(ip("127.0.0.2"), Duration::ZERO).unwrap();
        assert_eq!(teacher.blocked(ip("127.0.0.2")), None, "ended at once");
        assert_eq!(teacher.blocks().len(), 1, "the ended one pruned");
        assert!(teacher.unblock(ip("127.0.0.1")));
        assert!(!teacher.unblock(ip("127.0.0.1")));
        assert_eq!(teacher.blocked(ip("127.0.0.1")), None);
    }

    #[test]
    fn a_mute_is_shown_until_its_end_or_until_lifted() {
        let teacher = Teacher::default();
        assert_eq!(teacher.muted_until(7), None);
        teacher.muted(7, Duration::from_secs(60));
        let until = teacher.muted_until(7).unwrap();
        assert!(until > SystemTime::now() + Duration::from_secs(50));
        teacher.muted(8, Duration::from_nanos(1));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(teacher.muted_until(8), None, "ended");
        teacher.muted(7, Duration::ZERO);
        assert_eq!(teacher.muted_until(7), None, "lifted");
        assert!(lock(&teacher.mutes).is_empty(), "the ended one forgotten");
    }

    #[test]
    fn blocks_and_actions_are_bounded() {
        let teacher = Teacher::default();
        let hour = Duration::from_secs(3600);
        for n in 0..BLOCKS_MAX as u32 {
            teacher
                .block(IpAddr::from((0x0a00_0000 + n).to_be_bytes()), hour)
                .unwrap();
        }
        assert!(teacher.block(ip("192.0.2.1"), hour).is_err());
        assert!(
            teacher.block(ip("10.0.0.0"), hour).is_ok(),
            "a new time for one there"
        );
        for n in 0..ACTIONS_MAX + 5 {
            teacher.acted(ip("127.0.0.1"), "say", n.to_string());
        }
        let actions = teacher.actions();
        assert_eq!(actions.len(), ACTIONS_MAX);
        assert_eq!(
            actions[0].whom,
            (ACTIONS_MAX + 4).to_string(),
            "newest first"
        );
    }
}
