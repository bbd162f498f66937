//! What a deferral leaves when its transaction does not commit, fails, is
//! rolled back to a savepoint, or is cancelled while COMMIT waits.

use std::time::Duration;

use super::super::{psql_script, psql_via, wait_for_status};
use super::{database, direct, psql_db, runner_proxy, schema, settled, via, NONE};

/// ROLLBACK, or a transaction that failed, leaves nothing: no shadow
/// column or trigger, no migration. A statement the shadow cannot serve
/// is refused, saying why.
#[tokio::test]
async fn rollback_leaves_nothing_behind() {
    let db = database(
        "rb",
        "CREATE TABLE r (id int PRIMARY KEY, v int); INSERT INTO r SELECT g, g FROM generate_series(1, 2000) g",
    );
    let before = schema(&db).await;
    let proxy = runner_proxy();
    let (ok, _, stderr) = psql_script(
        proxy,
        "postgres",
        &db,
        "BEGIN;\nALTER TABLE r ALTER COLUMN v TYPE bigint;\nROLLBACK;\n",
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("deferred as migration"), "{stderr}");
    // A failed transaction: the conflicting statement is refused.
    let (ok, _, stderr) = psql_script(
        proxy,
        "postgres",
        &db,
        "BEGIN;\nALTER TABLE r ALTER COLUMN v TYPE bigint;\nALTER TABLE r ALTER COLUMN v SET DEFAULT 1;\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("being changed by deferred migration"),
        "{stderr}"
    );
    assert_eq!(settled(&db, 0).await, NONE, "registrations left");
    assert_eq!(schema(&db).await, before);
    let triggers: i64 = direct(&db)
        .await
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0);
}

/// A deferred migration that fails after COMMIT: COMMIT succeeds (it did
/// commit) with a WARNING naming the migration; the console shows it
/// failed, and the schema is in its valid earlier state. In async mode
/// COMMIT returns at once.
#[tokio::test]
async fn a_deferred_failure_is_a_warning_on_commit_and_async_commit_returns_at_once() {
    let db = database(
        "fw",
        "CREATE TABLE f (id int, v int); INSERT INTO f SELECT g, g % 10 FROM generate_series(1, 2000) g",
    );
    let proxy = runner_proxy();
    let (ok, out, stderr) = psql_script(
        proxy,
        "postgres",
        &db,
        "BEGIN;\nCREATE UNIQUE INDEX f_v ON f (v);\nCOMMIT;\n",
    );
    assert!(ok, "{stderr}");
    assert!(out.contains("COMMIT"), "{out}");
    assert!(
        stderr.contains("WARNING:  ddlgate: deferred migration"),
        "{stderr}"
    );
    assert!(stderr.contains("failed after COMMIT"), "{stderr}");
    let status: String = direct(&db)
        .await
        .query_one("SELECT status FROM ddlgate.migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "failed");
    // Its failed build was undone: no invalid index left.
    let idx: i64 = direct(&db)
        .await
        .query_one(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'f'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(idx, 0);
    // Once the data allows it, RETRY from the console finishes it.
    psql_db(&db, "DELETE FROM f WHERE id > 10");
    let id: i64 = direct(&db)
        .await
        .query_one("SELECT id FROM ddlgate.migrations", &[])
        .await
        .unwrap()
        .get(0);
    let (ok, _, err) = psql_via(proxy, "postgres", "ddlgate", &format!("RETRY {db}/{id}"));
    assert!(ok, "{err}");
    wait_for_status(proxy, &db, &id.to_string(), "succeeded").await;

    let (ok, _, stderr) = psql_script(
        proxy,
        "postgres",
        &db,
        "SET ddlgate.mode = 'async';\nBEGIN;\nCREATE INDEX f_id ON f (id);\nCOMMIT;\n",
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("runs in the background"), "{stderr}");
    assert!(!stderr.contains("done ("), "{stderr}");
    for _ in 0..100 {
        let n: i64 = direct(&db)
            .await
            .query_one(
                "SELECT count(*) FROM pg_index WHERE indexrelid = 'f_id'::regclass AND indisvalid",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if n == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the async deferred index was never built");
}

/// A deferral undone by ROLLBACK TO SAVEPOINT is not run after COMMIT (and
/// is removed); a client that cancels while COMMIT waits for its migration
/// gets COMMIT's success at once, and the migration goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_rollback_discards_and_a_cancel_stops_only_the_wait() {
    let db = database(
        "sv",
        "CREATE TABLE sp (id int PRIMARY KEY, v int); INSERT INTO sp SELECT g, g FROM generate_series(1, 2000) g",
    );
    let c = via(&db).await;
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("SAVEPOINT a").await.unwrap();
    c.batch_execute("CREATE INDEX sp_v ON sp (v)")
        .await
        .unwrap();
    c.batch_execute("ROLLBACK TO SAVEPOINT a").await.unwrap();
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(settled(&db, 0).await, NONE);
    assert!(!schema(&db).await.contains("sp_v"));

    // CREATE INDEX CONCURRENTLY waits for this transaction to end.
    let blocker = direct(&db).await;
    blocker
        .batch_execute("BEGIN; INSERT INTO sp VALUES (0, 0)")
        .await
        .unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("CREATE INDEX sp_v ON sp (v)")
        .await
        .unwrap();
    let token = c.cancel_token();
    let committing = tokio::spawn(async move {
        let r = c.batch_execute("COMMIT").await;
        (r, c)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !committing.is_finished(),
        "COMMIT did not wait for its migration"
    );
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (r, c) = committing.await.unwrap();
    r.expect("a cancelled wait still answers COMMIT's success");
    c.batch_execute("SELECT 1").await.unwrap();
    blocker.batch_execute("COMMIT").await.unwrap();
    let id: i64 = direct(&db)
        .await
        .query_one("SELECT id FROM ddlgate.migrations", &[])
        .await
        .unwrap()
        .get(0);
    wait_for_status(runner_proxy(), &db, &id.to_string(), "succeeded").await;
    assert!(schema(&db).await.contains("sp_v"));
}

/// A step that fails inside the client's transaction (here the shadow
/// column's name is taken) fails the client's statement with the server's
/// error, by either protocol; the transaction is aborted as it would be.
#[tokio::test]
async fn a_failing_in_transaction_step_is_the_statements_error() {
    let db = database(
        "fs",
        "CREATE TABLE fs (id int PRIMARY KEY, v int, v_ddlgate int); \
         INSERT INTO fs SELECT g, g, g FROM generate_series(1, 2000) g",
    );
    let c = via(&db).await;
    let sql = "ALTER TABLE fs ALTER COLUMN v TYPE bigint";
    c.batch_execute("BEGIN").await.unwrap();
    let e = c.batch_execute(sql).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42701"), "{e:?}");
    let e = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("25P02"));
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    let e = c.query_typed(sql, &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42701"), "{e:?}");
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute("SELECT 1").await.unwrap();
    assert_eq!(settled(&db, 0).await, NONE, "registrations left behind");
}
