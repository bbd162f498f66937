//! What a backfill's throttle reads before its batches: the application's
//! p99 through ddlgate on the database (against its p99 before the
//! backfill began), and from the server the replicas' replay lag, the WAL
//! rate, the active backends, and the operator's throttle query.
//!
//! The server's views show other roles' sessions only to members of
//! `pg_monitor` (or `pg_read_all_stats`): without it the runner sees no
//! lag and fewer active backends, so those signals err toward running.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::Client;

use super::throttle::{Readings, Settings};
use crate::telemetry::latency::DbLatency;

/// The window the baseline p99 is read over, and the fewest requests it
/// takes to mean anything.
const BASELINE_SECS: u64 = 60;
const MIN_REQUESTS: u64 = 20;

pub struct Signals {
    latency: Arc<DbLatency>,
    baseline: Option<Duration>,
    /// The last WAL position read, and when.
    wal: Option<(Instant, f64)>,
}

impl Signals {
    /// Signals for a backfill starting now: the baseline is the last
    /// minute's p99.
    pub fn new(latency: Arc<DbLatency>) -> Self {
        let baseline = latency.quantile(0.99, BASELINE_SECS, 0, MIN_REQUESTS);
        Signals {
            latency,
            baseline,
            wal: None,
        }
    }

    pub fn baseline(&self) -> Option<Duration> {
        self.baseline
    }

    /// Everything the throttle watches, now. A signal that cannot be read
    /// is unknown (it does not pause), except the operator's own query,
    /// whose failure holds the backfill.
    pub async fn read(&mut self, db: &Client, s: &Settings) -> Readings {
        let mut r = Readings {
            baseline_p99: self.baseline,
            app_p99: self.latency.quantile(
                0.99,
                s.latency_window.as_secs().max(1),
                0,
                MIN_REQUESTS,
            ),
            ..Readings::default()
        };
        match db
            .query_one(
                "SELECT (SELECT pg_catalog.max(pg_catalog.date_part('epoch', replay_lag)) \
                           FROM pg_catalog.pg_stat_replication)::pg_catalog.float8, \
                        CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL \
                             ELSE (pg_catalog.pg_current_wal_lsn() - '0/0'::pg_catalog.pg_lsn)::pg_catalog.float8 END, \
                        (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity \
                          WHERE state = 'active' AND backend_type = 'client backend' \
                            AND pid <> pg_catalog.pg_backend_pid())",
                &[],
            )
            .await
        {
            Ok(row) => {
                r.replica_lag = Some(Duration::from_secs_f64(
                    row.get::<_, Option<f64>>(0).unwrap_or(0.0).max(0.0),
                ));
                if let Some(lsn) = row.get::<_, Option<f64>>(1) {
                    let now = Instant::now();
                    if let Some((at, before)) = self.wal {
                        let secs = now.duration_since(at).as_secs_f64();
                        if secs > 0.0 {
                            r.wal_rate = Some(((lsn - before).max(0.0) / secs) as u64);
                        }
                    }
                    self.wal = Some((now, lsn));
                }
                r.active_backends = Some(row.get::<_, i64>(2).max(0) as u64);
            }
            Err(e) => tracing::debug!(error = %e, "throttle signals could not be read"),
        }
        if let Some(q) = &s.query {
            r.custom_hold = match db.query_opt(q.as_str(), &[]).await {
                Ok(Some(row)) => row
                    .try_get::<_, Option<bool>>(0)
                    .ok()
                    .flatten()
                    .unwrap_or(false),
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "the throttle query failed; holding the backfill");
                    true
                }
            };
        }
        r
    }
}
