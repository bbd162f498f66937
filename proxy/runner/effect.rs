//! A change's effect on the application, as ddlgate sees it: the latency of
//! the application's requests through ddlgate on the migration's database
//! in the minute before the migration started, while it ran, and in the
//! minute after it ended (an index on a hot table slows writes; a user
//! wants to see that). Stored with the migration for SHOW MIGRATION and
//! logged: at the end (before and during) and once the minute after has
//! passed (`migration.effect`, all three).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::telemetry::latency::{DbLatency, Histogram};

/// How long "before" and "after" are.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The figures of one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub requests: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

impl Window {
    fn of(h: &Histogram) -> Self {
        let ms = |q| h.quantile(q).map(|d: Duration| d.as_secs_f64() * 1000.0);
        Window {
            requests: h.count(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.p50_ms, self.p99_ms) {
            (Some(p50), Some(p99)) => write!(
                f,
                "p50 {p50:.1} ms, p99 {p99:.1} ms ({} requests)",
                self.requests
            ),
            _ => f.write_str("no requests"),
        }
    }
}

/// Before, during and after, as far as known.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Window>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub during: Option<Window>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Window>,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |w: Option<Window>, pending: &str| {
            w.map_or_else(|| pending.to_owned(), |w| w.to_string())
        };
        write!(
            f,
            "before: {}; during: {}; after: {}",
            part(self.before, "not measured"),
            part(self.during, "running"),
            part(self.after, "the minute after is not over"),
        )
    }
}

/// Follows one migration: the minute before, read at its start; the
/// seconds while it runs, folded in from the ring before they leave it
/// (`sample` at least every minute).
pub struct Tracker {
    ring: Arc<DbLatency>,
    before: Window,
    during: Histogram,
    /// The first second not folded in yet.
    next: u64,
}

impl Tracker {
    pub fn start(ring: Arc<DbLatency>) -> Self {
        let now = ring.now_second();
        // The second it starts in counts as before and during: seconds are
        // the ring's grain, and a change shorter than one still has a
        // during.
        let before = Window::of(&ring.histogram(now.saturating_sub(WINDOW.as_secs()), now + 1));
        Tracker {
            ring,
            before,
            during: Histogram::default(),
            next: now,
        }
    }

    /// What is known at the start: the minute before.
    pub fn so_far(&self) -> Effect {
        Effect {
            before: Some(self.before),
            ..Effect::default()
        }
    }

    pub fn sample(&mut self) {
        let now = self.ring.now_second();
        self.during.merge(&self.ring.histogram(self.next, now));
        self.next = now;
    }

    /// Before and during; and the second the minute after starts at.
    pub fn finish(mut self) -> (Effect, After) {
        self.sample();
        let effect = Effect {
            before: Some(self.before),
            during: Some(Window::of(&self.during)),
            after: None,
        };
        let after = After {
            ring: self.ring,
            from: self.next,
        };
        (effect, after)
    }
}

/// The minute after a migration, to be read once it has passed.
pub struct After {
    ring: Arc<DbLatency>,
    from: u64,
}

impl After {
    pub async fn measure(self) -> Window {
        tokio::time::sleep(WINDOW + Duration::from_secs(1)).await;
        let to = self.from + WINDOW.as_secs();
        Window::of(&self.ring.histogram(self.from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::latency::LatencyBook;

    #[tokio::test(start_paused = true)]
    async fn before_during_and_after_are_their_own_seconds() {
        let book = LatencyBook::default();
        let ring = book.database("d");
        for _ in 0..100 {
            ring.record(Duration::from_millis(2));
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut t = Tracker::start(ring.clone());
        // Ninety seconds of slower requests: more than a ring's worth of
        // time would lose some without the samples.
        for s in 0..90 {
            ring.record(Duration::from_millis(20));
            tokio::time::advance(Duration::from_secs(1)).await;
            if s % 30 == 29 {
                t.sample();
            }
        }
        let (effect, after) = t.finish();
        let before = effect.before.unwrap();
        assert_eq!(before.requests, 100);
        assert!(before.p99_ms.unwrap() < 3.0, "{before}");
        let during = effect.during.unwrap();
        assert_eq!(during.requests, 90);
        assert!(during.p50_ms.unwrap() >= 20.0, "{during}");
        let ring2 = ring.clone();
        let after = tokio::spawn(after.measure());
        for _ in 0..70 {
            ring2.record(Duration::from_millis(5));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let after = after.await.unwrap();
        assert_eq!(after.requests, 60, "{after}");
        assert!(after.p50_ms.unwrap() >= 5.0 && after.p50_ms.unwrap() < 8.0);
        let text = Effect {
            after: Some(after),
            ..effect
        }
        .to_string();
        assert!(text.starts_with("before: p50 2."), "{text}");
    }
}
