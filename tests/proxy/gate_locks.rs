//! The lock queue: a schema change stuck behind a long transaction gives up
//! after lock_timeout and retries, so readers through ddlgate are never
//! queued behind it for longer than the timeout.

use std::time::{Duration, Instant};

use crate::gate::connect_with_notices;
use crate::harness::{direct, settings, sqlstate, Proxy};

fn proxy_with(retries: u32) -> Proxy {
    let mut s = settings();
    s.ddl.lock_timeout = Duration::from_millis(200);
    s.ddl.lock_retries = retries;
    s.ddl.retry_backoff = Duration::from_millis(100);
    s.ddl.retry_backoff_max = Duration::from_millis(200);
    Proxy::start(s)
}

/// Holds ACCESS SHARE on `table` in an open transaction, as an idle app
/// session would, until the returned client commits.
async fn hold(table: &str) -> tokio_postgres::Client {
    let c = direct("postgres").await;
    c.batch_execute(&format!("BEGIN; SELECT count(*) FROM {table}"))
        .await
        .unwrap();
    c
}

/// Runs a reader through `p` for `span`; the longest single wait.
async fn longest_read(p: &Proxy, table: &str, span: Duration) -> Duration {
    let c = p.connect("postgres").await;
    let end = Instant::now() + span;
    let mut worst = Duration::ZERO;
    while Instant::now() < end {
        let t = Instant::now();
        c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap();
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worst
}

#[tokio::test]
async fn ddl_behind_a_long_transaction_retries_instead_of_blocking_readers() {
    direct("postgres")
        .await
        .batch_execute(
            "DROP TABLE IF EXISTS g_q; CREATE TABLE g_q (id int); INSERT INTO g_q VALUES (1)",
        )
        .await
        .unwrap();
    let p = proxy_with(50);
    for extended in [false, true] {
        let column = if extended { "e" } else { "s" };
        let blocker = hold("g_q").await;
        let (ddl, notices) = connect_with_notices(&p).await;
        let sql = format!("ALTER TABLE g_q ADD COLUMN {column} int");
        let ddl_task = tokio::spawn(async move {
            if extended {
                ddl.execute(&sql, &[]).await.map(|_| ())
            } else {
                ddl.batch_execute(&sql).await
            }
        });
        // Without the guard, each of these reads would queue behind the
        // ALTER until the blocker commits, 4 s from now.
        let worst = longest_read(&p, "g_q", Duration::from_millis(4000)).await;
        blocker.batch_execute("COMMIT").await.unwrap();
        ddl_task.await.unwrap().unwrap();
        assert!(
            worst < Duration::from_millis(2500),
            "a reader waited {worst:?} behind the schema change (extended={extended})"
        );
        let got = notices.lock().unwrap().clone();
        assert!(
            got.iter().any(|n| n.contains("retry 1 of 50")),
            "no retry notice (extended={extended}): {got:?}"
        );
    }
    let cols: Vec<String> = direct("postgres")
        .await
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = 'g_q'::regclass \
             AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cols, ["id", "s", "e"]);
}

#[tokio::test]
async fn retries_run_out_with_the_lock_timeout_error() {
    direct("postgres")
        .await
        .batch_execute("DROP TABLE IF EXISTS g_q2; CREATE TABLE g_q2 (id int)")
        .await
        .unwrap();
    let p = proxy_with(2);
    let blocker = hold("g_q2").await;
    let (c, notices) = connect_with_notices(&p).await;
    let e = c
        .batch_execute("ALTER TABLE g_q2 ADD COLUMN x int")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55P03", "{e}");
    assert_eq!(notices.lock().unwrap().len(), 2);
    // The session is usable and its lock_timeout is back to the client's.
    let v: String = c.query_one("SHOW lock_timeout", &[]).await.unwrap().get(0);
    assert_eq!(v, "0");
    // Inside the client's own transaction there is no retry: the
    // transaction is already aborted, as PostgreSQL would leave it.
    let e = c
        .batch_execute("BEGIN; ALTER TABLE g_q2 ADD COLUMN y int")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55P03");
    c.batch_execute("ROLLBACK").await.unwrap();
    blocker.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn a_backend_terminated_mid_ddl_still_tells_the_client() {
    direct("postgres")
        .await
        .batch_execute("DROP TABLE IF EXISTS g_q3; CREATE TABLE g_q3 (id int)")
        .await
        .unwrap();
    let mut s = settings();
    s.ddl.lock_timeout = Duration::from_secs(30);
    let p = Proxy::start(s);
    let blocker = hold("g_q3").await;
    let c = p.connect("postgres").await;
    let ddl =
        tokio::spawn(async move { c.batch_execute("ALTER TABLE g_q3 ADD COLUMN x int").await });
    let admin = direct("postgres").await;
    // Wait until the ALTER is queued for its lock, then end its backend.
    let mut killed = false;
    for _ in 0..100 {
        let n: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE query LIKE 'ALTER TABLE g_q3%' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(killed, "the ALTER never waited for its lock");
    let e = tokio::time::timeout(Duration::from_secs(10), ddl)
        .await
        .expect("the client is told")
        .unwrap()
        .unwrap_err();
    assert_eq!(sqlstate(&e), "57P01", "{e}");
    blocker.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn a_cancel_during_the_retry_wait_stops_the_retries() {
    direct("postgres")
        .await
        .batch_execute("DROP TABLE IF EXISTS g_q4; CREATE TABLE g_q4 (id int)")
        .await
        .unwrap();
    let mut s = settings();
    s.ddl.lock_timeout = Duration::from_millis(100);
    s.ddl.lock_retries = 50;
    s.ddl.retry_backoff = Duration::from_secs(5);
    s.ddl.retry_backoff_max = Duration::from_secs(5);
    let p = Proxy::start(s);
    let blocker = hold("g_q4").await;
    let (c, notices) = connect_with_notices(&p).await;
    let c = std::sync::Arc::new(c);
    let runner = c.clone();
    let ddl = tokio::spawn(async move {
        runner
            .batch_execute("ALTER TABLE g_q4 ADD COLUMN x int")
            .await
    });
    // Once the first retry is announced, ddlgate is waiting (2.5-5 s).
    let t = Instant::now();
    while notices.lock().unwrap().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(10), "no retry notice");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(2), ddl)
        .await
        .expect("the cancel ends the wait")
        .unwrap()
        .unwrap_err();
    assert_eq!(sqlstate(&e), "57014", "{e}");
    let v: String = c.query_one("SHOW lock_timeout", &[]).await.unwrap().get(0);
    assert_eq!(v, "0");
    blocker.batch_execute("COMMIT").await.unwrap();
    let n: i64 = direct("postgres")
        .await
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'g_q4'::regclass AND attname = 'x'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the cancelled ALTER must not run later");
}
