//! The simple protocol's Query in the gate: the catalog lookup a decision
//! waits for, the repair and restore that go before a request, and a
//! Query's decision carried out (a stand-in for a migration, a blocked
//! statement's replacement, or a unit with its guard and restore).

use tokio::time::Instant;

use super::{encode, keep_after, lookup, sql, Gate, Group, Hold, Stopped, Unit, ASSUMED_MAJOR};
use crate::ddl::fastpath::{may_contain_ddl, may_contain_ddl_unsure};
use crate::ddl::lexer::Reading;
use crate::ddl::Mode;
use crate::protocol::backend::TxStatus;
use crate::protocol::frame::{put_frame, take_cstr};
use crate::protocol::frontend;
use crate::session::pipe::Verdict;
use crate::session::state::SessionState;

impl Gate {
    /// Before deciding on `sql`: if it changes column types or sets NOT
    /// NULL, read the catalog first. The message waits (`Hold`) behind the
    /// lookup, and is scanned again once the facts are in.
    pub(super) fn lookup_first(
        &mut self,
        sql: &[u8],
        reading: Reading,
        before: &mut Vec<u8>,
        state: &mut SessionState,
    ) -> Option<Verdict> {
        if state.tx == TxStatus::Failed {
            return None;
        }
        let major = state.server_major().unwrap_or(ASSUMED_MAJOR);
        let runner = self.runner.is_some();
        let wants: Vec<_> = lookup::wanted(sql, reading, major)
            .into_iter()
            .filter(|w| !self.looked_up.contains(w))
            .filter(|w| runner || *w != lookup::Want::Session)
            .collect();
        if wants.is_empty() {
            return None;
        }
        let mut bytes = std::mem::take(before);
        let in_tx = state.tx == TxStatus::InTransaction;
        lookup::batch(&wants, in_tx, &mut bytes);
        self.looked_up.extend(wants.iter().cloned());
        let small = self.runtime.settings.ddl.small_table_size;
        self.push(
            Group::Lookup(Box::new(lookup::Lookup::new(wants, small, in_tx))),
            state,
        );
        self.hold(Hold::Lookup, state);
        Some(Verdict::Hold(bytes))
    }

    /// Before a client message at a boundary: the repair of a failed lookup,
    /// and a restore that failed earlier.
    pub(super) fn pending_restore(
        &mut self,
        extended: bool,
        state: &mut SessionState,
        out: &mut Vec<u8>,
    ) {
        if std::mem::take(&mut self.lookup_rollback) {
            frontend::query(lookup::ROLLBACK_SQL.as_bytes(), out);
            self.push(Group::Proxy { restore: false }, state);
        }
        let quiet = self.groups.iter().all(Group::is_ours);
        if self.restore_pending && state.tx == TxStatus::Idle && quiet {
            self.restore_pending = false;
            if extended {
                sql::restore_batch(self.lock_timeout(), out);
            } else {
                sql::restore_query(self.lock_timeout(), out);
            }
            self.push(Group::Proxy { restore: true }, state);
        }
    }

    /// A unit starting now may be replayed: the session is outside a
    /// transaction, and nothing but ddlgate's own guard or restore (which
    /// leave it so) is still in flight.
    pub(super) fn retry_allowed(&self, state: &SessionState) -> bool {
        self.runtime.settings.ddl.lock_retries > 0
            && state.tx == TxStatus::Idle
            && self.groups.iter().all(Group::is_ours)
    }

