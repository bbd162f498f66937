//! Running one step as the submitting role: the timeouts its kind allows,
//! the catalog check that tells whether an earlier attempt already did it,
//! the cleanup of what a failed CONCURRENTLY build leaves, and the undo
//! that CANCEL runs.
//!
//! A step that may run in a transaction runs in one together with the
//! record that it is done, so after a crash it either happened and is
//! recorded, or neither. The others (CONCURRENTLY forms) cannot: before
//! each attempt, the catalog says whether an earlier attempt got there.

use std::time::Duration;

use tokio_postgres::Client;

use super::model::StepStatus;
use super::sandbox;
use super::store::{self, Migration, StepRow};
use super::RunnerError;
use crate::ddl::op::{quote_ident, unquote};
use crate::ddl::plan::StepKind;

/// How long one attempt of a step may wait and run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub lock_timeout: Duration,
    pub brief_statement_timeout: Duration,
}

/// `lock_timeout` and `statement_timeout` for a step of `kind`. The
/// CONCURRENTLY forms wait for older transactions as part of their work,
/// and their SHARE UPDATE EXCLUSIVE lock queues no reader or writer, so
/// they get neither; a scan (VALIDATE) gets no statement_timeout.
fn timeouts(kind: StepKind, limits: &Limits) -> (Duration, Duration) {
    match kind {
        StepKind::Brief | StepKind::Cutover | StepKind::Contract => {
            (limits.lock_timeout, limits.brief_statement_timeout)
        }
        StepKind::Validate | StepKind::Backfill => (limits.lock_timeout, Duration::ZERO),
        StepKind::BuildIndex | StepKind::DropIndex | StepKind::Reindex | StepKind::Detach => {
            (Duration::ZERO, Duration::ZERO)
        }
    }
}

/// `SET [LOCAL] lock_timeout …; SET [LOCAL] statement_timeout …`.
fn set_timeouts(lock: Duration, statement: Duration, local: bool) -> String {
    let scope = if local { "LOCAL " } else { "" };
    format!(
        "SET {scope}lock_timeout = '{}ms'; SET {scope}statement_timeout = '{}ms'",
        lock.as_millis(),
        statement.as_millis()
    )
}

/// Back to the runner's own role, search_path and timeouts.
const RESET_ALL: &str = "RESET ROLE; SET search_path = pg_catalog, pg_temp; \
     RESET lock_timeout; RESET statement_timeout";

/// What an attempt of a step came to.
pub enum Attempt {
    Done,
    /// The catalog shows an earlier attempt did it.
    Skipped,
}

/// What a step tells the session that waits for it while it waits (for a
/// quiet moment on its table).
pub type OnWait<'a> = &'a (dyn Fn(String) + Sync);

/// Runs one attempt of step `s` of `m` (its `attempts` counts this one).
pub async fn run(
    db: &Client,
    m: &Migration,
    s: &StepRow,
    limits: &Limits,
    on_wait: OnWait<'_>,
) -> Result<Attempt, RunnerError> {
    if s.in_transaction {
        run_in_transaction(db, m, s, limits, on_wait)
            .await
            .map(|()| Attempt::Done)
    } else {
        run_alone(db, m, s, limits).await
    }
}

/// `SET ROLE` to the submitter. The session keeps the runner's own
/// search_path (`pg_catalog, pg_temp`): the runner's queries then meet no
/// operator, function or type of the submitter's. The submitter's
/// search_path applies only to what the client wrote ([`as_written`], the
/// sandbox) and to resolving its names ([`resolve`]).
pub(super) async fn become_submitter(
    db: &Client,
    m: &Migration,
    local: bool,
) -> Result<(), RunnerError> {
    let scope = if local { "LOCAL " } else { "" };
    db.batch_execute(&format!("SET {scope}ROLE {}", quote_ident(&m.role)))
        .await?;
    Ok(())
}

pub(super) const BECOME_RUNNER: &str = "RESET ROLE; SET search_path = pg_catalog, pg_temp";

