//! Keeps the rules honest: every rule's example runs against the real test
//! PostgreSQL inside a transaction; the test reads `pg_locks` for its own
//! backend and the table's `relfilenode` before and after, and checks that
//! the lock level and the rewrite the finding claims are what the server
//! did. Statements the rules call safe are checked the same way.

use ddlgate::ddl::types::SqlType;
use ddlgate::ddl::{Analyzer, Catalog, Finding, Lock, Mode, Rule};
use tokio_postgres::Client;

use crate::examples::{EXAMPLES, SETUP};
use crate::server::connect;

/// Statements the rules let through: no finding, no rewrite, and at most
/// this lock.
const SAFE: &[(&str, &str, Lock)] = &[
    ("ALTER TABLE t ADD COLUMN z int", "t", Lock::AccessExclusive),
    ("ALTER TABLE t ADD COLUMN z int DEFAULT 0", "t", Lock::AccessExclusive),
    ("ALTER TABLE t ADD COLUMN z int NOT NULL DEFAULT 0", "t", Lock::AccessExclusive),
    ("ALTER TABLE t ADD COLUMN z timestamptz DEFAULT now()", "t", Lock::AccessExclusive),
    ("ALTER TABLE t ADD COLUMN z jsonb DEFAULT '{}'::jsonb", "t", Lock::AccessExclusive),
    ("ALTER TABLE t ALTER COLUMN v TYPE varchar(50)", "t", Lock::AccessExclusive),
    ("ALTER TABLE t ALTER COLUMN v TYPE text", "t", Lock::AccessExclusive),
    ("ALTER TABLE t ALTER COLUMN n TYPE numeric(14,2)", "t", Lock::AccessExclusive),
    ("ALTER TABLE t ALTER COLUMN ts TYPE timestamp(6)", "t", Lock::AccessExclusive),
    ("ALTER TABLE t ALTER COLUMN a DROP NOT NULL", "t", Lock::AccessExclusive),
    ("ALTER TABLE t ALTER COLUMN a SET DEFAULT 1", "t", Lock::AccessExclusive),
    ("ALTER TABLE t ADD CONSTRAINT ck CHECK (a > 0) NOT VALID", "t", Lock::AccessExclusive),
    ("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (ref) REFERENCES u (id) NOT VALID", "t", Lock::ShareRowExclusive),
    ("ALTER TABLE t ALTER COLUMN a SET STATISTICS 500", "t", Lock::ShareUpdateExclusive),
    ("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()", "t", Lock::ShareRowExclusive),
    ("LOCK TABLE t IN ACCESS SHARE MODE", "t", Lock::AccessShare),
];

struct Observed {
    lock: Option<Lock>,
    rewrote: bool,
    /// The table was read in full (a sequential scan was counted).
    scanned: bool,
}

async fn seq_scans(db: &Client, oid: u32) -> i64 {
    db.query_one(
        "SELECT coalesce(sum(seq_scan), 0)::int8 FROM pg_stat_xact_user_tables WHERE relid = $1",
        &[&oid],
    )
    .await
    .unwrap()
    .get(0)
}

async fn observe(db: &Client, before: &str, sql: &str, table: &str) -> Observed {
    db.batch_execute("BEGIN").await.unwrap();
    if !before.is_empty() {
        db.batch_execute(before).await.unwrap();
    }
    let row = db
        .query_one(
            "SELECT c.oid, c.relfilenode FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&format!("lt.{table}")],
        )
        .await
        .unwrap();
    let (oid, file): (u32, u32) = (row.get(0), row.get(1));
    let scans = seq_scans(db, oid).await;
    db.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let modes: Vec<String> = db
        .query(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation' \
             AND relation = $1",
            &[&oid],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let after: Option<u32> = db
        .query_opt("SELECT relfilenode FROM pg_class WHERE oid = $1", &[&oid])
        .await
        .unwrap()
        .map(|r| r.get(0));
    let scanned = seq_scans(db, oid).await > scans;
    db.batch_execute("ROLLBACK").await.unwrap();
    Observed {
        scanned,
        lock: Lock::ALL
            .iter()
            .rev()
            .copied()
            .find(|l| modes.iter().any(|m| m == l.pg_locks_mode())),
        rewrote: after.is_some_and(|a| a != file),
    }
}

async fn relfilenode(db: &Client, table: &str) -> u32 {
    db.query_one(
        "SELECT relfilenode FROM pg_class WHERE oid = $1::text::regclass",
        &[&table],
    )
    .await
    .unwrap()
    .get(0)
}

/// Column types as the catalog has them, as the proxy would look them up.
async fn catalog(db: &Client) -> Catalog {
    let mut c = Catalog::default();
    for r in db
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'lt.t'::regclass AND attnum > 0 AND NOT attisdropped",
            &[],
        )
        .await
        .unwrap()
    {
        c.column_types.insert(
            ("t".into(), r.get::<_, String>(0)),
            SqlType::parse(&r.get::<_, String>(1)),
        );
    }
    for r in db
        .query(
            "SELECT DISTINCT t.typname::text FROM pg_type t JOIN pg_constraint c ON c.contypid = t.oid",
            &[],
        )
        .await
        .unwrap()
    {
        c.constrained_domains.insert(r.get(0));
    }
    c
}

