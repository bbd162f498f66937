//! Running migrations: the worker that holds one relation's advisory lock
//! and runs its migrations in order, each step with lock-queue protection
//! and bounded retries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::batches::End;
use super::effect::{After, Tracker};
use super::model::{Progress, Request, Status, StepStatus};
use super::steps::{self, Attempt, Limits};
use super::store::{self, Migration};
use super::{MigrationKey, Runner, RunnerError};
use crate::ddl::plan::StepKind;
use crate::retry::backoff;

/// One relation's migrations, in order, while this instance holds its
/// advisory lock.
pub(super) async fn work(runner: Arc<Runner>, slot: (String, i64), stop: CancellationToken) {
    loop {
        match work_once(&runner, &slot, &stop).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(database = %slot.0, error = %e, "migration worker failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(runner.settings.poll_interval) => {}
                }
            }
        }
        if stop.is_cancelled() || runner.worker_may_end(&slot) {
            return;
        }
    }
}

async fn work_once(
    runner: &Arc<Runner>,
    (database, key): &(String, i64),
    stop: &CancellationToken,
) -> Result<(), RunnerError> {
    let db = runner.connector.connect(database, "migrations").await?;
    // A backend whose ddlgate died stops (and lets go of the lock) soon,
    // not when its statement ends (PostgreSQL 14+).
    let _ = db
        .batch_execute("SET client_connection_check_interval = '1s'")
        .await;
    let mut shown: (String, Vec<i64>) = Default::default();
    loop {
        let locked: bool = db
            .query_one("SELECT pg_catalog.pg_try_advisory_lock($1)", &[key])
            .await?
            .get(0);
        if locked {
            break;
        }
        // Another instance runs this relation's migrations, or someone
        // else holds the key (advisory locks are open to every role).
        if store::head(&db, *key).await?.is_none() {
            return Ok(());
        }
        // Those not started hear who holds it (a running one is the
        // holder's to report on).
        let waiting = store::queued(&db, *key).await?;
        let why = lock_holder(&db, *key, &runner.connector.user).await?;
        // Written when it changes: SHOW MIGRATIONS shows who holds the lock.
        let now = (why, waiting);
        for id in &now.1 {
            if now != shown {
                store::set_progress(&db, *id, &now.0).await?;
            }
            runner.notify(&(database.clone(), *id), Progress::Waiting(now.0.clone()));
        }
        shown = now;
        super::poll::deliver_finished(runner, &db, database).await?;
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(runner.settings.poll_interval) => {}
        }
    }
    while !stop.is_cancelled() {
        let Some((id, status)) = store::head(&db, *key).await? else {
            break;
        };
        let m = (database.clone(), id);
        if status == Status::Paused {
            runner.notify(&m, Progress::Paused);
            break;
        }
        let Some(migration) = store::load(&db, id).await? else {
            break;
        };
        let span = tracing::info_span!(
            "migration",
            id,
            database = %database,
            table = migration.table.as_deref().unwrap_or(""),
            role = %migration.role,
        );
        let interrupt = CancellationToken::new();
        runner.inner().running.insert(m.clone(), interrupt.clone());
        let result = run(runner, &db, &m, migration, &interrupt, stop)
            .instrument(span)
            .await;
        runner.inner().running.remove(&m);
        result?;
    }
    let _ = db
        .execute("SELECT pg_catalog.pg_advisory_unlock($1)", &[key])
        .await;
    Ok(())
}

/// Who holds the relation's migration lock `key` (and since when), as
/// the waiting migration's progress line.
async fn lock_holder(
    db: &tokio_postgres::Client,
    key: i64,
    runner_user: &str,
) -> Result<String, RunnerError> {
    let row = db
        .query_opt(
            "SELECT l.pid, a.usename::pg_catalog.text, a.application_name, \
                    pg_catalog.to_char(coalesce(a.xact_start, a.backend_start), \
                                       'YYYY-MM-DD HH24:MI:SS TZ') \
             FROM pg_catalog.pg_locks l \
             LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
               AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d \
                                  WHERE d.datname = pg_catalog.current_database()) \
               AND l.classid = ($1::pg_catalog.int8 >> 32)::pg_catalog.oid \
               AND l.objid = ($1::pg_catalog.int8 & 4294967295)::pg_catalog.oid AND l.objsubid = 1 \
               AND l.pid <> pg_catalog.pg_backend_pid() \
             LIMIT 1",
            &[&key],
        )
        .await?;
    let Some(row) = row else {
        return Ok("waiting for the table's migration lock".into());
    };
    let pid: i32 = row.get(0);
    let user: Option<String> = row.get(1);
    let app: Option<String> = row.get(2);
    let since: Option<String> = row.get(3);
    let user = user.unwrap_or_else(|| "unknown".into());
    let app = app.unwrap_or_default();
    let since = since.map(|s| format!(" since {s}")).unwrap_or_default();
    // Any session may call itself a runner: only the runner's role is one.
    Ok(
        if app.starts_with("ddlgate runner") && user == runner_user {
            format!("another ddlgate instance (pid {pid}) is running migrations on this table")
        } else {
            format!(
                "waiting: the table's migration lock is held by pid {pid} (user {user}, \
             application \"{app}\"){since}, not by a ddlgate runner"
            )
        },
    )
}