/// Sets the search_path for this session (`local`: this transaction).
async fn set_path(db: &Client, path: &str, local: bool) -> Result<(), RunnerError> {
    db.execute(
        "SELECT pg_catalog.set_config('search_path', $1::pg_catalog.text, $2::pg_catalog.bool)",
        &[&path, &local],
    )
    .await?;
    Ok(())
}

/// Whether `m`'s relation is still the one it was submitted for: its name,
/// resolved as the submitter now, must give the table OID its lock key
/// holds. What changed, if it is not (dropped and made again, renamed
/// away and another put in its place); a name that no longer resolves is
/// left to the steps (an index a finished step dropped).
pub(super) async fn replaced(db: &Client, m: &Migration) -> Result<Option<String>, RunnerError> {
    let expected = (m.lock_key & 0xffff_ffff) as u32;
    let Some(table) = m.table.as_deref().filter(|_| expected != 0) else {
        return Ok(None);
    };
    db.batch_execute(&format!("BEGIN; SET LOCAL ROLE {}", quote_ident(&m.role)))
        .await?;
    let now = async {
        let named = resolve(db, m, table).await?;
        Ok::<_, RunnerError>(table_of(db, named).await?)
    }
    .await;
    db.batch_execute(&format!("ROLLBACK; {BECOME_RUNNER}"))
        .await?;
    Ok(match now {
        Ok(Some(oid)) if oid != expected => Some(format!(
            "ddlgate: {table} names another relation than when the statement was sent \
             (it was dropped, or renamed and replaced, since); the migration stopped"
        )),
        Ok(_) => None,
        // The next worker checks again.
        Err(e @ (RunnerError::Lost(_) | RunnerError::Connect(_))) => return Err(e),
        // Unchecked is not the same: stop visibly rather than retry forever.
        Err(e) => Some(format!(
            "ddlgate could not check that {table} is the relation the statement named: {e}"
        )),
    })
}

/// The table a relation is, or belongs to (an index's): what one
/// relation's migrations serialise on. Run with the runner's search_path.
pub(super) async fn table_of(
    db: &impl tokio_postgres::GenericClient,
    relation: Option<u32>,
) -> Result<Option<u32>, tokio_postgres::Error> {
    let Some(oid) = relation else {
        return Ok(None);
    };
    let row = db
        .query_one(
            "SELECT COALESCE((SELECT i.indrelid FROM pg_catalog.pg_index i \
             WHERE i.indexrelid = $1::pg_catalog.oid), $1::pg_catalog.oid)",
            &[&oid],
        )
        .await?;
    row.try_get(0)
}

/// Runs one statement of the plan's, as written (one Parse: never more
/// than one statement, whatever its text holds), with the submitter's
/// search_path; then the runner's again. Only for statements that
/// evaluate no code of the submitter's outside a security-restricted
/// operation (the CONCURRENTLY forms, drops).
pub(super) async fn as_written(
    db: &Client,
    m: &Migration,
    sql: &str,
    local: bool,
) -> Result<(), RunnerError> {
    set_path(db, &m.search_path, local).await?;
    let result = db.execute(sql, &[]).await;
    set_path(db, sandbox::RUNNER_PATH, local).await?;
    result?;
    Ok(())
}

/// The OID a name as the client wrote it resolves to with the
/// submitter's search_path (`to_regclass`, which runs no code), the
/// session's search_path back to the runner's after.
pub(super) async fn resolve(
    db: &Client,
    m: &Migration,
    name: &str,
) -> Result<Option<u32>, RunnerError> {
    set_path(db, &m.search_path, false).await?;
    let row = db
        .query_one(
            "SELECT pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid",
            &[&name],
        )
        .await;
    set_path(db, sandbox::RUNNER_PATH, false).await?;
    Ok(row?.get(0))
}

/// The step changed role under us (a function it ran did SET ROLE): its
/// work cannot be trusted to be the submitter's.
pub(super) async fn check_role(db: &Client, m: &Migration) -> Result<(), RunnerError> {
    let row = db
        .query_one("SELECT CAST(current_user AS pg_catalog.text)", &[])
        .await?;
    let now: String = row.get(0);
    if now != m.role {
        return Err(RunnerError::Server(super::model::Failure::new(
            "42501",
            format!(
                "ddlgate: the step changed the role from \"{}\" to \"{now}\"; it was rolled back",
                m.role
            ),
        )));
    }
    Ok(())
}

