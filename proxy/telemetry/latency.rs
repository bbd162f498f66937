//! The application's latency through ddlgate, per database: every client
//! request (Query or Sync to its ReadyForQuery) lands in a one-second slot
//! of a ring, as a log-scale histogram of atomics, so the relay pays a few
//! atomic adds per request and never takes a lock. The runner reads
//! quantiles over recent windows: the throttle's latency signal, and the
//! before/during/after figures of a migration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

/// Seconds of history kept.
const SLOTS: usize = 128;
/// Buckets per power of two: 9% apart, fine enough to tell a 1.15× rise
/// (the throttle's aim) from none.
const SUB: u32 = 8;
const SUB_BITS: u32 = SUB.trailing_zeros();
/// Buckets: 1 µs up to about 2^31 µs (36 minutes).
const BUCKETS: usize = (32 * SUB) as usize;

struct Slot {
    /// The second (since the book's start) this slot holds; `u64::MAX`
    /// while it is being cleared.
    second: AtomicU64,
    counts: [AtomicU32; BUCKETS],
}

impl Slot {
    fn new() -> Self {
        Slot {
            second: AtomicU64::new(u64::MAX - 1),
            counts: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

/// One database's ring.
pub struct DbLatency {
    start: Instant,
    slots: Box<[Slot]>,
}

fn bucket(us: u64) -> usize {
    let us = us.max(1);
    let octave = 63 - us.leading_zeros();
    let mask = u64::from(SUB - 1);
    let sub = if octave >= SUB_BITS {
        ((us >> (octave - SUB_BITS)) & mask) as u32
    } else {
        ((us << (SUB_BITS - octave)) & mask) as u32
    };
    ((octave * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The largest latency a bucket holds (its upper edge).
fn upper_edge(b: usize) -> Duration {
    let (octave, sub) = ((b as u32) / SUB, (b as u32) % SUB);
    let base = 1u64 << octave;
    Duration::from_micros(base + (base * u64::from(sub + 1)) / u64::from(SUB))
}

impl DbLatency {
    fn new() -> Self {
        DbLatency {
            start: Instant::now(),
            slots: (0..SLOTS).map(|_| Slot::new()).collect(),
        }
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_secs()
    }

    /// One request that took `took`, ended now.
    pub fn record(&self, took: Duration) {
        let second = self.second(Instant::now());
        let slot = &self.slots[(second % SLOTS as u64) as usize];
        let seen = slot.second.load(Ordering::Acquire);
        if seen != second {
            // The first request of a new second clears the slot; one that
            // races it may be lost, which a quantile does not notice.
            if seen != u64::MAX
                && slot
                    .second
                    .compare_exchange(seen, u64::MAX, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                for c in slot.counts.iter() {
                    c.store(0, Ordering::Relaxed);
                }
                slot.second.store(second, Ordering::Release);
            } else if slot.second.load(Ordering::Acquire) != second {
                return;
            }
        }
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        slot.counts[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The current second of this ring's clock.
    pub fn now_second(&self) -> u64 {
        self.second(Instant::now())
    }

    /// The requests of seconds `from..to` of this ring's clock (those
    /// still in the ring: the last two minutes).
    pub fn histogram(&self, from: u64, to: u64) -> Histogram {
        let mut hist = Histogram::default();
        for slot in self.slots.iter() {
            let s = slot.second.load(Ordering::Acquire);
            if s >= from && s < to {
                for (h, c) in hist.counts.iter_mut().zip(slot.counts.iter()) {
                    *h += u64::from(c.load(Ordering::Relaxed));
                }
            }
        }
        hist
    }

    /// Quantile `q` over the seconds from `from_ago` to `to_ago` ago
    /// (`to_ago` 0 includes the current second), e.g. `quantile(q, 10, 0,
    /// n)`: the last ten seconds. `None` with fewer than `min_count`
    /// requests.
    pub fn quantile(&self, q: f64, from_ago: u64, to_ago: u64, min_count: u64) -> Option<Duration> {
        let (n, d) = self.summary(q, from_ago, to_ago);
        (n >= min_count.max(1)).then_some(d)
    }

    fn summary(&self, q: f64, from_ago: u64, to_ago: u64) -> (u64, Duration) {
        let now = self.second(Instant::now());
        let lo = now.saturating_sub(from_ago.min(SLOTS as u64 - 1));
        // The current second counts too when `to_ago` is 0.
        let hi = if to_ago == 0 {
            now + 1
        } else {
            now.saturating_sub(to_ago)
        };
        let hist = self.histogram(lo, hi);
        (hist.count(), hist.quantile(q).unwrap_or_default())
    }
}

/// Requests counted by latency bucket: summed over any seconds, kept for
/// as long as its owner likes (a migration's "during" figures).
#[derive(Clone)]
pub struct Histogram {
    counts: [u64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
        }
    }
}

impl Histogram {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    /// The upper edge of the bucket holding quantile `q`; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, h) in self.counts.iter().enumerate() {
            seen += h;
            if seen >= rank {
                return Some(upper_edge(b));
            }
        }
        Some(upper_edge(BUCKETS - 1))
    }
}

/// Every database's ring, created on first use.
#[derive(Default)]
pub struct LatencyBook {
    dbs: RwLock<HashMap<String, Arc<DbLatency>>>,
}

impl LatencyBook {
    pub fn database(&self, name: &str) -> Arc<DbLatency> {
        if let Some(d) = self.dbs.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return d.clone();
        }
        self.dbs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(DbLatency::new()))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_their_edges_hold_them() {
        let mut last = 0;
        for us in [1u64, 2, 3, 5, 7, 10, 99, 100, 1000, 1500, 65_000, 1 << 30] {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            last = b;
            assert!(upper_edge(b) >= Duration::from_micros(us), "{us} in {b}");
            // Within a quarter octave.
            assert!(
                upper_edge(b) <= Duration::from_micros(us * 2 + 1),
                "{us} in {b}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn quantiles_cover_the_window_asked_for() {
        let d = DbLatency::new();
        for _ in 0..99 {
            d.record(Duration::from_millis(2));
        }
        d.record(Duration::from_millis(300));
        let p50 = d.quantile(0.5, 10, 0, 1).unwrap();
        assert!(p50 >= Duration::from_millis(2) && p50 < Duration::from_millis(3));
        let p100 = d.quantile(1.0, 10, 0, 1).unwrap();
        assert!(p100 >= Duration::from_millis(300) && p100 < Duration::from_millis(400));
        assert!(d.quantile(0.5, 10, 0, 1000).is_none());
        // 20 s later the old requests are out of a 10 s window but in a
        // 30 s one.
        tokio::time::advance(Duration::from_secs(20)).await;
        d.record(Duration::from_millis(50));
        let recent = d.quantile(0.5, 10, 0, 1).unwrap();
        assert!(recent >= Duration::from_millis(50), "{recent:?}");
        let before = d.quantile(0.5, 30, 10, 1).unwrap();
        assert!(before < Duration::from_millis(3), "{before:?}");
        // A slot reused a ring later is cleared first.
        tokio::time::advance(Duration::from_secs(SLOTS as u64)).await;
        d.record(Duration::from_millis(1));
        assert!(d.quantile(1.0, 2, 0, 1).unwrap() < Duration::from_millis(2));
    }
}
