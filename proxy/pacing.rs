//! Backfill traffic from clients: sessions the configuration marks (by
//! role or application_name, `[backfill_traffic]`) yield to the
//! application. Each of their requests waits, before it is sent, for one
//! of a few slots on its database (held until its answer) and for a token
//! of a rate budget; the budget shrinks while the application's p99
//! through ddlgate is above its usual value. Nothing is rejected: a
//! request is only delayed, and the delay is measured.
//!
//! The application's usual p99 is the lowest of its one-minute p99s over
//! the last ten minutes (sampled every ten seconds), so a slowdown the
//! backfill traffic causes does not become the new normal within a minute.
//! Marked sessions' own requests are not the application's: the gate does
//! not record them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::PacingSettings;
use crate::telemetry::latency::{DbLatency, LatencyBook};

/// How often the usual p99 is sampled, and for how long samples count.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const USUAL_OVER: Duration = Duration::from_secs(600);
/// The budget never shrinks below this fraction.
const FLOOR: f64 = 0.1;

/// An admitted request's slot, held until its answer.
pub struct Admission {
    _slot: OwnedSemaphorePermit,
    /// How long it waited for its slot and budget.
    pub waited: Duration,
}

/// The fraction of the budget left when the application's recent p99 is
/// `recent` against its `usual`: all of it up to the usual value, a tenth
/// at `factor` times it and above.
pub fn budget_scale(recent: Option<Duration>, usual: Option<Duration>, factor: f64) -> f64 {
    let (Some(recent), Some(usual)) = (recent, usual) else {
        return 1.0;
    };
    let ratio = recent.as_secs_f64() / usual.as_secs_f64().max(1e-6);
    if ratio <= 1.0 || factor <= 1.0 {
        return 1.0;
    }
    ((factor - ratio) / (factor - 1.0)).clamp(FLOOR, 1.0)
}

/// One database's slots and budget.
pub struct Pacer {
    database: String,
    ring: Arc<DbLatency>,
    slots: Arc<Semaphore>,
    state: Mutex<State>,
}

struct State {
    settings: PacingSettings,
    tokens: f64,
    at: Instant,
    scale: f64,
    scaled_at: Option<Instant>,
    /// (when, the application's p99 over the minute before then).
    usual: VecDeque<(Instant, Duration)>,
    /// The scale last logged, to log changes only.
    logged: f64,
}

impl Pacer {
    fn new(database: &str, ring: Arc<DbLatency>, settings: PacingSettings) -> Self {
        Pacer {
            database: database.to_owned(),
            ring,
            slots: Arc::new(Semaphore::new(settings.max_concurrent as usize)),
            state: Mutex::new(State {
                tokens: settings.max_per_sec.max(1.0),
                settings,
                at: Instant::now(),
                scale: 1.0,
                scaled_at: None,
                usual: VecDeque::new(),
                logged: 1.0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a slot, then for the budget.
    pub async fn admit(self: Arc<Self>) -> Admission {
        let t0 = Instant::now();
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            let wait = self.take(Instant::now());
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        Admission {
            _slot: slot,
            waited: t0.elapsed(),
        }
    }

    /// The budget's current fraction (for SHOW and tests).
    pub fn scale(&self) -> f64 {
        self.state().scale
    }

    /// One token now, or how long until there is one.
    fn take(&self, now: Instant) -> Duration {
        let mut s = self.state();
        self.rescale(&mut s, now);
        let rate = s.settings.max_per_sec * s.scale;
        let elapsed = now.saturating_duration_since(s.at).as_secs_f64();
        s.tokens = (s.tokens + rate * elapsed).min(rate.max(1.0));
        s.at = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - s.tokens) / rate)
        }
    }

    fn rescale(&self, s: &mut State, now: Instant) {
        if s.scaled_at
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        s.scaled_at = Some(now);
        let due = s
            .usual
            .back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= SAMPLE_EVERY);
        if due {
            if let Some(p) = self.ring.quantile(0.99, 60, 0, 20) {
                s.usual.push_back((now, p));
            }
            while s
                .usual
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) > USUAL_OVER)
            {
                s.usual.pop_front();
            }
        }
        let usual = s.usual.iter().map(|(_, p)| *p).min();
        let window = s.settings.latency_window.as_secs().max(1);
        let recent = self.ring.quantile(0.99, window, 0, 20);
        s.scale = budget_scale(recent, usual, s.settings.app_p99_factor);
        metrics::gauge!("ddlgate_backfill_traffic_budget", "database" => self.database.clone())
            .set(s.settings.max_per_sec * s.scale);
        if (s.scale - s.logged).abs() >= 0.2 || (s.scale == 1.0 && s.logged != 1.0) {
            s.logged = s.scale;
            tracing::info!(
                event = "backfill_traffic.budget",
                database = %self.database,
                requests_per_sec = s.settings.max_per_sec * s.scale,
                app_p99_ms = recent.map(|d| d.as_secs_f64() * 1000.0),
                usual_p99_ms = usual.map(|d| d.as_secs_f64() * 1000.0),
                "backfill traffic budget changed with the application's latency"
            );
        }
    }
}

