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
