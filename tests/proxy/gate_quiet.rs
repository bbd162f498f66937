//! The gate stays out of ordinary traffic: DO blocks that change no schema,
//! statements on objects that do not exist, a session's own scratch tables,
//! and observe mode, in which nothing is stopped at all.

use crate::gate::connect_with_notices;
use crate::harness::{direct, proxy, settings, sqlstate, Proxy};

/// A populated table made by another session (directly).
async fn shared_table(name: &str) {
    direct("postgres")
        .await
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name} CASCADE; \
             CREATE TABLE {name} (id int PRIMARY KEY, a int, b int); \
             INSERT INTO {name} SELECT g, g, g FROM generate_series(1, 100) g;"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn do_blocks_are_judged_by_what_they_run() {
    shared_table("q_do").await;
    let (c, notices) = connect_with_notices(proxy()).await;
    c.batch_execute("DO $$ BEGIN RAISE NOTICE 'only a notice'; END $$")
        .await
        .unwrap();
    c.batch_execute(
        "DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM q_do; \
         IF n > 0 THEN UPDATE q_do SET b = b WHERE id = 1; END IF; END $$",
    )
    .await
    .unwrap();
    assert_eq!(*notices.lock().unwrap(), ["00000: only a notice"]);
    // The statement an EXECUTE runs is judged like the statement itself.
    let e = c
        .batch_execute("DO $$ BEGIN EXECUTE 'ALTER TABLE q_do ALTER COLUMN a SET NOT NULL'; END $$")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD002", "{e:?}");
    assert!(e.as_db_error().unwrap().message().contains("set-not-null"));
    // Dynamic SQL that cannot be known is still called out.
    c.batch_execute(
        "DO $$ BEGIN EXECUTE 'ALTER TABLE ' || 'q_do' || ' ALTER COLUMN b SET STATISTICS 100'; END $$",
    )
    .await
    .unwrap();
    let got = notices.lock().unwrap().clone();
    assert!(got.last().unwrap().contains("unrecognized-ddl"), "{got:?}");
}

#[tokio::test]
async fn statements_on_objects_that_do_not_exist_pass_quietly() {
    shared_table("q_exists").await;
    let (c, notices) = connect_with_notices(proxy()).await;
    for sql in [
        "DROP TABLE IF EXISTS q_never_was",
        "DROP TABLE IF EXISTS q_never_was, q_nor_this",
        "DROP INDEX IF EXISTS q_never_was_idx",
        "ALTER TABLE IF EXISTS q_never_was ADD COLUMN c int DEFAULT random()",
        "ALTER TABLE q_exists DROP COLUMN IF EXISTS no_such_column",
    ] {
        // Both protocols: simple, and extended (prepared, then executed).
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        c.execute(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    assert!(notices
        .lock()
        .unwrap()
        .iter()
        .all(|n| !n.contains("ddlgate")));
    // Objects that do exist are still judged.
    for sql in [
        "DROP TABLE IF EXISTS q_exists",
        "DROP TABLE IF EXISTS q_never_was, q_exists",
        "ALTER TABLE q_exists DROP COLUMN IF EXISTS b",
    ] {
        let e = c.batch_execute(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), "ZD001", "{sql}: {e}");
    }
    // Inside a transaction too, which the lookup leaves usable.
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("DROP TABLE IF EXISTS q_never_was")
        .await
        .unwrap();
    c.batch_execute("SELECT 1").await.unwrap();
    c.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn observe_mode_records_every_decision_and_stops_nothing() {
    shared_table("q_observe").await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut s = settings();
    s.ddl.mode = ddlgate::config::ddl::GateMode::Observe;
    s.ddl.audit_log = Some(audit.clone());
    let p = Proxy::start(s);
    let (c, notices) = connect_with_notices(&p).await;
    c.batch_execute("ALTER TABLE q_observe ALTER COLUMN a SET NOT NULL")
        .await
        .unwrap();
    c.batch_execute("ALTER TABLE q_observe RENAME COLUMN b TO c")
        .await
        .unwrap();
    c.execute("TRUNCATE q_observe", &[]).await.unwrap();
    assert!(
        notices.lock().unwrap().is_empty(),
        "{:?}",
        notices.lock().unwrap()
    );
    let lines: Vec<serde_json::Value> = crate::harness::audit_records(&audit, 3);
    let got: Vec<(&str, &str, bool)> = lines
        .iter()
        .map(|l| {
            (
                l["decision"].as_str().unwrap(),
                l["rules"][0].as_str().unwrap(),
                l["observed"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("rewrite", "set-not-null", true),
            ("block", "rename-column", true),
            ("block", "truncate", true),
        ]
    );
}

#[tokio::test]
async fn only_a_create_that_succeeded_and_committed_makes_a_table_the_sessions() {
    let (c, _) = connect_with_notices(proxy()).await;
    // Another session's table: this session's CREATE of the name fails, and
    // the name does not become this session's to drop.
    shared_table("q_taken").await;
    c.batch_execute("CREATE TABLE q_taken (id int)")
        .await
        .unwrap_err();
    let e = c.batch_execute("DROP TABLE q_taken").await.unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001", "{e}");
    // Rolled back, then made by someone else: not this session's either.
    c.batch_execute("BEGIN; CREATE TABLE q_undone (id int)")
        .await
        .unwrap();
    c.batch_execute("ROLLBACK").await.unwrap();
    shared_table("q_undone").await;
    let e = c.batch_execute("DROP TABLE q_undone").await.unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001", "{e}");
    // The same over the extended protocol, and a COMMIT of a failed
    // transaction (which rolls back).
    c.batch_execute("BEGIN").await.unwrap();
    c.execute("CREATE TABLE q_failed (id int)", &[])
        .await
        .unwrap();
    c.batch_execute("SELECT 1/0").await.unwrap_err();
    c.batch_execute("COMMIT").await.unwrap();
    shared_table("q_failed").await;
    let e = c.execute("DROP TABLE q_failed", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001", "{e}");
    // IF NOT EXISTS found another session's table: still not this one's.
    shared_table("q_ensured").await;
    c.batch_execute("CREATE TABLE IF NOT EXISTS q_ensured (id int)")
        .await
        .unwrap();
    let e = c.batch_execute("DROP TABLE q_ensured").await.unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001", "{e}");
    // Committed: the session's own (while it holds no data).
    c.batch_execute("BEGIN").await.unwrap();
    c.execute("CREATE TABLE q_kept (id int)", &[])
        .await
        .unwrap();
    c.batch_execute("COMMIT").await.unwrap();
    c.batch_execute("DROP TABLE q_kept").await.unwrap();
}
