//! `ddlgate lint` as CI runs it: a directory of migrations, exit codes,
//! file:line positions, JSON output and the configured policy.

use std::path::Path;
use std::process::{Command, Output};

fn lint(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .arg("lint")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run ddlgate lint")
}

fn migrations() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("migrations");
    std::fs::create_dir_all(m.join("later")).unwrap();
    std::fs::write(
        m.join("0001_init.sql"),
        "BEGIN;\nCREATE TABLE users (id bigserial PRIMARY KEY, email text);\n\
         CREATE INDEX users_email ON users (email);\nCOMMIT;\n",
    )
    .unwrap();
    std::fs::write(
        m.join("0002_func.sql"),
        "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $body$\nBEGIN\n  \
         ALTER TABLE x DROP COLUMN y; -- inside a body\n  RETURN NEW;\nEND $body$;\n\n\
         -- reviewed\n/* ddlgate:allow drop-column */\nALTER TABLE users DROP COLUMN email;\n",
    )
    .unwrap();
    std::fs::write(
        m.join("later/0003_index.sql"),
        "CREATE INDEX CONCURRENTLY users_id ON users (id);\n",
    )
    .unwrap();
    std::fs::write(m.join("README.md"), "not SQL").unwrap();
    dir
}

#[test]
fn a_directory_of_migrations() {
    let dir = migrations();
    let out = lint(&["migrations"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    // The index on a table created in the same transaction is fine; the
    // DROP COLUMN inside the function body is not a statement; the real one
    // is on line 9 and stays blocked without a trusted role.
    assert!(
        stdout.contains("migrations/0002_func.sql:9: block [drop-column]"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("[drop-column]").count(), 1, "{stdout}");
    assert!(
        stdout.contains("note: ddlgate:allow drop-column ignored"),
        "{stdout}"
    );
    assert!(!stdout.contains("create-index"), "{stdout}");
    assert!(stdout.contains("3 file(s), 7 statement(s)"), "{stdout}");
}

#[test]
fn policy_from_the_config_and_trusted_overrides() {
    let dir = migrations();
    std::fs::write(
        dir.path().join("ddlgate.toml"),
        "[ddl]\noverride_roles = [\"migrator\"]\n",
    )
    .unwrap();
    let out = lint(
        &[
            "--config",
            "ddlgate.toml",
            "--user",
            "migrator",
            "migrations",
        ],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::write(
        dir.path().join("ddlgate.toml"),
        "[ddl.rules]\ndrop-column = \"warn\"\n",
    )
    .unwrap();
    let out = lint(&["-c", "ddlgate.toml", "migrations"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(":9: warn [drop-column]"), "{stdout}");
}

#[test]
fn json_output_and_version() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.sql"),
        "ALTER TABLE t ADD COLUMN c int DEFAULT 0;",
    )
    .unwrap();
    let out = lint(
        &["--format", "json", "--pg-version", "10", "m.sql"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pg_version"], 10);
    assert_eq!(v["findings"][0]["rule"], "add-column-default-before-pg11");
    assert_eq!(v["findings"][0]["lock"], "ACCESS EXCLUSIVE");
    assert_eq!(v["findings"][0]["line"], 1);
    let out = lint(&["--pg-version", "11", "m.sql"], dir.path());
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn unreadable_input_and_bad_config_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = lint(&["missing.sql"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.sql"));
    std::fs::write(
        dir.path().join("bad.toml"),
        "[ddl.rules]\nnope = \"allow\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("m.sql"), "SELECT 1;").unwrap();
    let out = lint(&["-c", "bad.toml", "m.sql"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ddl.rules.nope"));
}

/// The existing database the schema-aware lint cases run against.
const FIXTURE: &str = "
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TABLE acct (id int PRIMARY KEY, name varchar(50), code text, note text DEFAULT '',
                   bal numeric(12,2), qty positive);
CREATE INDEX acct_code_idx ON acct (code);
INSERT INTO acct SELECT g, 'n', 'c', '', 1, 1 FROM generate_series(1, 10) g;
CREATE TABLE meas (k int) PARTITION BY RANGE (k);
CREATE TABLE meas1 PARTITION OF meas FOR VALUES FROM (0) TO (100);
CREATE TABLE logs (k int) PARTITION BY RANGE (k);
CREATE TABLE logs_default PARTITION OF logs DEFAULT;
INSERT INTO logs SELECT generate_series(1, 10);
";

/// `(statement, decision without facts, decision with the schema's facts)`.
const CASES: &[(&str, &str, &str)] = &[
    (
        "ALTER TABLE acct ALTER COLUMN name TYPE varchar(100)",
        "rewrite",
        "none",
    ),
    (
        "ALTER TABLE acct ALTER COLUMN code TYPE text COLLATE \"C\"",
        "rewrite",
        "rewrite",
    ),
    (
        "ALTER TABLE acct ALTER COLUMN note DROP DEFAULT",
        "warn",
        "none",
    ),
    (
        "ALTER TABLE acct ALTER COLUMN bal SET NOT NULL",
        "rewrite",
        "rewrite",
    ),
    ("DROP TABLE IF EXISTS no_such_table", "block", "none"),
    (
        "CREATE TABLE meas2 PARTITION OF meas FOR VALUES FROM (100) TO (200)",
        "block",
        "warn",
    ),
    (
        "CREATE TABLE logs1 PARTITION OF logs FOR VALUES FROM (100) TO (200)",
        "block",
        "block",
    ),
    // An index the schema names only through its constraint: still judged.
    ("DROP INDEX acct_pkey", "rewrite", "rewrite"),
];

fn decisions(out: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let mut by_line = vec!["none".to_owned(); CASES.len()];
    for f in v["findings"].as_array().unwrap() {
        let line = f["line"].as_u64().unwrap() as usize - 1;
        let d = f["decision"].as_str().unwrap().to_owned();
        let rank = |d: &str| {
            ["none", "allow", "warn", "rewrite", "block"]
                .iter()
                .position(|x| *x == d)
        };
        if rank(&d) > rank(&by_line[line]) {
            by_line[line] = d;
        }
    }
    by_line
}

#[tokio::test]
async fn facts_from_a_schema_file_or_a_live_catalog() {
    let admin = crate::server::connect().await;
    admin
        .batch_execute("DROP DATABASE IF EXISTS lintdb")
        .await
        .unwrap();
    admin.batch_execute("CREATE DATABASE lintdb").await.unwrap();
    let (db, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=lintdb",
            crate::server::port()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    db.batch_execute(FIXTURE).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The schema as pg_dump writes it.
    let bin = ddlgate::pgcluster::find_bin_dir().unwrap();
    let dump = Command::new(bin.join("pg_dump"))
        .args([
            "-s",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "lintdb",
            "-p",
        ])
        .arg(crate::server::port().to_string())
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    std::fs::write(dir.path().join("schema.sql"), &dump.stdout).unwrap();
    let migration: String = CASES.iter().map(|(s, _, _)| format!("{s};\n")).collect();
    std::fs::write(dir.path().join("m.sql"), migration).unwrap();

    let json = ["--format", "json", "--pg-version", "15"];
    let without = decisions(&lint(&[&json[..], &["m.sql"]].concat(), dir.path()));
    let with_schema = decisions(&lint(
        &[&json[..], &["--schema", "schema.sql", "m.sql"]].concat(),
        dir.path(),
    ));
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/lintdb?sslmode=disable",
        crate::server::port()
    );
    let with_db = decisions(&lint(
        &[&json[..], &["--database", &url, "m.sql"]].concat(),
        dir.path(),
    ));
    for (i, (sql, no_facts, facts)) in CASES.iter().enumerate() {
        assert_eq!(without[i], *no_facts, "{sql} without facts");
        assert_eq!(with_schema[i], *facts, "{sql} with --schema");
        assert_eq!(with_db[i], *facts, "{sql} with --database");
    }
}
