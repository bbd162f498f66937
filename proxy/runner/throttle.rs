//! The backfill's throttle, pure: readings of the signals in, a decision
//! out (run a batch of so many rows, then sleep so long; or pause, and
//! why). Batch sizes adapt so that each batch takes about the target time;
//! a rows/s ceiling and a sleep ratio bound the pace; any signal over its
//! threshold pauses the backfill, and one close to it halves the batch.
//!
//! While the application is busy, each batch is followed by a sleep of
//! `yield_ratio` times its duration, and that ratio follows the
//! application's latency: up quickly while its p99 is above the midpoint
//! between its baseline and the pause threshold, down slowly while below.
//! A pause alone would swing between full speed and none, and the
//! application's p99 over the whole change is set by the full-speed spells.

use std::time::Duration;

pub use crate::config::ThrottleSettings as Settings;

/// What the signals read now; `None`: not known (not watched, or not
/// enough traffic to tell).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    /// The application's p99 through ddlgate on this database, recently,
    /// and before the migration started.
    pub app_p99: Option<Duration>,
    pub baseline_p99: Option<Duration>,
    /// The largest replay lag of the upstream's replicas.
    pub replica_lag: Option<Duration>,
    pub wal_rate: Option<u64>,
    pub active_backends: Option<u64>,
    /// The custom throttle query said to hold back.
    pub custom_hold: bool,
}

/// The throttle's decision before a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Run { rows: u64 },
    Pause { reason: String },
}

/// Signals at this fraction of their threshold slow the backfill down.
const NEAR: f64 = 0.8;
/// The most time the application gets per unit of batch time.
const MAX_YIELD: f64 = 30.0;

#[derive(Debug, Clone)]
pub struct Throttle {
    settings: Settings,
    batch: u64,
    /// The pace of the last batch, sleep included.
    rows_per_sec: f64,
    /// Sleep per unit of batch time while the application is busy.
    yield_ratio: f64,
}

