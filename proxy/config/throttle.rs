//! The `[throttle]` section: how the runner's backfills pace themselves,
//! and the signals that pause them. Operators change a running
//! migration's batch time and rate ceiling from the console.

use std::time::Duration;

use serde::Deserialize;

use super::{bad, parse_duration, parse_size, ConfigError};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSection {
    pub batch_time: Option<String>,
    pub max_rows_per_sec: Option<u64>,
    pub sleep_ratio: Option<f64>,
    pub busy_sleep_ratio: Option<f64>,
    pub app_p99_factor: Option<f64>,
    pub max_replica_lag: Option<String>,
    pub max_wal_rate: Option<String>,
    pub max_active_backends: Option<u64>,
    pub query: Option<String>,
    pub recheck: Option<String>,
    pub latency_window: Option<String>,
}

/// Validated throttle settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleSettings {
    /// Each batch should take about this long.
    pub batch_time: Duration,
    /// Rows per second at most; 0: no ceiling.
    pub max_rows_per_sec: u64,
    /// Sleep this fraction of each batch's time after it.
    pub sleep_ratio: f64,
    /// While the application sends requests: sleep at least this fraction
    /// of each batch's time (an idle database is backfilled at full pace).
    pub busy_sleep_ratio: f64,
    pub first_batch: u64,
    pub min_batch: u64,
    pub max_batch: u64,
    /// Pause while the application's p99 through ddlgate is above this
    /// many times its p99 before the migration; 0: not watched.
    pub app_p99_factor: f64,
    /// Pause while a replica lags more; zero: not watched.
    pub max_replica_lag: Duration,
    /// Pause while WAL is written faster (bytes/s); 0: not watched.
    pub max_wal_rate: u64,
    /// Pause while more backends are active; 0: not watched.
    pub max_active_backends: u64,
    /// Pause while this query's first column is true.
    pub query: Option<String>,
    /// How often the signals are read, and a paused backfill looks again.
    pub recheck: Duration,
    /// The application's p99 is read over this recent window (whole
    /// seconds).
    pub latency_window: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            // Short: the application waits for the rows a batch holds
            // until it commits.
            batch_time: Duration::from_millis(50),
            max_rows_per_sec: 0,
            sleep_ratio: 0.0,
            busy_sleep_ratio: 1.0,
            first_batch: 1000,
            min_batch: 100,
            max_batch: 50_000,
            app_p99_factor: 1.3,
            max_replica_lag: Duration::from_secs(5),
            max_wal_rate: 0,
            max_active_backends: 0,
            query: None,
            recheck: Duration::from_secs(1),
            latency_window: Duration::from_secs(3),
        }
    }
}

impl ThrottleSection {
    pub fn resolve(self) -> Result<ThrottleSettings, ConfigError> {
        let mut s = ThrottleSettings::default();
        if let Some(v) = &self.batch_time {
            s.batch_time = parse_duration("throttle.batch_time", v)?;
            if s.batch_time.is_zero() {
                return Err(bad("throttle.batch_time", "must be above 0"));
            }
        }
        if let Some(v) = self.max_rows_per_sec {
            s.max_rows_per_sec = v;
        }
        if let Some(v) = self.sleep_ratio {
            if !(0.0..=100.0).contains(&v) {
                return Err(bad(
                    "throttle.sleep_ratio",
                    format!("{v} is not within 0..100"),
                ));
            }
            s.sleep_ratio = v;
        }
        if let Some(v) = self.busy_sleep_ratio {
            if !(0.0..=100.0).contains(&v) {
                return Err(bad(
                    "throttle.busy_sleep_ratio",
                    format!("{v} is not within 0..100"),
                ));
            }
            s.busy_sleep_ratio = v;
        }
        if let Some(v) = self.app_p99_factor {
            if v != 0.0 && v < 1.0 {
                return Err(bad(
                    "throttle.app_p99_factor",
                    format!("{v} is below 1 (0 turns the signal off)"),
                ));
            }
            s.app_p99_factor = v;
        }
        if let Some(v) = &self.max_replica_lag {
            s.max_replica_lag = parse_duration("throttle.max_replica_lag", v)?;
        }
        if let Some(v) = &self.max_wal_rate {
            s.max_wal_rate = parse_size("throttle.max_wal_rate", v)? as u64;
        }
        if let Some(v) = self.max_active_backends {
            s.max_active_backends = v;
        }
        s.query = self.query.filter(|q| !q.trim().is_empty());
        if let Some(v) = &self.recheck {
            s.recheck = parse_duration("throttle.recheck", v)?;
            if s.recheck.is_zero() {
                return Err(bad("throttle.recheck", "must be above 0"));
            }
        }
        if let Some(v) = &self.latency_window {
            s.latency_window = parse_duration("throttle.latency_window", v)?;
            if s.latency_window < Duration::from_secs(1) {
                return Err(bad("throttle.latency_window", "must be at least 1s"));
            }
        }
        Ok(s)
    }
}