/// How a run ended.
enum Ended {
    Succeeded,
    Failed,
    Paused,
    /// Paused at a cut-over that waits for COMPLETE.
    Postponed,
    /// REVERT appended its steps: run again from the first of them.
    Reverting,
    Cancelled,
    /// Shutdown: left as it is, to resume.
    Stopped,
}

async fn run(
    runner: &Arc<Runner>,
    db: &Client,
    key: &MigrationKey,
    mut m: Migration,
    interrupt: &CancellationToken,
    stop: &CancellationToken,
) -> Result<(), RunnerError> {
    let started = Instant::now();
    let resumed = m.status == Status::Running;
    store::set_status(db, m.id, Status::Running, &runner.instance).await?;
    metrics::gauge!("ddlgate_migrations_running").increment(1.0);
    tracing::info!(
        event = if resumed { "migration.resumed" } else { "migration.started" },
        statement = %m.statement,
        steps = m.steps.len(),
        from_step = m.current_step,
        instance = %runner.instance,
        "migration running"
    );
    let mut tracker = Tracker::start(runner.latency.database(&key.0));
    store::save_effect(db, m.id, &tracker.so_far()).await?;
    let ended = {
        let steps = run_steps(runner, db, key, &mut m, interrupt, stop);
        tokio::pin!(steps);
        loop {
            tokio::select! {
                ended = &mut steps => break ended,
                // Folded in well before the latency ring forgets them.
                _ = tokio::time::sleep(Duration::from_secs(30)) => tracker.sample(),
            }
        }
    };
    metrics::gauge!("ddlgate_migrations_running").decrement(1.0);
    let ended = ended?;
    let (effect, after) = tracker.finish();
    store::save_effect(db, m.id, &effect).await?;
    let secs = started.elapsed().as_secs_f64();
    let status = match ended {
        Ended::Succeeded if store::reverting(db, m.id).await? => {
            store::set_status(db, m.id, Status::Reverted, &runner.instance).await?;
            runner.notify(key, Progress::Succeeded);
            "reverted"
        }
        Ended::Succeeded => {
            store::set_status(db, m.id, Status::Succeeded, &runner.instance).await?;
            runner.notify(key, Progress::Succeeded);
            "succeeded"
        }
        Ended::Reverting => "reverting",
        Ended::Failed => "failed",
        Ended::Paused => {
            store::set_status(db, m.id, Status::Paused, &runner.instance).await?;
            runner.notify(key, Progress::Paused);
            "paused"
        }
        Ended::Postponed => {
            store::set_status(db, m.id, Status::Paused, &runner.instance).await?;
            store::set_progress(
                db,
                m.id,
                &format!(
                    "ready to cut over, postponed: the new column is kept in sync until \
                     COMPLETE {} in the admin console",
                    m.id
                ),
            )
            .await?;
            runner.notify(key, Progress::Postponed);
            "postponed"
        }
        Ended::Cancelled => {
            store::set_status(db, m.id, Status::Cancelled, &runner.instance).await?;
            runner.notify(key, Progress::Cancelled);
            "cancelled"
        }
        Ended::Stopped => "stopped",
    };
    metrics::counter!("ddlgate_migrations_total", "status" => status).increment(1);
    if !matches!(status, "stopped" | "reverting") {
        metrics::histogram!("ddlgate_migration_duration_seconds").record(secs);
    }
    let (before, during) = (
        effect.before.unwrap_or_default(),
        effect.during.unwrap_or_default(),
    );
    tracing::info!(
        event = %format!("migration.{status}"),
        duration_secs = secs,
        app_latency_before = %before,
        app_latency_during = %during,
        "migration {status}"
    );
    if !matches!(status, "stopped" | "reverting") {
        follow_after(runner, key, after, stop);
    }
    Ok(())
}