impl Throttle {
    pub fn new(settings: Settings) -> Self {
        let batch = settings
            .first_batch
            .clamp(settings.min_batch, settings.max_batch);
        Throttle {
            yield_ratio: settings.busy_sleep_ratio.max(0.0),
            settings,
            batch,
            rows_per_sec: 0.0,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// New settings at runtime (the console); the batch size carries on.
    pub fn set(&mut self, settings: Settings) {
        self.batch = self.batch.clamp(settings.min_batch, settings.max_batch);
        self.settings = settings;
    }

    pub fn batch(&self) -> u64 {
        self.batch
    }

    pub fn rows_per_sec(&self) -> f64 {
        self.rows_per_sec
    }

    pub fn yield_ratio(&self) -> f64 {
        self.yield_ratio
    }

    /// A fresh reading of the signals (once per recheck): the time given
    /// back to the application follows its latency.
    pub fn observe(&mut self, r: &Readings) {
        let (Some(now), Some(before)) = (r.app_p99, r.baseline_p99) else {
            return;
        };
        let s = &self.settings;
        let ratio = now.as_secs_f64() / before.as_secs_f64().max(1e-6);
        let target = 1.0 + (s.app_p99_factor - 1.0).max(0.0) / 2.0;
        let floor = s.busy_sleep_ratio.max(0.0);
        self.yield_ratio = if ratio > target {
            (self.yield_ratio * 1.25 + 0.25).min(MAX_YIELD)
        } else {
            (self.yield_ratio * 0.9).max(floor)
        };
    }

    /// Before a batch: run one of so many rows, or pause and why.
    pub fn decide(&self, r: &Readings) -> Decision {
        let s = &self.settings;
        let mut near = false;
        let mut over = |name: &str, value: f64, limit: f64, shown: String| -> Option<String> {
            if limit <= 0.0 {
                return None;
            }
            if value > limit {
                return Some(format!("{name} {shown}"));
            }
            near |= value > limit * NEAR;
            None
        };
        let mut reasons = Vec::new();
        if let (Some(now), Some(before)) = (r.app_p99, r.baseline_p99) {
            let limit = before.as_secs_f64() * s.app_p99_factor;
            reasons.extend(over(
                "application p99",
                now.as_secs_f64(),
                limit,
                format!(
                    "{:.1} ms is over {:.1}× its {:.1} ms before the migration",
                    ms(now),
                    s.app_p99_factor,
                    ms(before)
                ),
            ));
        }
        if let Some(lag) = r.replica_lag {
            reasons.extend(over(
                "replica lag",
                lag.as_secs_f64(),
                s.max_replica_lag.as_secs_f64(),
                format!(
                    "{:.1} s is over {:.1} s",
                    lag.as_secs_f64(),
                    s.max_replica_lag.as_secs_f64()
                ),
            ));
        }
        if let Some(rate) = r.wal_rate {
            reasons.extend(over(
                "WAL rate",
                rate as f64,
                s.max_wal_rate as f64,
                format!("{rate} B/s is over {} B/s", s.max_wal_rate),
            ));
        }
        if let Some(n) = r.active_backends {
            reasons.extend(over(
                "active backends",
                n as f64,
                s.max_active_backends as f64,
                format!("{n} is over {}", s.max_active_backends),
            ));
        }
        if r.custom_hold {
            reasons.push("the throttle query says hold".to_owned());
        }
        if !reasons.is_empty() {
            return Decision::Pause {
                reason: reasons.join("; "),
            };
        }
        // Below the pause, the batch shrinks as the application slows:
        // full size at its baseline, a quarter at the threshold.
        let mut scale: f64 = 1.0;
        if let (Some(now), Some(before)) = (r.app_p99, r.baseline_p99) {
            let ratio = now.as_secs_f64() / before.as_secs_f64().max(1e-6);
            if s.app_p99_factor > 1.0 && ratio > 1.0 {
                scale = ((s.app_p99_factor - ratio) / (s.app_p99_factor - 1.0)).clamp(0.25, 1.0);
            }
        }
        if near {
            scale = scale.min(0.5);
        }
        let rows = ((self.batch as f64 * scale) as u64).max(s.min_batch);
        Decision::Run { rows }
    }

    /// After a batch of `asked` rows that covered `rows` and took `took`:
    /// the next batch's size adapts (to what the measured pace does in
    /// batch_time, at most halved or doubled), and the sleep before it is
    /// returned. `busy`: the application is sending requests, and gets
    /// `busy_sleep_ratio` of each batch's time to itself.
    pub fn done(&mut self, asked: u64, rows: u64, took: Duration, busy: bool) -> Duration {
        let s = &self.settings;
        let took_s = took.as_secs_f64().max(0.001);
        // A short last batch says nothing about the pace.
        if rows >= asked && rows > 0 {
            let ideal = rows as f64 / took_s * s.batch_time.as_secs_f64();
            let b = self.batch as f64;
            self.batch = (ideal.clamp(b * 0.5, b * 2.0) as u64).clamp(s.min_batch, s.max_batch);
        }
        let mut sleep = took_s * s.sleep_ratio.max(0.0);
        if busy {
            sleep = sleep.max(took_s * self.yield_ratio);
        }
        if s.max_rows_per_sec > 0 {
            // At most the ceiling, over the batch and its sleep.
            sleep = sleep.max(rows as f64 / s.max_rows_per_sec as f64 - took_s);
        }
        self.rows_per_sec = rows as f64 / (took_s + sleep);
        Duration::from_secs_f64(sleep)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(Settings {
            batch_time: Duration::from_millis(100),
            ..Settings::default()
        })
    }

    #[test]
    fn batches_grow_and_shrink_toward_the_target_time() {
        let mut t = throttle();
        assert_eq!(t.batch(), 1000);
        // 1000 rows in 25 ms: at most doubled per batch.
        t.done(1000, 1000, Duration::from_millis(25), false);
        assert_eq!(t.batch(), 2000);
        t.done(2000, 2000, Duration::from_millis(80), false);
        assert_eq!(t.batch(), 2500);
        // Slow: at most halved.
        t.done(2500, 2500, Duration::from_millis(1000), false);
        assert_eq!(t.batch(), 1250);
        // Bounded.
        for _ in 0..20 {
            t.done(t.batch(), t.batch(), Duration::from_secs(5), false);
        }
        assert_eq!(t.batch(), 100);
        for _ in 0..30 {
            t.done(t.batch(), t.batch(), Duration::from_millis(1), false);
        }
        assert_eq!(t.batch(), 50_000);
    }

    #[test]
    fn a_short_last_batch_leaves_the_size_alone() {
        let mut t = throttle();
        t.done(1000, 10, Duration::from_millis(1), false);
        assert_eq!(t.batch(), 1000);
    }

    #[test]
    fn the_rate_ceiling_and_sleep_ratio_set_the_sleep() {
        let mut t = Throttle::new(Settings {
            max_rows_per_sec: 10_000,
            ..Settings::default()
        });
        // 1000 rows in 20 ms would be 50k rows/s: sleep to make it 10k.
        let sleep = t.done(1000, 1000, Duration::from_millis(20), false);
        assert_eq!(sleep, Duration::from_millis(80));
        assert!((t.rows_per_sec() - 10_000.0).abs() < 1.0);
        let mut t = Throttle::new(Settings {
            sleep_ratio: 0.5,
            batch_time: Duration::from_millis(100),
            ..Settings::default()
        });
        assert_eq!(
            t.done(1000, 1000, Duration::from_millis(100), false),
            Duration::from_millis(50)
        );
        // While the application is busy, it gets as much time as a batch.
        let mut t = throttle();
        assert_eq!(
            t.done(1000, 1000, Duration::from_millis(40), true),
            Duration::from_millis(40)
        );
    }

    #[test]
    fn any_signal_over_its_threshold_pauses_with_its_reason() {
        let t = Throttle::new(Settings {
            max_wal_rate: 1_000_000,
            max_active_backends: 50,
            ..Settings::default()
        });
        let calm = Readings {
            app_p99: Some(Duration::from_millis(5)),
            baseline_p99: Some(Duration::from_millis(5)),
            replica_lag: Some(Duration::from_millis(100)),
            wal_rate: Some(10_000),
            active_backends: Some(3),
            custom_hold: false,
        };
        assert_eq!(t.decide(&calm), Decision::Run { rows: 1000 });
        let slow_app = Readings {
            app_p99: Some(Duration::from_millis(9)),
            ..calm.clone()
        };
        let Decision::Pause { reason } = t.decide(&slow_app) else {
            panic!("not paused")
        };
        assert_eq!(
            reason,
            "application p99 9.0 ms is over 1.3× its 5.0 ms before the migration"
        );
        let lagging = Readings {
            replica_lag: Some(Duration::from_secs(6)),
            active_backends: Some(51),
            ..calm.clone()
        };
        let Decision::Pause { reason } = t.decide(&lagging) else {
            panic!("not paused")
        };
        assert_eq!(
            reason,
            "replica lag 6.0 s is over 5.0 s; active backends 51 is over 50"
        );
        let held = Readings {
            custom_hold: true,
            ..calm.clone()
        };
        assert!(matches!(t.decide(&held), Decision::Pause { .. }));
        // Close to a threshold: half batches.
        let near = Readings {
            wal_rate: Some(900_000),
            ..calm.clone()
        };
        assert_eq!(t.decide(&near), Decision::Run { rows: 500 });
        // The application slower than before, below the pause: smaller
        // batches, down to a quarter at the threshold.
        let slower = Readings {
            app_p99: Some(Duration::from_micros(5750)),
            ..calm.clone()
        };
        assert_eq!(t.decide(&slower), Decision::Run { rows: 500 });
        let at = Readings {
            app_p99: Some(Duration::from_micros(6490)),
            ..calm
        };
        assert_eq!(t.decide(&at), Decision::Run { rows: 250 });
    }

    #[test]
    fn the_time_given_back_follows_the_applications_latency() {
        let mut t = throttle();
        let at = |p99_us| Readings {
            app_p99: Some(Duration::from_micros(p99_us)),
            baseline_p99: Some(Duration::from_millis(2)),
            ..Readings::default()
        };
        assert_eq!(t.yield_ratio(), 1.0);
        // Above the midpoint (1.15× for a 1.3× threshold): up fast.
        t.observe(&at(2400));
        assert_eq!(t.yield_ratio(), 1.5);
        for _ in 0..20 {
            t.observe(&at(2400));
        }
        assert_eq!(t.yield_ratio(), MAX_YIELD);
        let sleep = t.done(1000, 1000, Duration::from_millis(10), true);
        assert_eq!(sleep, Duration::from_millis(300));
        // Not busy: no yield.
        assert!(t
            .done(1000, 1000, Duration::from_millis(10), false)
            .is_zero());
        // Below it: down slowly, never under busy_sleep_ratio.
        t.observe(&at(2100));
        assert!((t.yield_ratio() - MAX_YIELD * 0.9).abs() < 1e-9);
        for _ in 0..100 {
            t.observe(&at(2000));
        }
        assert_eq!(t.yield_ratio(), 1.0);
        // Without readings nothing changes.
        t.observe(&Readings::default());
        assert_eq!(t.yield_ratio(), 1.0);
    }

    #[test]
    fn unwatched_signals_never_pause() {
        let t = throttle();
        let r = Readings {
            wal_rate: Some(u64::MAX),
            active_backends: Some(10_000),
            ..Readings::default()
        };
        assert_eq!(t.decide(&r), Decision::Run { rows: 1000 });
    }
}
