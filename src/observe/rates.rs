//! Messages a second of every service over the last five minutes, for
//! the page's small charts and `pinetd status`: sampled from the services'
//! counters, which they keep anyway, so a service pays nothing for them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::stats::Stats;

/// Rates are sampled this often ...
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// ... and this many samples kept: five minutes.
const SAMPLES: usize = 150;

/// Messages a second of every service, over the last minutes.
#[derive(Default)]
pub struct Rates {
    samples: Mutex<BTreeMap<&'static str, (u64, VecDeque<f64>)>>,
}

impl Rates {
    /// The sampling interval and the rates of `service`, oldest first.
    pub fn of(&self, service: &str) -> (Duration, Vec<f64>) {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let rates = samples
            .get(service)
            .map(|(_, r)| r.iter().copied().collect())
            .unwrap_or_default();
        (SAMPLE_EVERY, rates)
    }

    /// Takes one sample of the services named, `elapsed` after the last.
    pub fn sample(&self, stats: &Stats, names: &[&'static str], elapsed: Duration) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        for &name in names {
            let messages = stats.service(name).messages.load(Relaxed);
            let (last, rates) = samples.entry(name).or_insert((messages, VecDeque::new()));
            let rate = messages.saturating_sub(*last) as f64 / elapsed.as_secs_f64().max(0.001);
            *last = messages;
            if rates.len() >= SAMPLES {
                rates.pop_front();
            }
            rates.push_back((rate * 10.0).round() / 10.0);
        }
    }
}
