//! Migrations deferred past a client's COMMIT, the store's side: a
//! registration the runner makes is confirmed by `ddlgate.confirm(token)`
//! inside the client's own transaction (the only thing PUBLIC may do in
//! the `ddlgate` schema), so it exists exactly when that transaction
//! commits; one whose transaction ended otherwise is removed.

use ddlgate::config::ClientWait;
use ddlgate::ddl::Catalog;
use ddlgate::runner::{store, Submission};

use super::{database, direct, psql_db};
use crate::harness::{cluster, connect};

async fn status(db: &str, id: i64) -> Option<(String, bool)> {
    direct(db)
        .await
        .query_opt(
            "SELECT status, token IS NULL FROM ddlgate.migrations WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
}

#[tokio::test]
async fn a_deferred_migration_exists_exactly_when_the_clients_transaction_commits() {
    let db = database("dfr", "CREATE TABLE t (a int)");
    psql_db(
        &db,
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'defer_client') \
         THEN CREATE ROLE defer_client LOGIN PASSWORD 'role-secret'; END IF; END$$; GRANT ALL ON t TO defer_client",
    );
    let mut runner = direct(&db).await;
    store::ensure_schema(&mut runner).await.unwrap();
    let plan =
        ddlgate::ddl::plan::plan("CREATE INDEX ON t (a)", &Catalog::default(), &|_| true).unwrap();
    let submission = Submission {
        database: db.clone(),
        login: "defer_client".into(),
        role: "defer_client".into(),
        search_path: "public".into(),
        relation_oid: None,
        statement: "CREATE INDEX ON t (a)".into(),
        plan,
        event: "test".into(),
        wait: ClientWait::Sync,
        postpone_cutover: false,
    };
    let (id, token) = store::preregister(&mut runner, &submission, 0, 0)
        .await
        .unwrap();
    assert!(token.len() >= 32, "{token}");
    assert_eq!(
        status(&db, id).await,
        Some(("pending_commit".into(), false))
    );

    let client = connect(&format!(
        "host=127.0.0.1 port={} user=defer_client dbname={db} password={}",
        cluster().port,
        crate::harness::ROLE_PASSWORD
    ))
    .await;
    // Nothing else in the schema is the client's.
    let e = client
        .query("SELECT * FROM ddlgate.migrations", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501");
    let confirm = "SELECT ddlgate.confirm($1)";
    let wrong: Option<i64> = client
        .query_one(confirm, &[&"not-a-token"])
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, None);
    // Rolled back: still pending.
    client.batch_execute("BEGIN").await.unwrap();
    let got: Option<i64> = client.query_one(confirm, &[&token]).await.unwrap().get(0);
    assert_eq!(got, Some(id));
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        status(&db, id).await,
        Some(("pending_commit".into(), false))
    );
    // Committed: queued (or already taken up by a runner), token spent.
    client.batch_execute("BEGIN").await.unwrap();
    client.query_one(confirm, &[&token]).await.unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    let (st, spent) = status(&db, id).await.unwrap();
    assert_ne!(st, "pending_commit");
    assert!(spent);

    // A registration whose transaction is still open is alive, however
    // old; once that transaction ends without COMMIT it is removed.
    let (id2, token2) = store::preregister(&mut runner, &submission, 0, 0)
        .await
        .unwrap();
    runner
        .execute(
            "UPDATE ddlgate.migrations SET created_at = now() - interval '5 minutes' WHERE id = $1",
            &[&id2],
        )
        .await
        .unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    client.query_one(confirm, &[&token2]).await.unwrap();
    store::forget_abandoned(&runner).await.unwrap();
    assert!(
        status(&db, id2).await.is_some(),
        "removed while its transaction was open"
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    store::forget_abandoned(&runner).await.unwrap();
    assert_eq!(status(&db, id2).await, None);
}

/// The migrations recorded in `db`: (id, status), in id order.
async fn migrations(db: &str) -> Vec<(i64, String)> {
    let c = direct(db).await;
    if c.query_one("SELECT to_regclass('ddlgate.migrations') IS NULL", &[])
        .await
        .unwrap()
        .get(0)
    {
        return Vec::new();
    }
    c.query("SELECT id, status FROM ddlgate.migrations ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// CREATE INDEX inside BEGIN … COMMIT, as a migration tool sends it: the
/// client gets CREATE INDEX and a NOTICE naming the deferred migration,
/// COMMIT returns once the index is built CONCURRENTLY, and the schema is
/// the direct one's. ROLLBACK leaves nothing.
#[tokio::test]
async fn create_index_inside_a_transaction_is_built_concurrently_after_commit() {
    let setup = "CREATE TABLE t (a int, b text); INSERT INTO t SELECT g, g::text FROM generate_series(1, 1000) g";
    let sql = "CREATE INDEX t_a ON t (a)";
    let (want, db) = super::direct_and_via("dci", setup, sql);
    let proxy = super::runner_proxy();
    let (ok, _, stderr) = super::psql_script(
        proxy,
        "postgres",
        &db,
        &format!("BEGIN;\nINSERT INTO t VALUES (0, 'zero');\n{sql};\nROLLBACK;\n"),
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("deferred as migration"), "{stderr}");
    let made = migrations(&db).await;
    assert!(made.iter().all(|(_, s)| s == "pending_commit"), "{made:?}");
    // Removed at once (its transaction is over).
    for _ in 0..50 {
        if migrations(&db).await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(migrations(&db).await, vec![]);
    assert!(!super::schema(&db).await.contains("t_a"));

    let (ok, out, stderr) = super::psql_script(
        proxy,
        "postgres",
        &db,
        &format!("BEGIN;\n{sql};\nCOMMIT;\n"),
    );
    assert!(ok, "{stderr}");
    assert!(out.contains("CREATE INDEX"), "{out}");
    assert!(stderr.contains("deferred as migration"), "{stderr}");
    assert!(stderr.contains("done"), "{stderr}");
    assert_eq!(super::schema(&db).await, super::schema(&want).await);
    let made = migrations(&db).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].1, "succeeded");
}
