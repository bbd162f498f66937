//! Steering migrations: a failure's error and RETRY, CANCEL, every console
//! command, the session's mode, and several ddlgate instances sharing one
//! database.

use std::time::Duration;

use super::{
    database, direct, psql_db, psql_script, psql_via, recorded_id, runner_proxy, runner_settings,
    schema, wait_for_status,
};
use crate::harness::{cluster, connect, sqlstate, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_reports_its_error_and_retry_finishes_it() {
    let proxy = runner_proxy();
    let db = database(
        "rf",
        "CREATE TABLE d (v int); INSERT INTO d VALUES (1), (1), (2);",
    );
    let c = connect(&proxy.conninfo("postgres", &db)).await;
    let e = c
        .batch_execute("CREATE UNIQUE INDEX d_v_key ON d (v)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505", "{e:?}");
    let detail = e
        .as_db_error()
        .unwrap()
        .detail()
        .unwrap_or_default()
        .to_owned();
    assert!(detail.contains("failed at step 1 of 1"), "{detail}");
    // No half-built index is left behind.
    assert!(
        !schema(&db).await.contains("d_v_key"),
        "{}",
        schema(&db).await
    );
    let id: String = detail
        .split("migration ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (ok, out, _) = psql_via(
        proxy,
        "postgres",
        "ddlgate",
        &format!("SHOW MIGRATION {db}/{id}"),
    );
    assert!(
        ok && out.contains("failed") && out.contains("23505"),
        "{out}"
    );

    psql_db(
        &db,
        "DELETE FROM d WHERE ctid = (SELECT min(ctid) FROM d WHERE v = 1)",
    );
    let (ok, out, err) = psql_via(proxy, "postgres", "ddlgate", &format!("RETRY {db}/{id}"));
    assert!(ok, "{out}{err}");
    wait_for_status(proxy, &db, &id, "succeeded").await;
    let after = schema(&db).await;
    assert!(
        after
            .lines()
            .any(|l| l == "idx d_v_key CREATE UNIQUE INDEX d_v_key ON public.d USING btree (v)"),
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_the_console_stops_a_waiting_build_and_drops_its_index() {
    let proxy = runner_proxy();
    let db = database(
        "rc",
        "CREATE TABLE w (v int); INSERT INTO w SELECT generate_series(1, 1000);
         DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'async_submitter') THEN
             CREATE ROLE async_submitter LOGIN PASSWORD 'role-secret'; END IF; END$$;
         ALTER TABLE w OWNER TO async_submitter; GRANT CREATE ON SCHEMA public TO async_submitter;",
    );
    // An open transaction that has written: CREATE INDEX CONCURRENTLY
    // waits for it.
    let blocker = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        cluster().port
    ))
    .await;
    blocker
        .batch_execute("BEGIN; INSERT INTO w VALUES (0)")
        .await
        .unwrap();
    // Async: the statement returns once recorded.
    let (ok, out, err) = psql_via(
        proxy,
        "async_submitter",
        &db,
        "CREATE INDEX w_v_idx ON w (v)",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "CREATE INDEX");
    let id = recorded_id(&err);
    wait_for_status(proxy, &db, &id, "running").await;
    let (ok, list, _) = psql_via(proxy, "postgres", "ddlgate", "SHOW MIGRATIONS");
    assert!(ok && list.contains("here"), "{list}");
    let (ok, out, err) = psql_via(proxy, "postgres", "ddlgate", &format!("CANCEL {db}/{id}"));
    assert!(ok, "{out}{err}");
    // Dropping the half-built index waits for the old transaction too.
    blocker.batch_execute("COMMIT").await.unwrap();
    wait_for_status(proxy, &db, &id, "cancelled").await;
    assert!(
        !schema(&db).await.contains("w_v_idx"),
        "{}",
        schema(&db).await
    );
}

