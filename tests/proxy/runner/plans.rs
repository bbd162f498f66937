//! Each plan applied from psql (simple protocol) and tokio-postgres
//! (extended protocol) ends in the schema the statement gives directly,
//! with an application writing and reading meanwhile; privileges stay the
//! submitter's; names survive quoting.

use super::{database, psql_db, psql_via, runner_proxy, schema};
use crate::harness::{cluster, connect, sqlstate, Proxy};

const SETUP: &str = "CREATE TABLE p (id int PRIMARY KEY);
    INSERT INTO p SELECT generate_series(1, 100);
    CREATE TABLE t (id int, a int, b text, pid int);
    INSERT INTO t SELECT g, g, 'x' || g, 1 + g % 100 FROM generate_series(1, 20000) g;
    CREATE INDEX t_b_idx ON t (b);
    CREATE TABLE pt (k int) PARTITION BY RANGE (k);
    CREATE TABLE pt1 PARTITION OF pt FOR VALUES FROM (0) TO (10);
    CREATE TABLE app_log (id bigserial PRIMARY KEY, at timestamptz DEFAULT now());";

const STATEMENTS: &[&str] = &[
    "CREATE INDEX ON t (a)",
    "CREATE UNIQUE INDEX t_id_key ON t (id)",
    "DROP INDEX t_b_idx",
    "REINDEX TABLE t",
    "ALTER TABLE t ADD CHECK (a > 0)",
    "ALTER TABLE t ADD FOREIGN KEY (pid) REFERENCES p",
    "ALTER TABLE t ADD UNIQUE (a)",
    "ALTER TABLE t ADD PRIMARY KEY (id)",
    "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
    "ALTER TABLE t ADD COLUMN c int, ADD CONSTRAINT t_c_check CHECK (c > 0), ALTER COLUMN b SET NOT NULL",
    "ALTER TABLE pt DETACH PARTITION pt1",
];

/// An application through ddlgate on `db` until `stop`: writes to `t` and
/// `app_log`, reads `t`. Its error count.
async fn application(proxy: &Proxy, db: &str, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let c = connect(&proxy.conninfo("postgres", db)).await;
    let mut errors = 0;
    let mut i = 100_000;
    while !*stop.borrow() {
        i += 1;
        for (sql, params) in [
            ("INSERT INTO app_log DEFAULT VALUES", vec![]),
            ("UPDATE t SET b = b WHERE id = $1", vec![i % 20000]),
            ("SELECT count(*) FROM t WHERE id < $1", vec![i % 100]),
        ] {
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p as _).collect();
            if let Err(e) = c.execute(sql, &params).await {
                eprintln!("application error: {e}");
                errors += 1;
            }
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_plan_reaches_the_direct_schema_from_psql_and_the_extended_protocol() {
    let proxy = runner_proxy();
    for sql in STATEMENTS {
        let direct = database("rd", SETUP);
        psql_db(&direct, sql);
        let mut want = schema(&direct).await;
        if sql.contains("DETACH") {
            // DETACH ... CONCURRENTLY keeps the bound as a CHECK on the
            // partition (documented): the one difference from the direct
            // form, kept so that attaching it again needs no scan.
            want = want.replace(
                "\nidx app_log_pkey",
                "\ncon pt1 pt1_k_check CHECK (((k IS NOT NULL) AND (k >= 0) AND (k < 10)))\nidx app_log_pkey",
            );
        }

        // psql (simple protocol), with the application running.
        let via_psql = database("rp", SETUP);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let app = tokio::spawn(application_owned(via_psql.clone(), rx));
        let (ok, _, stderr) = psql_via(proxy, "postgres", &via_psql, sql);
        assert!(ok, "{sql}: {stderr}");
        assert!(
            stderr.contains("step 1 of"),
            "{sql}: no progress notices: {stderr}"
        );
        tx.send(true).unwrap();
        assert_eq!(app.await.unwrap(), 0, "{sql}: application errors");
        assert_eq!(schema(&via_psql).await, want, "{sql} via psql");

        // tokio-postgres: Parse/Describe/Sync, then Bind/Execute/Sync.
        let via_ext = database("rx", SETUP);
        let c = connect(&proxy.conninfo("postgres", &via_ext)).await;
        let n = c
            .execute(*sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(n, 0);
        assert_eq!(
            schema(&via_ext).await,
            want,
            "{sql} via the extended protocol"
        );
    }
}

async fn application_owned(db: String, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    application(runner_proxy(), &db, stop).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_tag_is_what_postgres_sends() {
    let proxy = runner_proxy();
    let db = database("rt", SETUP);
    for (sql, tag) in [
        ("CREATE INDEX t_a_idx ON t (a)", "CREATE INDEX"),
        ("DROP INDEX t_a_idx", "DROP INDEX"),
        ("ALTER TABLE t ALTER COLUMN a SET NOT NULL", "ALTER TABLE"),
    ] {
        let (ok, stdout, stderr) = psql_via(proxy, "postgres", &db, sql);
        assert!(ok, "{stderr}");
        assert_eq!(stdout.trim(), tag);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_the_privilege_gets_postgres_own_error() {
    let proxy = runner_proxy();
    let db = database("rpriv", SETUP);
    psql_db(
        &db,
        "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'intruder') THEN
             CREATE ROLE intruder LOGIN PASSWORD 'role-secret'; END IF; END$$;
         GRANT SELECT ON t TO intruder;",
    );
    let direct = connect(&format!(
        "host=127.0.0.1 port={} user=intruder dbname={db} password={}",
        cluster().port,
        crate::harness::ROLE_PASSWORD
    ))
    .await;
    let want = direct
        .batch_execute("CREATE INDEX ON t (a)")
        .await
        .unwrap_err();
    let via = connect(&proxy.conninfo("intruder", &db)).await;
    let got = via
        .batch_execute("CREATE INDEX ON t (a)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&got), "42501", "{got:?}");
    assert_eq!(sqlstate(&got), sqlstate(&want));
    assert_eq!(
        got.as_db_error().unwrap().message(),
        want.as_db_error().unwrap().message()
    );
    assert!(!schema(&db).await.contains("t_a_idx"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_literals_survive() {
    let proxy = runner_proxy();
    let setup = "CREATE TABLE \"Weird \"\"Name\"\"\" (\"select\" text, \"naïve col\" text, id int);
        INSERT INTO \"Weird \"\"Name\"\"\" SELECT 'v' || g, 'w', g FROM generate_series(1, 100) g;
        CREATE TABLE app_log (id bigserial PRIMARY KEY);";
    for sql in [
        "ALTER TABLE \"Weird \"\"Name\"\"\" ADD CONSTRAINT \"c \"\"q\"\"\" CHECK (\"select\" <> '''' AND \"naïve col\" <> E'\\t\\'' AND \"select\" <> $x$a'b$x$)",
        "CREATE INDEX \"idx ünï\" ON \"Weird \"\"Name\"\"\" ((lower(\"select\" || '''')), \"naïve col\")",
        "ALTER TABLE \"Weird \"\"Name\"\"\" ALTER COLUMN \"naïve col\" SET NOT NULL",
        "ALTER TABLE \"Weird \"\"Name\"\"\" ADD PRIMARY KEY (id)",
    ] {
        let direct = database("hd", setup);
        psql_db(&direct, sql);
        let via = database("hv", setup);
        let c = connect(&proxy.conninfo("postgres", &via)).await;
        c.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert_eq!(schema(&via).await, schema(&direct).await, "{sql}");
    }
}
