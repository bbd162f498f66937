//! Attacks of a second adversarial review (both worked at 1660bff). Each
//! test passes when the attack fails.

use std::time::Duration;

use super::{connect_as, database, direct, looted, migrations};
use crate::harness::{cluster, psql_in};

/// Waits until `db`'s migrations are all final (or 60 s pass).
async fn settle(db: &str) -> Vec<(String, String, Option<String>)> {
    for _ in 0..600 {
        let m = migrations(db).await;
        if !m.is_empty()
            && m.iter()
                .all(|(_, s, _)| !matches!(s.as_str(), "queued" | "running" | "pending_commit"))
        {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    migrations(db).await
}

/// Hole A. Settings the submitter's code changes inside the sandbox
/// function are NOT undone when it returns (only its own `SET search_path`
/// clause is): a session-level `set_config(..., false)` persists on the
/// runner's connection, past COMMIT. The attacker's volatile DEFAULT, run
/// by a backfill batch, sets `client_encoding = SJIS` and `backslash_quote
/// = on`. The next sandbox call builds `set_config('search_path', E'<the
/// submitter's search_path>', true)` with `sandbox::literal`, which escapes
/// byte-wise: in SJIS the bytes `0x81 0x5C` (UTF-8 of U+0081 is C2 81,
/// then the doubled backslash) are one character, so the conversion eats
/// the first backslash, the second escapes the doubled quote, and the rest
/// of the attacker's search_path is SQL, run as the submitter outside any
/// SECURITY DEFINER function: RESET ROLE; SET ROLE trust_owner; ...
/// FAILS at 1660bff (hole): loot gets 42; the migration fails with
/// `function pg_temp.ddlgate_query(text) does not exist` (the rest of
/// the runner's batch was commented out by the injected `--`).
#[tokio::test]
async fn a_client_encoding_left_by_sandboxed_code_breaks_the_search_path_literal() {
    let db = database();
    psql_in(
        cluster(),
        &db,
        "CREATE FUNCTION public.enc() RETURNS int LANGUAGE plpgsql AS $$
         BEGIN
           IF session_user::pg_catalog.text = 'trust_runner' THEN
             PERFORM pg_catalog.set_config('backslash_quote', 'on', false);
             PERFORM pg_catalog.set_config('client_encoding', 'SJIS', false);
           END IF;
           RETURN 1;
         END $$;
         ALTER FUNCTION public.enc() OWNER TO trust_attacker;",
    );
    let c = connect_as("trust_attacker", &db).await;
    // A valid search_path: `public`, an unquoted name U+0081 \ ', and one
    // more name made of SQL with comments for spaces.
    let path = "public,\u{81}\\',true);RESET/**/ROLE;SET/**/ROLE/**/trust_owner;\
                INSERT/**/INTO/**/public.loot/**/SELECT/**/x/**/FROM/**/public.secret;COMMIT;--";
    c.execute(
        "SELECT pg_catalog.set_config('search_path', $1, false)",
        &[&path],
    )
    .await
    .unwrap();
    let r = c
        .batch_execute("ALTER TABLE public.t_atk ADD COLUMN c int NOT NULL DEFAULT public.enc()")
        .await;
    let m = settle(&db).await;
    let loot = looted(&db).await;
    assert!(
        loot.is_empty(),
        "the runner ran the attacker's search_path as SQL, as trust_owner: loot {loot:?}, {r:?}, {m:?}"
    );
}

/// Attack B. The gate lets a session change, truncate and drop its own
/// scratch tables (`ddl.trust_session_objects`). A temporary table named
/// like a permanent one that then goes away in a way the gate may not
/// follow (ON COMMIT DROP, DISCARD, a DROP built at run time) leaves the
/// name trusted while it now resolves to the permanent table: each
/// TRUNCATE below must still be blocked.
/// FAILS at 1660bff (hole): after DISCARD TEMP, DISCARD ALL, a DROP built
/// at run time, or `ALTER TABLE pg_temp.t_atk RENAME TO gone`, a plain
/// `TRUNCATE t_atk` empties the permanent table unjudged (ON COMMIT DROP
/// and a same-named table in another schema are blocked).
#[tokio::test]
async fn a_scratch_tables_name_left_trusted_does_not_let_a_truncate_through() {
    let mut through = Vec::new();
    for (how, setup) in [
        (
            "on commit drop",
            "BEGIN; CREATE TEMP TABLE t_atk (id int) ON COMMIT DROP; COMMIT;",
        ),
        (
            "discard temp",
            "CREATE TEMP TABLE t_atk (id int);\n             DISCARD TEMP;",
        ),
        (
            "discard all",
            "CREATE TEMP TABLE t_atk (id int);\n             DISCARD ALL;",
        ),
        (
            "runtime drop",
            "CREATE TEMP TABLE t_atk (id int);
             DO $$BEGIN EXECUTE 'DROP TABLE pg_temp.' || 't_atk'; END$$;",
        ),
        (
            "temp rename",
            "CREATE TEMP TABLE t_atk (id int); ALTER TABLE pg_temp.t_atk RENAME TO gone;",
        ),
        (
            "own schema",
            "CREATE SCHEMA IF NOT EXISTS atk_s; CREATE TABLE atk_s.t_atk (id int);
             SET search_path = public;",
        ),
    ] {
        let db = database();
        psql_in(
            cluster(),
            &db,
            &format!("GRANT CREATE ON DATABASE {db} TO trust_attacker"),
        );
        let c = connect_as("trust_attacker", &db).await;
        if how == "own schema" {
            c.batch_execute("SET search_path = atk_s, public")
                .await
                .unwrap();
        }
        for s in setup.split(";\n") {
            let _ = c.batch_execute(s).await;
        }
        let r = c.batch_execute("TRUNCATE t_atk").await;
        let n: i64 = direct(&db)
            .await
            .query_one("SELECT count(*) FROM public.t_atk", &[])
            .await
            .unwrap()
            .get(0);
        // Judged as any TRUNCATE of a populated table is: refused.
        let refused = r
            .as_ref()
            .err()
            .is_some_and(|e| crate::harness::sqlstate(e) == "ZD001");
        if n != 100 || !refused {
            through.push(how);
        }
    }
    assert!(
        through.is_empty(),
        "the TRUNCATE of the permanent table went through unjudged after: {through:?}"
    );
}
