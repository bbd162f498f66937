//! Durable migration state in the upstream database: the `ddlgate`
//! schema (`schema`: versioned, upgraded in order under an advisory lock),
//! the reads and writes of migrations and steps (here), what operators ask
//! (`operator`), and migrations deferred past a client's COMMIT (`defer`). Every statement names its
//! schema (`ddlgate.`, `pg_catalog.`), so nothing a submitter creates on a
//! search_path can stand in for ours.
//!
//! The schema belongs to the runner's role. PUBLIC may only call
//! `ddlgate.confirm(token)`, which queues the one registration with that
//! (random, server-made) token: other roles can neither read the
//! statements of others nor forge a migration or the role it runs as.

use tokio_postgres::{Client, Row};

use super::model::{Status, StepStatus, Submission};
use super::RunnerError;
use crate::ddl::plan::StepKind;

mod defer;
mod operator;
mod schema;
pub use defer::*;
pub use operator::*;
pub use schema::*;

/// Records a submission, queued, with one row per step. Its id.
pub async fn insert(db: &mut Client, s: &Submission, lock_key: i64) -> Result<i64, RunnerError> {
    Ok(insert_as(db, s, lock_key, None).await?.0)
}

pub(super) async fn insert_as(
    db: &mut Client,
    s: &Submission,
    lock_key: i64,
    pending: Option<usize>,
) -> Result<(i64, Option<String>), RunnerError> {
    // Pending: its first `done` steps run in the client's transaction, so
    // they are done exactly when it is confirmed.
    let done = pending.unwrap_or(0);
    let pending = pending.is_some();
    let plan = serde_json::to_string(&s.plan).map_err(|e| RunnerError::State(e.to_string()))?;
    let tx = db.transaction().await?;
    let row = tx
        .query_one(
            "INSERT INTO ddlgate.migrations (statement, role, search_path, table_name, \
             lock_key, tag, plan, steps_total, gate_event, database, postpone_cutover, \
             status, token) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9, $10, $11, \
             CASE WHEN $12 THEN 'pending_commit' ELSE 'queued' END, \
             CASE WHEN $12 THEN pg_catalog.replace(pg_catalog.gen_random_uuid()::text \
                  || pg_catalog.gen_random_uuid()::text, '-', '') END) \
             RETURNING id, token",
            &[
                &s.statement,
                &s.role,
                &s.search_path,
                &s.plan.table,
                &lock_key,
                &s.plan.tag,
                &plan,
                &(s.plan.steps.len() as i32),
                &s.event,
                &s.database,
                &s.postpone_cutover,
                &pending,
            ],
        )
        .await?;
    let (id, token): (i64, Option<String>) = (row.get(0), row.get(1));
    for (i, step) in s.plan.steps.iter().enumerate() {
        let backfill = step
            .backfill
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| RunnerError::State(e.to_string()))?;
        // The runner does not run a backfill's script: it runs throttled
        // batches, and says so.
        let what = if step.backfill.is_some() {
            step.what
                .replace(", 1000 pages per transaction", " in throttled batches")
        } else {
            step.what.clone()
        };
        let status = if i < done { "done" } else { "pending" };
        tx.execute(
            "INSERT INTO ddlgate.steps (migration, n, kind, sql, what, object, in_transaction, \
             backfill, undo, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9, $10)",
            &[
                &id,
                &(i as i32 + 1),
                &step.kind.as_str(),
                &step.sql,
                &what,
                &step.object,
                &step.in_transaction,
                &backfill,
                &step.undo,
                &status,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok((id, token))
}

/// A migration as the runner needs it.
#[derive(Debug, Clone)]
pub struct Migration {
    pub id: i64,
    pub statement: String,
    pub role: String,
    pub search_path: String,
    pub table: Option<String>,
    pub status: Status,
    pub requested: Option<super::model::Request>,
    pub current_step: usize,
    /// The relation's advisory lock key (its oid in the low 32 bits).
    pub lock_key: i64,
    pub steps: Vec<StepRow>,
}

#[derive(Debug, Clone)]
pub struct StepRow {
    pub n: usize,
    pub kind: StepKind,
    pub sql: String,
    pub what: String,
    pub object: Option<String>,
    pub in_transaction: bool,
    pub status: StepStatus,
    pub attempts: i32,
    pub backfill: Option<crate::ddl::plan::Backfill>,
    /// How far a backfill got (its JSON), recorded with every batch.
    pub position: Option<String>,
    /// What undoes it, where the plan said.
    pub undo: Option<String>,
}

const MIGRATION_COLUMNS: &str =
    "id, statement, role::text, search_path, table_name, status, requested, current_step, lock_key";

fn migration_of(r: &Row) -> Result<Migration, RunnerError> {
    let status: String = r.get(5);
    let requested: Option<String> = r.get(6);
    Ok(Migration {
        id: r.get(0),
        statement: r.get(1),
        role: r.get(2),
        search_path: r.get(3),
        table: r.get(4),
        status: Status::parse(&status)
            .ok_or_else(|| RunnerError::State(format!("unknown status {status}")))?,
        requested: requested.as_deref().and_then(super::model::Request::parse),
        current_step: r.get::<_, i32>(7).max(1) as usize,
        lock_key: r.get(8),
        steps: Vec::new(),
    })
}

/// One migration with its steps.
pub async fn load(db: &Client, id: i64) -> Result<Option<Migration>, RunnerError> {
    let Some(r) = db
        .query_opt(
            &format!("SELECT {MIGRATION_COLUMNS} FROM ddlgate.migrations WHERE id = $1"),
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut m = migration_of(&r)?;
    for r in db
        .query(
            "SELECT n, kind, sql, what, object, in_transaction, status, attempts, \
             backfill::text, position::text, undo FROM ddlgate.steps WHERE migration = $1 ORDER BY n",
            &[&id],
        )
        .await?
    {
        let kind: String = r.get(1);
        m.steps.push(StepRow {
            n: r.get::<_, i32>(0) as usize,
            kind: StepKind::parse(&kind)
                .ok_or_else(|| RunnerError::State(format!("unknown step kind {kind}")))?,
            sql: r.get(2),
            what: r.get(3),
            object: r.get(4),
            in_transaction: r.get(5),
            status: StepStatus::parse(r.get(6))
                .ok_or_else(|| RunnerError::State("unknown step status".into()))?,
            attempts: r.get(7),
            backfill: r
                .get::<_, Option<String>>(8)
                .map(|j| serde_json::from_str(&j))
                .transpose()
                .map_err(|e| RunnerError::State(format!("a step's backfill: {e}")))?,
            position: r.get(9),
            undo: r.get(10),
        });
    }
    Ok(Some(m))
}

/// The first unfinished migration on `lock_key`: the one that must run
/// (or stay paused) before any later one.
pub async fn head(db: &Client, lock_key: i64) -> Result<Option<(i64, Status)>, RunnerError> {
    let row = db
        .query_opt(
            "SELECT id, status FROM ddlgate.migrations \
             WHERE lock_key = $1 AND status IN ('queued', 'running', 'paused') \
             ORDER BY id LIMIT 1",
            &[&lock_key],
        )
        .await?;
    Ok(row.and_then(|r| Some((r.get(0), Status::parse(r.get::<_, &str>(1))?))))
}

/// The queued migrations on `lock_key`, in the order they run.
pub async fn queued(db: &Client, lock_key: i64) -> Result<Vec<i64>, RunnerError> {
    Ok(db
        .query(
            "SELECT id FROM ddlgate.migrations \
             WHERE lock_key = $1 AND status = 'queued' ORDER BY id",
            &[&lock_key],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The relations with runnable migrations: queued, or running with no
/// live instance (their table lock is free, which the worker checks).
pub async fn runnable_keys(db: &Client) -> Result<Vec<i64>, RunnerError> {
    Ok(db
        .query(
            "SELECT DISTINCT lock_key FROM ddlgate.migrations \
             WHERE status IN ('queued', 'running')",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Status of each of `ids`.
pub async fn statuses(
    db: &Client,
    ids: &[i64],
) -> Result<Vec<(i64, Status, Option<String>, Option<String>)>, RunnerError> {
    let mut out = Vec::new();
    for r in db
        .query(
            "SELECT id, status, sqlstate, error FROM ddlgate.migrations WHERE id = ANY ($1)",
            &[&ids],
        )
        .await?
    {
        if let Some(s) = Status::parse(r.get::<_, &str>(1)) {
            out.push((r.get(0), s, r.get(2), r.get(3)));
        }
    }
    Ok(out)
}

/// What operators asked of a running migration: PAUSE/CANCEL, and throttle
/// settings changed from the console (JSON).
pub async fn steering(
    db: &Client,
    id: i64,
) -> Result<(Option<super::model::Request>, Option<String>), RunnerError> {
    let row = db
        .query_one(
            "SELECT requested, throttle::text FROM ddlgate.migrations WHERE id = $1",
            &[&id],
        )
        .await?;
    let requested: Option<String> = row.get(0);
    Ok((
        requested.as_deref().and_then(super::model::Request::parse),
        row.get(1),
    ))
}

/// One throttle setting of a migration, changed from the console. Whether
/// the migration has a backfill still to run.
pub async fn set_throttle(
    db: &Client,
    id: i64,
    key: &str,
    value: i64,
) -> Result<bool, RunnerError> {
    let n = db
        .execute(
            "UPDATE ddlgate.migrations SET throttle = pg_catalog.jsonb_set( \
               COALESCE(throttle, '{}'::pg_catalog.jsonb), ARRAY[$2::text], pg_catalog.to_jsonb($3::pg_catalog.int8)), \
               updated_at = pg_catalog.now() WHERE id = $1 AND EXISTS (\
               SELECT 1 FROM ddlgate.steps s WHERE s.migration = $1 AND s.kind = 'backfill' \
               AND s.status IN ('pending', 'running', 'failed'))",
            &[&id, &key, &value],
        )
        .await?;
    Ok(n == 1)
}

/// A backfill's position, with the migration's progress line (in the
/// batch's transaction, so both are what the batch committed).
pub async fn save_position(
    db: &Client,
    id: i64,
    n: usize,
    position: &str,
    progress: &str,
) -> Result<(), RunnerError> {
    db.execute(
        "UPDATE ddlgate.steps SET position = $3::text::jsonb WHERE migration = $1 AND n = $2",
        &[&id, &(n as i32), &position],
    )
    .await?;
    set_progress(db, id, progress).await
}

/// The migration's progress line (a paused backfill or cut-over says why).
pub async fn set_progress(db: &Client, id: i64, progress: &str) -> Result<(), RunnerError> {
    db.execute(
        "UPDATE ddlgate.migrations SET progress = $2, updated_at = pg_catalog.now() WHERE id = $1",
        &[&id, &progress],
    )
    .await?;
    Ok(())
}

/// Sets a migration's status (and the instance running it).
pub async fn set_status(
    db: &Client,
    id: i64,
    status: Status,
    instance: &str,
) -> Result<(), RunnerError> {
    db.execute(
        "UPDATE ddlgate.migrations SET status = $2, instance = $3, updated_at = pg_catalog.now(), \
         started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, pg_catalog.now()) ELSE started_at END, \
         finished_at = CASE WHEN $2 IN ('succeeded', 'failed', 'cancelled', 'reverted') \
                       THEN pg_catalog.now() END, \
         requested = CASE WHEN $2 IN ('running', 'queued') THEN requested END, \
         sqlstate = CASE WHEN $2 = 'failed' THEN sqlstate END, \
         error = CASE WHEN $2 = 'failed' THEN error END \
         WHERE id = $1",
        &[&id, &status.as_str(), &instance],
    )
    .await?;
    Ok(())
}

/// Records a migration's effect on the application. A "before" already
/// recorded (by the run a crash interrupted) stays.
pub async fn save_effect(
    db: &Client,
    id: i64,
    effect: &super::effect::Effect,
) -> Result<(), RunnerError> {
    let json = serde_json::to_string(effect).map_err(|e| RunnerError::State(e.to_string()))?;
    db.execute(
        "UPDATE ddlgate.migrations SET effect = $2::text::jsonb \
         || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('before', effect->'before')) \
         WHERE id = $1",
        &[&id, &json],
    )
    .await?;
    Ok(())
}

/// A migration's recorded effect.
pub async fn effect(db: &Client, id: i64) -> Result<super::effect::Effect, RunnerError> {
    let json: Option<String> = db
        .query_opt(
            "SELECT effect::text FROM ddlgate.migrations WHERE id = $1",
            &[&id],
        )
        .await?
        .and_then(|r| r.get(0));
    Ok(json
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default())
}

/// A step starts an attempt.
pub async fn step_started(
    db: &Client,
    id: i64,
    n: usize,
    progress: &str,
) -> Result<i32, RunnerError> {
    let row = db
        .query_one(
            "UPDATE ddlgate.steps SET status = 'running', attempts = attempts + 1, \
             started_at = pg_catalog.now(), finished_at = NULL \
             WHERE migration = $1 AND n = $2 RETURNING attempts",
            &[&id, &(n as i32)],
        )
        .await?;
    db.execute(
        "UPDATE ddlgate.migrations SET current_step = $2, progress = $3, \
         updated_at = pg_catalog.now() WHERE id = $1",
        &[&id, &(n as i32), &progress],
    )
    .await?;
    Ok(row.get(0))
}

/// A step's attempt ends: done, skipped, failed (with its error) or
/// undone; a finished step moves the migration to the next.
pub async fn step_ended(
    db: &Client,
    id: i64,
    n: usize,
    status: StepStatus,
    error: Option<(&str, &str)>,
) -> Result<(), RunnerError> {
    let (code, message) = error.unzip();
    db.execute(
        "UPDATE ddlgate.steps SET status = $3, finished_at = pg_catalog.now(), \
         sqlstate = $4, error = $5 WHERE migration = $1 AND n = $2",
        &[&id, &(n as i32), &status.as_str(), &code, &message],
    )
    .await?;
    if status.is_complete() {
        db.execute(
            "UPDATE ddlgate.migrations SET current_step = $2 + 1, updated_at = pg_catalog.now() \
             WHERE id = $1",
            &[&id, &(n as i32)],
        )
        .await?;
    }
    Ok(())
}

/// The migration failed with the server's error.
pub async fn failed(db: &Client, id: i64, sqlstate: &str, error: &str) -> Result<(), RunnerError> {
    db.execute(
        "UPDATE ddlgate.migrations SET status = 'failed', sqlstate = $2, error = $3, \
         requested = NULL, updated_at = pg_catalog.now(), finished_at = pg_catalog.now() \
         WHERE id = $1",
        &[&id, &sqlstate, &error],
    )
    .await?;
    Ok(())
}

/// Records an operator's request (PAUSE/CANCEL), for whichever instance
/// runs it. Whether the migration exists in a state that takes it.
pub async fn request(
    db: &Client,
    id: i64,
    req: super::model::Request,
) -> Result<Option<Status>, RunnerError> {
    // Past a cut-over, CANCEL has nothing to undo: REVERT is the way back.
    let row = db
        .query_opt(
            "UPDATE ddlgate.migrations m SET requested = $2, updated_at = pg_catalog.now() \
             WHERE m.id = $1 AND m.status IN ('queued', 'running', 'paused') \
               AND ($2 <> 'cancel' OR NOT EXISTS (SELECT 1 FROM ddlgate.steps s \
                    WHERE s.migration = m.id AND s.kind = 'cutover' AND s.status = 'done')) \
             RETURNING m.status",
            &[&id, &req.as_str()],
        )
        .await?;
    Ok(row.and_then(|r| Status::parse(r.get::<_, &str>(0))))
}

/// RESUME of a paused, or RETRY of a failed migration: queued again from
/// its current step. Whether it was in that state.
pub async fn requeue(db: &Client, id: i64, from: &[Status]) -> Result<bool, RunnerError> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let n = db
        .execute(
            "UPDATE ddlgate.migrations SET status = 'queued', requested = NULL, sqlstate = NULL, \
             error = NULL, finished_at = NULL, updated_at = pg_catalog.now() \
             WHERE id = $1 AND status = ANY ($2)",
            &[&id, &from],
        )
        .await?;
    Ok(n == 1)
}

/// The lock key of a migration.
pub async fn lock_key_of(db: &Client, id: i64) -> Result<Option<i64>, RunnerError> {
    Ok(db
        .query_opt(
            "SELECT lock_key FROM ddlgate.migrations WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|r| r.get(0)))
}