/// The minute after a migration: measured, recorded and logged
/// (`migration.effect`) once it has passed, unless ddlgate stops first.
fn follow_after(runner: &Arc<Runner>, key: &MigrationKey, after: After, stop: &CancellationToken) {
    let (runner, (database, id), stop) = (runner.clone(), key.clone(), stop.clone());
    tokio::spawn(
        async move {
            let window = tokio::select! {
                w = after.measure() => w,
                _ = stop.cancelled() => return,
            };
            let result = async {
                let db = runner.connector.connect(&database, "migrations").await?;
                let mut effect = store::effect(&db, id).await?;
                effect.after = Some(window);
                store::save_effect(&db, id, &effect).await?;
                Ok::<_, RunnerError>(effect)
            }
            .await;
            match result {
                Ok(effect) => tracing::info!(
                    event = "migration.effect",
                    app_latency_before = %effect.before.unwrap_or_default(),
                    app_latency_during = %effect.during.unwrap_or_default(),
                    app_latency_after = %window,
                    "the migration's effect on the application's latency"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "could not record the minute after a migration")
                }
            }
        }
        .instrument(tracing::info_span!("migration", id, database = %key.0)),
    );
}

/// What a migration's steps run with.
pub(super) struct StepRun<'a> {
    pub(super) runner: &'a Arc<Runner>,
    pub(super) db: &'a Client,
    pub(super) key: &'a MigrationKey,
    pub(super) interrupt: &'a CancellationToken,
    pub(super) stop: &'a CancellationToken,
    pub(super) limits: Limits,
}

/// What one attempt of a step came to.
enum Outcome {
    Done,
    /// It gave up waiting for its lock: again after this delay.
    Retry(std::time::Duration),
    Ended(Ended),
}