    pub(super) fn on_query(&mut self, body: &[u8], state: &mut SessionState) -> Verdict {
        // A Query inside an extended batch (no Sync yet) is part of it.
        let boundary = self.at_boundary();
        let reading = self.reading(boundary, state);
        let mut out = Vec::new();
        if boundary {
            self.pending_restore(false, state, &mut out);
        }
        let full = take_cstr(body).map_or(&[][..], |(s, _)| s);
        // A string sent in parts (`defer`) goes on from where it got.
        let base = match &self.script {
            Some(s) if s.ended => {
                self.script = None;
                return Verdict::Replace(out);
            }
            Some(s) => s.offset.min(full.len()),
            None => 0,
        };
        let sql = &full[base..];
        if boundary && self.enabled() {
            if let Some((fill, end)) = self.fill_of(sql, reading, state) {
                // It runs as the session's role: read it first.
                if let Some(v) = self.lookup_first(sql, reading, &mut out, state) {
                    return v;
                }
                if let Some(p) = self.defer_fill(fill, &sql[..end], state) {
                    self.script = Some(super::defer::Script {
                        offset: base,
                        ended: false,
                    });
                    let after = crate::ddl::lexer::statements(sql, reading.lex)
                        .nth(1)
                        .map(|r| base + r.start);
                    return self.register(p, after, false, state, out);
                }
            }
        }
        if !self.enabled() || !may_contain_ddl_read(sql, reading) {
            self.script = None;
            if boundary {
                self.materialize(sql, false, state, &mut out);
            }
            self.push(Group::Client(Instant::now()), state);
            if base > 0 {
                frontend::query(sql, &mut out);
                return Verdict::Replace(out);
            }
            return keep_after(out);
        }
        if boundary {
            if let Some(v) = self.lookup_first(sql, reading, &mut out, state) {
                return v;
            }
        }
        let in_tx = state.tx != TxStatus::Idle;
        let mut j = self.judge(sql, reading, Mode::QueryString, in_tx, boundary, state);
        if boundary {
            let alone = j.stmts.len() == 1;
            let exempt = alone
                && (j.defer.is_some()
                    || Self::fill_exempt(&j.stmts[0], &sql[j.stmts[0].range.clone()]));
            self.materialize(sql, exempt, state, &mut out);
        }
        if let Some(p) = j.defer.take() {
            return self.defer(base, &j, p, state, out);
        }
        if let Some(i) = j.split {
            return self.split(sql, base, j, i, state, out);
        }
        if j.open {
            return self.open_block(base, state, out);
        }
        self.script = None;
        if let Some(pending) = j.migrate {
            // The runner applies it; the server runs a stand-in.
            self.analyzer.take_unconfirmed();
            frontend::query(sql::raising_statement(&pending.marker).as_bytes(), &mut out);
            let mut unit = Box::new(Unit::new(Vec::new(), false, false, None, Vec::new()));
            unit.migration = Some(pending);
            self.push(Group::Unit(unit), state);
            self.hold(Hold::Unit, state);
            return Verdict::Replace(out);
        }
        if let Some((i, id, report)) = j.stop {
            self.analyzer.take_unconfirmed();
            let marker = format!("ddlgate:block:{id}");
            let mut replacement = sql[..j.stmts[i].range.start].to_vec();
            replacement.extend_from_slice(sql::failing_statement(&marker).as_bytes());
            self.stopped.push(Stopped {
                marker,
                group: self.pushed,
                report: encode(report, state),
            });
            frontend::query(&replacement, &mut out);
            self.push(Group::Client(Instant::now()), state);
            return Verdict::Replace(out);
        }
        let guard = j.guard && boundary;
        let retry = guard && !j.tx_control && self.retry_allowed(state);
        let mut frame = Vec::with_capacity(body.len() + 5);
        if base > 0 {
            frontend::query(sql, &mut frame);
        } else {
            put_frame(&mut frame, b'Q', body);
        }
        let notices = j
            .notices
            .into_iter()
            .flat_map(|r| encode(r, state))
            .collect();
        let mut unit = Box::new(Unit::new(
            j.events,
            false,
            guard,
            retry.then(|| frame.clone()),
            notices,
        ));
        // A string that ends its own transaction may have rolled it back.
        // (Taken either way: what is left would be a later unit's.)
        let creates = self.analyzer.take_unconfirmed();
        if !j.tx_control {
            unit.creates = creates;
        }
        self.send_unit(unit, frame, state, &mut out);
        if guard && j.tx_control {
            // The guard ran before a transaction the string opens, the
            // restore inside it: a rollback would undo the restore alone.
            self.restore_pending = true;
        }
        Verdict::Replace(out)
    }

    /// Writes a simple-protocol unit with its guard and restore.
    pub(super) fn send_unit(
        &mut self,
        mut unit: Box<Unit>,
        frame: Vec<u8>,
        state: &mut SessionState,
        out: &mut Vec<u8>,
    ) {
        let named = unit.take_named();
        let guard = unit.guard;
        if guard {
            sql::guard_query(self.lock_timeout(), out);
            self.push(Group::Proxy { restore: false }, state);
        }
        out.extend_from_slice(&frame);
        let holding = unit.holding();
        self.push(Group::Unit(unit), state);
        if holding {
            self.hold(Hold::Unit, state);
        }
        if guard {
            sql::restore_query(self.lock_timeout(), out);
            self.push(Group::Proxy { restore: true }, state);
        }
        self.record(named, state, out);
    }
}

/// The fast path's check, with the session's reading: split as the server
/// will (sure), or as any reading it could be in (not sure).
#[inline]
pub(super) fn may_contain_ddl_read(sql: &[u8], reading: Reading) -> bool {
    if reading.sure {
        may_contain_ddl(sql, reading.lex)
    } else {
        may_contain_ddl_unsure(sql, reading.lex)
    }
}
