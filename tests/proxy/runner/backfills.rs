//! Backfills through the runner: a column added with a volatile default
//! is filled in throttled batches while an application writes and reads
//! the table through ddlgate, and every row ends with the value the direct
//! ALTER gives.

use super::{database, direct, psql_db, runner_proxy, schema};
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
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
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
        let direct_db = database("bfd", SETUP);
        psql_db(&direct_db, sql);
        let via = database("bfv", SETUP);
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let app = tokio::spawn({
            let via = via.clone();
            async move { writer(runner_proxy(), &via, table, stop).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let c = connect(&proxy.conninfo("postgres", &via)).await;
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        stop_tx.send(true).unwrap();
        assert_eq!(app.await.unwrap(), 0, "{sql}: application errors");
        assert_eq!(schema(&via).await, schema(&direct_db).await, "{sql}");
        assert_eq!(off_values(&direct_db, table, "c", "7").await, 0);
        assert_eq!(off_values(&via, table, "c", "7").await, 0, "{sql}");
        let steps: i64 = direct(&via)
            .await
            .query_one(
                "SELECT (position->>'batches')::bigint FROM ddlgate.steps WHERE kind = 'backfill'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(steps > 1, "{sql}: one batch only");
    }
}