/// Every database's pacer, created on first use.
pub struct Pacers {
    book: Arc<LatencyBook>,
    pacers: RwLock<HashMap<String, Arc<Pacer>>>,
}

impl Pacers {
    pub fn new(book: Arc<LatencyBook>) -> Self {
        Pacers {
            book,
            pacers: RwLock::default(),
        }
    }

    /// The pacer of `database`, with `settings` (the reloaded ones: a
    /// changed rate applies at once; a changed slot count to new pacers).
    pub fn database(&self, database: &str, settings: &PacingSettings) -> Arc<Pacer> {
        let found = self
            .pacers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(database)
            .cloned();
        let pacer = found.unwrap_or_else(|| {
            self.pacers
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(database.to_owned())
                .or_insert_with(|| {
                    Arc::new(Pacer::new(
                        database,
                        self.book.database(database),
                        settings.clone(),
                    ))
                })
                .clone()
        });
        {
            let mut s = pacer.state();
            if s.settings != *settings {
                s.settings = settings.clone();
            }
        }
        pacer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_sec: f64, concurrent: u32) -> PacingSettings {
        PacingSettings {
            roles: vec!["etl".into()],
            application_names: Vec::new(),
            max_concurrent: concurrent,
            max_per_sec: per_sec,
            app_p99_factor: 2.0,
            latency_window: Duration::from_secs(3),
        }
    }

    #[test]
    fn the_budget_shrinks_with_the_applications_latency() {
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(budget_scale(ms(2), ms(2), 2.0), 1.0);
        assert_eq!(budget_scale(ms(1), ms(2), 2.0), 1.0);
        assert!((budget_scale(ms(3), ms(2), 2.0) - 0.5).abs() < 1e-9);
        assert_eq!(budget_scale(ms(10), ms(2), 2.0), FLOOR);
        // Not known: the whole budget.
        assert_eq!(budget_scale(None, ms(2), 2.0), 1.0);
        assert_eq!(budget_scale(ms(9), None, 2.0), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_wait_for_a_slot_and_a_token_never_fail() {
        let book = Arc::new(LatencyBook::default());
        let pacers = Pacers::new(book.clone());
        let p = pacers.database("d", &settings(10.0, 1));
        // A full bucket (one second's worth), then ten a second.
        let t0 = Instant::now();
        for _ in 0..20 {
            drop(p.clone().admit().await);
        }
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(950) && took <= Duration::from_millis(1100),
            "{took:?}"
        );
        // One slot: the second waits for the first to be answered.
        let first = p.clone().admit().await;
        let second = tokio::spawn(p.clone().admit());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!second.is_finished());
        drop(first);
        let second = second.await.unwrap();
        assert!(second.waited >= Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slower_application_gets_a_smaller_budget() {
        let book = Arc::new(LatencyBook::default());
        let ring = book.database("d");
        let pacers = Pacers::new(book.clone());
        let p = pacers.database("d", &settings(10.0, 4));
        // A minute at 2 ms: the usual p99.
        for _ in 0..60 {
            for _ in 0..10 {
                ring.record(Duration::from_millis(2));
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        drop(p.clone().admit().await);
        assert_eq!(p.scale(), 1.0);
        // Then slow: 3 ms is 1.5× usual, half the budget at factor 2.
        for _ in 0..5 {
            for _ in 0..10 {
                ring.record(Duration::from_micros(3000));
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        drop(p.clone().admit().await);
        assert!(p.scale() < 0.75 && p.scale() > 0.25, "{}", p.scale());
    }
}