fn classify(before: &str, sql: &str, major: u32, catalog: &Catalog) -> Vec<Finding> {
    let mut a = Analyzer::default();
    let script = format!("BEGIN; {before}; {sql}");
    a.analyze(script.as_bytes(), Mode::Script, false, major, catalog)
        .pop()
        .unwrap()
        .findings
}

#[tokio::test]
async fn rule_claims_match_the_server() {
    let db = connect().await;
    db.batch_execute(SETUP).await.unwrap();
    let major: u32 = db
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse::<u32>()
        .unwrap()
        / 10000;
    let catalog = catalog(&db).await;
    let mut failures = Vec::new();

    for (rule, before, sql, table) in EXAMPLES {
        let findings = classify(before, sql, major, &catalog);
        let Some(f) = findings.iter().find(|f| f.rule == *rule) else {
            failures.push(format!("{sql}: expected {rule}, got {findings:?}"));
            continue;
        };
        let seen = observe(&db, before, sql, table).await;
        // The finding names the lock on its own table; other tables it
        // touches (the referenced side of a foreign key) take the same lock.
        if f.lock.is_some() && seen.lock != f.lock {
            failures.push(format!(
                "{sql}: {rule} claims {:?} on {table}, server took {:?}",
                f.lock, seen.lock
            ));
        }
        // pg_stat counts TRUNCATE's new empty file as a sequential scan; it
        // reads no rows.
        if f.scan != seen.scanned && *rule != Rule::Truncate {
            failures.push(format!(
                "{sql}: {rule} claims scan={} of {table}, server scanned={}",
                f.scan, seen.scanned
            ));
        }
        if f.rewrite != seen.rewrote && *table == f.table.as_deref().unwrap_or(table) {
            failures.push(format!(
                "{sql}: {rule} claims rewrite={}, server rewrote={}",
                f.rewrite, seen.rewrote
            ));
        }
    }

    for (sql, table, max_lock) in SAFE {
        let findings = classify("", sql, major, &catalog);
        if !findings.is_empty() {
            failures.push(format!("{sql}: expected no findings, got {findings:?}"));
        }
        let seen = observe(&db, "", sql, table).await;
        if seen.rewrote || seen.scanned {
            failures.push(format!(
                "{sql}: called safe, but the server rewrote ({}) or scanned ({}) {table}",
                seen.rewrote, seen.scanned
            ));
        }
        if seen.lock != Some(*max_lock) {
            failures.push(format!(
                "{sql}: expected {max_lock} on {table}, server took {:?}",
                seen.lock
            ));
        }
    }

    // Statements that cannot run in a transaction block: the rewrite claim
    // is checked outside one.
    let before = relfilenode(&db, "lt.t").await;
    let f = classify("COMMIT", "VACUUM FULL t", major, &catalog);
    assert!(f.iter().any(|f| f.rule == Rule::VacuumFull && f.rewrite));
    db.batch_execute("VACUUM FULL lt.t").await.unwrap();
    let after = relfilenode(&db, "lt.t").await;
    if before == after {
        failures.push("VACUUM FULL: claimed rewrite, relfilenode unchanged".into());
    }

    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_rule_that_takes_a_table_lock_has_a_server_example() {
    // Rules without one here: version-specific on a PostgreSQL 15 server
    // (fast default before 11, ADD VALUE before 12), refused by the server
    // (CONCURRENTLY in a transaction), checked outside a transaction (VACUUM
    // FULL), needing a second tablespace, or with no lock to claim.
    let exempt = [
        Rule::AddColumnDefaultBeforePg11,
        Rule::EnumAddValueInTransaction,
        Rule::ConcurrentlyInTransaction,
        Rule::VacuumFull,
        Rule::SetTablespace,
        Rule::UnrecognizedAlterTable,
        Rule::UnrecognizedDdl,
    ];
    for r in Rule::ALL {
        assert!(
            exempt.contains(r) || EXAMPLES.iter().any(|(e, ..)| e == r),
            "{r} has no example in EXAMPLES"
        );
    }
}
