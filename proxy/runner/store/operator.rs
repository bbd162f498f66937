//! What operators ask of a migration past its steps' plain running:
//! COMPLETE (a postponed cut-over, or the end of a kept old column's grace
//! period), REVERT (the plan's revert steps appended and run), and the
//! grace period itself.

use tokio_postgres::Client;

use super::super::model::Status;
use super::super::RunnerError;
use super::requeue;

/// How long a kept old column has left: the cut-over's end plus
/// `contract_after`, from now (zero or less: due).
pub async fn contract_left(
    db: &Client,
    id: i64,
    contract_after: std::time::Duration,
) -> Result<std::time::Duration, RunnerError> {
    let ms: Option<f64> = db
        .query_one(
            "SELECT EXTRACT(epoch FROM pg_catalog.max(finished_at) + $2::pg_catalog.int8 \
             * interval '1 ms' - pg_catalog.now())::pg_catalog.float8 * 1000 \
             FROM ddlgate.steps WHERE migration = $1 AND kind = 'cutover' AND status = 'done'",
            &[&id, &(contract_after.as_millis() as i64)],
        )
        .await?
        .get(0);
    Ok(std::time::Duration::from_secs_f64(
        (ms.unwrap_or(0.0) / 1000.0).max(0.0),
    ))
}

/// Why REVERT cannot undo a migration, or how it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revert {
    /// Its revert steps are queued (it was not running).
    Queued,
    /// Its worker starts them at its next look.
    Requested,
    Refused(String),
}

/// REVERT: the plan's revert steps run next (appended to the migration,
/// which runs again); a migration its worker is running gets the request
/// instead, for the worker to start them.
pub async fn revert(db: &Client, id: i64) -> Result<Revert, RunnerError> {
    let Some(r) = db
        .query_opt(
            "SELECT m.status, m.reverted_at IS NOT NULL, \
                    pg_catalog.jsonb_array_length(coalesce(m.plan->'revert', '[]')) > 0, \
                    EXISTS (SELECT 1 FROM ddlgate.steps s WHERE s.migration = m.id \
                            AND s.kind = 'contract' AND s.status = 'done'), \
                    EXISTS (SELECT 1 FROM ddlgate.steps s WHERE s.migration = m.id \
                            AND s.kind = 'cutover'), \
                    EXISTS (SELECT 1 FROM ddlgate.steps s WHERE s.migration = m.id \
                            AND s.kind = 'cutover' AND s.status = 'done') \
             FROM ddlgate.migrations m WHERE m.id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(Revert::Refused(format!("migration {id} does not exist")));
    };
    let status: String = r.get(0);
    let (reverted, has_steps, contracted, has_cutover, cut_over): (bool, bool, bool, bool, bool) =
        (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
    let refuse = |why: &str| Ok(Revert::Refused(format!("migration {id} {why}")));
    if reverted {
        return refuse("is reverted already");
    }
    if !has_steps {
        return refuse(
            "has no way back in ddlgate (a type change with USING, a dropped or rebuilt \
             index, a multi-part ALTER TABLE): undo it with a statement of its own",
        );
    }
    if contracted {
        return refuse("dropped its old column already (contract_after passed, or COMPLETE)");
    }
    if has_cutover && !cut_over {
        return refuse("has not cut over yet: CANCEL undoes what it did so far");
    }
    match status.as_str() {
        "queued" | "running" => {
            db.execute(
                "UPDATE ddlgate.migrations SET requested = 'revert', updated_at = pg_catalog.now() \
                 WHERE id = $1",
                &[&id],
            )
            .await?;
            Ok(Revert::Requested)
        }
        "succeeded" | "paused" | "failed" => {
            if !start_revert(db, id).await? {
                return refuse(
                    "dropped its old column already (contract_after passed, or COMPLETE)",
                );
            }
            db.execute(
                "UPDATE ddlgate.migrations SET status = 'queued', sqlstate = NULL, error = NULL, \
                 finished_at = NULL, updated_at = pg_catalog.now() WHERE id = $1",
                &[&id],
            )
            .await?;
            Ok(Revert::Queued)
        }
        other => refuse(&format!("is {other}: nothing to revert")),
    }
}

/// Appends the plan's revert steps (the steps not yet run are skipped),
/// and moves the migration to the first of them; in one transaction.
/// False (and the request dropped) when its contract step ran meanwhile:
/// the old column is gone.
pub async fn start_revert(db: &Client, id: i64) -> Result<bool, RunnerError> {
    db.batch_execute("BEGIN").await?;
    let result = append_revert(db, id).await;
    match result {
        Ok(_) => db.batch_execute("COMMIT").await?,
        Err(_) => {
            let _ = db.batch_execute("ROLLBACK").await;
        }
    }
    result
}

async fn append_revert(tx: &Client, id: i64) -> Result<bool, RunnerError> {
    let contracted: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM ddlgate.steps WHERE migration = $1 \
             AND kind = 'contract' AND status = 'done')",
            &[&id],
        )
        .await?
        .get(0);
    if contracted {
        tx.execute(
            "UPDATE ddlgate.migrations SET requested = NULL WHERE id = $1",
            &[&id],
        )
        .await?;
        return Ok(false);
    }
    tx.execute(
        "UPDATE ddlgate.steps SET status = 'skipped', finished_at = pg_catalog.now() \
         WHERE migration = $1 AND status IN ('pending', 'running', 'failed')",
        &[&id],
    )
    .await?;
    tx.execute(
        "INSERT INTO ddlgate.steps (migration, n, kind, sql, what, object, in_transaction) \
         SELECT m.id, m.steps_total + r.ord::integer, r.step->>'kind', r.step->>'sql', \
                'revert: ' || (r.step->>'what'), r.step->>'object', (r.step->>'in_transaction')::boolean \
           FROM ddlgate.migrations m, \
                pg_catalog.jsonb_array_elements(m.plan->'revert') WITH ORDINALITY AS r(step, ord) \
          WHERE m.id = $1",
        &[&id],
    )
    .await?;
    tx.execute(
        "UPDATE ddlgate.migrations SET current_step = steps_total + 1, \
         steps_total = steps_total + pg_catalog.jsonb_array_length(plan->'revert'), \
         reverted_at = pg_catalog.now(), requested = NULL, updated_at = pg_catalog.now() \
         WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(true)
}

