//! Running migrations: the worker that holds one relation's advisory lock
//! and runs its migrations in order, each step with lock-queue protection
//! and bounded retries; and the poll loop that finds work this instance
//! did not submit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::model::{Progress, Request, Status, StepStatus};
use super::steps::{self, Attempt, Limits};
use super::store::{self, Migration};
use super::{MigrationKey, Runner, RunnerError};
use crate::retry::backoff;

/// How often the databases are looked through again for a `ddlgate`
/// schema: one another instance created since is then polled here too.
const DISCOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Finds work: every database with a `ddlgate` schema (looked for at start
/// and every [`DISCOVER_EVERY`]), then, every poll interval, runnable
/// migrations and requests in the known ones.
pub(super) async fn poll(runner: Arc<Runner>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(runner.settings.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_discovery: Option<tokio::time::Instant> = None;
    // One connection per database, kept between polls (a connection is a
    // server process: opening one per poll would fork one every interval).
    let mut conns: HashMap<String, Client> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if last_discovery.is_none_or(|at| at.elapsed() >= DISCOVER_EVERY) {
            last_discovery = Some(tokio::time::Instant::now());
            if let Err(e) = discover(&runner).await {
                tracing::warn!(error = %e, "runner could not list the upstream's databases");
            }
        }
        for database in runner.databases() {
            if conns.get(&database).is_none_or(Client::is_closed) {
                match runner.connector.connect(&database, "poll").await {
                    Ok(c) => {
                        conns.insert(database.clone(), c);
                    }
                    Err(e) => {
                        tracing::warn!(database = %database, error = %e, "runner cannot poll the database");
                        continue;
                    }
                }
            }
            let db = &conns[&database];
            if let Err(e) = poll_database(&runner, db, &database).await {
                tracing::warn!(database = %database, error = %e, "runner poll failed");
                conns.remove(&database);
            }
        }
    }
}

/// The databases with migration state not yet known here: so that
/// migrations a crash or another instance left behind resume (or show)
/// without anyone submitting more here.
async fn discover(runner: &Runner) -> Result<(), RunnerError> {
    let home = runner
        .connector
        .target
        .database
        .clone()
        .unwrap_or_else(|| "postgres".into());
    let db = runner.connector.connect(&home, "discover").await?;
    let names: Vec<String> = db
        .query(
            "SELECT datname::text FROM pg_catalog.pg_database \
             WHERE datallowconn AND NOT datistemplate \
             AND pg_catalog.has_database_privilege(datname, 'CONNECT')",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(db);
    let known = runner.databases();
    for name in names.into_iter().filter(|n| !known.contains(n)) {
        let db = match runner.connector.connect(&name, "discover").await {
            Ok(db) => db,
            Err(e) => {
                tracing::warn!(database = %name, error = %e, "runner cannot look for migrations here");
                continue;
            }
        };
        if store::version(&db).await.ok().flatten().is_some() {
            runner.inner().databases.insert(name);
        }
    }
    Ok(())
}

async fn poll_database(
    runner: &Arc<Runner>,
    db: &Client,
    database: &str,
) -> Result<(), RunnerError> {
    for key in store::runnable_keys(db).await? {
        runner.wake(database, key);
    }
    // Requests given on another instance for what runs here.
    let here: Vec<i64> = runner
        .running_here()
        .into_iter()
        .filter(|(d, _)| d == database)
        .map(|(_, id)| id)
        .collect();
    if !here.is_empty() {
        for r in db
            .query(
                "SELECT id FROM ddlgate.migrations WHERE id = ANY ($1) AND requested = 'cancel'",
                &[&here],
            )
            .await?
        {
            runner.interrupt(&(database.to_owned(), r.get(0)));
        }
    }
    // Followed migrations another instance finished.
    deliver_finished(runner, db, database).await
}

/// Sessions here waiting on migrations that ended elsewhere hear the end.
async fn deliver_finished(runner: &Runner, db: &Client, database: &str) -> Result<(), RunnerError> {
    let followed = runner.followed(database);
    if followed.is_empty() {
        return Ok(());
    }
    for (id, status, code, error) in store::statuses(db, &followed).await? {
        let key = (database.to_owned(), id);
        match status {
            Status::Succeeded => runner.notify(&key, Progress::Succeeded),
            Status::Cancelled => runner.notify(&key, Progress::Cancelled),
            Status::Failed => runner.notify(
                &key,
                Progress::Failed(super::Failure::new(
                    code.as_deref().unwrap_or("XX000"),
                    error.unwrap_or_default(),
                )),
            ),
            _ => {}
        }
    }
    Ok(())
}

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
    loop {
        let locked: bool = db
            .query_one("SELECT pg_catalog.pg_try_advisory_lock($1)", &[key])
            .await?
            .get(0);
        if locked {
            break;
        }
        // Another instance runs this relation's migrations.
        let Some((head, _)) = store::head(&db, *key).await? else {
            return Ok(());
        };
        runner.notify(
            &(database.clone(), head),
            Progress::Waiting(
                "another ddlgate instance is running migrations on this table".into(),
            ),
        );
        deliver_finished(runner, &db, database).await?;
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

/// How a run ended.
enum Ended {
    Succeeded,
    Failed,
    Paused,
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
    let ended = run_steps(runner, db, key, &mut m, interrupt, stop).await;
    metrics::gauge!("ddlgate_migrations_running").decrement(1.0);
    let ended = ended?;
    let secs = started.elapsed().as_secs_f64();
    let status = match ended {
        Ended::Succeeded => {
            store::set_status(db, m.id, Status::Succeeded, &runner.instance).await?;
            runner.notify(key, Progress::Succeeded);
            "succeeded"
        }
        Ended::Failed => "failed",
        Ended::Paused => {
            store::set_status(db, m.id, Status::Paused, &runner.instance).await?;
            runner.notify(key, Progress::Paused);
            "paused"
        }
        Ended::Cancelled => {
            store::set_status(db, m.id, Status::Cancelled, &runner.instance).await?;
            runner.notify(key, Progress::Cancelled);
            "cancelled"
        }
        Ended::Stopped => "stopped",
    };
    metrics::counter!("ddlgate_migrations_total", "status" => status).increment(1);
    if status != "stopped" {
        metrics::histogram!("ddlgate_migration_duration_seconds").record(secs);
    }
    tracing::info!(
        event = %format!("migration.{status}"),
        duration_secs = secs,
        "migration {status}"
    );
    Ok(())
}

async fn run_steps(
    runner: &Arc<Runner>,
    db: &Client,
    key: &MigrationKey,
    m: &mut Migration,
    interrupt: &CancellationToken,
    stop: &CancellationToken,
) -> Result<Ended, RunnerError> {
    let total = m.steps.len();
    let s = &runner.settings;
    let limits = Limits {
        lock_timeout: s.lock_timeout,
        brief_statement_timeout: s.brief_statement_timeout,
    };
    if m.requested == Some(Request::Cancel) {
        return cancel(db, m, &limits).await;
    }
    for i in 0..total {
        let n = m.steps[i].n;
        if n < m.current_step || m.steps[i].status.is_complete() {
            continue;
        }
        let mut attempt: u32 = 0;
        loop {
            // Between steps (and attempts): what operators asked for.
            match requested(db, m.id).await? {
                Some(Request::Cancel) => return cancel(db, m, &limits).await,
                Some(Request::Pause) => return Ok(Ended::Paused),
                None => {}
            }
            if stop.is_cancelled() {
                return Ok(Ended::Stopped);
            }
            let step = &m.steps[i];
            let progress = format!("step {n} of {total}: {}", step.what);
            m.steps[i].attempts = store::step_started(db, m.id, n, &progress).await?;
            let step = &m.steps[i];
            runner.notify(
                key,
                Progress::Step {
                    n,
                    total,
                    what: step.what.clone(),
                },
            );
            let kind = step.kind.as_str();
            metrics::counter!("ddlgate_migration_steps_total", "kind" => kind, "outcome" => "started").increment(1);
            tracing::info!(event = "migration.step_started", step = n, kind, sql = %step.sql, attempt = step.attempts, "step started");
            let t0 = Instant::now();
            let result = {
                let fut = steps::run(db, m, step, &limits);
                tokio::pin!(fut);
                tokio::select! {
                    r = &mut fut => r,
                    _ = interrupt.cancelled() => {
                        runner.connector.cancel(db).await;
                        fut.await
                    }
                    _ = stop.cancelled() => {
                        runner.connector.cancel(db).await;
                        let r = fut.await;
                        if r.is_err() {
                            // Interrupted by shutdown: resumes at this step.
                            return Ok(Ended::Stopped);
                        }
                        r
                    }
                }
            };
            let secs = t0.elapsed().as_secs_f64();
            metrics::histogram!("ddlgate_migration_step_duration_seconds", "kind" => kind)
                .record(secs);
            match result {
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
                    break;
                }
                Err(e) => {
                    let f = e.failure();
                    if interrupt.is_cancelled() {
                        let _ = store::step_ended(
                            db,
                            m.id,
                            n,
                            StepStatus::Failed,
                            Some((&f.sqlstate, &f.message)),
                        )
                        .await;
                        return cancel(db, m, &limits).await;
                    }
                    if f.sqlstate == "55P03" && attempt < s.lock_retries {
                        attempt += 1;
                        let delay = backoff(s.retry_backoff, s.retry_backoff_max, attempt);
                        store::step_ended(
                            db,
                            m.id,
                            n,
                            StepStatus::Pending,
                            Some((&f.sqlstate, &f.message)),
                        )
                        .await?;
                        metrics::counter!("ddlgate_migration_steps_total", "kind" => kind, "outcome" => "retried").increment(1);
                        tracing::info!(event = "migration.step_retried", step = n, kind, attempt, delay_ms = delay.as_millis() as u64, error = %f.message, "step gave up on its lock; retrying");
                        runner.notify(
                            key,
                            Progress::Retrying {
                                n,
                                attempt,
                                delay_ms: delay.as_millis() as u64,
                            },
                        );
                        tokio::select! {
                            _ = stop.cancelled() => return Ok(Ended::Stopped),
                            _ = interrupt.cancelled() => return cancel(db, m, &limits).await,
                            _ = tokio::time::sleep(delay) => {}
                        }
                        continue;
                    }
                    if matches!(e, RunnerError::Lost(_) | RunnerError::Connect(_)) {
                        // Nothing known about the step: the next worker resumes it.
                        return Err(e);
                    }
                    metrics::counter!("ddlgate_migration_steps_total", "kind" => kind, "outcome" => "failed").increment(1);
                    tracing::warn!(event = "migration.step_failed", step = n, kind, sql = %m.steps[i].sql, sqlstate = %f.sqlstate, error = %f.message, duration_secs = secs, "step failed");
                    store::step_ended(
                        db,
                        m.id,
                        n,
                        StepStatus::Failed,
                        Some((&f.sqlstate, &f.message)),
                    )
                    .await?;
                    store::failed(db, m.id, &f.sqlstate, &f.message).await?;
                    runner.notify(key, Progress::Failed(f));
                    return Ok(Ended::Failed);
                }
            }
        }
    }
    // A CANCEL that came while the last step finished still undoes it.
    if interrupt.is_cancelled() || requested(db, m.id).await? == Some(Request::Cancel) {
        return cancel(db, m, &limits).await;
    }
    Ok(Ended::Succeeded)
}

async fn requested(db: &Client, id: i64) -> Result<Option<Request>, RunnerError> {
    let row = db
        .query_one(
            "SELECT requested FROM ddlgate.migrations WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.get::<_, Option<&str>>(0).and_then(Request::parse))
}

/// CANCEL: the finished steps are undone, last first, where that is
/// possible (the index built, the NOT VALID constraint added); the others
/// stay and are recorded as kept.
async fn cancel(db: &Client, m: &Migration, limits: &Limits) -> Result<Ended, RunnerError> {
    let fresh = store::load(db, m.id).await?.unwrap_or_else(|| m.clone());
    for s in fresh.steps.iter().rev() {
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
                tracing::warn!(event = "migration.undo_failed", step = s.n, error = %e, "step could not be undone");
            }
        }
    }
    Ok(Ended::Cancelled)
}
