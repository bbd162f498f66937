//! Migrations deferred past a client's COMMIT: registered pending with a
//! one-time token, confirmed by `ddlgate.confirm(token)` inside the client's
//! transaction (schema version 4), and removed when that transaction ended
//! without confirming them.

use tokio_postgres::Client;

use super::super::model::Submission;
use super::super::RunnerError;
use super::insert_as;

/// The two-key advisory lock space `ddlgate.confirm` locks a token in
/// ("ddlg"; the two-key form does not collide with the one-key locks). The
/// same number is written into `ddlgate.confirm` by schema version 4.
const CONFIRM_SPACE: i32 = 0x6464_6c67;

/// How old an unconfirmed registration must be before it may be found
/// abandoned: the gate confirms within its own round trip.
const ABANDONED_AFTER_SECS: i64 = 60;

/// Registers a submission to run after the client's COMMIT: pending until
/// `ddlgate.confirm(token)` runs in the client's transaction, which also
/// runs its first `done` steps. Its id and token (random, from the server).
pub async fn preregister(
    db: &mut Client,
    s: &Submission,
    lock_key: i64,
    done: usize,
) -> Result<(i64, String), RunnerError> {
    let (id, token) = insert_as(db, s, lock_key, Some(done)).await?;
    Ok((id, token.unwrap_or_default()))
}

/// Deletes registrations whose client transaction ended without
/// confirming them (rolled back, failed, or its session died): older than
/// a minute, and their token's lock is free. The migrations removed.
pub async fn forget_abandoned(db: &Client) -> Result<u64, RunnerError> {
    let pending = db
        .query(
            "SELECT id, token FROM ddlgate.migrations WHERE status = 'pending_commit' \
             AND created_at < pg_catalog.now() - $1::pg_catalog.int8 * interval '1 s'",
            &[&ABANDONED_AFTER_SECS],
        )
        .await?;
    let mut forgotten = 0;
    for r in pending {
        forgotten += forget_unconfirmed(db, r.get(0), r.get(1)).await?;
    }
    Ok(forgotten)
}

/// Deletes `ids` that are still unconfirmed and whose transaction is over
/// (the gate saw it roll back). The migrations removed, and how many are
/// still pending because a transaction holds their token.
pub async fn forget(db: &Client, ids: &[i64]) -> Result<(u64, usize), RunnerError> {
    let pending = db
        .query(
            "SELECT id, token FROM ddlgate.migrations \
             WHERE status = 'pending_commit' AND id = ANY ($1)",
            &[&ids],
        )
        .await?;
    let (mut forgotten, mut left) = (0, 0);
    for r in pending {
        match forget_unconfirmed(db, r.get(0), r.get(1)).await? {
            0 => left += 1,
            n => forgotten += n,
        }
    }
    Ok((forgotten, left))
}

/// Where a deferred migration stands once its client's transaction ended:
/// its status (`pending_commit`: never confirmed) and lock key.
pub async fn deferred(db: &Client, id: i64) -> Result<Option<(String, i64)>, RunnerError> {
    Ok(db
        .query_opt(
            "SELECT status, lock_key FROM ddlgate.migrations WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// Deletes one unconfirmed registration if no transaction holds its
/// token's lock (one that does may still confirm it).
async fn forget_unconfirmed(db: &Client, id: i64, token: String) -> Result<u64, RunnerError> {
    db.batch_execute("BEGIN").await?;
    let result = async {
        let free: bool = db
            .query_one(
                "SELECT pg_catalog.pg_try_advisory_xact_lock($1, pg_catalog.hashtext($2))",
                &[&CONFIRM_SPACE, &token],
            )
            .await?
            .get(0);
        let n = if free {
            db.execute(
                "DELETE FROM ddlgate.migrations WHERE id = $1 AND status = 'pending_commit'",
                &[&id],
            )
            .await?
        } else {
            0
        };
        db.batch_execute("COMMIT").await?;
        Ok::<_, RunnerError>(n)
    }
    .await;
    if result.is_err() {
        let _ = db.batch_execute("ROLLBACK").await;
    }
    result
}
