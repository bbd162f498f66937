//! Where code the submitter or a table's owner wrote runs on the runner's
//! connection. `SET ROLE` is no sandbox: anything evaluated under it (a
//! volatile DEFAULT in a backfill, a `USING` expression, a trigger firing on
//! a batch, a CHECK function during VALIDATE, a domain's CHECK) may `RESET
//! ROLE` or `set_config('role', …)` to any role the runner's login is a
//! member of. PostgreSQL refuses both inside a SECURITY DEFINER function,
//! and in everything that function calls, so such code runs only inside one
//! that the submitter owns:
//!
//! - created as the submitter, inside the step's transaction, in the runner
//!   session's `pg_temp` (uncommitted, so no other session sees it, not
//!   even the submitter's own to alter it), anew right before every call
//!   (code an earlier call ran, the submitter's, could have replaced it),
//!   and dropped before the transaction ends;
//! - with the submitter's search_path as its `SET search_path` clause (set
//!   from a Bind parameter, never written into SQL text): the statement
//!   resolves names as the client's session did. A plain `SET` (or
//!   `set_config(…, false)`) inside it outlives the function, so after
//!   every call, as the runner, every setting goes back to the
//!   connection's own (`RESET ALL`) and the step's own are applied again:
//!   a `client_encoding` or `standard_conforming_strings` of the code's
//!   would otherwise change how the server reads the runner's next SQL.
//!   Outside it the runner's session keeps `pg_catalog, pg_temp`, so its
//!   own queries meet no operator or function of the submitter's;
//! - ending with `SET CONSTRAINTS ALL IMMEDIATE`, so triggers the code
//!   queued fire inside it. Before COMMIT, as the runner, `CLOSE ALL` drops
//!   any cursor WITH HOLD the code declared (COMMIT would run its query
//!   outside the function), `DEALLOCATE ALL` and `UNLISTEN *` what else it
//!   could leave on the connection, and the transaction does not commit while any
//!   deferrable trigger of a user's exists (one could be re-deferred and
//!   run at COMMIT, outside the function).
//!
//! Before each step, [`CLEAN_SESSION`] removes whatever an earlier step's
//! code left on the connection: `pg_temp` (a temporary table or type would
//! otherwise shadow the names of the next migration, another role's),
//! cursors, prepared statements, LISTENs.
//! The CONCURRENTLY forms cannot run in a function; PostgreSQL runs what
//! they evaluate (index expressions and predicates) as the table's owner in
//! a security-restricted operation, which refuses a role change as well.

use tokio_postgres::{Client, Row};

use super::model::Failure;
use super::RunnerError;

/// The runner's own search_path: nothing a submitter made comes first.
pub const RUNNER_PATH: &str = "pg_catalog, pg_temp";

/// The two entry points, created as the submitter (see the module doc),
/// each right before it is called, while the submitter's search_path is
/// the current one (`FROM CURRENT`). Their declarations are
/// schema-qualified: they are compiled under that search_path.
const CREATE_EXEC: &str = "DROP FUNCTION IF EXISTS pg_temp.ddlgate_exec(pg_catalog.text); \
     CREATE FUNCTION pg_temp.ddlgate_exec(sql pg_catalog.text) \
     RETURNS pg_catalog.int8 LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT \
     AS $ddlgate$DECLARE n pg_catalog.int8; \
     BEGIN EXECUTE sql; GET DIAGNOSTICS n = ROW_COUNT; SET CONSTRAINTS ALL IMMEDIATE; RETURN n; \
     END$ddlgate$";
const CREATE_QUERY: &str = "DROP FUNCTION IF EXISTS pg_temp.ddlgate_query(pg_catalog.text); \
     CREATE FUNCTION pg_temp.ddlgate_query(sql pg_catalog.text) \
     RETURNS SETOF pg_catalog.record LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT \
     AS $ddlgate$BEGIN RETURN QUERY EXECUTE sql; SET CONSTRAINTS ALL IMMEDIATE; END$ddlgate$";

const DROP: &str = "DROP FUNCTION IF EXISTS pg_temp.ddlgate_exec(pg_catalog.text); \
     DROP FUNCTION IF EXISTS pg_temp.ddlgate_query(pg_catalog.text)";

/// Before each step (and batch): what code an earlier one ran could have
/// left on this connection, which runs other roles' migrations too:
/// cursors, prepared statements, LISTENs, `pg_temp` (whose objects would
/// shadow the next migration's names). Not `DISCARD ALL`: it would let go
/// of the worker's advisory lock on its relation.
pub const CLEAN_SESSION: &str = "CLOSE ALL; DEALLOCATE ALL; UNLISTEN *; DISCARD TEMP; RESET ALL; \
     SELECT pg_catalog.set_config('client_connection_check_interval', '1s', false) \
     WHERE pg_catalog.current_setting('server_version_num')::pg_catalog.int4 >= 140000";

/// After a call: the connection's own settings (its startup values: UTF8,
/// `pg_catalog, pg_temp`), whatever the code set. RESET ALL leaves the
/// role as it is.
const RESET_SETTINGS: &str = "RESET ALL; \
     SELECT pg_catalog.set_config('client_connection_check_interval', '1s', false) \
     WHERE pg_catalog.current_setting('server_version_num')::pg_catalog.int4 >= 140000";

