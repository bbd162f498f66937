//! Trust by harm and visibility, not by authorship: what a session made is
//! its own only while it can hurt nobody. An object made in the open
//! transaction is invisible to everyone else; one made earlier is trusted
//! while it holds no data (a table, an index's table) or holds none at all
//! (a view, sequence, type, domain). Objects are known by OID, recorded
//! once their statement succeeded: a DROP that fails forgets nothing, and a
//! temporary and a permanent object with one name are never confused.

use crate::gate::connect_with_notices;
use crate::harness::{direct, proxy, settings, sqlstate, Proxy};

/// A populated table made by another session.
async fn shared_table(name: &str) {
    direct("postgres")
        .await
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name} CASCADE; \
             CREATE TABLE {name} (id int PRIMARY KEY, a int); \
             INSERT INTO {name} SELECT g, g FROM generate_series(1, 100) g;"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_session_changes_its_own_objects_while_they_hold_no_data() {
    let (c, notices) = connect_with_notices(proxy()).await;
    c.batch_execute(
        "DROP TABLE IF EXISTS o_scratch, o_ctas, o_ensured CASCADE; \
         DROP VIEW IF EXISTS o_view; DROP SEQUENCE IF EXISTS o_seq; \
         DROP TYPE IF EXISTS o_mood; DROP DOMAIN IF EXISTS o_pos;",
    )
    .await
    .unwrap();
    for create in [
        "CREATE TABLE o_scratch (id int, v text)",
        "CREATE TABLE o_ctas AS SELECT 1 AS a WHERE false",
        "CREATE TABLE IF NOT EXISTS o_ensured (id int)",
        "CREATE VIEW o_view AS SELECT 1 AS a",
        "CREATE SEQUENCE o_seq",
        "CREATE TYPE o_mood AS ENUM ('ok')",
        "CREATE DOMAIN o_pos AS int CHECK (VALUE > 0)",
    ] {
        c.batch_execute(create).await.unwrap();
    }
    // Later transactions of the same session, both protocols: its own.
    for sql in [
        "CREATE INDEX o_scratch_v ON o_scratch (v)",
        "ALTER TABLE o_scratch ADD COLUMN t timestamptz DEFAULT clock_timestamp()",
        "ALTER TABLE o_scratch ALTER COLUMN id SET NOT NULL",
        "ALTER TABLE o_scratch ALTER COLUMN id TYPE bigint",
        "DROP INDEX o_scratch_v",
        "ALTER TABLE o_ctas RENAME COLUMN a TO b",
        "DROP TABLE o_ctas",
        "ALTER VIEW o_view RENAME TO o_view2",
    ] {
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    for sql in [
        "DROP VIEW o_view2",
        "DROP SEQUENCE o_seq",
        "DROP TYPE o_mood",
        "DROP DOMAIN o_pos",
        "DROP TABLE o_ensured",
    ] {
        c.execute(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let got = notices.lock().unwrap().clone();
    assert!(got.iter().all(|n| !n.contains("ddlgate")), "{got:?}");

    // Another session's view of it: not its to drop.
    let other = proxy().connect("postgres").await;
    let e = other
        .batch_execute("DROP TABLE o_scratch")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");

    // Once it holds data it is judged like anyone's table.
    c.batch_execute("INSERT INTO o_scratch (id, v) SELECT g, 'x' FROM generate_series(1, 500) g")
        .await
        .unwrap();
    let e = c
        .batch_execute("CREATE INDEX o_scratch_v2 ON o_scratch (v)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD002", "{e}");
    let e = c.batch_execute("DROP TABLE o_scratch").await.unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001", "{e}");
    // ... except inside the transaction that made it, invisible to others.
    c.batch_execute(
        "BEGIN; CREATE TABLE o_fresh (id int); \
         INSERT INTO o_fresh SELECT generate_series(1, 500);",
    )
    .await
    .unwrap();
    c.batch_execute("CREATE INDEX o_fresh_id ON o_fresh (id)")
        .await
        .unwrap();
    c.execute("ALTER TABLE o_fresh ALTER COLUMN id TYPE bigint", &[])
        .await
        .unwrap();
    c.batch_execute("ROLLBACK").await.unwrap();
    direct("postgres")
        .await
        .batch_execute("DROP TABLE o_scratch")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_drop_that_fails_or_is_rolled_back_forgets_nothing() {
    let (c, _) = connect_with_notices(proxy()).await;
    c.batch_execute("DROP TABLE IF EXISTS o_kept; CREATE TABLE o_kept (id int)")
        .await
        .unwrap();
    // Fails (the other name does not exist), then rolled back.
    let e = c
        .batch_execute("DROP TABLE o_kept, o_no_such_table")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42P01", "{e}");
    c.batch_execute("BEGIN; DROP TABLE o_kept; ROLLBACK")
        .await
        .unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("DROP TABLE o_kept").await.unwrap();
    c.batch_execute("ROLLBACK").await.unwrap();
    // Still the session's own.
    c.batch_execute("DROP TABLE o_kept").await.unwrap();
}

#[tokio::test]
async fn a_temporary_and_a_permanent_table_of_one_name_are_not_confused() {
    shared_table("o_same").await;
    let (c, _) = connect_with_notices(proxy()).await;
    c.batch_execute("CREATE TEMP TABLE o_same (id int)")
        .await
        .unwrap();
    // The permanent one is another session's, with data.
    let e = c
        .batch_execute("DROP TABLE public.o_same")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001", "{e}");
    // The name alone is the temporary table: private.
    c.batch_execute("DROP TABLE o_same").await.unwrap();
    // A permanent table made while a temporary one shadows its name is not
    // recorded by a name that resolves elsewhere.
    c.batch_execute("CREATE TEMP TABLE o_shadow (id int)")
        .await
        .unwrap();
    c.batch_execute("DROP TABLE IF EXISTS public.o_shadow; CREATE TABLE public.o_shadow (id int)")
        .await
        .unwrap();
    direct("postgres")
        .await
        .batch_execute("INSERT INTO public.o_shadow VALUES (1)")
        .await
        .unwrap();
    let e = c
        .batch_execute("DROP TABLE public.o_shadow")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001", "{e}");
    direct("postgres")
        .await
        .batch_execute("DROP TABLE o_same, o_shadow")
        .await
        .unwrap();
}

#[tokio::test]
async fn with_the_setting_off_the_sessions_objects_are_judged_like_any_other() {
    let mut s = settings();
    s.ddl.trust_session_objects = false;
    let p = Proxy::start(s);
    let c = p.connect("postgres").await;
    c.batch_execute("CREATE TABLE o_off (id int)")
        .await
        .unwrap();
    let e = c.batch_execute("DROP TABLE o_off").await.unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
    direct("postgres")
        .await
        .batch_execute("DROP TABLE o_off")
        .await
        .unwrap();
}
