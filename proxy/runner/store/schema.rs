//! The `ddlgate` schema: its versions, applied in order under an advisory
//! lock, and the advisory lock keys that serialise migrations.

use tokio_postgres::Client;

use super::super::RunnerError;

/// Advisory lock keys: (namespace, key) pairs in one bigint each.
const LOCK_SPACE: i64 = 0x6464_6c67; // "ddlg"

/// The key of the advisory lock that serialises one relation's migrations.
pub fn table_lock_key(relation_oid: u32) -> i64 {
    (LOCK_SPACE << 32) | i64::from(relation_oid)
}

/// Taken in a transaction while the schema is created or upgraded.
const UPGRADE_LOCK: i64 = LOCK_SPACE << 32 | 0xffff_ffff;

/// The schema's versions, applied in order; never edit a released one.
const UPGRADES: &[&str] = &[
    // 1: migrations and their steps.
    "CREATE TABLE ddlgate.migrations (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        statement text NOT NULL,
        role name NOT NULL,
        search_path text NOT NULL,
        database name NOT NULL DEFAULT pg_catalog.current_database(),
        table_name text,
        lock_key bigint NOT NULL,
        tag text NOT NULL,
        plan jsonb NOT NULL,
        status text NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')),
        requested text CHECK (requested IN ('pause', 'cancel')),
        current_step integer NOT NULL DEFAULT 1,
        steps_total integer NOT NULL,
        progress text,
        sqlstate text,
        error text,
        instance text,
        gate_event text,
        created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
        started_at timestamptz,
        updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
        finished_at timestamptz
    );
    CREATE INDEX migrations_active ON ddlgate.migrations (lock_key, id)
        WHERE status IN ('queued', 'running', 'paused');
    CREATE TABLE ddlgate.steps (
        migration bigint NOT NULL REFERENCES ddlgate.migrations ON DELETE CASCADE,
        n integer NOT NULL,
        kind text NOT NULL,
        sql text NOT NULL,
        what text NOT NULL,
        object text,
        in_transaction boolean NOT NULL,
        status text NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'running', 'done', 'skipped', 'failed', 'undone')),
        attempts integer NOT NULL DEFAULT 0,
        started_at timestamptz,
        finished_at timestamptz,
        sqlstate text,
        error text,
        PRIMARY KEY (migration, n)
    );",
    // 2: backfills: what a step's batches do, how far they got, and the
    // throttle settings an operator changed for a migration.
    "ALTER TABLE ddlgate.steps ADD COLUMN backfill jsonb, ADD COLUMN position jsonb;
     ALTER TABLE ddlgate.migrations ADD COLUMN throttle jsonb;",
    // 3: what undoes a step, where the plan says (a type change's expand);
    // the application's latency before, during and after a migration.
    // Whether a type change waits before its cut-over for COMPLETE.
    "ALTER TABLE ddlgate.steps ADD COLUMN undo text;
     ALTER TABLE ddlgate.migrations ADD COLUMN effect jsonb,
         ADD COLUMN postpone_cutover boolean NOT NULL DEFAULT false,
         ADD COLUMN reverted_at timestamptz,
         DROP CONSTRAINT migrations_status_check,
         ADD CONSTRAINT migrations_status_check CHECK (status IN
             ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled', 'reverted')),
         DROP CONSTRAINT migrations_requested_check,
         ADD CONSTRAINT migrations_requested_check CHECK (requested IN
             ('pause', 'cancel', 'complete', 'revert'));",
    // 4: migrations deferred past a client's COMMIT (issue 10): registered
    // by the runner as pending_commit with a one-time token, confirmed
    // inside the client's transaction by the one entry point PUBLIC may
    // call, so the migration exists exactly when the client's changes
    // commit. The function holds an advisory lock until that transaction
    // ends: while it is held, the registration is alive.
    "ALTER TABLE ddlgate.migrations ADD COLUMN token text UNIQUE,
         DROP CONSTRAINT migrations_status_check,
         ADD CONSTRAINT migrations_status_check CHECK (status IN
             ('pending_commit', 'queued', 'running', 'paused', 'succeeded', 'failed',
              'cancelled', 'reverted'));
     CREATE FUNCTION ddlgate.confirm(token text) RETURNS bigint
         LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $ddlgate$
     DECLARE
         confirmed bigint;
     BEGIN
         PERFORM pg_catalog.pg_advisory_xact_lock(1684302951, pg_catalog.hashtext($1));
         UPDATE ddlgate.migrations m SET status = 'queued', token = NULL,
                updated_at = pg_catalog.now()
          WHERE m.token = $1 AND m.status = 'pending_commit'
         RETURNING m.id INTO confirmed;
         RETURN confirmed;
     END $ddlgate$;
     REVOKE ALL ON FUNCTION ddlgate.confirm(text) FROM PUBLIC;
     GRANT EXECUTE ON FUNCTION ddlgate.confirm(text) TO PUBLIC;",
    // 5: confirm() runs with pg_temp searched last, not first (its
    // caller's temporary objects never stand in for the catalog's).
    "ALTER FUNCTION ddlgate.confirm(text) SET search_path = pg_catalog, pg_temp;",
];

