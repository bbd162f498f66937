//! Attacks on ddlgate's trust boundary, each through a live ddlgate whose
//! runner is a non-superuser granted the application roles as the README
//! says, with SCRAM for every role involved. Each attack must get exactly
//! what the attacker could get directly: nothing. `attacks`: the ones the
//! trust issue named; `adversary`: the ones an adversarial review of the
//! first fixes found. The fixture is theirs together.

mod adversary;
mod adversary2;
mod attacks;

use std::sync::OnceLock;
use std::time::Duration;

use ddlgate::config::RunnerSettings;

use crate::harness::{cluster, psql_admin, psql_in, settings, Proxy};

const PASSWORD: &str = "trust-secret";

/// The roles, once per cluster: an owner with a secret, an attacker with a
/// table of its own, and the runner granted both (as for two applications
/// that submit migrations through one ddlgate).
fn roles() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        psql_admin(
            cluster(),
            &format!(
                "SET password_encryption = 'scram-sha-256';
                 CREATE ROLE trust_owner LOGIN PASSWORD '{PASSWORD}' IN ROLE scram_group;
                 CREATE ROLE trust_attacker LOGIN PASSWORD '{PASSWORD}' IN ROLE scram_group;
                 CREATE ROLE trust_runner LOGIN PASSWORD '{PASSWORD}' IN ROLE scram_group;
                 GRANT trust_owner, trust_attacker TO trust_runner;"
            ),
        );
    });
}

/// Settings of a ddlgate whose runner is `trust_runner`, a client's wait
/// for a queued migration bounded by `queued_wait`.
fn trust_settings(queued_wait: Duration) -> ddlgate::config::Settings {
    roles();
    let mut s = settings();
    let mut r = RunnerSettings::for_user("trust_runner");
    r.password = Some(PASSWORD.into());
    r.poll_interval = Duration::from_millis(200);
    r.retry_backoff = Duration::from_millis(50);
    r.queued_wait_timeout = queued_wait;
    s.runner = Some(r);
    s.admin_roles = vec!["postgres".into()];
    s
}

/// One such ddlgate for the tests that need no other settings.
fn proxy() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| Proxy::start(trust_settings(Duration::from_secs(60))))
}

/// `user` through `p` into `db`.
async fn through(p: &Proxy, user: &str, db: &str) -> tokio_postgres::Client {
    crate::harness::connect(&format!(
        "host=127.0.0.1 port={} user={user} password={PASSWORD} dbname={db}",
        p.port()
    ))
    .await
}

/// A fresh database: `secret` (trust_owner's, one row), `loot` (anyone may
/// write it: an attack that works leaves the secret there), `t_atk`
/// (trust_attacker's, with rows), and the runner's CREATE on it.
fn database() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    roles();
    let db = format!("trust_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    psql_admin(cluster(), &format!("CREATE DATABASE {db}"));
    psql_admin(
        cluster(),
        &format!("GRANT CREATE ON DATABASE {db} TO trust_runner"),
    );
    psql_in(
        cluster(),
        &db,
        "GRANT CREATE ON SCHEMA public TO trust_owner, trust_attacker;
         CREATE TABLE secret (x int); INSERT INTO secret VALUES (42);
         ALTER TABLE secret OWNER TO trust_owner;
         CREATE TABLE loot (x int); GRANT ALL ON loot TO PUBLIC;
         CREATE TABLE t_atk (id int PRIMARY KEY, v int);
         INSERT INTO t_atk SELECT g, g FROM generate_series(1, 100) g;
         ALTER TABLE t_atk OWNER TO trust_attacker;
         -- Run as whichever role evaluates it: copies the secret if it
         -- can become the owner, then goes back.
         CREATE FUNCTION steal() RETURNS int LANGUAGE plpgsql AS $$
         BEGIN
           PERFORM set_config('role', 'trust_owner', true);
           INSERT INTO public.loot SELECT x FROM public.secret;
           PERFORM set_config('role', 'trust_attacker', true);
           RETURN 1;
         END $$;
         CREATE FUNCTION steal_ok(int) RETURNS boolean LANGUAGE sql AS 'SELECT steal() = 1';
         CREATE FUNCTION steal_int(int) RETURNS bigint LANGUAGE sql AS 'SELECT steal() + $1';
         -- The same with RESET ROLE: back to the runner, a member of the owner.
         CREATE FUNCTION reset_steal() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           RESET ROLE;
           INSERT INTO public.loot SELECT x FROM public.secret;
           SET LOCAL ROLE trust_attacker;
           RETURN NEW;
         END $$;
         ALTER FUNCTION steal() OWNER TO trust_attacker;
         ALTER FUNCTION steal_ok(int) OWNER TO trust_attacker;
         ALTER FUNCTION steal_int(int) OWNER TO trust_attacker;
         ALTER FUNCTION reset_steal() OWNER TO trust_attacker;",
    );
    db
}

/// A connection straight to the server as the superuser, into `db`.
async fn direct(db: &str) -> tokio_postgres::Client {
    crate::harness::connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        cluster().port
    ))
    .await
}

async fn connect_as(user: &str, db: &str) -> tokio_postgres::Client {
    through(proxy(), user, db).await
}

/// What `loot` holds, read directly as the superuser.
async fn looted(db: &str) -> Vec<i32> {
    direct(db)
        .await
        .query("SELECT x FROM loot", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The attacker straight to PostgreSQL (no ddlgate).
async fn direct_as_attacker(db: &str) -> tokio_postgres::Client {
    crate::harness::connect(&format!(
        "host=127.0.0.1 port={} user=trust_attacker password={PASSWORD} dbname={db}",
        cluster().port
    ))
    .await
}

/// The migrations in `db`: statement, status, error.
async fn migrations(db: &str) -> Vec<(String, String, Option<String>)> {
    direct(db)
        .await
        .query(
            "SELECT statement, status, error FROM ddlgate.migrations ORDER BY id",
            &[],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect()
        })
        .unwrap_or_default()
}
