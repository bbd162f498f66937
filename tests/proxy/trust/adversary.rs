//! Attacks an adversarial review found against the first sandbox (each
//! worked then, each must fail now).

use std::time::Duration;

use super::{connect_as, database, direct, direct_as_attacker, looted, migrations, proxy};
use crate::harness::{cluster, psql_in, sqlstate};

/// Control: the attacker alone cannot run `steal()`.
#[tokio::test]
async fn control_the_attacker_cannot_steal_directly() {
    let db = database();
    let c = direct_as_attacker(&db).await;
    let e = c
        .batch_execute("SELECT steal()")
        .await
        .expect_err("not a member of trust_owner");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    let e = c
        .batch_execute("SELECT * FROM secret")
        .await
        .expect_err("no privilege");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    assert!(looted(&db).await.is_empty());
}

/// Attack 1. A cursor WITH HOLD declared by the attacker's code inside the
/// sandbox (here: a CHECK function evaluated by the VALIDATE step) is
/// run to completion by PostgreSQL at COMMIT (PreCommit_Portals), after
/// the runner's `RESET ROLE`: its query runs as the runner, which may
/// become any application role.
#[tokio::test]
async fn a_holdable_cursor_runs_the_attackers_query_at_commit_as_the_runner() {
    let db = database();
    psql_in(
        cluster(),
        &db,
        "CREATE FUNCTION hold(int) RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_cursors WHERE name = 'adv_hold') THEN
             EXECUTE 'DECLARE adv_hold CURSOR WITH HOLD FOR SELECT public.steal()';
           END IF;
           RETURN true;
         END $$;
         ALTER FUNCTION hold(int) OWNER TO trust_attacker;",
    );
    let c = connect_as("trust_attacker", &db).await;
    let _ = c
        .batch_execute("ALTER TABLE t_atk ADD CONSTRAINT t_atk_ck CHECK (hold(v))")
        .await;
    let loot = looted(&db).await;
    assert!(
        loot.is_empty(),
        "the secret was copied by the runner at COMMIT"
    );
    // The cursor was closed before COMMIT: nothing else stopped the change.
    let m = migrations(&db).await;
    assert_eq!(m[0].1, "succeeded", "{m:?}");
}

/// Attack 2. The sandbox's entry points live in the runner session's
/// pg_temp, owned by the submitter. A backfill batch calls two of them
/// in one transaction (`ddlgate_query` for the batch's last key, then
/// `ddlgate_exec` for the UPDATE). The attacker's code that runs in the
/// first (an RLS policy on its own table) replaces the second with a
/// function that is not SECURITY DEFINER: the runner then calls it with
/// the attacker as current_user, and inside it a role change is allowed.
#[tokio::test]
async fn the_attacker_replaces_the_sandbox_entry_point_between_two_calls() {
    let db = database();
    psql_in(
        cluster(),
        &db,
        "CREATE FUNCTION swap() RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
           IF session_user::text = 'trust_runner' AND coalesce((SELECT p.prosecdef FROM pg_proc p
                WHERE p.oid = to_regprocedure('pg_temp.ddlgate_exec(text)')), false) THEN
             EXECUTE $f$CREATE OR REPLACE FUNCTION pg_temp.ddlgate_exec(sql pg_catalog.text)
               RETURNS pg_catalog.int8 LANGUAGE plpgsql AS $b$
               DECLARE n pg_catalog.int8;
               BEGIN
                 IF NOT EXISTS (SELECT 1 FROM public.loot) THEN PERFORM public.steal(); END IF;
                 EXECUTE sql; GET DIAGNOSTICS n = ROW_COUNT; RETURN n;
               END $b$ $f$;
           END IF;
           RETURN true;
         END $$;
         ALTER FUNCTION swap() OWNER TO trust_attacker;
         ALTER TABLE t_atk ENABLE ROW LEVEL SECURITY;
         ALTER TABLE t_atk FORCE ROW LEVEL SECURITY;
         CREATE POLICY t_atk_all ON t_atk USING (swap()) WITH CHECK (true);
         ALTER TABLE t_atk OWNER TO trust_attacker;",
    );
    let c = connect_as("trust_attacker", &db).await;
    let _ = c
        .batch_execute("ALTER TABLE t_atk ADD COLUMN c timestamptz DEFAULT clock_timestamp()")
        .await;
    let loot = looted(&db).await;
    assert!(
        loot.is_empty(),
        "the secret was copied through the swapped entry point"
    );
}

