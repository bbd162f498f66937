//! Schema changes inside transactions, as migration tools send them (each
//! statement its own Query inside BEGIN … COMMIT, sometimes several in
//! one): deferred past COMMIT, they end in the schema and data the same
//! statements give directly. `tools`: the tools' sequences and protocols;
//! `edges`: ROLLBACK, failures, savepoints, cancel.

mod edges;
mod tools;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{database, direct, psql_db, runner_proxy, schema};
use crate::harness::connect;

/// No migrations, as [`settled`] and [`statuses`] give them.
const NONE: Vec<String> = Vec::new();

/// A client of `db` through the shared runner proxy, as postgres.
async fn via(db: &str) -> tokio_postgres::Client {
    connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        runner_proxy().port()
    ))
    .await
}

/// The statuses of `db`'s migrations, in id order.
async fn statuses(db: &str) -> Vec<String> {
    direct(db)
        .await
        .query("SELECT status FROM ddlgate.migrations ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// [`statuses`] once there are `n` migrations (unconfirmed registrations
/// are removed soon after their transaction ends), or after 10 s.
async fn settled(db: &str, n: usize) -> Vec<String> {
    let mut now = statuses(db).await;
    for _ in 0..100 {
        if now.len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = statuses(db).await;
    }
    now
}

/// Runs `statements` in `db`, one Query each, directly and through ddlgate
/// (the latter in a second database with the same setup): the schemas and
/// `data` must come out equal, every migration ddlgate made must succeed,
/// and a writer inserting into `writer_table` through ddlgate meanwhile
/// never fails or waits long.
pub(super) async fn same_as_direct(
    prefix: &str,
    setup: &str,
    statements: &[&str],
    (data, writer): (&str, &str),
    deferred: &[&str],
) {
    let direct_db = database(&format!("{prefix}d"), setup);
    let c = direct(&direct_db).await;
    for s in statements {
        c.batch_execute(s)
            .await
            .unwrap_or_else(|e| panic!("directly: {s}: {e}"));
    }
    let db = database(&format!("{prefix}v"), setup);
    let proxy = runner_proxy();
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        proxy.port()
    );
    // The application: one insert at a time through ddlgate.
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(AtomicU64::new(0));
    let app = {
        let (stop, worst) = (stop.clone(), worst.clone());
        let app = connect(&conninfo).await;
        let writer = writer.to_owned();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                app.batch_execute(&writer)
                    .await
                    .unwrap_or_else(|e| panic!("the application failed: {e}"));
                worst.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    let tool = connect(&conninfo).await;
    // How long the tool's own transaction held its locks: from BEGIN to
    // the moment COMMIT is sent (the server lets go at COMMIT; ddlgate
    // holds only COMMIT's answer while the deferred work runs).
    let (mut began, mut held) = (None, Duration::ZERO);
    for s in statements {
        match *s {
            "BEGIN" => began = Some(Instant::now()),
            "COMMIT" => held += began.take().map_or(Duration::ZERO, |b| b.elapsed()),
            _ => {}
        }
        tool.batch_execute(s)
            .await
            .unwrap_or_else(|e| panic!("through ddlgate: {s}: {:?}", e.as_db_error()));
    }
    stop.store(true, Ordering::Relaxed);
    let writes = app.await.unwrap();
    assert!(writes > 0);
    // The writer's rows differ between the two databases: compare without.
    let forget = format!("DELETE FROM {} WHERE note = 'app'", writer_table(writer));
    psql_db(&db, &forget);
    psql_db(&direct_db, &forget);
    assert_eq!(schema(&db).await, schema(&direct_db).await);
    let rows = |d: String| async move {
        direct(&d)
            .await
            .query_one(data, &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    assert_eq!(rows(db.clone()).await, rows(direct_db.clone()).await);
    let made = direct(&db)
        .await
        .query(
            "SELECT id, status FROM ddlgate.migrations WHERE status <> 'succeeded'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        made.is_empty(),
        "migrations not succeeded: {:?}",
        made.len()
    );
    let statements: Vec<String> = direct(&db)
        .await
        .query("SELECT statement FROM ddlgate.migrations ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statements, deferred, "the deferred migrations");
    let leftovers: i64 = direct(&db)
        .await
        .query_one(
            // Table columns: an index built on the shadow column keeps
            // the shadow's name for its own column (pg_get_indexdef and
            // the schema above show the table's).
            "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             WHERE c.relkind = 'r' AND a.attname LIKE '%ddlgate%' AND NOT a.attisdropped",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "ddlgate columns left behind");
    // The application's inserts waited for the tool's transaction at most
    // (its locks are held until COMMIT) or a step's lock_timeout, never
    // behind a rewrite or a backfill (1 s of slack for a noisy machine).
    let worst = Duration::from_millis(worst.load(Ordering::Relaxed));
    let bound = held.max(Duration::from_millis(500)) + Duration::from_secs(1);
    assert!(
        worst <= bound,
        "the application waited {worst:?}; the tool's transaction held its locks {held:?}"
    );
}

fn writer_table(insert: &str) -> &str {
    insert
        .split_whitespace()
        .nth(2)
        .expect("INSERT INTO table ...")
}
