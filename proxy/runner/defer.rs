//! Migrations deferred past a client's COMMIT, the runner's side: a
//! registration made on the runner's own connection before the gate sends
//! the client's in-transaction steps (with `ddlgate.confirm(token)`), the
//! run started once the gate sees the client's COMMIT, and the
//! registration removed when the transaction ended otherwise.

use std::sync::Arc;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::oneshot;

use super::model::{Failure, Progress, Submission};

/// How often, and how far apart, `forget` looks for registrations whose
/// transaction has not let go of its token yet (then `forget_abandoned`
/// removes them).
const FORGET_TRIES: usize = 20;
const FORGET_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);
use super::{store, Runner};

/// A deferred migration, registered and waiting for its confirmation.
#[derive(Debug, Clone)]
pub struct Registered {
    pub id: i64,
    /// The one-time token `ddlgate.confirm` takes: only this gate sees it.
    pub token: String,
}

impl Runner {
    /// Registers `s` to run after the client's COMMIT, its first `done`
    /// steps run by the client's transaction: checked as a submission is
    /// (the runner may act as its role), then written pending.
    pub fn preregister(
        self: &Arc<Self>,
        s: Submission,
        done: usize,
    ) -> oneshot::Receiver<Result<Registered, Failure>> {
        let (tx, rx) = oneshot::channel();
        let r = self.clone();
        let name = format!("register on {}", s.database);
        self.jobs.spawn("submit", name, move |_stop| async move {
            let result = async {
                let (mut db, key) = r.admit(&s).await?;
                store::preregister(&mut db, &s, key, done)
                    .await
                    .map_err(|e| e.failure())
            }
            .await;
            match result {
                Ok((id, token)) => {
                    tracing::info!(
                        event = "migration.registered",
                        migration = id,
                        database = %s.database,
                        table = s.plan.table.as_deref().unwrap_or(""),
                        role = %s.role,
                        steps = s.plan.steps.len(),
                        in_transaction = done,
                        gate_event = %s.event,
                        "migration registered to run after the client's COMMIT"
                    );
                    let _ = tx.send(Ok(Registered { id, token }));
                }
                Err(f) => {
                    tracing::warn!(
                        event = "migration.refused",
                        database = %s.database,
                        role = %s.role,
                        sqlstate = %f.sqlstate,
                        error = %f.message,
                        "deferred migration not registered"
                    );
                    let _ = tx.send(Err(f));
                }
            }
        });
        rx
    }

    /// The client's transaction committed: runs deferred migration `id`
    /// and tells the receiver how it goes. One the transaction did not
    /// confirm after all (rolled back to a savepoint) is `Discarded`.
    pub fn follow(self: &Arc<Self>, database: &str, id: i64) -> UnboundedReceiver<Progress> {
        let (tx, rx) = unbounded_channel();
        let r = self.clone();
        let database = database.to_owned();
        let name = format!("start migration {id} on {database}");
        self.jobs.spawn("submit", name, move |_stop| async move {
            let state = match r.connector.connect(&database, "submit").await {
                Ok(db) => store::deferred(&db, id).await.map(|s| (db, s)),
                Err(e) => Err(e),
            };
            match state {
                Ok((db, None)) => {
                    let _ = tx.send(Progress::Discarded);
                    drop(db);
                }
                Ok((db, Some((status, _)))) if status == "pending_commit" => {
                    r.forget(&database, vec![id]);
                    drop(db);
                    tracing::info!(event = "migration.discarded", migration = id, database = %database, "deferred migration was not confirmed by its transaction");
                    let _ = tx.send(Progress::Discarded);
                }
                Ok((_, Some((_, key)))) => {
                    tracing::info!(event = "migration.queued", migration = id, database = %database, "deferred migration committed by its client");
                    metrics::counter!("ddlgate_migrations_total", "status" => "queued")
                        .increment(1);
                    r.inner()
                        .followers
                        .entry((database.clone(), id))
                        .or_default()
                        .push(tx);
                    r.wake(&database, key);
                }
                Err(e) => {
                    // The poll loop finds it queued and runs it; the
                    // client is told it could not follow.
                    tracing::warn!(migration = id, database = %database, error = %e, "cannot start a deferred migration now; the poll loop will");
                    let _ = tx.send(Progress::Waiting(format!(
                        "ddlgate cannot reach the database now ({e}); it starts the migration when it can"
                    )));
                }
            }
        });
        rx
    }

    /// The client's transaction ended without committing: its deferred
    /// registrations go.
    pub fn forget(self: &Arc<Self>, database: &str, ids: Vec<i64>) {
        let r = self.clone();
        let database = database.to_owned();
        let name = format!("forget deferred migrations on {database}");
        self.jobs.spawn("submit", name, move |stop| async move {
            let result = async {
                let db = r.connector.connect(&database, "submit").await?;
                let mut removed = 0;
                // A session that just ended may hold its token's lock a
                // moment longer, while its backend rolls back.
                for _ in 0..FORGET_TRIES {
                    let (n, left) = store::forget(&db, &ids).await?;
                    removed += n;
                    if left == 0 {
                        break;
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(FORGET_PAUSE) => {}
                    }
                }
                Ok::<_, super::RunnerError>(removed)
            }
            .await;
            match result {
                Ok(n) => tracing::info!(event = "migration.discarded", database = %database, migrations = ?ids, removed = n, "client's transaction did not commit its deferred migrations"),
                // forget_abandoned removes them within minutes.
                Err(e) => tracing::warn!(database = %database, error = %e, "cannot remove unconfirmed migrations now"),
            }
        });
    }
}
