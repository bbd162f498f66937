//! kill -9 of ddlgate mid-step, then a restart that resumes by itself.

use std::process::Command;
use std::time::Duration;

use super::{database, direct, psql_db, schema};
use crate::harness::{cluster, connect};

/// ddlgate as its own process (so it can be killed), with a runner.
struct Process {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Process {
    /// `extra`: more configuration, appended to the file.
    fn start(dir: tempfile::TempDir, port: u16, extra: &str) -> Process {
        let config = dir.path().join("ddlgate.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\n\
                 upstream = \"postgres://127.0.0.1:{}/postgres?sslmode=disable\"\n\
                 admin_roles = [\"postgres\"]\n\
                 [runner]\nuser = \"postgres\"\npoll_interval = \"200ms\"\n{extra}",
                cluster().port
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ddlgate"))
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting ddlgate");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Process { child, _dir: dir }
    }

    fn kill9(mut self) -> tempfile::TempDir {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
        std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The newest migration's status and current step in `db`, read directly.
async fn migration_step(db: &str) -> (String, i32) {
    let c = direct(db).await;
    match c
        .query_opt(
            "SELECT status, current_step FROM ddlgate.migrations ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
    {
        Ok(Some(r)) => (r.get(0), r.get(1)),
        _ => (String::new(), 0),
    }
}

/// Whether the newest migration in `db` succeeds within 20 s.
async fn succeeds(db: &str) -> bool {
    for _ in 0..400 {
        if migration_step(db).await.0 == "succeeded" {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// kill -9 of ddlgate in the middle of a step (CREATE INDEX CONCURRENTLY
/// waiting for an old transaction; VALIDATE scanning), then a restart: the migration
/// resumes by itself and ends in the direct schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_step_then_restart_resumes_to_the_same_schema() {
    // A CHECK slow enough (about 1.5 s over the table) to be killed in.
    let slow = "CREATE FUNCTION slow(int) RETURNS boolean LANGUAGE sql \
                AS 'SELECT pg_sleep(0.0005) IS NOT NULL AND $1 >= 0';";
    for (sql, blocker_sql, step) in [
        (
            "CREATE INDEX w_v_idx ON w (v)",
            "BEGIN; INSERT INTO w VALUES (0)",
            1,
        ),
        (
            "ALTER TABLE w ADD CONSTRAINT w_v_check CHECK (slow(v))",
            "",
            2,
        ),
    ] {
        let setup = format!(
            "{slow} CREATE TABLE w (v int); INSERT INTO w SELECT generate_series(1, 3000);"
        );
        let direct_db = database("kd", &setup);
        psql_db(&direct_db, sql);
        let db = database("kv", &setup);
        let port = ddlgate::pgcluster::free_port();
        let proc = Process::start(tempfile::tempdir().unwrap(), port, "");
        let blocker = direct(&db).await;
        if !blocker_sql.is_empty() {
            // CREATE INDEX CONCURRENTLY waits for this transaction.
            blocker.batch_execute(blocker_sql).await.unwrap();
        }
        let c = connect(&format!(
            "host=127.0.0.1 port={port} user=postgres dbname={db}"
        ))
        .await;
        let statement = sql.to_owned();
        tokio::spawn(async move {
            // Ends with the process; the migration does not.
            let _ = c.batch_execute(&statement).await;
        });
        // Mid-step: running, in the step that waits.
        let mut seen = false;
        for _ in 0..300 {
            let (status, current) = migration_step(&db).await;
            if status == "running" && current == step {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(seen, "{sql}: the migration never reached its waiting step");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let dir = proc.kill9();
        if !blocker_sql.is_empty() {
            blocker.batch_execute("COMMIT").await.unwrap();
        }
        let restarted = Process::start(dir, port, "");
        assert!(succeeds(&db).await, "{sql}: not resumed");
        assert_eq!(schema(&db).await, schema(&direct_db).await, "{sql}");
        drop(restarted);
    }
}

/// The backfill step's position in `db`: batches and rows done.
async fn backfill_position(db: &str) -> (i64, i64) {
    let c = direct(db).await;
    match c
        .query_opt(
            "SELECT (position->>'batches')::bigint, (position->>'rows')::bigint \
             FROM ddlgate.steps WHERE kind = 'backfill' AND position IS NOT NULL",
            &[],
        )
        .await
    {
        Ok(Some(r)) => (r.get(0), r.get(1)),
        _ => (0, 0),
    }
}

/// kill -9 in the middle of a backfill: after a restart it goes on from
/// the batch after the last one committed (never from the start), and
/// every row ends as the direct ALTER leaves it (`off` counts the rows
/// that do not).
async fn kill_9_mid_backfill(setup: &str, sql: &'static str, off: &str) {
    kill_9_mid_backfill_sent(setup, sql, off, false).await
}

/// As above; `in_transaction`: sent inside BEGIN … COMMIT, as a migration
/// tool sends it (killed between the COMMIT and the end of the deferred
/// migration).
async fn kill_9_mid_backfill_sent(setup: &str, sql: &'static str, off: &str, in_transaction: bool) {
    let direct_db = database("kbd", setup);
    psql_db(&direct_db, sql);
    let db = database("kbv", setup);
    let port = ddlgate::pgcluster::free_port();
    // Slow enough to be killed in: 4000 rows/s, batches of 100 ms.
    let throttle = "[throttle]\nmax_rows_per_sec = 4000\n";
    let proc = Process::start(tempfile::tempdir().unwrap(), port, throttle);
    let c = connect(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname={db}"
    ))
    .await;
    tokio::spawn(async move {
        if in_transaction {
            c.batch_execute("BEGIN").await.unwrap();
            c.batch_execute(sql).await.unwrap();
            let _ = c.batch_execute("COMMIT").await;
        } else {
            let _ = c.batch_execute(sql).await;
        }
    });
    let mut at_kill = (0, 0);
    for _ in 0..300 {
        at_kill = backfill_position(&db).await;
        if at_kill.0 >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(at_kill.0 >= 3, "{sql}: the backfill never got going");
    let dir = proc.kill9();
    let recorded = backfill_position(&db).await;
    assert!(
        recorded.1 < 20000,
        "{sql}: finished before the kill: {recorded:?}"
    );
    let restarted = Process::start(dir, port, throttle);
    assert!(succeeds(&db).await, "{sql}: not resumed");
    let (batches, rows) = backfill_position(&db).await;
    // Counted on from the recorded position: each row changed once.
    assert_eq!(rows, 20000, "{sql}: rows changed twice or skipped");
    assert!(
        batches > recorded.0,
        "{sql}: {batches} batches after {recorded:?}"
    );
    assert_eq!(schema(&db).await, schema(&direct_db).await, "{sql}");
    let wrong: i64 = direct(&db).await.query_one(off, &[]).await.unwrap().get(0);
    assert_eq!(wrong, 0, "{sql}");
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_backfill_of_an_added_column_resumes_from_its_last_batch() {
    kill_9_mid_backfill(
        "CREATE FUNCTION seven() RETURNS int VOLATILE LANGUAGE sql AS 'SELECT 7';
         CREATE TABLE k (id int PRIMARY KEY, v int);
         INSERT INTO k SELECT g, g FROM generate_series(1, 20000) g;",
        "ALTER TABLE k ADD COLUMN c int NOT NULL DEFAULT seven()",
        "SELECT count(*) FROM k WHERE c IS DISTINCT FROM 7",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_backfill_of_a_type_change_resumes_from_its_last_batch() {
    kill_9_mid_backfill(
        "CREATE TABLE k (id int PRIMARY KEY, v int NOT NULL, w text);
         CREATE INDEX k_v ON k (v);
         INSERT INTO k SELECT g, g, g::text FROM generate_series(1, 20000) g;",
        "ALTER TABLE k ALTER COLUMN v TYPE numeric(12, 2) USING v * 1.5",
        "SELECT count(*) FROM k WHERE v IS DISTINCT FROM id * 1.5",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_commit_mid_deferred_type_change_resumes_from_its_last_batch() {
    kill_9_mid_backfill_sent(
        "CREATE TABLE k (id int PRIMARY KEY, v int NOT NULL, w text);
         CREATE INDEX k_v ON k (v);
         INSERT INTO k SELECT g, g, g::text FROM generate_series(1, 20000) g;",
        "ALTER TABLE k ALTER COLUMN v TYPE bigint",
        "SELECT count(*) FROM k WHERE v IS DISTINCT FROM id",
        true,
    )
    .await;
}

/// kill -9 while the cut-over's transaction is open (it has dropped the
/// sync trigger and waits for a lock on the referencing table, which an
/// application transaction holds): the transaction dies with ddlgate's
/// connection, and after a restart the cut-over runs again, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_cutover_then_restart_cuts_over_once() {
    let setup = "CREATE TABLE parent (id int PRIMARY KEY, n int NOT NULL);
        INSERT INTO parent SELECT g, g FROM generate_series(1, 5000) g;
        CREATE TABLE child (id int PRIMARY KEY, pid int REFERENCES parent);
        INSERT INTO child SELECT g, g FROM generate_series(1, 5000) g;";
    let sql = "ALTER TABLE parent ALTER COLUMN id TYPE bigint";
    let direct_db = database("kcd", setup);
    psql_db(&direct_db, sql);
    let db = database("kcv", setup);
    // The application's transaction, holding the referencing table.
    let holder = direct(&db).await;
    holder
        .batch_execute("BEGIN; LOCK child IN ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    let port = ddlgate::pgcluster::free_port();
    let proc = Process::start(tempfile::tempdir().unwrap(), port, "");
    let c = connect(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname={db}"
    ))
    .await;
    tokio::spawn(async move {
        let _ = c.batch_execute(sql).await;
    });
    let watch = direct(&db).await;
    let mut waiting = false;
    for _ in 0..600 {
        waiting = watch
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND query LIKE '%ddlgate_exec%' AND datname = current_database())",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(waiting, "the cut-over never waited for its lock");
    let dir = proc.kill9();
    holder.batch_execute("COMMIT").await.unwrap();
    let restarted = Process::start(dir, port, "");
    assert!(succeeds(&db).await, "not resumed");
    assert_eq!(schema(&db).await, schema(&direct_db).await);
    let wrong: i64 = direct(&db)
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM parent WHERE id::int <> n) \
                  + (SELECT count(*) FROM child c LEFT JOIN parent p ON p.id = c.pid \
                     WHERE p.id IS NULL)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0);
    drop(restarted);
}