/// Whether REVERT started this migration's revert steps.
pub async fn reverting(db: &Client, id: i64) -> Result<bool, RunnerError> {
    Ok(db
        .query_opt(
            "SELECT reverted_at IS NOT NULL FROM ddlgate.migrations WHERE id = $1",
            &[&id],
        )
        .await?
        .is_some_and(|r| r.get(0)))
}

/// Whether the migration still waits for COMPLETE before its cut-over.
pub async fn cutover_postponed(db: &Client, id: i64) -> Result<bool, RunnerError> {
    Ok(db
        .query_opt(
            "SELECT postpone_cutover FROM ddlgate.migrations WHERE id = $1",
            &[&id],
        )
        .await?
        .is_some_and(|r| r.get(0)))
}

/// COMPLETE: the cut-over may run, or the kept old column is dropped
/// now. `None` when the migration has neither left; else whether it was
/// waiting for this (and goes on now).
pub async fn complete(db: &Client, id: i64) -> Result<Option<bool>, RunnerError> {
    let row = db
        .query_opt(
            "UPDATE ddlgate.migrations m SET postpone_cutover = false, updated_at = pg_catalog.now() \
             WHERE m.id = $1 AND m.status IN ('queued', 'running', 'paused') AND EXISTS (\
               SELECT 1 FROM ddlgate.steps s WHERE s.migration = m.id AND s.kind = 'cutover' \
                 AND s.status IN ('pending', 'running', 'failed')) \
             RETURNING m.status = 'paused' AND EXISTS (SELECT 1 FROM ddlgate.steps s \
               WHERE s.migration = m.id AND s.kind = 'cutover' AND s.n = m.current_step)",
            &[&id],
        )
        .await?;
    if let Some(row) = row {
        // Paused at its cut-over: queued again.
        let waiting: bool = row.get(0);
        if waiting {
            requeue(db, id, &[Status::Paused]).await?;
        }
        return Ok(Some(waiting));
    }
    // Cut over, its old column kept: dropped now.
    let kept = db
        .query_opt(
            "SELECT m.status = 'paused' FROM ddlgate.migrations m \
             WHERE m.id = $1 AND m.status IN ('queued', 'running', 'paused') \
               AND EXISTS (SELECT 1 FROM ddlgate.steps s WHERE s.migration = m.id \
                           AND s.kind = 'contract' AND s.status IN ('pending', 'running', 'failed'))",
            &[&id],
        )
        .await?;
    let Some(kept) = kept else {
        return Ok(None);
    };
    let paused: bool = kept.get(0);
    if paused {
        requeue(db, id, &[Status::Paused]).await?;
    }
    db.execute(
        "UPDATE ddlgate.migrations SET requested = 'complete', updated_at = pg_catalog.now() \
         WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(Some(true))
}