async fn run_steps(
    runner: &Arc<Runner>,
    db: &Client,
    key: &MigrationKey,
    m: &mut Migration,
    interrupt: &CancellationToken,
    stop: &CancellationToken,
) -> Result<Ended, RunnerError> {
    let s = &runner.settings;
    let run = StepRun {
        runner,
        db,
        key,
        interrupt,
        stop,
        limits: Limits {
            lock_timeout: s.lock_timeout,
            brief_statement_timeout: s.brief_statement_timeout,
        },
    };
    if m.requested == Some(Request::Cancel) {
        return cancel(db, m, &run.limits).await;
    }
    if let Some(message) = steps::replaced(db, m).await? {
        let f = super::Failure::new("55000", message);
        tracing::warn!(event = "migration.relation_replaced", error = %f.message, "migration stopped");
        store::failed(db, m.id, &f.sqlstate, &f.message).await?;
        runner.notify(key, Progress::Failed(f));
        return Ok(Ended::Failed);
    }
    for i in 0..m.steps.len() {
        if m.steps[i].n < m.current_step || m.steps[i].status.is_complete() {
            continue;
        }
        let mut attempt: u32 = 0;
        loop {
            // Between steps (and attempts): what operators asked for.
            match requested(db, m.id).await? {
                Some(Request::Cancel) => return cancel(db, m, &run.limits).await,
                Some(Request::Pause) => return Ok(Ended::Paused),
                Some(Request::Revert) => {
                    if let Some(ended) = start_revert(db, m).await? {
                        return Ok(ended);
                    }
                }
                Some(Request::Complete) | None => {}
            }
            if stop.is_cancelled() {
                return Ok(Ended::Stopped);
            }
            if m.steps[i].kind == StepKind::Contract {
                if let Some(ended) = run.contract_wait(m).await? {
                    return Ok(ended);
                }
            }
            if m.steps[i].kind == StepKind::Cutover && store::cutover_postponed(db, m.id).await? {
                return Ok(Ended::Postponed);
            }
            match run.attempt(m, i, attempt).await? {
                Outcome::Done => break,
                Outcome::Ended(ended) => return Ok(ended),
                Outcome::Retry(delay) => {
                    attempt += 1;
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(Ended::Stopped),
                        _ = interrupt.cancelled() => return cancel(db, m, &run.limits).await,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
    // A CANCEL that came while the last step finished still undoes it.
    if interrupt.is_cancelled() || requested(db, m.id).await? == Some(Request::Cancel) {
        return cancel(db, m, &run.limits).await;
    }
    Ok(Ended::Succeeded)
}

impl StepRun<'_> {
    /// One attempt of step `i` (`retries` retries so far): recorded,
    /// reported, run until done, failed, interrupted or shut down.
    async fn attempt(
        &self,
        m: &mut Migration,
        i: usize,
        retries: u32,
    ) -> Result<Outcome, RunnerError> {
        let (db, total) = (self.db, m.steps.len());
        let n = m.steps[i].n;
        let progress = format!("step {n} of {total}: {}", m.steps[i].what);
        m.steps[i].attempts = store::step_started(db, m.id, n, &progress).await?;
        let step = &m.steps[i];
        self.runner.notify(
            self.key,
            Progress::Step {
                n,
                total,
                what: step.what.clone(),
            },
        );
        let kind = step.kind.as_str();
        metrics::counter!("ddlgate_migration_steps_total", "kind" => kind, "outcome" => "started")
            .increment(1);
        tracing::info!(event = "migration.step_started", step = n, kind, sql = %step.sql, attempt = step.attempts, "step started");
        let t0 = Instant::now();
        let result = if step.kind == StepKind::Backfill {
            match self.backfill(m, i).await {
                Ok(End::Done) => store::step_ended(db, m.id, n, StepStatus::Done, None)
                    .await
                    .map(|()| Attempt::Done),
                Ok(End::Paused) => {
                    // Its position stays: RESUME goes on from there.
                    store::step_ended(db, m.id, n, StepStatus::Pending, None).await?;
                    return Ok(Outcome::Ended(Ended::Paused));
                }
                Ok(End::Stopped) => return Ok(Outcome::Ended(Ended::Stopped)),
                Ok(End::Interrupted) => {
                    return cancel(db, m, &self.limits).await.map(Outcome::Ended)
                }
                Err(e) => Err(e),
            }
        } else {
            let on_wait = |why: String| self.runner.notify(self.key, Progress::Waiting(why));
            let fut = steps::run(db, m, step, &self.limits, &on_wait);
            tokio::pin!(fut);
            tokio::select! {
                r = &mut fut => r,
                _ = self.interrupt.cancelled() => {
                    self.runner.connector.cancel(db).await;
                    fut.await
                }
                _ = self.stop.cancelled() => {
                    self.runner.connector.cancel(db).await;
                    let r = fut.await;
                    if r.is_err() {
                        // Interrupted by shutdown: resumes at this step.
                        return Ok(Outcome::Ended(Ended::Stopped));
                    }
                    r
                }
            }
        };
        let kind = m.steps[i].kind.as_str();
        let secs = t0.elapsed().as_secs_f64();
        metrics::histogram!("ddlgate_migration_step_duration_seconds", "kind" => kind).record(secs);
        let e = match result {
            Ok(a) => {
                let outcome = match a {
                    Attempt::Done => "succeeded",
                    Attempt::Skipped => "skipped",
                };
                metrics::counter!("ddlgate_migration_steps_total", "kind" => kind, "outcome" => outcome).increment(1);
                tracing::info!(
                    event = "migration.step_succeeded",
                    step = n,
                    kind,
                    outcome,
                    duration_secs = secs,
                    "step {outcome}"
                );
                return Ok(Outcome::Done);
            }
            Err(e) => e,
        };
        let f = e.failure();
        let error = Some((f.sqlstate.as_str(), f.message.as_str()));
        if self.interrupt.is_cancelled() {
            let _ = store::step_ended(db, m.id, n, StepStatus::Failed, error).await;
            return cancel(db, m, &self.limits).await.map(Outcome::Ended);
        }
        let s = &self.runner.settings;
        if f.sqlstate == "55P03" && retries < s.lock_retries {
            let delay = backoff(s.retry_backoff, s.retry_backoff_max, retries + 1);
            store::step_ended(db, m.id, n, StepStatus::Pending, error).await?;
            metrics::counter!("ddlgate_migration_steps_total", "kind" => kind, "outcome" => "retried").increment(1);
            tracing::info!(event = "migration.step_retried", step = n, kind, attempt = retries + 1, delay_ms = delay.as_millis() as u64, error = %f.message, "step gave up on its lock; retrying");
            self.runner.notify(
                self.key,
                Progress::Retrying {
                    n,
                    attempt: retries + 1,
                    delay_ms: delay.as_millis() as u64,
                },
            );
            return Ok(Outcome::Retry(delay));
        }
        if matches!(e, RunnerError::Lost(_) | RunnerError::Connect(_)) {
            // Nothing known about the step: the next worker resumes it.
            return Err(e);
        }
        metrics::counter!("ddlgate_migration_steps_total", "kind" => kind, "outcome" => "failed")
            .increment(1);
        tracing::warn!(event = "migration.step_failed", step = n, kind, sql = %m.steps[i].sql, sqlstate = %f.sqlstate, error = %f.message, duration_secs = secs, "step failed");
        store::step_ended(db, m.id, n, StepStatus::Failed, error).await?;
        store::failed(db, m.id, &f.sqlstate, &f.message).await?;
        self.runner.notify(self.key, Progress::Failed(f));
        Ok(Outcome::Ended(Ended::Failed))
    }
}

/// REVERT, taken up by the worker: the revert steps are appended and the
/// migration runs again from the first of them.
async fn start_revert(db: &Client, m: &Migration) -> Result<Option<Ended>, RunnerError> {
    if !store::start_revert(db, m.id).await? {
        tracing::warn!(
            event = "migration.revert_too_late",
            "REVERT came after the old column was dropped: nothing to swap back to"
        );
        return Ok(None);
    }
    tracing::info!(
        event = "migration.revert_started",
        "REVERT: the change is undone"
    );
    Ok(Some(Ended::Reverting))
}

impl StepRun<'_> {
    /// Before the contract step: the old column stays aside, in sync,
    /// until `contract_after` has passed since the cut-over or COMPLETE;
    /// REVERT swaps back instead. `None`: drop it now.
    async fn contract_wait(&self, m: &Migration) -> Result<Option<Ended>, RunnerError> {
        let s = &self.runner.settings;
        let mut told = false;
        loop {
            let left = store::contract_left(self.db, m.id, s.contract_after).await?;
            if left.is_zero() {
                return Ok(None);
            }
            match requested(self.db, m.id).await? {
                Some(Request::Complete) => return Ok(None),
                Some(Request::Revert) => {
                    if let Some(ended) = start_revert(self.db, m).await? {
                        return Ok(Some(ended));
                    }
                }
                Some(Request::Pause) => return Ok(Some(Ended::Paused)),
                // CANCEL is refused past the cut-over.
                Some(Request::Cancel) | None => {}
            }
            if !told {
                told = true;
                let text = format!(
                    "cut over; the old column is kept aside and in sync for {} s more: \
                     REVERT {id} swaps back, COMPLETE {id} drops it now",
                    left.as_secs(),
                    id = m.id
                );
                store::set_progress(self.db, m.id, &text).await?;
                tracing::info!(
                    event = "migration.kept",
                    left_secs = left.as_secs(),
                    "old column kept aside until the contract"
                );
                self.runner.notify(self.key, Progress::Kept(left));
            }
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(Some(Ended::Stopped)),
                _ = tokio::time::sleep(left.min(s.poll_interval)) => {}
            }
        }
    }
}

/// PAUSE or CANCEL, if an operator asked for one.
async fn requested(db: &Client, id: i64) -> Result<Option<Request>, RunnerError> {
    Ok(store::steering(db, id).await?.0)
}

/// CANCEL: the finished steps are undone, last first, where that is
/// possible (the index built, the NOT VALID constraint added, the new
/// column of a type change); the others stay and are recorded as kept.
/// Past a type change's cut-over the change is made: the steps before it
/// stay, and only the ones after it are not run.
async fn cancel(db: &Client, m: &Migration, limits: &Limits) -> Result<Ended, RunnerError> {
    let fresh = store::load(db, m.id).await?.unwrap_or_else(|| m.clone());
    let after_cutover = fresh
        .steps
        .iter()
        .rposition(|s| s.kind == StepKind::Cutover && s.status == StepStatus::Done)
        .map_or(0, |i| i + 1);
    for s in fresh.steps[after_cutover..].iter().rev() {
        let touched = matches!(
            s.status,
            StepStatus::Done | StepStatus::Running | StepStatus::Failed
        );
        if !touched {
            continue;
        }
        match steps::undo(db, &fresh, s, limits).await {
            Ok(true) => {
                tracing::info!(event = "migration.step_undone", step = s.n, "step undone");
                store::step_ended(db, m.id, s.n, StepStatus::Undone, None).await?;
            }
            Ok(false) => {}
            Err(e) => {
                // Kept as it was, with why in its row (SHOW MIGRATION).
                let f = e.failure();
                tracing::warn!(event = "migration.undo_failed", step = s.n, sqlstate = %f.sqlstate, error = %f.message, "step could not be undone");
                let why = format!("undo failed: {}", f.message);
                store::step_ended(db, m.id, s.n, s.status, Some((&f.sqlstate, &why))).await?;
            }
        }
    }
    Ok(Ended::Cancelled)
}
