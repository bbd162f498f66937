//! What PostgreSQL's parser rejects reaches PostgreSQL: the client gets the
//! server's own syntax error (never a finding about an object with an empty
//! name, nor a migration that fails), and nothing of the string runs, as
//! directly. What the parser accepts and ddlgate cannot read is still
//! judged.

use crate::harness::*;

/// The server's answer to `sql`, sent directly.
async fn direct_error(sql: &str) -> (String, String) {
    let e = direct("postgres")
        .await
        .batch_execute(sql)
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    (db.code().code().to_owned(), db.message().to_owned())
}

#[tokio::test]
async fn syntax_errors_get_the_servers_error() {
    let c = proxy().connect("postgres").await;
    c.batch_execute("CREATE TABLE IF NOT EXISTS gs_t (a int)")
        .await
        .unwrap();
    for sql in [
        "drop table;",
        "drop index;",
        "CREATE INDEX IF NOT EXISTS ON gs_t (a)",
        "ALTER TABLE ((( garbage",
        "ALTER TABLE gs_t ALTER COLUMN a TYPE",
    ] {
        let want = direct_error(sql).await;
        assert_eq!(want.0, "42601", "{sql}: {want:?}");
        let e = c.batch_execute(sql).await.unwrap_err();
        let db = e.as_db_error().unwrap();
        assert_eq!(
            (db.code().code(), db.message()),
            (want.0.as_str(), want.1.as_str()),
            "simple protocol: {sql}"
        );
        // Extended protocol: the Parse is the server's to refuse.
        let e = c.execute(sql, &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42601", "extended protocol: {sql}");
    }
    assert_eq!(
        c.query_one("SELECT 7", &[]).await.unwrap().get::<_, i32>(0),
        7
    );
}

#[tokio::test]
async fn a_string_with_a_syntax_error_runs_nothing() {
    let c = proxy().connect("postgres").await;
    let e = c
        .batch_execute("CREATE TABLE gs_never (a int); drop table;")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'gs_never'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "PostgreSQL parses the whole string before running it");
    // Inside a block the error aborts the transaction, as directly.
    c.batch_execute("BEGIN").await.unwrap();
    let e = c.batch_execute("drop index;").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    let e = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn what_the_parser_accepts_is_still_judged() {
    let c = proxy().connect("postgres").await;
    direct("postgres")
        .await
        .batch_execute("CREATE TABLE IF NOT EXISTS gs_kept (a int)")
        .await
        .unwrap();
    // Valid grammar (for foreign tables) that ddlgate does not know.
    let e = c
        .batch_execute("ALTER TABLE gs_kept ALTER COLUMN a OPTIONS (x 'y')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("unrecognized-alter-table"));
    // A known change with a finding: refused as before.
    let e = c.batch_execute("DROP TABLE gs_kept").await.unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
}