#[test]
fn every_console_command_answers_from_psql() {
    let proxy = runner_proxy();
    for (cmd, expect) in [
        ("SHOW HELP", "SHOW MIGRATIONS"),
        ("SHOW MIGRATIONS", "database"),
        ("SHOW BLOCKED", "decision"),
        ("SHOW CLIENTS", "backend_pid"),
        ("SHOW SERVERS", "upstream"),
        ("SHOW STATS", "runner instance"),
        ("SHOW CONFIG", "runner.user"),
        ("SHOW JOBS", "poll for migrations"),
        ("RELOAD", "reload requested"),
    ] {
        let (ok, out, err) = psql_via(proxy, "postgres", "ddlgate", cmd);
        assert!(ok, "{cmd}: {err}");
        assert!(out.contains(expect), "{cmd}: {out}");
    }
    let (ok, _, err) = psql_via(proxy, "postgres", "ddlgate", "SHOW NOTHING");
    assert!(
        !ok && err.contains("unknown command") && err.contains("SHOW MIGRATIONS"),
        "{err}"
    );
    let (ok, _, err) = psql_via(proxy, "postgres", "ddlgate", "PAUSE 999999");
    assert!(!ok && err.contains("does not exist"), "{err}");
    let (ok, _, err) = psql_via(proxy, "md5_user", "ddlgate", "SHOW HELP");
    assert!(!ok && err.contains("admin_roles"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddlgate_mode_is_a_setting_the_session_sets_resets_and_inherits() {
    let proxy = runner_proxy();
    let db = database(
        "rmode",
        "CREATE TABLE m (a int, b int, c int); INSERT INTO m SELECT g, g, g FROM generate_series(1, 1000) g;",
    );
    let (ok, _, err) = psql_script(
        proxy,
        "postgres",
        &db,
        "SET ddlgate.mode = 'async';\nCREATE INDEX m_a_idx ON m (a);\n",
    );
    assert!(ok, "{err}");
    let id = recorded_id(&err);
    assert!(!err.contains("applying the change"), "{err}");
    wait_for_status(proxy, &db, &id, "succeeded").await;

    // RESET: back to the configured mode (sync), which waits and reports.
    let (ok, out, err) = psql_script(
        proxy,
        "postgres",
        &db,
        "SET ddlgate.mode TO async;\nRESET ddlgate.mode;\nCREATE INDEX m_b_idx ON m (b);\n",
    );
    assert!(ok, "{err}");
    assert!(out.contains("CREATE INDEX"), "{out}");
    assert!(
        err.contains("applying the change as a phased migration"),
        "{err}"
    );
    assert!(!err.contains("recorded as migration"), "{err}");
    assert!(schema(&db).await.contains("idx m_b_idx"));

    // Set for the database by PostgreSQL itself: new sessions inherit it.
    psql_db(
        &db,
        &format!("ALTER DATABASE {db} SET ddlgate.mode = 'ASYNC'"),
    );
    let (ok, _, err) = psql_script(proxy, "postgres", &db, "CREATE INDEX m_c_idx ON m (c);\n");
    assert!(ok, "{err}");
    wait_for_status(proxy, &db, &recorded_id(&err), "succeeded").await;

    // A value that is neither is the client's error, as PostgreSQL's own
    // settings answer one; nothing runs.
    let (ok, _, err) = psql_script(
        proxy,
        "postgres",
        &db,
        "SET ddlgate.mode = 'later';\nCREATE INDEX m_ac_idx ON m (a, c);\n",
    );
    assert!(!ok);
    assert!(
        err.contains("invalid value for parameter \"ddlgate.mode\": \"later\""),
        "{err}"
    );
    assert!(!schema(&db).await.contains("m_ac_idx"));
}

/// A migration's status, read straight from its database.
async fn status(db: &str, id: &str) -> String {
    direct(db)
        .await
        .query_one(
            "SELECT status FROM ddlgate.migrations WHERE id = $1::text::bigint",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_run_one_tables_migrations_one_at_a_time_in_order() {
    let a = runner_proxy();
    let db = database(
        "rtwo",
        "CREATE TABLE w (v int, u int); INSERT INTO w SELECT g, g FROM generate_series(1, 1000) g;",
    );
    // The first migration creates the ddlgate schema.
    let (ok, _, err) = psql_via(a, "postgres", &db, "CREATE INDEX w_u_idx ON w (u)");
    assert!(ok, "{err}");
    let b = Proxy::start(runner_settings());
    // An open transaction that has written: A's build waits for it.
    let blocker = direct(&db).await;
    blocker
        .batch_execute("BEGIN; INSERT INTO w VALUES (0, 0)")
        .await
        .unwrap();
    let async_mode = "SET ddlgate.mode = 'async';\n";
    let (ok, _, err) = psql_script(
        a,
        "postgres",
        &db,
        &format!("{async_mode}CREATE INDEX w_v_idx ON w (v);\n"),
    );
    assert!(ok, "{err}");
    let first = recorded_id(&err);
    wait_for_status(a, &db, &first, "running").await;
    let (ok, _, err) = psql_script(
        &b,
        "postgres",
        &db,
        &format!("{async_mode}ALTER TABLE w ADD CONSTRAINT w_v_check CHECK (v >= 0);\n"),
    );
    assert!(ok, "{err}");
    let second = recorded_id(&err);
    // Several poll intervals: B tries the table's lock and cannot have it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(status(&db, &first).await, "running");
    assert_eq!(status(&db, &second).await, "queued");
    let (ok, list, _) = psql_via(&b, "postgres", "ddlgate", "SHOW MIGRATIONS");
    assert!(
        ok && list
            .lines()
            .any(|l| l.contains(&db) && l.contains("running") && l.contains("elsewhere")),
        "{list}"
    );

    blocker.batch_execute("COMMIT").await.unwrap();
    wait_for_status(&b, &db, &second, "succeeded").await;
    assert_eq!(status(&db, &first).await, "succeeded");
    let c = direct(&db).await;
    let overlapping: i64 = c
        .query_one(
            "SELECT count(*) FROM ddlgate.steps x JOIN ddlgate.steps y ON x.migration < y.migration
              WHERE tstzrange(x.started_at, x.finished_at) && tstzrange(y.started_at, y.finished_at)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        overlapping, 0,
        "steps of two migrations on one table overlapped"
    );
    let in_order: bool = c
        .query_one(
            "SELECT (SELECT min(started_at) FROM ddlgate.steps WHERE migration = $2::text::bigint)
                 >= (SELECT max(finished_at) FROM ddlgate.steps WHERE migration = $1::text::bigint)",
            &[&first, &second],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        in_order,
        "the later migration started before the earlier ended"
    );
    let after = schema(&db).await;
    assert!(
        after.contains("idx w_v_idx") && after.contains("con w w_v_check"),
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_after_the_current_step_and_resume_finishes() {
    let proxy = runner_proxy();
    let db = database(
        "rpause",
        "CREATE TABLE k (v int); INSERT INTO k SELECT generate_series(1, 1000);",
    );
    let blocker = direct(&db).await;
    blocker
        .batch_execute("BEGIN; INSERT INTO k VALUES (0)")
        .await
        .unwrap();
    // Two steps: the unique index, built concurrently (waits for the
    // blocker), then the constraint that uses it.
    let (ok, _, err) = psql_script(
        proxy,
        "postgres",
        &db,
        "SET ddlgate.mode = 'async';\nALTER TABLE k ADD CONSTRAINT k_v_key UNIQUE (v);\n",
    );
    assert!(ok, "{err}");
    let id = recorded_id(&err);
    wait_for_status(proxy, &db, &id, "running").await;
    let (ok, out, err) = psql_via(proxy, "postgres", "ddlgate", &format!("PAUSE {db}/{id}"));
    assert!(ok, "{out}{err}");
    // The running step is not interrupted: it ends, then the migration stops.
    assert_eq!(status(&db, &id).await, "running");
    blocker.batch_execute("COMMIT").await.unwrap();
    wait_for_status(proxy, &db, &id, "paused").await;
    let paused = schema(&db).await;
    assert!(paused.contains("idx k_v_key"), "{paused}");
    assert!(!paused.contains("con k k_v_key"), "{paused}");
    let (ok, out, err) = psql_via(proxy, "postgres", "ddlgate", &format!("RESUME {db}/{id}"));
    assert!(ok, "{out}{err}");
    wait_for_status(proxy, &db, &id, "succeeded").await;
    assert!(schema(&db).await.contains("con k k_v_key UNIQUE (v)"));
}
