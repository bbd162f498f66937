//! The DDL gate through a running ddlgate, with psql (simple protocol) and
//! tokio-postgres (extended protocol): blocked statements, transactions,
//! warnings, overrides, the lock_timeout guard and the audit trail.

use std::process::Stdio;

use tokio_postgres::Client;

use crate::harness::{direct, proxy, psql, settings, sqlstate, Proxy};

/// A fresh table with a few rows, made directly (not through the gate).
async fn table(name: &str) {
    direct("postgres")
        .await
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name} CASCADE; \
             CREATE TABLE {name} (id int PRIMARY KEY, a int, v varchar(10)); \
             INSERT INTO {name} SELECT g, g, 'x' FROM generate_series(1, 50) g;"
        ))
        .await
        .unwrap();
}

async fn rows(c: &Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn columns(name: &str) -> Vec<String> {
    direct("postgres")
        .await
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = ($1::text)::regclass \
             AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn blocked_statements_over_the_extended_protocol() {
    table("g_ext").await;
    let c = proxy().connect("postgres").await;
    for (sql, rule, code) in [
        (
            "ALTER TABLE g_ext ADD COLUMN t timestamptz DEFAULT clock_timestamp()",
            "add-column-volatile-default",
            "ZD002",
        ),
        (
            "ALTER TABLE g_ext ALTER COLUMN a SET NOT NULL",
            "set-not-null",
            "ZD002",
        ),
        (
            "CREATE INDEX g_ext_a ON g_ext (a)",
            "create-index-non-concurrent",
            "ZD002",
        ),
        ("ALTER TABLE g_ext DROP COLUMN a", "drop-column", "ZD001"),
        ("TRUNCATE g_ext", "truncate", "ZD001"),
        (
            "ALTER TABLE g_ext ADD CONSTRAINT ex EXCLUDE USING btree (a WITH =)",
            "add-exclude-constraint",
            "ZD001",
        ),
    ] {
        let e = c.execute(sql, &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e), code, "{sql}: {e}");
        let db = e.as_db_error().unwrap();
        assert!(db.message().contains(rule), "{sql}: {}", db.message());
        assert!(
            db.detail().unwrap_or("").contains("on g_ext"),
            "{sql}: {db:?}"
        );
        assert!(!db.hint().unwrap_or("").is_empty(), "{sql}: {db:?}");
        // The session goes on.
        assert_eq!(
            c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
            1
        );
    }
    // Nothing reached the server.
    assert_eq!(columns("g_ext").await, ["id", "a", "v"]);
    assert_eq!(rows(&direct("postgres").await, "g_ext").await, 50);

    // Prepared apart from execution (as tokio-postgres, sqlx, asyncpg do):
    // the error comes at prepare, and the statement does not exist.
    let e = c
        .prepare("ALTER TABLE g_ext DROP COLUMN v")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
    // Allowed DDL prepared and executed later runs normally.
    let st = c
        .prepare("ALTER TABLE g_ext ADD COLUMN b int")
        .await
        .unwrap();
    c.execute(&st, &[]).await.unwrap();
    assert_eq!(columns("g_ext").await, ["id", "a", "v", "b"]);
}

#[tokio::test]
async fn a_blocked_statement_aborts_the_transaction_like_postgres() {
    table("g_tx").await;
    let mut c = proxy().connect("postgres").await;
    let tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO g_tx VALUES (100, 1, 'y')", &[])
        .await
        .unwrap();
    let e = tx
        .execute("ALTER TABLE g_tx RENAME COLUMN a TO b", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
    let e = tx.execute("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "25P02", "{e}");
    tx.rollback().await.unwrap();
    assert_eq!(rows(&c, "g_tx").await, 50);

    // Simple protocol: statements before the blocked one in the same string
    // share its implicit transaction and are rolled back with it.
    let e = c
        .batch_execute("INSERT INTO g_tx VALUES (101, 1, 'y'); DROP TABLE g_tx; INSERT INTO g_tx VALUES (102, 1, 'y')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
    assert_eq!(rows(&c, "g_tx").await, 50);
    // Explicit BEGIN in the string: the transaction is left aborted.
    let e = c
        .batch_execute("BEGIN; INSERT INTO g_tx VALUES (103, 1, 'y'); TRUNCATE g_tx")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
    let e = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute("SELECT 1").await.unwrap();
}

#[test]
fn psql_sees_the_rule_detail_and_hint() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(table("g_psql"));
    let out = psql(proxy())
        .args(["-c", "ALTER TABLE g_psql ADD COLUMN s bigserial"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("ERROR:  ddlgate: add-column-serial"), "{err}");
    assert!(err.contains("DETAIL:  adds g_psql.s as a serial"), "{err}");
    assert!(
        err.contains("ACCESS EXCLUSIVE lock on g_psql; rewrites the table"),
        "{err}"
    );
    // The hint is the plan, step by step, as SQL.
    assert!(err.contains("HINT:  -- step 1 of 8"), "{err}");
    assert!(
        err.contains("\nALTER TABLE g_psql ADD COLUMN s bigint;\n"),
        "{err}"
    );
    // Allowed changes run; the session's lock_timeout is untouched after.
    let out = psql(proxy())
        .args([
            "-c",
            "ALTER TABLE g_psql ADD COLUMN n int DEFAULT 0",
            "-c",
            "SHOW lock_timeout",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ALTER TABLE"), "{stdout}");
    assert!(stdout.lines().any(|l| l.trim() == "0"), "{stdout}");
}

async fn setting(c: &Client, name: &str) -> String {
    c.query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn lock_timeout_is_set_around_ddl_and_never_clobbered() {
    table("g_lt").await;
    let c = proxy().connect("postgres").await;
    c.execute("ALTER TABLE g_lt ADD COLUMN x int", &[])
        .await
        .unwrap();
    assert_eq!(setting(&c, "lock_timeout").await, "0");
    // BEGIN in the DDL's own string: the guard ran before the transaction,
    // the restore inside it, so a ROLLBACK would bring the guard's value
    // back; it is restored again once the transaction is over.
    c.batch_execute("BEGIN; ALTER TABLE g_lt ADD COLUMN gone int")
        .await
        .unwrap();
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(setting(&c, "lock_timeout").await, "0");
    // A value the client chose stays, during and after.
    c.batch_execute("SET lock_timeout = '7s'").await.unwrap();
    c.execute("ALTER TABLE g_lt ADD COLUMN y int", &[])
        .await
        .unwrap();
    assert_eq!(setting(&c, "lock_timeout").await, "7s");
    c.batch_execute("RESET lock_timeout").await.unwrap();
    // A failed transaction that began inside the DDL's own query string
    // cannot restore at once; the restore follows once it is over.
    let e = c
        .batch_execute("BEGIN; ALTER TABLE g_lt ADD COLUMN z int; SELECT 1/0")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22012");
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute("SELECT 1").await.unwrap();
    assert_eq!(setting(&c, "lock_timeout").await, "0");
    assert_eq!(columns("g_lt").await, ["id", "a", "v", "x", "y"]);
}

#[tokio::test]
async fn warnings_overrides_and_the_audit_log() {
    table("g_pol").await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut s = settings();
    s.ddl.audit_log = Some(audit.clone());
    s.ddl.policy.override_roles.insert("postgres".into());
    s.ddl.policy.rules.insert(
        ddlgate::ddl::Rule::RenameColumn,
        ddlgate::ddl::Decision::Warn,
    );
    let p = Proxy::start(s);

    // A warning reaches the client as a notice; the change runs.
    let (c, notices) = connect_with_notices(&p).await;
    c.batch_execute("ALTER TABLE g_pol RENAME COLUMN v TO w")
        .await
        .unwrap();
    let got = notices.lock().unwrap().clone();
    assert!(got.iter().any(|n| n.contains("rename-column")), "{got:?}");
    // A trusted role's reviewed override.
    c.batch_execute("/* ddlgate:allow drop-column */ ALTER TABLE g_pol DROP COLUMN w")
        .await
        .unwrap();
    assert_eq!(columns("g_pol").await, ["id", "a"]);
    // The same comment from an untrusted role is ignored.
    direct("postgres")
        .await
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE gate_user LOGIN PASSWORD 'role-secret'; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .await
        .unwrap();
    let other = p.connect("gate_user").await;
    let e = other
        .batch_execute("/* ddlgate:allow truncate */ TRUNCATE g_pol")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
    c.batch_execute("ALTER TABLE g_pol ADD COLUMN secret text DEFAULT 'hunter2'")
        .await
        .unwrap();

    let lines: Vec<serde_json::Value> = crate::harness::audit_records(&audit, 4);
    let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ddl.warned", "ddl.allowed", "ddl.blocked", "ddl.allowed"]
    );
    assert_eq!(lines[0]["rules"][0], "rename-column");
    assert_eq!(lines[0]["table"], "g_pol");
    assert_eq!(lines[0]["lock"], "ACCESS EXCLUSIVE");
    assert_eq!(lines[1]["overridden"][0], "drop-column");
    assert_eq!(lines[2]["user"], "gate_user");
    assert_eq!(lines[2]["ignored_overrides"][0], "truncate");
    assert!(lines[2]["client_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // Whatever server the harness found: the record names its version.
    let version: String = direct("postgres")
        .await
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lines[2]["server_version"], version.as_str());
    assert_eq!(lines[2]["fingerprint"].as_str().unwrap().len(), 16);
    // Literals are redacted by default.
    assert!(
        lines[3]["statement"]
            .as_str()
            .unwrap()
            .contains("DEFAULT ?"),
        "{}",
        lines[3]
    );
    assert!(!std::fs::read_to_string(&audit).unwrap().contains("hunter2"));
}

/// A client whose notices are collected.
pub async fn connect_with_notices(
    p: &Proxy,
) -> (Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use futures_util::StreamExt;
    let (client, mut conn) =
        tokio_postgres::connect(&p.conninfo("postgres", "postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notice(n) = m {
                sink.lock()
                    .unwrap()
                    .push(format!("{}: {}", n.code().code(), n.message()));
            }
        }
    });
    (client, notices)
}

#[tokio::test]
async fn catalog_facts_let_safe_type_changes_and_the_not_null_recipe_through() {
    direct("postgres")
        .await
        .batch_execute(
            "DROP TABLE IF EXISTS g_cat; \
             CREATE TABLE g_cat (id int, v varchar(10), \"Total\" numeric(10,2), a int, b int); \
             INSERT INTO g_cat SELECT g, 'x', 1, g, g FROM generate_series(1, 20) g;",
        )
        .await
        .unwrap();
    let c = proxy().connect("postgres").await;
    // Binary-coercible changes, read from the catalog: no rewrite, allowed.
    c.batch_execute("ALTER TABLE g_cat ALTER COLUMN v TYPE varchar(50)")
        .await
        .unwrap();
    c.execute("ALTER TABLE g_cat ALTER COLUMN v TYPE text", &[])
        .await
        .unwrap();
    c.execute(
        "ALTER TABLE g_cat ALTER COLUMN \"Total\" TYPE numeric(14,2)",
        &[],
    )
    .await
    .unwrap();
    // A real rewrite is still stopped.
    let e = c
        .batch_execute("ALTER TABLE g_cat ALTER COLUMN id TYPE bigint")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD002");
    // The safe NOT NULL recipe from the set-not-null hint runs through.
    let e = c
        .batch_execute("ALTER TABLE g_cat ALTER COLUMN b SET NOT NULL")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD002");
    // Pasted whole into psql, through ddlgate: every step passes the gate.
    run_hint(&e, "SET NOT NULL");
    let not_null: bool = direct("postgres")
        .await
        .query_one(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'g_cat'::regclass AND attname = 'b'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(not_null);
}

#[test]
fn copy_in_the_same_string_as_ddl_is_not_held_back() {
    use std::io::Write;
    let mut child = psql(proxy())
        .args([
            "-At",
            "-c",
            "CREATE TEMP TABLE g_copy (a int); COPY g_copy FROM STDIN",
            "-c",
            "SELECT 1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"1\n2\n\\.\n")
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("psql is stuck: COPY data held behind the schema change");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn rules_that_grow_with_the_table_do_not_apply_to_an_empty_one() {
    direct("postgres")
        .await
        .batch_execute(
            "DROP TABLE IF EXISTS g_empty, g_full; \
             CREATE TABLE g_empty (id int, a int); CREATE TABLE g_full (id int, a int); \
             INSERT INTO g_full VALUES (1, 1);",
        )
        .await
        .unwrap();
    let c = proxy().connect("postgres").await;
    for sql in [
        "ALTER TABLE {t} ADD COLUMN c timestamptz DEFAULT clock_timestamp()",
        "CREATE INDEX {t}_a ON {t} (a)",
        "ALTER TABLE {t} ALTER COLUMN a SET NOT NULL",
        "ALTER TABLE {t} ALTER COLUMN id TYPE bigint",
    ] {
        let e = c
            .batch_execute(&sql.replace("{t}", "g_full"))
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "ZD002", "{sql}");
        c.execute(&sql.replace("{t}", "g_empty"), &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    // Size does not excuse breaking clients.
    let e = c
        .batch_execute("ALTER TABLE g_empty DROP COLUMN a")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
}

#[tokio::test]
async fn defaults_calling_functions_the_catalog_shows_stable_are_computed_once() {
    direct("postgres")
        .await
        .batch_execute(
            "DROP TABLE IF EXISTS g_fn; CREATE TABLE g_fn (id int); INSERT INTO g_fn VALUES (1); \
             CREATE OR REPLACE FUNCTION g_tenant() RETURNS text LANGUAGE sql STABLE AS $$ SELECT 'acme' $$; \
             CREATE OR REPLACE FUNCTION g_ticket() RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT 'x' $$;",
        )
        .await
        .unwrap();
    let c = proxy().connect("postgres").await;
    c.batch_execute("ALTER TABLE g_fn ADD COLUMN tenant text DEFAULT g_tenant()")
        .await
        .unwrap();
    let e = c
        .batch_execute("ALTER TABLE g_fn ADD COLUMN ticket text DEFAULT g_ticket()")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD002");
    assert!(e
        .as_db_error()
        .unwrap()
        .detail()
        .unwrap()
        .contains("g_ticket()"));
}

#[tokio::test]
async fn a_rewrite_hint_pasted_into_psql_runs_through_the_gate() {
    direct("postgres")
        .await
        .batch_execute(
            "DROP TABLE IF EXISTS g_paste_child, g_paste; \
             CREATE TABLE g_paste (id int, \"Name\" text); \
             INSERT INTO g_paste SELECT g, 'n' || g FROM generate_series(1, 100) g; \
             CREATE TABLE g_paste_child (id int, parent int); \
             INSERT INTO g_paste_child SELECT g, g FROM generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    let c = proxy().connect("postgres").await;
    for sql in [
        "CREATE INDEX ON g_paste (\"Name\")",
        "ALTER TABLE g_paste ADD PRIMARY KEY (id)",
        "ALTER TABLE g_paste_child ADD FOREIGN KEY (parent) REFERENCES g_paste, ADD CHECK (id > 0)",
    ] {
        let e = c.batch_execute(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), "ZD002", "{sql}: {e}");
        run_hint(&e, sql);
    }
    let defs: Vec<String> = direct("postgres")
        .await
        .query(
            "SELECT conname::text || ' ' || convalidated::text FROM pg_constraint \
             WHERE conrelid IN ('g_paste'::regclass, 'g_paste_child'::regclass) ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        defs,
        [
            "g_paste_child_id_check true",
            "g_paste_child_parent_fkey true",
            "g_paste_pkey true"
        ]
    );
}

/// Runs a blocked statement's hint as printed, through ddlgate, with psql.
fn run_hint(e: &tokio_postgres::Error, what: &str) {
    let hint = e.as_db_error().unwrap().hint().unwrap().to_owned();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &hint).unwrap();
    let out = psql(proxy()).arg("-f").arg(file.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{what}\n{hint}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A statement to be rewritten inside a transaction block: by default it
/// is blocked and told to come on its own; with `ddl.in_transaction =
/// "allow"` (here for one role) it runs as written, with a WARNING.
#[tokio::test]
async fn a_rewrite_inside_a_transaction_is_blocked_saying_why_or_runs_as_written() {
    let db = direct("postgres").await;
    db.batch_execute(
        "DROP TABLE IF EXISTS g_intx; CREATE TABLE g_intx (a int);
         INSERT INTO g_intx SELECT generate_series(1, 100)",
    )
    .await
    .unwrap();
    let c = proxy().connect("postgres").await;
    c.batch_execute("BEGIN").await.unwrap();
    let e = c
        .batch_execute("CREATE INDEX g_intx_a ON g_intx (a)")
        .await
        .unwrap_err();
    let detail = e
        .as_db_error()
        .and_then(|d| d.detail())
        .unwrap_or_default()
        .to_owned();
    assert!(detail.contains("inside a transaction block"), "{detail}");
    c.batch_execute("ROLLBACK").await.unwrap();

    let mut s = settings();
    s.ddl.policy.in_transaction_roles.insert(
        "postgres".into(),
        ddlgate::ddl::policy::InTransaction::Allow,
    );
    let allowing = Proxy::start(s);
    let out = psql(&allowing)
        .args(["-c", "BEGIN; CREATE INDEX g_intx_a ON g_intx (a); COMMIT"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("runs as written"), "{stderr}");
    let made: bool = db
        .query_one("SELECT to_regclass('g_intx_a') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(made);
    db.batch_execute("DROP TABLE g_intx").await.unwrap();
}