/// How long creating or upgrading the schema waits for another instance
/// doing the same (the upgrade lock, or a lock its DDL needs).
const UPGRADE_LOCK_TIMEOUT: &str = "10s";

/// The first thing in the `ddlgate` schema (the schema itself, a
/// relation, a function, a type) that the connected role does not own,
/// described: whoever can plant state there can choose the statements
/// and roles the runner executes, so ddlgate uses the schema only when
/// it owns all of it.
const FOREIGN_OWNER_SQL: &str = "WITH me AS (SELECT r.oid FROM pg_catalog.pg_roles r \
         WHERE r.rolname = session_user), \
     ns AS (SELECT n.oid, n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname = 'ddlgate') \
     SELECT w.what FROM ( \
       SELECT 1 AS k, pg_catalog.format('schema ddlgate is owned by role %I', \
              pg_catalog.pg_get_userbyid(ns.nspowner)) AS what \
         FROM ns WHERE ns.nspowner <> (SELECT oid FROM me) \
       UNION ALL \
       SELECT 2, pg_catalog.format('relation ddlgate.%I is owned by role %I', c.relname, \
              pg_catalog.pg_get_userbyid(c.relowner)) \
         FROM pg_catalog.pg_class c JOIN ns ON c.relnamespace = ns.oid \
        WHERE c.relowner <> (SELECT oid FROM me) \
       UNION ALL \
       SELECT 3, pg_catalog.format('function ddlgate.%I is owned by role %I', p.proname, \
              pg_catalog.pg_get_userbyid(p.proowner)) \
         FROM pg_catalog.pg_proc p JOIN ns ON p.pronamespace = ns.oid \
        WHERE p.proowner <> (SELECT oid FROM me) \
       UNION ALL \
       SELECT 4, pg_catalog.format('type ddlgate.%I is owned by role %I', t.typname, \
              pg_catalog.pg_get_userbyid(t.typowner)) \
         FROM pg_catalog.pg_type t JOIN ns ON t.typnamespace = ns.oid \
        WHERE t.typowner <> (SELECT oid FROM me) \
     ) w ORDER BY w.k LIMIT 1";

/// `Some(what)` when something in the `ddlgate` schema belongs to another
/// role than the connected one (see [`FOREIGN_OWNER_SQL`]).
pub async fn foreign_owner(
    db: &impl tokio_postgres::GenericClient,
) -> Result<Option<String>, RunnerError> {
    Ok(db
        .query_opt(FOREIGN_OWNER_SQL, &[])
        .await?
        .map(|r| r.get(0)))
}

/// The error for a `ddlgate` schema that is not all the runner's.
pub fn not_ours(what: &str) -> RunnerError {
    let mut f = super::super::Failure::new(
        "42501",
        format!("ddlgate keeps no state in a schema it does not own: {what}"),
    );
    f.hint = Some(
        "Only the runner role may own the schema ddlgate and what is in it: drop or reassign \
         the objects (as their owner or a superuser), then run the statement again."
            .into(),
    );
    RunnerError::Server(f)
}

/// Creates or upgrades the `ddlgate` schema in the connected database.
pub async fn ensure_schema(db: &mut Client) -> Result<(), RunnerError> {
    if let Some(what) = foreign_owner(db).await? {
        return Err(not_ours(&what));
    }
    let current = version(db).await?;
    if current == Some(UPGRADES.len() as i32) {
        return Ok(());
    }
    let tx = db.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{UPGRADE_LOCK_TIMEOUT}'"
    ))
    .await?;
    tx.execute(
        "SELECT pg_catalog.pg_advisory_xact_lock($1)",
        &[&UPGRADE_LOCK],
    )
    .await?;
    // PUBLIC may look names up in the schema, to call ddlgate.confirm; it
    // has no privilege on anything else in it.
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS ddlgate;
         REVOKE ALL ON SCHEMA ddlgate FROM PUBLIC;
         GRANT USAGE ON SCHEMA ddlgate TO PUBLIC;
         CREATE TABLE IF NOT EXISTS ddlgate.schema_version (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT pg_catalog.now())",
    )
    .await?;
    // Checked again under the lock, now that the schema exists: `CREATE
    // SCHEMA IF NOT EXISTS` succeeds on anyone's schema.
    if let Some(what) = foreign_owner(&tx).await? {
        return Err(not_ours(&what));
    }
    // Read again under the lock: another instance may have upgraded.
    let from: Option<i32> = tx
        .query_one(
            "SELECT pg_catalog.max(version) FROM ddlgate.schema_version",
            &[],
        )
        .await?
        .get(0);
    let from = from.unwrap_or(0).max(0) as usize;
    for (i, sql) in UPGRADES.iter().enumerate().skip(from) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO ddlgate.schema_version (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The schema's version here, or `None` without one.
pub async fn version(db: &Client) -> Result<Option<i32>, RunnerError> {
    let exists: bool = db
        .query_one(
            "SELECT pg_catalog.to_regclass('ddlgate.schema_version') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    match db
        .query_one(
            "SELECT pg_catalog.max(version) FROM ddlgate.schema_version",
            &[],
        )
        .await
    {
        Ok(r) => Ok(r.get(0)),
        // Cannot see it (another role's schema): none of ours.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
