//! The runner's poll loop: finds the databases with migration state, and
//! in them the work this instance did not submit (migrations a crash or
//! another instance left, CANCEL given elsewhere, ends that followers here
//! wait for).

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::model::{Progress, Status};
use super::store;
use super::{Runner, RunnerError};

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
    warn_if_superuser(&runner).await;
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

/// A superuser runner may take any role, so the submit-time check that it
/// may act as the submitter always passes: said once, at start.
async fn warn_if_superuser(runner: &Runner) {
    let home = runner
        .connector
        .target
        .database
        .as_deref()
        .unwrap_or("postgres");
    let Ok(db) = runner.connector.connect(home, "discover").await else {
        return;
    };
    let superuser = db
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map(|r| r.get::<_, bool>(0));
    if let Ok(true) = superuser {
        tracing::warn!(
            runner_user = %runner.connector.user,
            "the runner's user is a superuser: it can act as any role, so nothing narrows which roles' migrations it runs; prefer a role granted only the application owners"
        );
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
        match store::foreign_owner(&db).await {
            Ok(Some(what)) => {
                tracing::warn!(
                    event = "runner.schema_not_ours",
                    database = %name,
                    what = %what,
                    "database skipped: ddlgate uses a ddlgate schema only when its runner role owns all of it"
                );
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(database = %name, error = %e, "runner cannot look for migrations here");
                continue;
            }
        }
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
    // Deferred migrations whose client transaction ended without COMMIT.
    let forgotten = store::forget_abandoned(db).await?;
    if forgotten > 0 {
        tracing::info!(event = "migration.abandoned", database = %database, forgotten, "deferred migrations whose transaction did not commit were removed");
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
pub(super) async fn deliver_finished(
    runner: &Runner,
    db: &Client,
    database: &str,
) -> Result<(), RunnerError> {
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