/// Attack 3. The gate's lexer always reads '...' with standard_conforming_
/// strings on; a client may turn it off, and then `\'` escapes a quote on
/// the server. `SELECT 'a\''; TRUNCATE t; --'` is one SELECT to the gate
/// (no DDL: forwarded unjudged) and SELECT + TRUNCATE to the server.
#[tokio::test]
async fn standard_conforming_strings_off_hides_a_statement_from_the_gate() {
    hidden_truncate(
        "SET standard_conforming_strings = off",
        "SELECT 'a\\''; TRUNCATE t_atk; --'",
    )
    .await;
}

/// Attack 4. The lexer takes `'` right after an `E` as an escape string
/// when the byte before the `E` is not a letter, digit or underscore; but
/// `$` continues an identifier, so in `x$e'\'` PostgreSQL reads the
/// identifier `x$e` and a standard string `'\'`, while the gate reads an
/// E-string in which `\'` is an escaped quote. With a type named `x$e`
/// (here a temporary domain, found first by PostgreSQL), `SELECT x$e'\';
/// TRUNCATE t_atk; --'` is one SELECT to the gate and SELECT + TRUNCATE
/// to the server; standard_conforming_strings stays on.
#[tokio::test]
async fn a_dollar_before_e_hides_a_statement_from_the_gate() {
    hidden_truncate(
        "CREATE DOMAIN pg_temp.\"x$e\" AS text",
        "SELECT x$e'\\'; TRUNCATE t_atk; --'",
    )
    .await;
}

/// After `setup`, the TRUNCATE hidden in `sql` must be judged as a plain
/// one is (ZD001, the table untouched).
async fn hidden_truncate(setup: &str, sql: &str) {
    let db = database();
    let c = connect_as("trust_attacker", &db).await;
    // Control: judged and blocked as written.
    let e = c
        .batch_execute("TRUNCATE t_atk")
        .await
        .expect_err("TRUNCATE is blocked");
    assert_eq!(sqlstate(&e), "ZD001", "{e:?}");
    c.batch_execute(setup).await.unwrap();
    let r = c.batch_execute(sql).await;
    let n: i64 = direct(&db)
        .await
        .query_one("SELECT count(*) FROM t_atk", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 100, "the TRUNCATE ran without the gate judging it");
    let e = r.expect_err("the hidden TRUNCATE is judged");
    assert_eq!(sqlstate(&e), "ZD001", "{e:?}");
}

/// The attacker's schema `evil` with an `=` for (oid, oid) whose function
/// steals once when it runs in the runner's session (and swallows the
/// error it gets where a role change is refused), then compares.
fn evil_operator(db: &str) {
    psql_in(
        cluster(),
        db,
        "CREATE SCHEMA evil AUTHORIZATION trust_attacker;
         CREATE TABLE oplog (q text); GRANT ALL ON oplog TO PUBLIC;
         SET ROLE trust_attacker;
         CREATE FUNCTION evil.oideq(oid, oid) RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
           IF session_user::text = 'trust_runner'
              AND NOT EXISTS (SELECT 1 FROM public.loot) THEN
             BEGIN
               PERFORM public.steal();
               INSERT INTO public.oplog VALUES (current_query());
             EXCEPTION WHEN others THEN NULL;
             END;
           END IF;
           RETURN $1 OPERATOR(pg_catalog.=) $2;
         END $$;
         CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.oideq);",
    );
}

/// Attack 5. The runner runs some of its own catalog queries after `SET
/// [LOCAL] ROLE submitter` with the submitter's search_path and outside
/// the sandbox: `backfill::start` (`c.oid = $1::...::regclass`, `a.attrelid
/// = i.indrelid`, ...). Their operators are unqualified, so an `=` in a
/// schema the client puts before pg_catalog is the attacker's function,
/// run with the attacker as current_user in no SECURITY DEFINER function:
/// it may change role.
#[tokio::test]
async fn an_operator_earlier_in_the_search_path_runs_in_the_backfills_start() {
    shadowing_operator("ALTER TABLE t_atk ADD COLUMN c timestamptz DEFAULT clock_timestamp()")
        .await;
}

