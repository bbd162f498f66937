//! Type changes through the runner: a column's type (a plain column with
//! an index, a CHECK and a default; a serial primary key that another
//! table references) changes while an application writes and reads both
//! tables through ddlgate, and the schema ends as the direct ALTER's, with
//! every row's value, and the application sees no error. A column a view
//! depends on is blocked, naming the view.

use std::time::Duration;

use super::{
    backfill_batches, database, direct, direct_and_via, psql_script, psql_via, runner_proxy,
    schema, wait_for_status,
};
use crate::harness::{connect, Proxy};

const SETUP: &str = "CREATE TABLE parent (id serial PRIMARY KEY, \
        v int NOT NULL DEFAULT 0 CHECK (v >= 0), note text NOT NULL);
    CREATE INDEX parent_v ON parent (v);
    INSERT INTO parent (v, note) SELECT g, g::text FROM generate_series(1, 30000) g;
    CREATE TABLE child (id int PRIMARY KEY, pid int REFERENCES parent ON DELETE CASCADE);
    INSERT INTO child SELECT g, g FROM generate_series(1, 30000, 3) g;";

/// Through `proxy` until `stop`: new parents (numbered by the sequence),
/// updates of `v` all over the table that keep `note` equal to it, new
/// children of existing parents, reads. Its error count.
async fn application(
    proxy: &Proxy,
    db: &str,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    let c = connect(&proxy.conninfo("postgres", db)).await;
    let mut errors = 0;
    let mut i: i64 = 0;
    while !*stop.borrow_and_update() {
        i += 1;
        let sql = format!(
            "UPDATE parent SET v = v + 1, note = (v + 1)::text WHERE id = {};
             INSERT INTO parent (v, note) VALUES ({i}, '{i}');
             INSERT INTO child VALUES ({}, {});
             SELECT count(*) FROM parent p JOIN child c ON c.pid = p.id WHERE p.id < 100",
            (i * 7919) % 30000 + 1,
            100_000 + i,
            (i * 104_729) % 30000 + 1,
        );
        if let Err(e) = c.batch_execute(&sql).await {
            eprintln!("application error: {e:?}");
            errors += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    errors
}

/// Rows whose `v` is not what the application last wrote to `note`, rows
/// without an id, and children whose parent is missing.
async fn wrong_rows(db: &str) -> (i64, i64, i64) {
    let r = direct(db)
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM parent WHERE v::text IS DISTINCT FROM note),
                    (SELECT count(*) FROM parent WHERE id IS NULL),
                    (SELECT count(*) FROM child c WHERE NOT EXISTS
                        (SELECT 1 FROM parent p WHERE p.id = c.pid))",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_changes_run_as_expand_contract_under_an_application() {
    let proxy = runner_proxy();
    for sql in [
        "ALTER TABLE parent ALTER COLUMN v TYPE bigint",
        "ALTER TABLE parent ALTER COLUMN id TYPE bigint",
    ] {
        let (direct_db, via) = direct_and_via("rt", SETUP, sql);
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let app = tokio::spawn({
            let via = via.clone();
            async move { application(runner_proxy(), &via, stop).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let c = connect(&proxy.conninfo("postgres", &via)).await;
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        // The application goes on over the new column for a while.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_tx.send(true).unwrap();
        assert_eq!(app.await.unwrap(), 0, "{sql}: application errors");
        assert_eq!(schema(&via).await, schema(&direct_db).await, "{sql}");
        assert_eq!(wrong_rows(&via).await, (0, 0, 0), "{sql}");
        assert!(backfill_batches(&via).await > 1, "{sql}: one batch only");
        let d = direct(&via).await;
        // What the change did to the application's latency, as ddlgate saw it.
        let (_, out, _) = psql_via(
            proxy,
            "postgres",
            "ddlgate",
            &format!("SHOW MIGRATION {via}/1"),
        );
        assert!(
            out.contains("before: p50 ") && out.contains("; during: p50 "),
            "{out}"
        );
        // Nothing of ddlgate's is left on the table.
        let leftovers: i64 = d
            .query_one(
                "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'zz_ddlgate%')
                      + (SELECT count(*) FROM pg_proc WHERE proname LIKE '%ddlgate_sync')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(leftovers, 0, "{sql}");
        // The serial column's sequence survived the old column's drop.
        let next: i64 = d
            .query_one("SELECT nextval('parent_id_seq')", &[])
            .await
            .unwrap()
            .get(0);
        assert!(next > 30000, "{sql}");
    }
}

/// The error (message and detail) ddlgate answers `sql` with in `db`.
async fn refusal(db: &str, sql: &str) -> String {
    let c = connect(&runner_proxy().conninfo("postgres", db)).await;
    let e = c.batch_execute(sql).await.unwrap_err();
    let e = e.as_db_error().expect("a server error");
    format!("{} {}", e.message(), e.detail().unwrap_or_default())
}

#[tokio::test]
async fn a_type_change_under_a_view_is_blocked_naming_the_view() {
    let db = database(
        "rtb",
        &format!("{SETUP} CREATE VIEW big_v AS SELECT v FROM parent WHERE v > 10;"),
    );
    let text = refusal(&db, "ALTER TABLE parent ALTER COLUMN v TYPE bigint").await;
    assert!(text.contains("view public.big_v"), "{text}");
    // Nothing was started.
    let started: bool = direct(&db)
        .await
        .query_one("SELECT to_regclass('ddlgate.migrations') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!started);
    // A published table: its subscribers would get a column they lack.
    let db = database(
        "rtb",
        &format!("{SETUP} CREATE PUBLICATION rtb_pub FOR TABLE parent;"),
    );
    let text = refusal(&db, "ALTER TABLE parent ALTER COLUMN v TYPE bigint").await;
    assert!(text.contains("published for logical replication"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postponed_cutover_waits_for_complete_with_the_new_column_in_sync() {
    let proxy = runner_proxy();
    let sql = "ALTER TABLE parent ALTER COLUMN v TYPE bigint";
    let (direct_db, via) = direct_and_via("rtp", SETUP, sql);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let app = tokio::spawn({
        let via = via.clone();
        async move { application(runner_proxy(), &via, stop).await }
    });
    // Not a Boolean: the client's error, nothing runs.
    let (ok, _, err) = psql_script(
        proxy,
        "postgres",
        &via,
        &format!("SET ddlgate.postpone_cutover = maybe;\n{sql};\n"),
    );
    assert!(!ok);
    assert!(
        err.contains("parameter \"ddlgate.postpone_cutover\" requires a Boolean value"),
        "{err}"
    );
    // The statement returns once the cut-over is all that is left.
    let (ok, out, err) = psql_script(
        proxy,
        "postgres",
        &via,
        &format!("SET ddlgate.postpone_cutover = on;\n{sql};\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("ALTER TABLE"), "{out}");
    let id = err
        .split("postponed until COMPLETE ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no COMPLETE id in {err}"))
        .to_owned();
    // Meanwhile the application writes the old column; the new one follows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = direct(&via).await;
    let r = d
        .query_one(
            "SELECT format_type(atttypid, atttypmod), \
                    (SELECT count(*) FROM parent WHERE v_ddlgate IS DISTINCT FROM v) \
               FROM pg_attribute WHERE attrelid = 'parent'::regclass AND attname = 'v'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "integer");
    assert_eq!(r.get::<_, i64>(1), 0, "the new column fell behind");
    wait_for_status(proxy, &via, &id, "paused").await;
    let (ok, out, err) = psql_via(
        proxy,
        "postgres",
        "ddlgate",
        &format!("COMPLETE {via}/{id}"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("going on now"), "{out}");
    wait_for_status(proxy, &via, &id, "succeeded").await;
    let (ok, _, err) = psql_via(
        proxy,
        "postgres",
        "ddlgate",
        &format!("COMPLETE {via}/{id}"),
    );
    assert!(!ok && err.contains("no cut-over left"), "{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_tx.send(true).unwrap();
    assert_eq!(app.await.unwrap(), 0, "application errors");
    assert_eq!(schema(&via).await, schema(&direct_db).await);
    assert_eq!(wrong_rows(&via).await, (0, 0, 0));
}

/// A proxy whose runner keeps a type change's old column for an hour.
fn keeping_proxy() -> &'static Proxy {
    static PROXY: std::sync::OnceLock<Proxy> = std::sync::OnceLock::new();
    PROXY.get_or_init(|| {
        let mut s = super::runner_settings();
        s.runner.as_mut().unwrap().contract_after = Duration::from_secs(3600);
        Proxy::start(s)
    })
}

/// Through the kept old column, REVERT swaps back with the application
/// writing the whole time: the schema is the one before the change and
/// every row, old or written since, has its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_after_the_cutover_brings_back_the_schema_and_every_row() {
    let proxy = keeping_proxy();
    let before_db = database("rtrb", SETUP);
    let via = database("rtrv", SETUP);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let app = tokio::spawn({
        let via = via.clone();
        async move { application(keeping_proxy(), &via, stop).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, _, err) = psql_script(
        proxy,
        "postgres",
        &via,
        "ALTER TABLE parent ALTER COLUMN id TYPE bigint;\n",
    );
    assert!(ok, "{err}");
    assert!(err.contains("the old column is kept aside"), "{err}");
    let id = err
        .split("REVERT ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no REVERT id in {err}"))
        .to_owned();
    // Cut over: the new column serves; the old one follows it.
    let d = direct(&via).await;
    let ty: String = d
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'parent'::regclass AND attname = 'id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "bigint");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let behind: i64 = d
        .query_one(
            "SELECT count(*) FROM parent WHERE id_ddlgate_old IS DISTINCT FROM id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(behind, 0, "the old column fell behind");
    // CANCEL has nothing to undo past the cut-over.
    let (ok, _, err) = psql_via(proxy, "postgres", "ddlgate", &format!("CANCEL {via}/{id}"));
    assert!(!ok && err.contains("past its cut-over"), "{err}");
    let (ok, out, err) = psql_via(proxy, "postgres", "ddlgate", &format!("REVERT {via}/{id}"));
    assert!(ok, "{err}");
    assert!(out.contains("reverting"), "{out}");
    wait_for_status(proxy, &via, &id, "reverted").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true).unwrap();
    assert_eq!(app.await.unwrap(), 0, "application errors");
    assert_eq!(schema(&via).await, schema(&before_db).await);
    assert_eq!(wrong_rows(&via).await, (0, 0, 0));
    let (ok, _, err) = psql_via(proxy, "postgres", "ddlgate", &format!("REVERT {via}/{id}"));
    assert!(!ok && err.contains("reverted already"), "{err}");
}

/// COMPLETE ends the grace period at once: the old column goes, and the
/// schema is the direct ALTER's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_drops_the_kept_old_column_now() {
    let proxy = keeping_proxy();
    let sql = "ALTER TABLE parent ALTER COLUMN v TYPE bigint";
    let (direct_db, via) = direct_and_via("rtc", SETUP, sql);
    let (ok, _, err) = psql_script(proxy, "postgres", &via, &format!("{sql};\n"));
    assert!(ok, "{err}");
    let id = err
        .split("COMPLETE ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no COMPLETE id in {err}"))
        .to_owned();
    assert!(schema(&via).await.contains("v_ddlgate_old"));
    let (ok, _, err) = psql_via(
        proxy,
        "postgres",
        "ddlgate",
        &format!("COMPLETE {via}/{id}"),
    );
    assert!(ok, "{err}");
    wait_for_status(proxy, &via, &id, "succeeded").await;
    assert_eq!(schema(&via).await, schema(&direct_db).await);
    // An index, reverted once made.
    let (ok, _, err) = psql_script(
        proxy,
        "postgres",
        &via,
        "CREATE INDEX parent_note ON parent (note);\n",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = psql_via(proxy, "postgres", "ddlgate", &format!("REVERT {via}/2"));
    assert!(ok, "{err}");
    wait_for_status(proxy, &via, "2", "reverted").await;
    assert!(!schema(&via).await.contains("parent_note"));
}
