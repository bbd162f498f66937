//! Backfills through the runner: a column added with a volatile default
//! is filled in throttled batches while an application writes and reads
//! the table through ddlgate, and every row ends with the value the direct
//! ALTER gives.

use std::time::Duration;

use super::{
    backfill_batches, database, direct, direct_and_via, psql_script, psql_via, recorded_id,
    runner_proxy, schema, wait_for_status,
};
use crate::harness::{connect, Proxy};

const SETUP: &str = "CREATE FUNCTION seven() RETURNS int VOLATILE LANGUAGE sql AS 'SELECT 7';
    CREATE TABLE k (id int PRIMARY KEY, v int);
    INSERT INTO k SELECT g, g FROM generate_series(1, 30000) g;
    CREATE TABLE h (v int);
    INSERT INTO h SELECT generate_series(1, 30000);";

/// Writes and reads `table` through `proxy` until `stop`, knowing nothing
/// of the new column: inserts, and updates of rows all over the table
/// (which move rows in a table without a key). Its error count.
async fn writer(
    proxy: &Proxy,
    db: &str,
    table: &'static str,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    let c = connect(&proxy.conninfo("postgres", db)).await;
    let mut errors = 0;
    let mut i: i64 = 0;
    while !*stop.borrow_and_update() {
        i += 1;
        let sql = match table {
            "k" => format!(
                "UPDATE k SET v = v + 1 WHERE id = {}; INSERT INTO k (id, v) VALUES ({}, 0); SELECT count(*) FROM k WHERE id < 100",
                (i * 7919) % 30000 + 1,
                100_000 + i
            ),
            _ => format!(
                "UPDATE h SET v = -v WHERE v = {}; INSERT INTO h (v) VALUES ({}); SELECT count(*) FROM h WHERE v < 10",
                (i * 7919) % 30000 + 1,
                100_000 + i
            ),
        };
        if let Err(e) = c.batch_execute(&sql).await {
            eprintln!("application error: {e:?}");
            errors += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    errors
}

async fn off_values(db: &str, table: &str, column: &str, want: &str) -> i64 {
    direct(db)
        .await
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE {column} IS DISTINCT FROM {want}"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_column_with_a_volatile_default_is_backfilled_under_an_application() {
    let proxy = runner_proxy();
    for (table, sql) in [
        (
            "k",
            "ALTER TABLE k ADD COLUMN c int NOT NULL DEFAULT seven()",
        ),
        ("h", "ALTER TABLE h ADD COLUMN c int DEFAULT seven()"),
    ] {
        let (direct_db, via) = direct_and_via("bf", SETUP, sql);
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let app = tokio::spawn({
            let via = via.clone();
            async move { writer(runner_proxy(), &via, table, stop).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let c = connect(&proxy.conninfo("postgres", &via)).await;
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        stop_tx.send(true).unwrap();
        assert_eq!(app.await.unwrap(), 0, "{sql}: application errors");
        assert_eq!(schema(&via).await, schema(&direct_db).await, "{sql}");
        assert_eq!(off_values(&direct_db, table, "c", "7").await, 0);
        assert_eq!(off_values(&via, table, "c", "7").await, 0, "{sql}");
        assert!(backfill_batches(&via).await > 1, "{sql}: one batch only");
    }
}

/// Progress and status of migration `id`, read straight from `db`.
async fn progress(db: &str, id: &str) -> (String, String, i64) {
    let r = direct(db)
        .await
        .query_one(
            "SELECT m.status, coalesce(m.progress, ''), coalesce((s.position->>'rows')::bigint, 0)
               FROM ddlgate.migrations m JOIN ddlgate.steps s ON s.migration = m.id AND s.kind = 'backfill'
              WHERE m.id = $1::text::bigint",
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_latency_pauses_the_backfill_and_an_operator_steers_it() {
    let mut s = super::runner_settings();
    let r = s.runner.as_mut().unwrap();
    r.throttle.latency_window = Duration::from_secs(1);
    r.throttle.recheck = Duration::from_millis(100);
    r.throttle.max_rows_per_sec = 2000;
    r.throttle.app_p99_factor = 3.0;
    let proxy = Proxy::start(s);
    let db = database("bflat", SETUP);
    let app = connect(&proxy.conninfo("postgres", &db)).await;
    // The baseline: quick requests through ddlgate.
    for _ in 0..300 {
        app.batch_execute("SELECT 1").await.unwrap();
    }
    let (ok, _, err) = psql_script(
        &proxy,
        "postgres",
        &db,
        "SET ddlgate.mode = 'async';\nALTER TABLE k ADD COLUMN c int NOT NULL DEFAULT seven();\n",
    );
    assert!(ok, "{err}");
    let id = recorded_id(&err);
    wait_until("the backfill runs", async || progress(&db, &id).await.2 > 0).await;

    // A slow application: its p99 is many times the baseline.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut slow = Vec::new();
    for _ in 0..4 {
        let (db, mut stop) = (db.clone(), stop.clone());
        let conninfo = proxy.conninfo("postgres", &db);
        slow.push(tokio::spawn(async move {
            let c = connect(&conninfo).await;
            while !*stop.borrow_and_update() {
                c.batch_execute("SELECT pg_sleep(0.03)").await.unwrap();
            }
        }));
    }
    drop(stop);
    wait_until("the backfill pauses", async || {
        progress(&db, &id)
            .await
            .1
            .contains("paused: application p99")
    })
    .await;
    let held = progress(&db, &id).await.2;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        progress(&db, &id).await.2,
        held,
        "rows changed while paused"
    );
    let (ok, list, _) = psql_via(&proxy, "postgres", "ddlgate", "SHOW MIGRATIONS");
    assert!(ok && list.contains("paused: application p99"), "{list}");

    // The application is quick again: the pause lifts.
    stop_tx.send(true).unwrap();
    for t in slow {
        t.await.unwrap();
    }
    wait_until("the backfill goes on", async || {
        let (_, text, rows) = progress(&db, &id).await;
        !text.contains("paused") && rows > held
    })
    .await;
    // The operator lifts the rate ceiling: it finishes at once.
    let (ok, out, err) = psql_via(
        &proxy,
        "postgres",
        "ddlgate",
        &format!("THROTTLE {db}/{id} max_rows_per_sec 0"),
    );
    assert!(ok && out.contains("no rows/s ceiling now"), "{out}{err}");
    wait_for_status(&proxy, &db, &id, "succeeded").await;
    assert_eq!(off_values(&db, "k", "c", "7").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_column_serial_draws_every_row_from_its_sequence() {
    for (table, sql) in [
        ("h", "ALTER TABLE h ADD COLUMN n bigserial"),
        (
            "k",
            "ALTER TABLE k ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY",
        ),
    ] {
        numbered_by_a_sequence(table, sql).await;
    }
}

async fn numbered_by_a_sequence(table: &'static str, sql: &str) {
    let proxy = runner_proxy();
    let (direct_db, via) = direct_and_via("bs", SETUP, sql);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let app = tokio::spawn({
        let via = via.clone();
        async move { writer(runner_proxy(), &via, table, stop).await }
    });
    let c = connect(&proxy.conninfo("postgres", &via)).await;
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    stop_tx.send(true).unwrap();
    assert_eq!(app.await.unwrap(), 0, "{sql}: application errors");
    assert_eq!(schema(&via).await, schema(&direct_db).await, "{sql}");
    // Every row has its own number, and the sequence is past them all (the
    // order differs from the direct ALTER's, which follows the heap).
    let r = direct(&via)
        .await
        .query_one(
            &format!(
                "SELECT count(*), count(DISTINCT n), \
                 max(n) <= (SELECT last_value FROM {table}_n_seq) FROM {table}"
            ),
            &[],
        )
        .await
        .unwrap();
    let (rows, distinct, below): (i64, i64, bool) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(rows, distinct, "{sql}");
    assert!(below, "{sql}");
}