/// Where a step's sandboxed calls run: its connection (inside the step's
/// transaction, already the submitter), the submitter's search_path, and
/// the step's own `SET LOCAL`s, applied again after each call.
pub struct Sandbox<'a> {
    pub db: &'a Client,
    pub path: &'a str,
    pub local: String,
}

/// A user's deferrable trigger (internal ones, of foreign keys and
/// deferrable unique constraints, run as the table's owner under the
/// same restriction as an index build).
const DEFERRABLE_TRIGGER_SQL: &str = "SELECT pg_catalog.format('%I on %s', t.tgname, \
     t.tgrelid::pg_catalog.regclass) FROM pg_catalog.pg_trigger t \
     WHERE t.tgdeferrable AND NOT t.tgisinternal LIMIT 1";

/// Creates an entry point (`create`) with `path` as its search_path. The
/// caller is inside the step's transaction, already the submitter (`SET
/// LOCAL ROLE`); the session's search_path is the runner's again after.
async fn create(db: &Client, path: &str, create: &str) -> Result<(), RunnerError> {
    // The path as a Bind parameter: text of the submitter's never becomes
    // SQL on this connection. In the step's transaction, so an error
    // leaves no setting behind.
    db.execute(
        "SELECT pg_catalog.set_config('search_path', $1::pg_catalog.text, true)",
        &[&path],
    )
    .await?;
    db.batch_execute(&format!("{create}; SET LOCAL search_path = {RUNNER_PATH}"))
        .await
        .map_err(|e| {
            let e = RunnerError::from_db(e);
            match e.failure().sqlstate.as_str() {
                // No TEMP on the database, or no USAGE on plpgsql.
                "42501" => {
                    let mut f = e.failure();
                    f.message = format!(
                    "ddlgate runs the submitter's code only inside a function the submitter owns, \
                     in a temporary schema, and could not create it: {}",
                    f.message
                );
                    f.hint = Some(
                        "The role needs TEMPORARY on the database and USAGE on plpgsql (both \
                     PUBLIC's by default)."
                            .into(),
                    );
                    RunnerError::Server(f)
                }
                _ => e,
            }
        })
}

impl Sandbox<'_> {
    /// Runs `sql` (one or more statements, no parameters) in the sandbox,
    /// its names resolved with the submitter's search_path: the last
    /// statement's row count.
    pub async fn exec(&self, sql: &str) -> Result<u64, RunnerError> {
        create(self.db, self.path, CREATE_EXEC).await?;
        let row = self
            .db
            .query_one("SELECT pg_temp.ddlgate_exec($1::pg_catalog.text)", &[&sql])
            .await?;
        self.after().await?;
        Ok(row.get::<_, Option<i64>>(0).unwrap_or(0).max(0) as u64)
    }

    /// Runs the query `sql` in the sandbox; `columns` is its column
    /// definition list (`a pg_catalog.text, n pg_catalog.int8`).
    pub async fn query(&self, sql: &str, columns: &str) -> Result<Vec<Row>, RunnerError> {
        create(self.db, self.path, CREATE_QUERY).await?;
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT * FROM pg_temp.ddlgate_query($1::pg_catalog.text) AS q({columns})"
                ),
                &[&sql],
            )
            .await?;
        self.after().await?;
        Ok(rows)
    }

    /// The connection's settings back, then the step's own.
    async fn after(&self) -> Result<(), RunnerError> {
        let local = if self.local.is_empty() {
            String::new()
        } else {
            format!("; {}", self.local)
        };
        self.db
            .batch_execute(&format!("{RESET_SETTINGS}{local}"))
            .await?;
        Ok(())
    }
}

/// Drops the entry points (still the submitter, their owner): nothing of
/// them is left when the transaction commits.
pub async fn close(db: &Client) -> Result<(), RunnerError> {
    db.batch_execute(DROP).await?;
    Ok(())
}

/// As the runner, just before COMMIT: drops the cursors the code left,
/// and refuses to commit while a user's deferrable trigger exists (see
/// the module doc). Prepared statements and LISTENs the code made go too:
/// they would outlive the step on this connection, which later runs other
/// migrations (tokio-postgres closes each statement of its own after use).
pub async fn check_commit(db: &Client) -> Result<(), RunnerError> {
    db.batch_execute("CLOSE ALL; DEALLOCATE ALL; UNLISTEN *")
        .await?;
    if let Some(row) = db.query_opt(DEFERRABLE_TRIGGER_SQL, &[]).await? {
        let what: String = row.get(0);
        let mut f = Failure::new(
            "55000",
            format!(
                "ddlgate cannot run this step safely: trigger {what} is deferrable, and what it \
                 runs at COMMIT would run outside the submitter's sandbox"
            ),
        );
        f.hint = Some(
            "Make the trigger NOT DEFERRABLE, or run the statement directly, not through ddlgate."
                .into(),
        );
        return Err(RunnerError::Server(f));
    }
    Ok(())
}

/// A SQL literal of `s` that reads the same whatever
/// `standard_conforming_strings` is.
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("a'b\\c"), "E'a''b\\\\c'");
        assert_eq!(literal(""), "E''");
    }
}
