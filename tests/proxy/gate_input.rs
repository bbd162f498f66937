//! Bad input to the gate: unparseable or unknown DDL, statements of several
//! megabytes, a truncated Parse, SQL in a non-UTF-8 client encoding. The
//! client gets a clear error or the statement passes by policy; the session
//! and the proxy go on.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::raw;

#[tokio::test]
async fn unparseable_and_unknown_ddl_follow_on_unrecognized() {
    let c = proxy().connect("postgres").await;
    // An ALTER TABLE form the server accepts and ddlgate cannot read:
    // blocked by default.
    let e = c
        .batch_execute("ALTER TABLE pg_class ALTER COLUMN relname OPTIONS (x 'y')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("unrecognized-alter-table"));
    // Another unknown form: warned and passed on; the server answers.
    let e = c.batch_execute("CREATE FROBNICATOR x").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    // One the server's parser rejects: its own error.
    let e = c.execute("ALTER TABLE", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    assert_eq!(
        c.query_one("SELECT 2", &[]).await.unwrap().get::<_, i32>(0),
        2
    );
}

#[tokio::test]
async fn statements_of_several_megabytes() {
    let c = proxy().connect("postgres").await;
    let body = "x".repeat(4 << 20);
    c.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION g_big() RETURNS int LANGUAGE sql AS $b$ SELECT length('{body}') $b$"
    ))
    .await
    .unwrap();
    let n: i32 = c.query_one("SELECT g_big()", &[]).await.unwrap().get(0);
    assert_eq!(n, 4 << 20);
    // A blocked one of the same size; nothing of it reaches the server.
    // Made by another session: this one's own tables are its business.
    direct("postgres")
        .await
        .batch_execute("CREATE TABLE IF NOT EXISTS g_big_kept (a int)")
        .await
        .unwrap();
    let e = c
        .batch_execute(&format!("DROP TABLE IF EXISTS g_big_kept /* {body} */"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
    direct("postgres")
        .await
        .batch_execute("DROP FUNCTION g_big()")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_truncated_parse_is_answered_and_the_gate_stays_in_step() {
    let p = proxy();
    direct("postgres")
        .await
        .batch_execute("CREATE TABLE IF NOT EXISTS g_truncated_kept (a int)")
        .await
        .unwrap();
    let mut s = raw::ready(p.addr, &[("user", "postgres"), ("database", "postgres")]).await;
    // Parse whose SQL string has no terminator, then Sync.
    let mut msg = raw::message(b'P', b"s1\0TRUNCATE g_truncated_kept");
    msg.extend(raw::message(b'S', b""));
    raw::send(&mut s, &msg).await;
    let mut got = Vec::new();
    while let Some((tag, body)) =
        tokio::time::timeout(Duration::from_secs(10), raw::read_message(&mut s))
            .await
            .unwrap()
    {
        got.push((tag, raw::error_code(&body), raw::field(&body, b'S')));
        if tag == b'Z' {
            break;
        }
    }
    assert_eq!(got[0].0, b'E');
    assert_eq!(got[0].1, "08P01");
    // PostgreSQL answers with an ERROR and goes on; so must the session,
    // and its gate must still be in step: the same statement, well formed,
    // is judged (and blocked) on this session.
    assert_eq!(got[0].2, "ERROR");
    assert_eq!(got.last().unwrap().0, b'Z');
    raw::send(&mut s, &raw::message(b'Q', b"TRUNCATE g_truncated_kept\0")).await;
    let (tag, body) = raw::read_message(&mut s).await.unwrap();
    assert_eq!((tag, raw::error_code(&body)), (b'E', "ZD001".to_owned()));
    assert_eq!(raw::read_message(&mut s).await.unwrap().0, b'Z');
    let c = p.connect("postgres").await;
    let e = c
        .batch_execute("TRUNCATE g_truncated_kept")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
}

#[test]
fn ddl_in_a_latin1_client_encoding() {
    let info = cluster();
    psql_admin_db(
        "latin1db",
        b"CREATE TABLE IF NOT EXISTS caf\xe9 (a int, b int)",
    );
    let through = |sql: &[u8]| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), sql).unwrap();
        Command::new(info.bin_dir.join("psql"))
            .env("PGCLIENTENCODING", "LATIN1")
            .args([
                "-X",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "latin1db",
                "-p",
            ])
            .arg(proxy().port().to_string())
            .arg("-f")
            .arg(file.path())
            .output()
            .unwrap()
    };
    let out = through(b"ALTER TABLE caf\xe9 DROP COLUMN b;\n");
    let err = out.stderr.clone();
    let text = String::from_utf8_lossy(&err);
    assert!(text.contains("drop-column"), "{text}");
    // ddlgate's own text reaches a LATIN1 client as ASCII only.
    assert!(err.is_ascii(), "{text}");
    let out = through(b"ALTER TABLE caf\xe9 ADD COLUMN \"\xe9t\xe9\" int;\n");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs raw SQL bytes as the superuser in `db`, bypassing ddlgate.
fn psql_admin_db(db: &str, sql: &[u8]) {
    let info = cluster();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), sql).unwrap();
    let out = Command::new(info.bin_dir.join("psql"))
        .env("PGCLIENTENCODING", "LATIN1")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(&info.socket_dir)
        .args([
            "-p",
            &info.port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
            "-f",
        ])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_warned_statement_in_the_middle_of_a_batch_still_warns() {
    direct("postgres")
        .await
        .batch_execute(
            "DROP MATERIALIZED VIEW IF EXISTS g_mv; CREATE MATERIALIZED VIEW g_mv AS SELECT 1 AS a",
        )
        .await
        .unwrap();
    let mut s = raw::ready(
        proxy().addr,
        &[("user", "postgres"), ("database", "postgres")],
    )
    .await;
    let mut batch = Vec::new();
    for sql in ["SELECT 1", "REFRESH MATERIALIZED VIEW g_mv"] {
        batch.extend(raw::message(b'P', format!("\0{sql}\0\0\0").as_bytes()));
        batch.extend(raw::message(b'B', b"\0\0\0\0\0\0\0\0"));
        batch.extend(raw::message(b'E', b"\0\0\0\0\0"));
    }
    batch.extend(raw::message(b'S', b""));
    raw::send(&mut s, &batch).await;
    let mut tags = Vec::new();
    let mut warned = false;
    while let Some((tag, body)) = raw::read_message(&mut s).await {
        tags.push(tag as char);
        if tag == b'N' {
            warned |= raw::field(&body, b'M').contains("refresh-materialized-view");
        }
        if tag == b'Z' {
            break;
        }
    }
    assert!(warned, "{tags:?}");
    assert_eq!(tags.last(), Some(&'Z'));
    assert!(!tags.contains(&'E'), "{tags:?}");
}

#[tokio::test]
async fn statements_before_a_blocked_one_reach_the_server_byte_for_byte() {
    // LATIN1 bytes in the statements that run before the stand-in: they
    // must not be re-encoded on the way.
    psql_admin_db(
        "latin1db",
        b"CREATE TABLE IF NOT EXISTS g_kept_here (a int)",
    );
    let mut s = raw::ready(
        proxy().addr,
        &[
            ("user", "postgres"),
            ("database", "latin1db"),
            ("client_encoding", "LATIN1"),
        ],
    )
    .await;
    raw::send(
        &mut s,
        &raw::message(b'Q', b"SELECT 'caf\xe9' AS v; DROP TABLE g_kept_here\0"),
    )
    .await;
    let mut value = None;
    let mut code = String::new();
    while let Some((tag, body)) = raw::read_message(&mut s).await {
        match tag {
            b'D' => value = Some(body[6..].to_vec()),
            b'E' => code = raw::error_code(&body),
            b'Z' => break,
            _ => {}
        }
    }
    assert_eq!(code, "ZD001");
    assert_eq!(value.as_deref(), Some(&b"caf\xe9"[..]));
}
