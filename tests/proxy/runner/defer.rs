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
         THEN CREATE ROLE defer_client LOGIN; END IF; END$$; GRANT ALL ON t TO defer_client",
    );
    let mut runner = direct(&db).await;
    store::ensure_schema(&mut runner).await.unwrap();
    let plan =
        ddlgate::ddl::plan::plan("CREATE INDEX ON t (a)", &Catalog::default(), &|_| true).unwrap();
    let submission = Submission {
        database: db.clone(),
        role: "defer_client".into(),
        search_path: "public".into(),
        statement: "CREATE INDEX ON t (a)".into(),
        plan,
        event: "test".into(),
        wait: ClientWait::Sync,
        postpone_cutover: false,
    };
    let (id, token) = store::preregister(&mut runner, &submission, 0)
        .await
        .unwrap();
    assert!(token.len() >= 32, "{token}");
    assert_eq!(
        status(&db, id).await,
        Some(("pending_commit".into(), false))
    );

    let client = connect(&format!(
        "host=127.0.0.1 port={} user=defer_client dbname={db}",
        cluster().port
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
    let (id2, token2) = store::preregister(&mut runner, &submission, 0)
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
