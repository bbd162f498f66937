//! The runner: a process-level service that applies `rewrite` decisions as
//! phased migrations, with its own upstream connections, state kept in each
//! database's `ddlgate` schema, and every step run as the submitting role.
//!
//! - `submit` records a migration and hands back a stream of [`Progress`]
//!   for the waiting session; the migration goes on if nobody listens.
//! - One worker per (database, relation) holds that relation's advisory
//!   lock and runs its migrations in id order (`exec`), so several ddlgate
//!   instances never run one table's steps at once, and a migration whose
//!   instance died is resumed by whichever instance takes the lock next.
//! - A poll loop picks up what this instance did not submit: migrations
//!   left by a crash or by another instance, RESUME and CANCEL given on
//!   another instance.

mod backfill;
mod batches;
mod connect;
mod defer;
pub mod effect;
mod exec;
pub mod model;
mod poll;
mod sandbox;
mod signals;
mod steps;
pub mod store;
pub mod throttle;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;

pub use connect::Connector;
pub use defer::Registered;
pub use model::{Failure, Progress, RunnerError, Status, Submission};

use crate::config::RunnerSettings;
use crate::ddl::op::quote_ident;
use crate::jobs::Jobs;
use crate::protocol::sqlstate;
use crate::telemetry::latency::LatencyBook;

/// A migration in one database.
pub type MigrationKey = (String, i64);

pub struct Runner {
    settings: RunnerSettings,
    connector: Connector,
    jobs: Jobs,
    /// Which ddlgate process this is, as stored with what it runs.
    instance: String,
    /// The application's latency per database (the throttle's signal).
    latency: Arc<LatencyBook>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Workers running here per (database, lock key), and whether work
    /// arrived since the worker last looked.
    workers: HashMap<(String, i64), bool>,
    /// Sessions waiting for a migration.
    followers: HashMap<MigrationKey, Vec<UnboundedSender<Progress>>>,
    /// Migrations running here: interrupting one cancels its statement.
    running: HashMap<MigrationKey, CancellationToken>,
    /// Databases with a `ddlgate` schema, polled for work.
    databases: BTreeSet<String>,
}

impl Runner {
    /// Starts the service: the poll loop runs as a job until shutdown.
    pub fn start(
        settings: RunnerSettings,
        connector: Connector,
        jobs: Jobs,
        latency: Arc<LatencyBook>,
    ) -> Arc<Runner> {
        let runner = Arc::new(Runner {
            instance: instance_name(),
            latency,
            settings,
            connector,
            jobs: jobs.clone(),
            inner: Mutex::default(),
        });
        let r = runner.clone();
        jobs.spawn(
            "runner",
            "poll for migrations".into(),
            move |stop| async move {
                poll::poll(r, stop).await;
            },
        );
        runner
    }

