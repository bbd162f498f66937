//! A client's own backfill inside a migration transaction (Django's
//! `SET DEFAULT v; UPDATE t SET c = v WHERE c IS NULL; SET NOT NULL; DROP
//! DEFAULT`). Run as sent, the UPDATE rewrites every NULL row while the
//! transaction holds the ACCESS EXCLUSIVE lock SET DEFAULT took, until
//! COMMIT. Recognised (`ddl::plan::client`) after that SET DEFAULT in the
//! same transaction, it is deferred instead: the client gets `UPDATE 0`
//! (what ran in its transaction; counting the rows would scan the table
//! under that lock) and a NOTICE, and the same rows get the same value in
//! throttled batches after COMMIT, before the transaction's later
//! migrations of that table (one table's migrations run in order; a SET
//! NOT NULL of the column waits for it whole).
//!
//! The result is the same as long as nothing later in the transaction
//! reads those rows: a later statement that names the table and is neither
//! deferred itself nor a SET/DROP DEFAULT is preceded by the client's
//! UPDATE as written (the batches then find nothing to do).

use crate::ddl::lexer;
use crate::ddl::op::{fold_name, unquote, Op};
use crate::ddl::plan::client::{fill_nulls, set_default, FillNulls};
use crate::protocol::backend::TxStatus;
use crate::protocol::frontend;
use crate::session::state::SessionState;

use super::{Gate, Group, Unit};

impl Gate {
    /// Records a SET DEFAULT let through inside a transaction block.
    pub(super) fn note_default(&mut self, text: &[u8], state: &SessionState) {
        if state.tx != TxStatus::InTransaction {
            return;
        }
        if let Some(d) = std::str::from_utf8(text).ok().and_then(set_default) {
            self.tx_defaults.push(d);
        }
    }

    /// The client's backfill the first statement of `sql` is, if the
    /// transaction set its column's default to the same value.
    pub(super) fn fill_of(
        &self,
        sql: &[u8],
        reading: lexer::Reading,
        state: &SessionState,
    ) -> Option<(FillNulls, usize)> {
        // Its first statement must be where the server will find it.
        if state.tx != TxStatus::InTransaction
            || self.tx_defaults.is_empty()
            || reading.ambiguous(sql)
        {
            return None;
        }
        let first = lexer::statements(sql, reading.lex).next()?;
        let f = fill_nulls(std::str::from_utf8(&sql[first.clone()]).ok()?)?;
        self.tx_defaults
            .iter()
            .any(|(t, c, v)| *t == f.folded && *c == f.stored && *v == f.value)
            .then_some((f, first.end))
    }

    /// Defers the client's backfill: the runner backfills after COMMIT.
    pub(super) fn defer_fill(
        &mut self,
        fill: FillNulls,
        text: &[u8],
        state: &mut SessionState,
    ) -> Option<Box<super::migrate::Pending>> {
        let plan = fill.plan();
        let id = super::event::next_id();
        let p = self.pending(text, &plan, &id, state, None);
        // Facts looked up for it serve it alone.
        self.looked_up.clear();
        self.catalog = crate::ddl::Catalog::default();
        let mut p = p.ok().flatten()?;
        tracing::info!(
            event = "ddl.deferred",
            table = %fill.table,
            column = %fill.column,
            "the client's backfill of NULLs runs in batches after COMMIT"
        );
        p.fill = Some(fill);
        Some(p)
    }

    /// Before the client's `sql`: its UPDATE as written for each deferred
    /// backfill whose table `sql` names, unless `exempt` (a deferred
    /// statement, or a SET/DROP DEFAULT alone). Quiet units: their answers
    /// are dropped, errors kept.
    pub(super) fn materialize(
        &mut self,
        sql: &[u8],
        exempt: bool,
        state: &mut SessionState,
        out: &mut Vec<u8>,
    ) {
        if self.fills.is_empty() || exempt {
            return;
        }
        let names = names_in(sql, state.lexical);
        let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.fills)
            .into_iter()
            .partition(|f| names.iter().any(|n| *n == bare(&f.folded)));
        self.fills = kept;
        for f in due {
            tracing::info!(event = "ddl.fill_run", table = %f.table, "a later statement reads the table: the client's UPDATE runs as written first");
            frontend::query(f.update_sql().as_bytes(), out);
            let mut unit = Box::new(Unit::new(Vec::new(), false, false, None, Vec::new()));
            unit.quiet = super::Quiet::Before;
            self.push(Group::Unit(unit), state);
        }
    }

    /// Statement `a` (alone in its string) needs no rows of a deferred
    /// backfill's table: a SET or DROP DEFAULT.
    pub(super) fn fill_exempt(a: &crate::ddl::Analyzed, text: &[u8]) -> bool {
        let defaults = a.ops.iter().all(|op| matches!(op, Op::DropDefault { .. }));
        let set = std::str::from_utf8(text)
            .ok()
            .and_then(set_default)
            .is_some();
        set || (defaults && !a.ops.is_empty())
    }

    /// A SET NOT NULL of a column whose backfill is deferred in this
    /// transaction: its check would fail the application's writes to the
    /// rows still NULL, so all of it runs after the backfill.
    pub(super) fn after_fill(&self, a: &crate::ddl::Analyzed, p: &mut super::migrate::Pending) {
        let waits = a.ops.iter().any(|op| match op {
            Op::SetNotNull { table, column } => self
                .fills
                .iter()
                .any(|f| f.folded == fold_name(table) && f.stored == unquote(column)),
            _ => false,
        });
        if waits {
            p.after_commit = true;
        }
    }
}

/// The unqualified table name, as stored.
fn bare(folded: &str) -> &str {
    folded.rsplit('.').next().unwrap_or(folded)
}

/// Every identifier-like token of `sql`, as stored (a cheap superset of
/// the tables it names).
fn names_in(sql: &[u8], lex: lexer::Lexical) -> Vec<String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(r) = lexer::next_token(sql, pos, lex) {
        pos = r.end;
        if let Ok(tok) = std::str::from_utf8(&sql[r]) {
            let c = tok.as_bytes()[0];
            if c == b'"' || c.is_ascii_alphabetic() || c == b'_' || !c.is_ascii() {
                out.push(unquote(tok));
            }
        }
    }
    out
}
