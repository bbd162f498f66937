//! The statements ddlgate runs on a session's own server connection, as
//! ready-to-send frontend messages. All are fixed text with ddlgate's own
//! values: no client text is ever placed inside them.

use std::time::Duration;

use crate::protocol::frontend;

/// Name of the prepared statement and portal ddlgate uses in extended
/// batches; closed again in the same batch.
const GUARD_NAME: &[u8] = b"ddlgate_guard";

/// Sets `lock_timeout` (session level) only if the client has none (0):
/// a value the client chose is never clobbered.
pub(super) fn guard_sql(timeout: Duration) -> String {
    format!(
        "SELECT pg_catalog.set_config('lock_timeout', '{ms}', false) FROM pg_catalog.pg_settings \
         WHERE name OPERATOR(pg_catalog.=) 'lock_timeout' AND setting OPERATOR(pg_catalog.=) '0'",
        ms = timeout.as_millis().max(1)
    )
}

/// Puts `lock_timeout` back to 0 only if it still holds ddlgate's value, so
/// running it twice, or after the client changed it, is harmless.
pub(super) fn restore_sql(timeout: Duration) -> String {
    format!(
        "SELECT pg_catalog.set_config('lock_timeout', '0', false) FROM pg_catalog.pg_settings \
         WHERE name OPERATOR(pg_catalog.=) 'lock_timeout' AND setting OPERATOR(pg_catalog.=) '{ms}'",
        ms = timeout.as_millis().max(1)
    )
}

/// As a simple Query (before or after a client's Query, whose own
/// semantics already include dropping the unnamed statement).
pub fn guard_query(timeout: Duration, out: &mut Vec<u8>) {
    frontend::query(guard_sql(timeout).as_bytes(), out);
}

pub fn restore_query(timeout: Duration, out: &mut Vec<u8>) {
    frontend::query(restore_sql(timeout).as_bytes(), out);
}

/// As a complete extended batch with its own Sync, using a named statement
/// and portal, so the client's unnamed statement and portal are untouched.
/// Only sent between the client's batches.
pub fn guard_batch(timeout: Duration, out: &mut Vec<u8>) {
    batch(&guard_sql(timeout), out);
}

pub fn restore_batch(timeout: Duration, out: &mut Vec<u8>) {
    batch(&restore_sql(timeout), out);
}

fn batch(sql: &str, out: &mut Vec<u8>) {
    // Skipped if an earlier batch failed before its own Close: close first.
    frontend::close_statement(GUARD_NAME, out);
    frontend::parse(GUARD_NAME, sql.as_bytes(), out);
    frontend::bind(GUARD_NAME, GUARD_NAME, out);
    frontend::execute(GUARD_NAME, out);
    frontend::close_portal(GUARD_NAME, out);
    frontend::close_statement(GUARD_NAME, out);
    frontend::sync(out);
}

/// A statement that fails during parse analysis, on any server and in any
/// transaction state, with `marker` inside the server's error message. It
/// stands in for a blocked statement, so the server itself aborts the
/// transaction and skips the rest of the extended batch exactly as the
/// blocked statement's own error would; ddlgate then swaps the error for
/// its own.
pub fn failing_statement(marker: &str) -> String {
    format!("SELECT '{marker}'::pg_catalog.int4")
}

/// A statement that passes Parse and Describe as a utility statement does
/// (NoData, as a schema change gives) and fails when executed, with
/// `marker` as the server's error message. It stands in for a statement a
/// migration applies: executed at the head of its own unit, ddlgate runs
/// the migration in its place; executed anywhere else, its error is
/// swapped for ddlgate's.
pub fn raising_statement(marker: &str) -> String {
    format!("DO $ddlgate$BEGIN RAISE EXCEPTION USING MESSAGE = '{marker}'; END$ddlgate$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_uses_milliseconds_and_its_own_names() {
        let mut out = Vec::new();
        guard_batch(Duration::from_secs(2), &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("'lock_timeout', '2000', false"));
        assert!(text.contains("setting OPERATOR(pg_catalog.=) '0'"));
        assert!(text.contains("ddlgate_guard"));
        assert_eq!(out.last(), Some(&4u8)); // ends with Sync
        assert_eq!(
            failing_statement("ddlgate:block:7"),
            "SELECT 'ddlgate:block:7'::pg_catalog.int4"
        );
    }
}