    pub fn settings(&self) -> &RunnerSettings {
        &self.settings
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `s` and runs it; what happens to it arrives on the receiver
    /// (first `Recorded` or `Refused`, last a final status).
    pub fn submit(self: &Arc<Self>, s: Submission) -> UnboundedReceiver<Progress> {
        let (tx, rx) = unbounded_channel();
        let r = self.clone();
        let name = format!("submit on {}", s.database);
        self.jobs.spawn("submit", name, move |_stop| async move {
            match r.record(&s).await {
                Ok((id, key)) => {
                    tracing::info!(
                        event = "migration.queued",
                        migration = id,
                        database = %s.database,
                        table = s.plan.table.as_deref().unwrap_or(""),
                        role = %s.role,
                        steps = s.plan.steps.len(),
                        gate_event = %s.event,
                        "migration recorded"
                    );
                    metrics::counter!("ddlgate_migrations_total", "status" => "queued")
                        .increment(1);
                    let _ = tx.send(Progress::Recorded(id));
                    r.inner()
                        .followers
                        .entry((s.database.clone(), id))
                        .or_default()
                        .push(tx);
                    r.wake(&s.database, key);
                }
                Err(f) => {
                    tracing::warn!(
                        event = "migration.refused",
                        database = %s.database,
                        role = %s.role,
                        sqlstate = %f.sqlstate,
                        error = %f.message,
                        "migration not recorded"
                    );
                    let _ = tx.send(Progress::Refused(f));
                }
            }
        });
        rx
    }

    /// Checks that the runner may act as the submitter, then writes the
    /// migration. Its id and lock key.
    async fn record(&self, s: &Submission) -> Result<(i64, i64), Failure> {
        let (mut db, key) = self.admit(s).await?;
        let id = store::insert(&mut db, s, key)
            .await
            .map_err(|e| e.failure())?;
        Ok((id, key))
    }

    /// A connection to the submission's database on which the runner may
    /// act as the submitter and keep its state, and the relation's lock key.
    async fn admit(&self, s: &Submission) -> Result<(tokio_postgres::Client, i64), Failure> {
        let mut db = self
            .connector
            .connect(&s.database, "submit")
            .await
            .map_err(|e| e.failure())?;
        check_login(&db, s).await?;
        let runner = &self.settings.user;
        if let Err(e) = db
            .batch_execute(&format!("SET ROLE {}; RESET ROLE", quote_ident(&s.role)))
            .await
        {
            let e = RunnerError::from_db(e);
            let mut f = Failure::new(
                sqlstate::DDL_BLOCKED,
                format!(
                    "ddlgate blocked this statement: its runner role \"{runner}\" may not act as role \"{}\", so it cannot apply the change safely",
                    s.role
                ),
            );
            f.detail = Some(e.to_string());
            f.hint = Some(format!(
                "Let the runner take the role: GRANT {} TO {};",
                quote_ident(&s.role),
                quote_ident(runner)
            ));
            return Err(f);
        }
        store::ensure_schema(&mut db).await.map_err(|e| {
            let mut f = e.failure();
            f.message = format!("ddlgate's runner cannot keep its state in database \"{}\": {}", s.database, f.message);
            f.hint = f.hint.take().or(Some(format!(
                "The runner creates the schema ddlgate on first use: GRANT CREATE ON DATABASE {} TO {};",
                quote_ident(&s.database),
                quote_ident(runner)
            )));
            f
        })?;
        let key = lock_key(&mut db, s).await;
        // The runner must find the relation the client's session named:
        // a temporary object, or a search_path that resolves otherwise
        // here, would make it act on another.
        if let (Some(client), Some(table)) = (s.relation_oid, &s.plan.table) {
            if (key & 0xffff_ffff) as u32 != client {
                return Err(Failure::new(
                    sqlstate::DDL_BLOCKED,
                    format!(
                        "ddlgate blocked this statement: {table} resolves to another relation on \
                         the runner's connection than in this session, so it cannot apply the \
                         change safely"
                    ),
                ));
            }
        }
        self.inner().databases.insert(s.database.clone());
        Ok((db, key))
    }

    /// A worker for `(database, key)` runs (or is told there is more).
    fn wake(self: &Arc<Self>, database: &str, key: i64) {
        let slot = (database.to_owned(), key);
        {
            let mut inner = self.inner();
            if let Some(more) = inner.workers.get_mut(&slot) {
                *more = true;
                return;
            }
            inner.workers.insert(slot.clone(), false);
        }
        let r = self.clone();
        let name = format!("migrations on {database} (lock {key:x})");
        self.jobs.spawn("migration", name, move |stop| async move {
            exec::work(r, slot, stop).await;
        });
    }

    /// The worker for `slot` ends unless work arrived meanwhile.
    fn worker_may_end(&self, slot: &(String, i64)) -> bool {
        let mut inner = self.inner();
        match inner.workers.get_mut(slot) {
            Some(more) if *more => {
                *more = false;
                false
            }
            _ => {
                inner.workers.remove(slot);
                true
            }
        }
    }

    /// Tells the sessions following `m`; a final status ends the following.
    fn notify(&self, m: &MigrationKey, p: Progress) {
        let done = matches!(
            p,
            Progress::Succeeded | Progress::Failed(_) | Progress::Cancelled
        );
        let mut inner = self.inner();
        if let Some(list) = inner.followers.get_mut(m) {
            list.retain(|tx| tx.send(p.clone()).is_ok());
            if done || list.is_empty() {
                inner.followers.remove(m);
            }
        }
    }

    /// Migrations followed by sessions, in `database`.
    fn followed(&self, database: &str) -> Vec<i64> {
        self.inner()
            .followers
            .keys()
            .filter(|(d, _)| d == database)
            .map(|(_, id)| *id)
            .collect()
    }

    pub fn databases(&self) -> Vec<String> {
        self.inner().databases.iter().cloned().collect()
    }

    /// Interrupts the statement of `m` if it runs here.
    fn interrupt(&self, m: &MigrationKey) -> bool {
        match self.inner().running.get(m) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    /// PAUSE or CANCEL from the console: recorded for whichever instance
    /// runs it; if that is this one, its current statement is interrupted
    /// at once for CANCEL (PAUSE waits for the step to end).
    pub async fn request(
        self: &Arc<Self>,
        m: &MigrationKey,
        req: model::Request,
    ) -> Result<Option<Status>, RunnerError> {
        let db = self.connector.connect(&m.0, "console").await?;
        let status = store::request(&db, m.1, req).await?;
        if status.is_some() {
            tracing::info!(event = "migration.requested", migration = m.1, database = %m.0, request = req.as_str(), "operator request");
            if req == model::Request::Cancel {
                self.interrupt(m);
            }
            if let Some(key) = store::lock_key_of(&db, m.1).await? {
                self.wake(&m.0, key);
            }
        }
        Ok(status)
    }

    /// A backfill's batch time or rate ceiling, for this migration: its
    /// loop reads it at its next look (within a second). Whether the
    /// migration has a backfill still to run.
    pub async fn set_throttle(
        self: &Arc<Self>,
        m: &MigrationKey,
        change: model::ThrottleChange,
    ) -> Result<bool, RunnerError> {
        use model::ThrottleChange;
        let (key, value) = match change {
            ThrottleChange::BatchTime(d) => (batches::BATCH_TIME_MS, d.as_millis() as i64),
            ThrottleChange::MaxRowsPerSec(n) => (batches::MAX_ROWS_PER_SEC, n as i64),
        };
        let db = self.connector.connect(&m.0, "console").await?;
        let ok = store::set_throttle(&db, m.1, key, value).await?;
        if ok {
            tracing::info!(event = "migration.throttle_set", migration = m.1, database = %m.0, setting = key, value, "operator changed the throttle");
        }
        Ok(ok)
    }

    /// RESUME (paused) or RETRY (failed): queued again from the current step.
    pub async fn requeue(
        self: &Arc<Self>,
        m: &MigrationKey,
        from: &[Status],
    ) -> Result<bool, RunnerError> {
        let db = self.connector.connect(&m.0, "console").await?;
        let ok = store::requeue(&db, m.1, from).await?;
        if ok {
            tracing::info!(event = "migration.requeued", migration = m.1, database = %m.0, "queued again by operator");
            if let Some(key) = store::lock_key_of(&db, m.1).await? {
                self.wake(&m.0, key);
            }
        }
        Ok(ok)
    }

    /// COMPLETE: the migration's cut-over may run. `None` without one
    /// left; else whether it was waiting at it (and now runs).
    pub async fn complete(self: &Arc<Self>, m: &MigrationKey) -> Result<Option<bool>, RunnerError> {
        let db = self.connector.connect(&m.0, "console").await?;
        let done = store::complete(&db, m.1).await?;
        if done.is_some() {
            tracing::info!(event = "migration.completed", migration = m.1, database = %m.0, "operator let the cut-over run");
        }
        if done == Some(true) {
            if let Some(key) = store::lock_key_of(&db, m.1).await? {
                self.wake(&m.0, key);
            }
        }
        Ok(done)
    }

    /// REVERT: the change's revert steps run next.
    pub async fn revert(self: &Arc<Self>, m: &MigrationKey) -> Result<store::Revert, RunnerError> {
        let db = self.connector.connect(&m.0, "console").await?;
        let r = store::revert(&db, m.1).await?;
        if r != store::Revert::Queued && r != store::Revert::Requested {
            return Ok(r);
        }
        tracing::info!(event = "migration.revert_requested", migration = m.1, database = %m.0, "operator asked to revert");
        if let Some(key) = store::lock_key_of(&db, m.1).await? {
            self.wake(&m.0, key);
        }
        Ok(r)
    }

    /// Sessions now waiting on migrations.
    pub fn followers(&self) -> usize {
        self.inner().followers.values().map(Vec::len).sum()
    }

    /// Migrations running here now.
    pub fn running_here(&self) -> Vec<MigrationKey> {
        self.inner().running.keys().cloned().collect()
    }
}

/// The role a step runs as is whatever the client's session answered for
/// `current_user`; it is trusted only if the role the upstream
/// authenticated for that session may become it directly (the membership
/// chain, with PostgreSQL 16's SET option), checked here on the runner's
/// own connection, where nothing the client created can answer.
async fn check_login(db: &tokio_postgres::Client, s: &Submission) -> Result<(), Failure> {
    let refused = |detail: Option<String>| {
        let mut f = Failure::new(
            "42501",
            format!(
                "ddlgate: the session's role \"{}\" is not one its login \"{}\" may act as; \
                 the statement was not applied",
                s.role, s.login
            ),
        );
        f.detail = detail;
        f
    };
    if s.login == s.role {
        return Ok(());
    }
    let checked = async {
        let version: i32 = db
            .query_one(
                "SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int4",
                &[],
            )
            .await?
            .get(0);
        let privilege = if version >= 160000 { "SET" } else { "MEMBER" };
        let row = db
            .query_one(
                "SELECT pg_catalog.pg_has_role($1::pg_catalog.name, $2::pg_catalog.name, $3::pg_catalog.text)",
                &[&s.login, &s.role, &privilege],
            )
            .await?;
        Ok::<bool, tokio_postgres::Error>(row.get(0))
    };
    match checked.await {
        Ok(true) => Ok(()),
        Ok(false) => Err(refused(None)),
        Err(e) => Err(refused(Some(RunnerError::from_db(e).to_string()))),
    }
}

/// The relation whose migrations must run one after another: the table
/// (or an index's table), resolved as the submitter would; 0 when it
/// does not resolve (the first step will fail with PostgreSQL's error).
async fn lock_key(db: &mut tokio_postgres::Client, s: &Submission) -> i64 {
    let Some(table) = &s.plan.table else {
        return store::table_lock_key(0);
    };
    // Resolved in a transaction that is rolled back: SET LOCAL ends there.
    let resolve = async {
        let tx = db.transaction().await?;
        tx.execute(
            "SELECT pg_catalog.set_config('search_path', $1, true)",
            &[&s.search_path],
        )
        .await?;
        tx.batch_execute(&format!("SET LOCAL ROLE {}", quote_ident(&s.role)))
            .await?;
        // The name as the submitter's search_path resolves it (no code
        // runs); the rest with the runner's, where no operator of the
        // submitter's can come first.
        let named: Option<u32> = tx
            .query_one(
                "SELECT pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid",
                &[table],
            )
            .await?
            .get(0);
        tx.batch_execute("SET LOCAL search_path = pg_catalog, pg_temp")
            .await?;
        steps::table_of(&tx, named).await
    };
    let oid = resolve.await.ok().flatten();
    store::table_lock_key(oid.unwrap_or(0))
}

/// `host:pid`, as stored with the migrations this runner runs; a second
/// runner in the same process (tests start several) is `host:pid#2`.
fn instance_name() -> String {
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".into()
    };
    let pid = std::process::id();
    match n {
        0 => format!("{host}:{pid}"),
        n => format!("{host}:{pid}#{}", n + 1),
    }
}