/// The longest a step waits for a quiet moment before trying anyway.
const QUIET_WAIT_MAX: Duration = Duration::from_secs(600);

/// Before a step whose lock would queue the application: wait, without
/// queuing, while something holds a lock on the table for long (an
/// autovacuum worker, which PostgreSQL cancels only after
/// deadlock_timeout; a transaction older than half the lock_timeout).
/// Queued behind either, the step would stall every query on the table
/// for its whole lock_timeout, attempt after attempt. Other roles'
/// transaction ages are visible to members of pg_monitor only.
async fn wait_for_quiet(
    db: &Client,
    m: &Migration,
    limits: &Limits,
    on_wait: OnWait<'_>,
) -> Result<(), RunnerError> {
    let oid = m.lock_key & 0xffff_ffff;
    let young = (limits.lock_timeout / 2).as_millis() as i64;
    let started = tokio::time::Instant::now();
    let mut attempt: u64 = 0;
    while started.elapsed() < QUIET_WAIT_MAX {
        let holder = db
            .query_opt(
                "SELECT a.pid, a.backend_type FROM pg_catalog.pg_locks l \
                 JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'relation' AND l.granted \
                   AND l.relation = $1::pg_catalog.int8::pg_catalog.oid \
                   AND l.database = (SELECT oid FROM pg_catalog.pg_database \
                                      WHERE datname = pg_catalog.current_database()) \
                   AND l.pid <> pg_catalog.pg_backend_pid() \
                   AND (a.backend_type = 'autovacuum worker' \
                        OR pg_catalog.now() - a.xact_start > $2::pg_catalog.int8 * interval '1 ms') \
                 LIMIT 1",
                &[&oid, &young],
            )
            .await?;
        let Some(row) = holder else {
            return Ok(());
        };
        attempt += 1;
        if attempt == 1 {
            let (pid, kind): (i32, Option<String>) = (row.get(0), row.get(1));
            let holder = kind.as_deref().unwrap_or("unknown");
            tracing::info!(
                event = "migration.step_waiting",
                pid,
                holder,
                "step waits for a long lock holder on its table before queuing for its lock"
            );
            on_wait(format!(
                "waiting, without queuing, for a long lock holder on the table ({holder}, pid {pid}) \
                 to finish before taking the step's brief lock"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100 * attempt.min(10))).await;
    }
    Ok(())
}

async fn run_in_transaction(
    db: &Client,
    m: &Migration,
    s: &StepRow,
    limits: &Limits,
    on_wait: OnWait<'_>,
) -> Result<(), RunnerError> {
    let (lock, statement) = timeouts(s.kind, limits);
    if matches!(
        s.kind,
        StepKind::Brief | StepKind::Cutover | StepKind::Contract
    ) {
        // Brief steps take locks every query on the table queues behind.
        wait_for_quiet(db, m, limits, on_wait).await?;
    }
    db.batch_execute(&format!(
        "BEGIN; {}; {}",
        sandbox::CLEAN_SESSION,
        set_timeouts(lock, statement, true)
    ))
    .await?;
    let result = async {
        become_submitter(db, m, true).await?;
        sandbox::Sandbox {
            db,
            path: &m.search_path,
            local: set_timeouts(lock, statement, true),
        }
        .exec(&s.sql)
        .await?;
        sandbox::close(db).await?;
        check_role(db, m).await?;
        db.batch_execute(BECOME_RUNNER).await?;
        sandbox::check_commit(db).await?;
        store::step_ended(db, m.id, s.n, StepStatus::Done, None).await?;
        db.batch_execute("COMMIT").await?;
        Ok::<_, RunnerError>(())
    }
    .await;
    if result.is_err() {
        let _ = db.batch_execute("ROLLBACK").await;
        let _ = db.batch_execute(BECOME_RUNNER).await;
    }
    result
}

async fn run_alone(
    db: &Client,
    m: &Migration,
    s: &StepRow,
    limits: &Limits,
) -> Result<Attempt, RunnerError> {
    let (lock, statement) = timeouts(s.kind, limits);
    // What PostgreSQL evaluates for these forms runs as the table's owner
    // in a security-restricted operation (see `sandbox`); only names are
    // resolved as the submitter, so nothing an earlier step left may
    // shadow them.
    db.batch_execute(&format!(
        "{}; {}",
        sandbox::CLEAN_SESSION,
        set_timeouts(lock, statement, false)
    ))
    .await?;
    let result = async {
        become_submitter(db, m, false).await?;
        let sql = match before_attempt(db, m, s).await? {
            Before::Skip => return Ok(Attempt::Skipped),
            Before::Run(sql) => sql,
        };
        as_written(db, m, &sql, false).await?;
        check_role(db, m).await?;
        Ok::<_, RunnerError>(Attempt::Done)
    }
    .await;
    if let Err(e) = &result {
        if s.kind == StepKind::BuildIndex && e.sqlstate() != "42501" {
            // A failed build leaves an INVALID index behind: drop it, so a
            // failure leaves nothing half-built.
            let _ = drop_invalid_index(db, m, s).await;
        }
    }
    let reset = db.batch_execute(RESET_ALL).await;
    let attempt = result?;
    reset?;
    store::step_ended(
        db,
        m.id,
        s.n,
        match attempt {
            Attempt::Done => StepStatus::Done,
            Attempt::Skipped => StepStatus::Skipped,
        },
        None,
    )
    .await?;
    Ok(attempt)
}

enum Before {
    Skip,
    Run(String),
}

/// The index a BuildIndex step creates, schema-qualified: in its table's
/// schema, as PostgreSQL puts it.
async fn built_index(
    db: &Client,
    m: &Migration,
    s: &StepRow,
) -> Result<Option<String>, RunnerError> {
    let (Some(table), Some(index)) = (&m.table, &s.object) else {
        return Ok(None);
    };
    let Some(oid) = resolve(db, m, table).await? else {
        return Ok(None);
    };
    let row = db
        .query_opt(
            "SELECT pg_catalog.format('%I.%I', n.nspname, $2::pg_catalog.text) FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = $1::pg_catalog.oid",
            &[&oid, &unquote(index)],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Whether the index exists, and is valid.
async fn index_state(db: &Client, qualified: &str) -> Result<Option<bool>, RunnerError> {
    Ok(db
        .query_opt(
            "SELECT i.indisvalid FROM pg_catalog.pg_index i \
             WHERE i.indexrelid = pg_catalog.to_regclass($1)",
            &[&qualified],
        )
        .await?
        .map(|r| r.get(0)))
}

async fn drop_invalid_index(db: &Client, m: &Migration, s: &StepRow) -> Result<(), RunnerError> {
    if let Some(q) = built_index(db, m, s).await? {
        if index_state(db, &q).await? == Some(false) {
            db.execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {q}"), &[])
                .await?;
        }
    }
    Ok(())
}

/// On a first attempt a step runs as planned, so that the client gets
/// PostgreSQL's own answer (an index that already exists is its error).
/// On a later one (after a crash or RETRY), the catalog decides.
async fn before_attempt(db: &Client, m: &Migration, s: &StepRow) -> Result<Before, RunnerError> {
    if s.attempts <= 1 {
        return Ok(Before::Run(s.sql.clone()));
    }
    match s.kind {
        StepKind::BuildIndex => {
            if let Some(q) = built_index(db, m, s).await? {
                match index_state(db, &q).await? {
                    Some(true) => return Ok(Before::Skip),
                    Some(false) => {
                        db.execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {q}"), &[])
                            .await?;
                    }
                    None => {}
                }
            }
        }
        StepKind::DropIndex => {
            if let Some(index) = &s.object {
                if resolve(db, m, index).await?.is_none() {
                    return Ok(Before::Skip);
                }
            }
        }
        StepKind::Reindex => {
            // An interrupted REINDEX CONCURRENTLY leaves INVALID copies
            // named *_ccnew: drop them, then rebuild.
            if let Some(oid) = match &m.table {
                Some(table) => resolve(db, m, table).await?,
                None => None,
            } {
                let rows = db
                    .query(
                        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) \
                         FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
                         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                         WHERE NOT i.indisvalid AND c.relname ~ '_ccnew[0-9]*$' \
                         AND (i.indrelid = $1::pg_catalog.oid OR i.indrelid = \
                         (SELECT x.indrelid FROM pg_catalog.pg_index x WHERE x.indexrelid = $1::pg_catalog.oid))",
                        &[&oid],
                    )
                    .await?;
                for r in rows {
                    let name: String = r.get(0);
                    db.execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"), &[])
                        .await?;
                }
            }
        }
        StepKind::Detach => {
            if let Some(child) = &s.object {
                let row = match resolve(db, m, child).await? {
                    Some(oid) => {
                        db.query_opt(
                            "SELECT h.inhdetachpending FROM pg_catalog.pg_inherits h \
                             WHERE h.inhrelid = $1::pg_catalog.oid",
                            &[&oid],
                        )
                        .await?
                    }
                    None => None,
                };
                match row.map(|r| r.get::<_, bool>(0)) {
                    None => return Ok(Before::Skip),
                    Some(true) => {
                        // Interrupted after its first transaction: finish it.
                        let sql = s.sql.trim_end();
                        let head = sql.strip_suffix("CONCURRENTLY").unwrap_or(sql);
                        return Ok(Before::Run(format!("{head}FINALIZE")));
                    }
                    Some(false) => {}
                }
            }
        }
        StepKind::Brief
        | StepKind::Validate
        | StepKind::Backfill
        | StepKind::Cutover
        | StepKind::Contract => {}
    }
    Ok(Before::Run(s.sql.clone()))
}

/// What undoes a finished step, if anything can: the index it built, the
/// NOT VALID constraint it added.
/// Built from the names the plan parsed (the migration's table, the
/// constraint), never by cutting the step's text: a quoted name may hold
/// any words.
pub fn undo_sql(s: &StepRow, table: Option<&str>, built: Option<&str>) -> Option<Undo> {
    if let Some(plan) = &s.undo {
        return Some(Undo::Plan(plan.clone()));
    }
    match s.kind {
        StepKind::BuildIndex => {
            built.map(|q| Undo::One(format!("DROP INDEX CONCURRENTLY IF EXISTS {q}")))
        }
        StepKind::Brief if s.sql.trim_end().ends_with("NOT VALID") => {
            let constraint = s.object.as_ref()?;
            Some(Undo::One(format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {constraint}",
                table?
            )))
        }
        _ => None,
    }
}

/// What undoes a step.
#[derive(Debug, PartialEq, Eq)]
pub enum Undo {
    /// The plan's own undo statements, made from the names it parsed.
    Plan(String),
    /// One statement, sent as one (a Parse holds one statement at most).
    One(String),
}

/// Undoes step `s` as the submitter. Whether there was anything to undo.
pub async fn undo(
    db: &Client,
    m: &Migration,
    s: &StepRow,
    limits: &Limits,
) -> Result<bool, RunnerError> {
    // Undone under the timeouts of the step it undoes: an index dropped
    // concurrently queues nobody, a constraint's drop is brief.
    let (lock, statement) = timeouts(s.kind, limits);
    db.batch_execute(&format!(
        "{}; {}",
        sandbox::CLEAN_SESSION,
        set_timeouts(lock, statement, false)
    ))
    .await?;
    let result = async {
        become_submitter(db, m, false).await?;
        let built = if s.kind == StepKind::BuildIndex {
            built_index(db, m, s).await?
        } else {
            None
        };
        match undo_sql(s, m.table.as_deref(), built.as_deref()) {
            None => return Ok(false),
            Some(Undo::One(sql)) => as_written(db, m, &sql, false).await?,
            Some(Undo::Plan(sql)) => {
                set_path(db, &m.search_path, false).await?;
                let r = db.batch_execute(&sql).await;
                set_path(db, sandbox::RUNNER_PATH, false).await?;
                r?;
            }
        }
        Ok(true)
    }
    .await;
    let _ = db.batch_execute(RESET_ALL).await;
    result
}
