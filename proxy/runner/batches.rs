//! A backfill step's loop: read the signals, ask the throttle, run one
//! batch in its own transaction as the submitter (committed with the
//! position it reached), sleep as the throttle says; between batches,
//! heed PAUSE, CANCEL and shutdown. A batch that hits lock_timeout, a
//! deadlock or a serialization failure is retried after a backoff; it
//! changed nothing.

use std::time::Duration;

use tokio::time::Instant;

use super::backfill::{self, Batch, BatchResult, Position};
use super::exec::StepRun;
use super::model::Request;
use super::sandbox;
use super::signals::Signals;
use super::steps;
use super::store::{self, Migration};
use super::throttle::{Decision, Readings, Settings, Throttle};
use super::RunnerError;
use crate::retry::backoff;

/// How a backfill's loop ended.
pub(super) enum End {
    Done,
    Paused,
    Stopped,
    /// CANCEL: the caller undoes.
    Interrupted,
}

/// Progress is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl StepRun<'_> {
    /// Runs step `i` of `m`, a backfill, from its recorded position.
    pub(super) async fn backfill(&self, m: &mut Migration, i: usize) -> Result<End, RunnerError> {
        let db = self.db;
        let spec = m.steps[i]
            .backfill
            .clone()
            .ok_or_else(|| RunnerError::State("a backfill step without its backfill".into()))?;
        let mut pos: Position = match m.steps[i].position.clone() {
            Some(j) => serde_json::from_str(&j)
                .map_err(|e| RunnerError::State(format!("a backfill's position: {e}")))?,
            None => self.first_position(m, i, &spec).await?,
        };
        let n = m.steps[i].n;
        let settings = &self.runner.settings;
        let mut throttle = Throttle::new(settings.throttle.clone());
        let mut signals = Signals::new(self.runner.latency.database(&self.key.0));
        tracing::info!(
            event = "migration.backfill_started",
            step = n,
            position = %pos.describe(),
            baseline_p99_ms = signals.baseline().map(|d| d.as_secs_f64() * 1000.0),
            "backfill running"
        );
        let started = Instant::now();
        let mut readings = Readings::default();
        let mut read_at: Option<Instant> = None;
        let mut paused: Option<String> = None;
        let mut logged = Instant::now();
        let mut failures = 0u32;
        loop {
            if self.interrupt.is_cancelled() {
                return Ok(End::Interrupted);
            }
            if self.stop.is_cancelled() {
                return Ok(End::Stopped);
            }
            let recheck = throttle.settings().recheck;
            if read_at.is_none_or(|t| t.elapsed() >= recheck) {
                let (request, overrides) = store::steering(db, m.id).await?;
                match request {
                    Some(Request::Cancel) => return Ok(End::Interrupted),
                    Some(Request::Pause) => return Ok(End::Paused),
                    // Before its cut-over neither applies to a type change.
                    Some(Request::Complete | Request::Revert) | None => {}
                }
                let wanted = with_overrides(&settings.throttle, overrides.as_deref());
                if wanted != *throttle.settings() {
                    tracing::info!(
                        event = "migration.throttle_changed",
                        batch_time_ms = wanted.batch_time.as_millis() as u64,
                        max_rows_per_sec = wanted.max_rows_per_sec,
                        "backfill throttle changed"
                    );
                    throttle.set(wanted);
                }
                readings = signals.read(db, throttle.settings()).await;
                throttle.observe(&readings);
                read_at = Some(Instant::now());
            }
            let rows = match throttle.decide(&readings) {
                Decision::Pause { reason } => {
                    if paused.as_deref() != Some(reason.as_str()) {
                        tracing::info!(event = "migration.backfill_paused", reason = %reason, "backfill paused");
                        metrics::counter!("ddlgate_backfill_pauses_total").increment(1);
                        metrics::gauge!("ddlgate_backfill_paused").set(1.0);
                        let text = self.progress(m, i, &pos, &throttle, Some(&reason));
                        store::set_progress(db, m.id, &text).await?;
                    }
                    paused = Some(reason);
                    read_at = None;
                    self.sleep(recheck).await;
                    continue;
                }
                Decision::Run { rows } => rows,
            };
            if let Some(reason) = paused.take() {
                tracing::info!(event = "migration.backfill_resumed", after = %reason, "backfill resumed");
                metrics::gauge!("ddlgate_backfill_paused").set(0.0);
            }
            let Some(batch) =
                backfill::next_batch(&spec, &pos, rows, backfill::rows_per_page(&pos))
            else {
                if backfill::next_pass(db, &spec, &mut pos).await? {
                    self.save(m, i, &pos, &throttle).await?;
                    continue;
                }
                tracing::info!(
                    event = "migration.backfill_finished",
                    rows = pos.rows,
                    batches = pos.batches,
                    duration_secs = started.elapsed().as_secs_f64(),
                    "backfill finished"
                );
                return Ok(End::Done);
            };
            let t0 = Instant::now();
            match self.batch(m, i, &batch, &pos, &throttle).await {
                Ok((r, next)) => {
                    failures = 0;
                    pos = next;
                    let took = t0.elapsed();
                    let sleep = throttle.done(
                        rows,
                        r.covered.max(0) as u64,
                        took,
                        readings.app_p99.is_some(),
                    );
                    metrics::counter!("ddlgate_backfill_rows_total")
                        .increment(r.changed.max(0) as u64);
                    metrics::gauge!("ddlgate_backfill_rows_per_second")
                        .set(throttle.rows_per_sec());
                    metrics::gauge!("ddlgate_backfill_batch_size").set(throttle.batch() as f64);
                    if logged.elapsed() >= LOG_EVERY {
                        logged = Instant::now();
                        tracing::info!(
                            event = "migration.backfill_progress",
                            position = %pos.describe(),
                            rows_per_sec = throttle.rows_per_sec() as u64,
                            batch = throttle.batch(),
                            yield_ratio = throttle.yield_ratio(),
                            app_p99_ms = readings.app_p99.map(|d| d.as_secs_f64() * 1000.0),
                            "backfill progress"
                        );
                    }
                    if !sleep.is_zero() && !self.sleep(sleep).await {
                        continue;
                    }
                }
                Err(e) if retryable(&e) && failures < settings.lock_retries.max(1) => {
                    failures += 1;
                    let delay =
                        backoff(settings.retry_backoff, settings.retry_backoff_max, failures);
                    tracing::info!(
                        event = "migration.backfill_batch_retried",
                        attempt = failures,
                        sqlstate = %e.sqlstate(),
                        error = %e,
                        delay_ms = delay.as_millis() as u64,
                        "backfill batch rolled back; retrying"
                    );
                    self.sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sleeps `d`; false if woken early by CANCEL or shutdown.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.interrupt.cancelled() => false,
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// Where the backfill starts: read as the submitter, recorded before
    /// the first batch.
    async fn first_position(
        &self,
        m: &mut Migration,
        i: usize,
        spec: &crate::ddl::plan::Backfill,
    ) -> Result<Position, RunnerError> {
        let db = self.db;
        db.batch_execute(&format!("BEGIN; {}", sandbox::CLEAN_SESSION))
            .await?;
        let result = async {
            steps::become_submitter(db, m, true).await?;
            let Some(oid) = steps::resolve(db, m, &spec.table).await? else {
                return Err(RunnerError::Server(super::model::Failure::new(
                    "42P01",
                    format!("relation {} does not exist", spec.table),
                )));
            };
            let sandbox = sandbox::Sandbox {
                db,
                path: &m.search_path,
                local: String::new(),
            };
            let pos = backfill::start(&sandbox, oid, spec).await?;
            sandbox::close(db).await?;
            db.batch_execute(steps::BECOME_RUNNER).await?;
            sandbox::check_commit(db).await?;
            Ok::<_, RunnerError>(pos)
        }
        .await;
        let pos = match result {
            Ok(p) => p,
            Err(e) => {
                let _ = db.batch_execute("ROLLBACK").await;
                let _ = db.batch_execute(steps::BECOME_RUNNER).await;
                return Err(e);
            }
        };
        db.batch_execute("COMMIT").await?;
        let throttle = Throttle::new(self.runner.settings.throttle.clone());
        self.save(m, i, &pos, &throttle).await?;
        Ok(pos)
    }

    /// Records `pos` (and keeps it in `m`, for a retry in this run).
    async fn save(
        &self,
        m: &mut Migration,
        i: usize,
        pos: &Position,
        throttle: &Throttle,
    ) -> Result<(), RunnerError> {
        let json = self.write_position(m, i, pos, throttle).await?;
        m.steps[i].position = Some(json);
        Ok(())
    }

    /// Writes `pos` and the progress line it makes; the JSON written.
    async fn write_position(
        &self,
        m: &Migration,
        i: usize,
        pos: &Position,
        throttle: &Throttle,
    ) -> Result<String, RunnerError> {
        let json = serde_json::to_string(pos).map_err(|e| RunnerError::State(e.to_string()))?;
        let text = self.progress(m, i, pos, throttle, None);
        store::save_position(self.db, m.id, m.steps[i].n, &json, &text).await?;
        Ok(json)
    }

    /// One batch, in its own transaction as the submitter, committed with
    /// the position it reached.
    async fn batch(
        &self,
        m: &mut Migration,
        i: usize,
        batch: &Batch,
        pos: &Position,
        throttle: &Throttle,
    ) -> Result<(BatchResult, Position), RunnerError> {
        let db = self.db;
        let limits = &self.limits;
        db.batch_execute(&format!(
            "BEGIN; {}; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
            sandbox::CLEAN_SESSION,
            limits.lock_timeout.as_millis(),
            limits.brief_statement_timeout.as_millis()
        ))
        .await?;
        let result = async {
            steps::become_submitter(db, m, true).await?;
            let sandbox = sandbox::Sandbox {
                db,
                path: &m.search_path,
                local: format!(
                    "SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
                    limits.lock_timeout.as_millis(),
                    limits.brief_statement_timeout.as_millis()
                ),
            };
            let r = backfill::run_batch(&sandbox, batch).await?;
            sandbox::close(db).await?;
            steps::check_role(db, m).await?;
            db.batch_execute(steps::BECOME_RUNNER).await?;
            sandbox::check_commit(db).await?;
            let mut next = pos.clone();
            backfill::advance(&mut next, batch, &r);
            let json = self.write_position(m, i, &next, throttle).await?;
            db.batch_execute("COMMIT").await?;
            Ok::<_, RunnerError>((r, next, json))
        }
        .await;
        match result {
            Ok((r, next, json)) => {
                m.steps[i].position = Some(json);
                Ok((r, next))
            }
            Err(e) => {
                let _ = db.batch_execute("ROLLBACK").await;
                let _ = db.batch_execute(steps::BECOME_RUNNER).await;
                Err(e)
            }
        }
    }

    /// The migration's progress line: how far, how fast, or why paused.
    fn progress(
        &self,
        m: &Migration,
        i: usize,
        pos: &Position,
        throttle: &Throttle,
        paused: Option<&str>,
    ) -> String {
        let s = &m.steps[i];
        let head = format!(
            "step {} of {}: {}: {}",
            s.n,
            m.steps.len(),
            s.what,
            pos.describe()
        );
        match paused {
            Some(reason) => format!("{head}; paused: {reason}"),
            None => format!(
                "{head}, {} rows/s, batch {}",
                throttle.rows_per_sec() as u64,
                throttle.batch()
            ),
        }
    }
}

/// The configured throttle with what operators set for this migration
/// (`batch_time_ms`, `max_rows_per_sec`).
fn with_overrides(base: &Settings, overrides: Option<&str>) -> Settings {
    let mut s = base.clone();
    let Some(v) = overrides.and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok()) else {
        return s;
    };
    if let Some(ms) = v.get(BATCH_TIME_MS).and_then(serde_json::Value::as_u64) {
        s.batch_time = Duration::from_millis(ms.max(1));
    }
    if let Some(n) = v.get(MAX_ROWS_PER_SEC).and_then(serde_json::Value::as_u64) {
        s.max_rows_per_sec = n;
    }
    s
}

/// The keys of a migration's throttle overrides.
pub(super) const BATCH_TIME_MS: &str = "batch_time_ms";
pub(super) const MAX_ROWS_PER_SEC: &str = "max_rows_per_sec";

/// Errors after which a batch is simply tried again: it changed nothing.
fn retryable(e: &RunnerError) -> bool {
    matches!(e.sqlstate(), "55P03" | "40P01" | "40001")
}
