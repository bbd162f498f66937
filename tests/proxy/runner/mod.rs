//! The migration runner through a running ddlgate, with the helpers its
//! tests share: `plans` (each plan's final schema, privileges, names),
//! `steer` (failures, the console, modes, several instances), `crash`
//! (kill -9 mid-step, then resume), `backfills` and `retype` (changes that
//! rewrite rows, under an application).

mod backfills;
mod crash;
mod defer;
mod django;
mod in_transaction;
mod plans;
mod retype;
mod steer;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use ddlgate::config::RunnerSettings;

use crate::harness::{cluster, connect, psql_admin, psql_in, settings, Proxy};

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A proxy whose runner connects as the superuser, polling often; one for
/// all tests.
pub(super) fn runner_proxy() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| Proxy::start(runner_settings()))
}

/// Settings of such a proxy (another instance in front of the same server
/// is started with these too).
pub(super) fn runner_settings() -> ddlgate::config::Settings {
    let mut s = settings();
    let mut r = RunnerSettings::for_user("postgres");
    r.poll_interval = Duration::from_millis(200);
    r.retry_backoff = Duration::from_millis(50);
    r.async_roles = vec!["async_submitter".into()];
    s.runner = Some(r);
    s.admin_roles = vec!["postgres".into()];
    s
}

/// A connection straight to the server as the superuser, into `db`.
pub(super) async fn direct(db: &str) -> tokio_postgres::Client {
    connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        cluster().port
    ))
    .await
}

/// A fresh database holding `setup`; its name.
pub(super) fn database(prefix: &str, setup: &str) -> String {
    let name = format!("{prefix}_{}", NEXT_DB.fetch_add(1, Ordering::Relaxed));
    psql_admin(cluster(), &format!("CREATE DATABASE {name}"));
    psql_db(&name, setup);
    name
}

/// Two fresh databases holding `setup`: one where `sql` ran directly (the
/// schema to reach), and one for ddlgate to apply it in.
pub(super) fn direct_and_via(prefix: &str, setup: &str, sql: &str) -> (String, String) {
    let direct_db = database(&format!("{prefix}d"), setup);
    psql_db(&direct_db, sql);
    (direct_db, database(&format!("{prefix}v"), setup))
}

/// How many batches the backfill step in `db` ran.
pub(super) async fn backfill_batches(db: &str) -> i64 {
    direct(db)
        .await
        .query_one(
            "SELECT (position->>'batches')::bigint FROM ddlgate.steps WHERE kind = 'backfill'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Runs SQL as the superuser in `db`, bypassing ddlgate.
pub(super) fn psql_db(db: &str, sql: &str) {
    psql_in(cluster(), db, sql);
}

/// psql through `proxy` as `user` into `db`: (success, stdout, stderr).
pub(super) fn psql_via(proxy: &Proxy, user: &str, db: &str, sql: &str) -> (bool, String, String) {
    let out = psql_to(proxy, user, db)
        .args(["-c", sql])
        .output()
        .expect("running psql");
    outcome(&out)
}

/// psql through `proxy` as `user` into `db`, stopping at the first error.
fn psql_to(proxy: &Proxy, user: &str, db: &str) -> Command {
    let mut c = Command::new(cluster().bin_dir.join("psql"));
    c.args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
        .arg(proxy.port().to_string())
        .args(["-U", user, "-d", db])
        .env("PGPASSWORD", crate::harness::ROLE_PASSWORD);
    c
}

fn outcome(out: &std::process::Output) -> (bool, String, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The schema of `public` in `db`, as comparable text: columns with type,
/// nullability and default; constraints with definition and validity;
/// indexes with definition and validity; partitions.
pub(super) async fn schema(db: &str) -> String {
    let c = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        cluster().port
    ))
    .await;
    c.query_one(
        "SELECT coalesce(string_agg(x, E'\\n' ORDER BY x), '') FROM (
           SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                  || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                  || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
                  || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') AS x
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
              AND a.attnum > 0 AND NOT a.attisdropped
           UNION ALL
           SELECT 'con ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
                  || CASE WHEN convalidated THEN '' ELSE ' NOT VALIDATED' END
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace
           UNION ALL
           SELECT 'idx ' || i.indexrelid::regclass || ' ' || pg_get_indexdef(i.indexrelid)
                  || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE c.relnamespace = 'public'::regnamespace
           UNION ALL
           SELECT 'part ' || inhrelid::regclass || ' of ' || inhparent::regclass FROM pg_inherits
         ) s",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

pub(super) async fn wait_for_status(proxy: &Proxy, db: &str, id: &str, want: &str) {
    for _ in 0..200 {
        let (_, out, _) = psql_via(
            proxy,
            "postgres",
            "ddlgate",
            &format!("SHOW MIGRATION {db}/{id}"),
        );
        if out.lines().nth(2).is_some_and(|l| l.contains(want)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("migration {db}/{id} never became {want}");
}

/// psql through `proxy` as `user` into `db`, running `script` from stdin
/// (each statement its own Query): (success, stdout, stderr).
pub(super) fn psql_script(
    proxy: &Proxy,
    user: &str,
    db: &str,
    script: &str,
) -> (bool, String, String) {
    use std::io::Write;
    let mut child = psql_to(proxy, user, db)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running psql");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    outcome(&child.wait_with_output().unwrap())
}

/// The id in a "recorded as migration N" notice.
pub(super) fn recorded_id(notices: &str) -> String {
    notices
        .split("recorded as migration ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or_else(|| panic!("no id in {notices}"))
        .to_owned()
}
