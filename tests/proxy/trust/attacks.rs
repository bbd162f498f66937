//! The attacks the trust issue named, and their variants.

use std::time::Duration;

use super::{connect_as, database, direct, looted, through, trust_settings, PASSWORD};
use crate::harness::{cluster, psql_in, settings, sqlstate, Proxy};
use crate::raw;

#[tokio::test]
async fn a_repeated_startup_parameter_is_refused() {
    let p = crate::harness::proxy();
    for params in [
        &[
            ("user", "postgres"),
            ("user", "trust_attacker"),
            ("database", "ddlgate"),
        ][..],
        &[
            ("user", "trust_attacker"),
            ("database", "postgres"),
            ("database", "ddlgate"),
        ],
    ] {
        let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        raw::send(&mut s, &raw::startup_packet(params)).await;
        let (tag, body) = raw::read_message(&mut s).await.expect("an answer");
        assert_eq!(tag, b'E', "{params:?}");
        assert_eq!(raw::error_code(&body), "08P01", "{params:?}");
        assert!(
            raw::field(&body, b'M').contains("more than once"),
            "{}",
            raw::field(&body, b'M')
        );
        assert!(raw::read_message(&mut s).await.is_none(), "closed after it");
    }
}

#[tokio::test]
async fn a_forged_current_user_does_not_choose_the_role_a_migration_runs_as() {
    let db = database();
    let c = connect_as("trust_attacker", &db).await;
    // `current_user::text` would answer "trust_owner" in this session.
    c.batch_execute(
        "CREATE TYPE pg_temp.text AS ENUM ('trust_owner');
         CREATE FUNCTION pg_temp.forge(name) RETURNS pg_temp.text LANGUAGE sql
             AS $$SELECT 'trust_owner'::pg_temp.text$$;
         CREATE CAST (name AS pg_temp.text) WITH FUNCTION pg_temp.forge(name);",
    )
    .await
    .unwrap();
    let forged: String = c
        .query_one("SELECT current_user::text::varchar", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(forged, "trust_owner", "the forgery works in the session");
    let e = c
        .batch_execute("CREATE INDEX secret_x ON secret (x)")
        .await
        .expect_err("not the table's owner");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    let built: bool = direct(&db)
        .await
        .query_one("SELECT to_regclass('secret_x') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!built, "an index was built on another role's table");
}

/// Runs `sql` as the attacker through ddlgate (its steps through the
/// runner) and checks the secret never left: the statement fails, or
/// succeeds without the role change.
async fn attack(db: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let c = connect_as("trust_attacker", db).await;
    let r = c.batch_execute(sql).await;
    assert!(
        looted(db).await.is_empty(),
        "{sql} read another role's table: {r:?}"
    );
    r
}

/// The migration failed on PostgreSQL's own refusal of a role change
/// inside a SECURITY DEFINER function.
fn assert_refused_in_the_sandbox(e: &tokio_postgres::Error) {
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("security-definer")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_backfills_volatile_default_cannot_change_role() {
    let db = database();
    let e = attack(&db, "ALTER TABLE t_atk ADD COLUMN c int DEFAULT steal()")
        .await
        .expect_err("the role change fails the migration");
    assert_refused_in_the_sandbox(&e);
}

#[tokio::test]
async fn a_trigger_firing_on_the_batches_cannot_reset_role() {
    let db = database();
    psql_in(
        cluster(),
        &db,
        "CREATE TRIGGER t_atk_steal BEFORE UPDATE ON t_atk FOR EACH ROW EXECUTE FUNCTION reset_steal();
         ALTER TABLE t_atk OWNER TO trust_attacker;",
    );
    let e = attack(
        &db,
        "ALTER TABLE t_atk ADD COLUMN c timestamptz DEFAULT clock_timestamp()",
    )
    .await
    .expect_err("the role change fails the migration");
    assert_refused_in_the_sandbox(&e);
}

#[tokio::test]
async fn a_check_function_during_validate_cannot_change_role() {
    let db = database();
    attack(
        &db,
        "ALTER TABLE t_atk ADD CONSTRAINT t_atk_ck CHECK (steal_ok(v))",
    )
    .await
    .expect_err("the role change fails the migration");
}

#[tokio::test]
async fn a_using_expression_cannot_change_role() {
    let db = database();
    attack(
        &db,
        "ALTER TABLE t_atk ALTER COLUMN v TYPE bigint USING steal_int(v)",
    )
    .await
    .expect_err("the role change fails the migration");
}

#[tokio::test]
async fn a_ddlgate_schema_someone_else_made_is_not_used() {
    let db = database();
    psql_in(
        cluster(),
        &db,
        &format!(
            "GRANT CREATE ON DATABASE {db} TO trust_attacker;
             SET ROLE trust_attacker; CREATE SCHEMA ddlgate;"
        ),
    );
    let c = connect_as("trust_owner", &db).await;
    psql_in(
        cluster(),
        &db,
        "INSERT INTO secret SELECT generate_series(1, 10)",
    );
    let e = c
        .batch_execute("CREATE INDEX secret_x ON secret (x)")
        .await
        .expect_err("refused");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(msg.contains("owned by role trust_attacker"), "{msg}");
}

#[tokio::test]
async fn a_temporary_index_with_a_permanent_namesake_is_the_one_dropped() {
    let db = database();
    psql_in(
        cluster(),
        &db,
        "CREATE INDEX t_atk_v ON t_atk (v); ALTER TABLE t_atk OWNER TO trust_attacker;",
    );
    let c = connect_as("trust_attacker", &db).await;
    c.batch_execute(
        // Built by SQL made at run time: a name ddlgate never saw made.
        "CREATE TEMP TABLE scratch AS SELECT g AS v FROM generate_series(1, 1000) g;
         DO $$DECLARE t text := 'scratch';
             BEGIN EXECUTE 'CREATE INDEX t_atk_v ON ' || t || ' (v)'; END$$;",
    )
    .await
    .unwrap();
    // PostgreSQL resolves the name to the session's temporary index first.
    c.batch_execute("DROP INDEX t_atk_v").await.unwrap();
    let (temp, permanent): (bool, bool) = {
        let r = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = 't_atk_v' \
                   AND relpersistence = 't'), \
                 EXISTS (SELECT 1 FROM pg_class WHERE relname = 't_atk_v' \
                   AND relpersistence = 'p')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(!temp, "the temporary index is still there");
    assert!(permanent, "the permanent index was dropped instead");
    // A temporary table's index is rebuilt where it lives.
    c.batch_execute(
        "DO $$DECLARE t text := 'scratch';
         BEGIN EXECUTE 'CREATE INDEX scratch_v ON ' || t || ' (v)'; END$$;
         REINDEX INDEX scratch_v",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_message_over_the_held_bound_is_refused_and_others_go_on() {
    let mut s = settings();
    s.max_held_message_size = 64 * 1024;
    s.max_held_total = 64 * 1024;
    let p = Proxy::start(s);
    let other = p.connect("postgres").await;
    let c = p.connect("postgres").await;
    let big = format!("SELECT '{}'", "x".repeat(100 * 1024));
    let e = c.simple_query(&big).await.expect_err("over the bound");
    assert_eq!(sqlstate(&e), "54000", "{e:?}");
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("max_held_message_size")),
        "{e:?}"
    );
    // Data that streams through is not held: a large Bind parameter passes.
    let param = "y".repeat(200 * 1024);
    let n: i32 = other
        .query_one("SELECT length($1::text)", &[&param])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 200 * 1024);
}

#[tokio::test]
async fn large_messages_held_at_once_stay_within_the_total() {
    let mut s = settings();
    s.max_held_message_size = 4 << 20;
    s.max_held_total = 3 << 20;
    let p = Proxy::start(s);
    let params = [("user", "postgres"), ("database", "postgres")];
    // A 2 MB Query, half sent: its session holds 2 MB of the 3.
    let len = 2 << 20;
    let mut header = vec![b'Q'];
    header.extend_from_slice(&(len as u32).to_be_bytes());
    let mut first = raw::ready(p.addr, &params).await;
    raw::send(&mut first, &header).await;
    raw::send(&mut first, &vec![b' '; 1 << 20]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = raw::ready(p.addr, &params).await;
    raw::send(&mut second, &header).await;
    raw::send(&mut second, &[b' '; 1024]).await;
    let (tag, body) = raw::read_message(&mut second).await.expect("an answer");
    assert_eq!((tag, raw::error_code(&body)), (b'E', "53200".to_owned()));
    // The first finishes its message and gets its answer.
    let mut rest = vec![b' '; len - 4 - (1 << 20) - 9];
    rest.extend_from_slice(b"SELECT 1\0");
    raw::send(&mut first, &rest).await;
    let mut tags = Vec::new();
    while let Some((tag, _)) = raw::read_message(&mut first).await {
        tags.push(tag);
        if tag == b'Z' {
            break;
        }
    }
    assert_eq!(tags, [b'T', b'D', b'C', b'Z']);
}

#[tokio::test]
async fn a_lock_someone_else_holds_is_shown_and_bounds_the_clients_wait() {
    let db = database();
    let p = Proxy::start(trust_settings(Duration::from_secs(2)));
    // Any role may take the advisory lock that serialises a table's
    // migrations: here the attacker, directly.
    let holder = crate::harness::connect(&format!(
        "host=127.0.0.1 port={} user=trust_attacker password={PASSWORD} dbname={db}",
        cluster().port
    ))
    .await;
    let pid: i32 = holder
        .query_one(
            "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock((1684302951::bigint << 32) \
             | 'secret'::regclass::oid::bigint)) l",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let c = through(&p, "trust_owner", &db).await;
    let e = c
        .batch_execute("CREATE INDEX secret_x ON secret (x)")
        .await
        .expect_err("the client stops waiting");
    assert_eq!(sqlstate(&e), "55P03", "{e:?}");
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(
        msg.contains(&format!("held by pid {pid} (user trust_attacker")),
        "{msg}"
    );
    let shown: String = direct(&db)
        .await
        .query_one(
            "SELECT status || ': ' || progress FROM ddlgate.migrations",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(shown.starts_with("queued: waiting"), "{shown}");
    assert!(shown.contains(&format!("pid {pid}")), "{shown}");
    // A migration tool's transaction: COMMIT commits, and its wait for the
    // deferred migration ends after the bound too (with a WARNING).
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("ALTER TABLE secret ADD COLUMN at timestamptz DEFAULT clock_timestamp()")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), c.batch_execute("COMMIT"))
        .await
        .expect("COMMIT's wait is bounded")
        .unwrap();
    // Let go: the migrations, still queued, run.
    drop(holder);
    let d = direct(&db).await;
    for _ in 0..400 {
        let statuses: Vec<String> = d
            .query("SELECT status FROM ddlgate.migrations ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if statuses == ["succeeded", "succeeded"] {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the queued migrations never ran");
}

#[tokio::test]
async fn a_table_replaced_while_its_migration_waited_is_not_touched() {
    let db = database();
    let p = Proxy::start(trust_settings(Duration::from_secs(1)));
    let holder = direct(&db).await;
    holder
        .batch_execute(
            "SELECT pg_advisory_lock((1684302951::bigint << 32) | 'secret'::regclass::oid::bigint)",
        )
        .await
        .unwrap();
    let c = through(&p, "trust_owner", &db).await;
    let e = c
        .batch_execute("CREATE INDEX secret_x ON secret (x)")
        .await
        .expect_err("queued behind the lock");
    assert_eq!(sqlstate(&e), "55P03", "{e:?}");
    // Meanwhile the table is dropped and another made under its name.
    psql_in(
        cluster(),
        &db,
        "DROP TABLE secret; CREATE TABLE secret (x int); ALTER TABLE secret OWNER TO trust_owner;",
    );
    drop(holder);
    let d = direct(&db).await;
    for _ in 0..200 {
        let row = d
            .query_one("SELECT status, error FROM ddlgate.migrations", &[])
            .await
            .unwrap();
        let (status, error): (String, Option<String>) = (row.get(0), row.get(1));
        if status == "failed" {
            assert!(
                error
                    .as_deref()
                    .unwrap_or("")
                    .contains("names another relation"),
                "{error:?}"
            );
            let built: bool = d
                .query_one("SELECT to_regclass('secret_x') IS NOT NULL", &[])
                .await
                .unwrap()
                .get(0);
            assert!(!built, "the index was built on the new table");
            return;
        }
        assert_ne!(status, "succeeded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the migration never stopped");
}
