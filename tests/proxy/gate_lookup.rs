//! ddlgate's own work for a decision cannot stall or break a session: the
//! catalog lookup it runs on the session's connection neither queues for a
//! table lock nor breaks the client's transaction, and a failing audit
//! disk loses records, not sessions.

use std::time::Duration;

use tokio_postgres::Client;

use crate::harness::{direct, proxy, settings, sqlstate, Proxy};

async fn populated(name: &str) {
    direct("postgres")
        .await
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int, a int); \
             INSERT INTO {name} SELECT g, g FROM generate_series(1, 100) g;"
        ))
        .await
        .unwrap();
}

/// Runs `sql` through `c`, failing the test if no answer comes while the
/// lock is held (the lookup waited behind it).
async fn answer(c: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    tokio::time::timeout(Duration::from_secs(20), c.batch_execute(sql))
        .await
        .unwrap_or_else(|_| panic!("no answer to {sql:?} while another session holds the lock"))
}

#[tokio::test]
async fn a_lookup_never_queues_behind_a_table_lock() {
    populated("q_locked").await;
    let holder = direct("postgres").await;
    holder
        .batch_execute("BEGIN; LOCK TABLE q_locked IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let c = proxy().connect("postgres").await;
    // The size is unknown while the lock is held: decided as for a big
    // table, at once. Outside and inside a transaction.
    let sql = "ALTER TABLE q_locked ADD COLUMN c timestamptz DEFAULT clock_timestamp()";
    let e = answer(&c, sql).await.unwrap_err();
    assert_eq!(sqlstate(&e), "ZD002", "{e}");
    c.batch_execute("BEGIN").await.unwrap();
    let e = answer(&c, sql).await.unwrap_err();
    assert_eq!(sqlstate(&e), "ZD002", "{e}");
    c.batch_execute("ROLLBACK").await.unwrap();
    holder.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn a_failed_lookup_leaves_the_client_transaction_as_it_was() {
    // The server rejects the name in the lookup (too many dotted names).
    // The client must see the server's own answer to its statement, not an
    // aborted transaction the lookup left behind.
    let mut s = settings();
    s.ddl
        .policy
        .rules
        .insert(ddlgate::ddl::Rule::DropTable, ddlgate::ddl::Decision::Warn);
    let p = Proxy::start(s);
    let c = p.connect("postgres").await;
    let bad = "DROP TABLE IF EXISTS a.b.c.d";
    let direct_error = direct("postgres")
        .await
        .batch_execute(bad)
        .await
        .unwrap_err();
    let e = c.batch_execute(bad).await.unwrap_err();
    assert_eq!(sqlstate(&e), sqlstate(&direct_error), "{e}");
    c.batch_execute("BEGIN; CREATE TEMP TABLE q_tx (a int); INSERT INTO q_tx VALUES (1)")
        .await
        .unwrap();
    let e = c.batch_execute(bad).await.unwrap_err();
    assert_eq!(sqlstate(&e), sqlstate(&direct_error), "{e}");
    c.batch_execute("ROLLBACK").await.unwrap();
    // One existing and one rejected name: the lookup fails, the server
    // rejects the statement as a whole, and nothing is dropped.
    c.batch_execute("BEGIN; CREATE TEMP TABLE q_tx2 (a int); INSERT INTO q_tx2 VALUES (1)")
        .await
        .unwrap();
    populated("q_tx_kept").await;
    c.batch_execute("DROP TABLE IF EXISTS q_tx_kept, a.b.c.d")
        .await
        .unwrap_err();
    c.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM q_tx_kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 100);
}

#[tokio::test]
async fn a_failing_audit_disk_does_not_stop_sessions() {
    populated("q_audit_full").await;
    let mut s = settings();
    s.ddl.audit_log = Some("/dev/full".into());
    let p = Proxy::start(s);
    let c = p.connect("postgres").await;
    for _ in 0..50 {
        let e = c.batch_execute("TRUNCATE q_audit_full").await.unwrap_err();
        assert_eq!(sqlstate(&e), "ZD001");
        c.batch_execute("ALTER TABLE q_audit_full ADD COLUMN IF NOT EXISTS n int")
            .await
            .unwrap();
    }
}