/// Attack 5b. The same through a CONCURRENTLY step: a failed index build
/// (division by zero in its expression) makes the runner look the index up
/// (`built_index`, `index_state`) still as the submitter, with its
/// search_path, before `RESET ROLE`.
#[tokio::test]
async fn an_operator_earlier_in_the_search_path_runs_after_a_failed_build() {
    shadowing_operator("CREATE INDEX t_atk_div ON t_atk ((1 / (v - 50)))").await;
}

/// Sends `sql` as the attacker with `evil` first in its search_path: the
/// attacker's `=` must not have run in the runner's session.
async fn shadowing_operator(sql: &str) {
    let db = database();
    evil_operator(&db);
    let c = connect_as("trust_attacker", &db).await;
    c.batch_execute("SET search_path = evil, public, pg_catalog")
        .await
        .unwrap();
    let _ = c.batch_execute(sql).await;
    let log = direct(&db)
        .await
        .query("SELECT q FROM oplog", &[])
        .await
        .unwrap();
    assert!(
        log.is_empty(),
        "the operator changed role in the runner's session"
    );
    assert!(
        looted(&db).await.is_empty(),
        "the secret was copied by the shadowing operator"
    );
}

/// Attack 6 (needs an operator's CANCEL). CANCEL undoes a NOT VALID
/// constraint with `alter_head(step sql) + " DROP CONSTRAINT IF EXISTS " +
/// object`, run by batch_execute (several statements allowed) as the
/// submitter, outside the sandbox. `alter_head` cuts at the first
/// " ADD CONSTRAINT ", which may be inside the table's quoted name; the
/// constraint's quoted name then closes that quote and the rest of it is
/// SQL of the attacker's choosing.
#[tokio::test]
async fn cancel_of_a_not_valid_constraint_runs_sql_from_its_quoted_names() {
    let db = database();
    psql_in(
        cluster(),
        &db,
        "SET ROLE trust_attacker;
         CREATE TABLE \"a ADD CONSTRAINT b\" (id int PRIMARY KEY, v int);
         INSERT INTO \"a ADD CONSTRAINT b\" SELECT g, g FROM generate_series(1, 200) g;
         CREATE TABLE \"a DROP CONSTRAINT IF EXISTS \" (x int);
         CREATE FUNCTION slow(int) RETURNS boolean LANGUAGE sql AS 'SELECT pg_sleep(0.05) IS NOT NULL';",
    );
    let c = connect_as("trust_attacker", &db).await;
    let name = "\" OWNER TO CURRENT_USER;SET ROLE trust_owner;INSERT INTO public.loot SELECT x FROM public.secret;--\"";
    let sql = format!("ALTER TABLE \"a ADD CONSTRAINT b\" ADD CONSTRAINT {name} CHECK (slow(v))");
    let submit = tokio::spawn(async move { c.batch_execute(&sql).await });
    // Wait for the VALIDATE step to run, then an operator cancels.
    let d = direct(&db).await;
    let mut id = None;
    for _ in 0..200 {
        // The ddlgate schema appears with the first migration.
        if let Ok(Some(r)) = d
            .query_opt(
                "SELECT m.id FROM ddlgate.migrations m JOIN ddlgate.steps s ON s.migration = m.id \
                 WHERE m.status = 'running' AND s.kind = 'validate' AND s.status = 'running'",
                &[],
            )
            .await
        {
            id = Some(r.get::<_, i64>(0));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = id.expect("the VALIDATE step ran");
    let out = std::process::Command::new(cluster().bin_dir.join("psql"))
        .args(["-X", "-h", "127.0.0.1", "-p"])
        .arg(proxy().port().to_string())
        .args(["-U", "postgres", "-d", "ddlgate", "-c"])
        .arg(format!("CANCEL {db}/{id}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let _ = submit.await.unwrap();
    for _ in 0..100 {
        let st: String = d
            .query_one(
                "SELECT status FROM ddlgate.migrations WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        if st == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loot = looted(&db).await;
    assert!(
        loot.is_empty(),
        "the undo ran the attacker's SQL as the owner"
    );
}
