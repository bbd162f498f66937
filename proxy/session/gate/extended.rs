//! The extended protocol's side of the gate: Parse (decide), Bind (a
//! prepared schema change being run), Sync (the end of a unit). A unit starts
//! only at the first message of a batch, where a guard batch with its own
//! Sync can go in front without changing the client's batch.

use std::sync::Arc;

use tokio::time::Instant;

use crate::ddl::Mode;
use crate::protocol::backend::TxStatus;
use crate::protocol::frame::take_cstr;
use crate::protocol::frontend;

use super::super::pipe::Verdict;
use super::super::state::SessionState;
use super::{encode, event, keep_after, sql, Gate, Group, Hold, Request, Stopped, Unit};
use crate::protocol::frame::put_frame;

impl Gate {
    pub(super) fn on_parse(&mut self, body: &[u8], state: &mut SessionState) -> Verdict {
        let boundary = self.at_boundary();
        self.enter_batch();
        let Some((name, rest)) = take_cstr(body) else {
            return Verdict::Keep;
        };
        let sql = take_cstr(rest).map_or(&[][..], |(s, _)| s);
        let reading = self.reading(boundary, state);
        let mut out = Vec::new();
        if boundary {
            self.pending_restore(true, state, &mut out);
        }
        // The client's BEGIN at the start of its batch, right before this
        // Parse (pgjdbc sends it in one batch with the transaction's first
        // statement).
        let after_begin = std::mem::take(&mut self.batch_opened) && !boundary;
        if boundary {
            let first = crate::ddl::lexer::first_word(sql);
            self.batch_opened =
                first.eq_ignore_ascii_case(b"BEGIN") || first.eq_ignore_ascii_case(b"START");
        }
        if !self.enabled() || !super::query::may_contain_ddl_read(sql, reading) {
            self.statements.remove(name);
            if crate::ddl::lexer::first_word(sql).eq_ignore_ascii_case(b"COPY") {
                if let Some(b) = self.batch_unit_mut() {
                    // The client may send its Sync before the copy data; a
                    // restore behind that Sync would land in copy mode.
                    b.guard = false;
                    b.copy = None;
                    self.restore_pending = true;
                }
            }
            self.copy_into_batch(b'P', body);
            return keep_after(out);
        }
        if let Some(registered) = self.registered.take() {
            // Its deferral is registered: confirmed and begun in the
            // client's transaction, in front of its batch.
            return self.deferred_parse(registered, out);
        }
        if after_begin && name.is_empty() {
            if let Some(v) = self.after_batch_begin(sql, reading, state) {
                return v;
            }
        }
        if boundary {
            if let Some(v) = self.lookup_first(sql, reading, &mut out, state) {
                // Scanned again from the same place, at a boundary again
                // once the lookup is answered.
                return v;
            }
        }
        let in_tx = state.tx != TxStatus::Idle;
        // Deferred only as the unnamed statement at the start of a batch.
        let may_migrate = boundary && (name.is_empty() || !in_tx);
        let mut j = self.judge(sql, reading, Mode::QueryString, in_tx, may_migrate, state);
        self.statements.remove(name);
        self.migrations.remove(name);
        if let Some(pending) = j.defer.take() {
            self.analyzer.take_unconfirmed();
            self.request = Request::Boundary;
            return self.register(pending, None, true, state, out);
        }
        if let Some(pending) = j.migrate {
            // The runner applies it each time it is executed at the start
            // of a batch; the server prepares a stand-in.
            self.analyzer.take_unconfirmed();
            frontend::parse(
                name,
                sql::raising_statement(&pending.marker).as_bytes(),
                &mut out,
            );
            self.statements
                .insert(name.to_vec(), Arc::new(super::Prepared::default()));
            let mut unit = Box::new(Unit::new(Vec::new(), true, false, None, Vec::new()));
            unit.migration = Some(pending.clone());
            self.migrations.insert(name.to_vec(), pending);
            self.request = Request::Batch(Some(unit));
            return Verdict::Replace(out);
        }
        if let Some((_, id, report)) = j.stop {
            self.analyzer.take_unconfirmed();
            let marker = format!("ddlgate:block:{id}");
            self.stopped.push(Stopped {
                marker: marker.clone(),
                group: self.pushed,
                report: encode(report, state),
            });
            frontend::parse(name, sql::failing_statement(&marker).as_bytes(), &mut out);
            return Verdict::Replace(out);
        }
        if j.stmts.is_empty() {
            return keep_after(out);
        }
        // What it creates is the batch's that executes it (Bind).
        let creates = self.analyzer.take_unconfirmed();
        let prepared = Arc::new(super::Prepared {
            events: j.events,
            creates: if j.tx_control { Vec::new() } else { creates },
        });
        let events = &prepared.events;
        self.statements.insert(name.to_vec(), prepared.clone());
        let notices: Vec<u8> = j
            .notices
            .into_iter()
            .flat_map(|r| encode(r, state))
            .collect();
        if boundary {
            self.start_batch(j.guard, notices, events, state, &mut out);
        } else if let Some(b) = self.batch_unit_mut() {
            b.notices.extend_from_slice(&notices);
        } else {
            // Mid-batch with no unit: the warning still goes out, before
            // the batch's ReadyForQuery.
            self.batch_notices.extend_from_slice(&notices);
        }
        self.copy_into_batch(b'P', body);
        keep_after(out)
    }

    /// A statement ddlgate may defer, right behind the client's BEGIN in
    /// the same batch: a Sync of ddlgate's ends the BEGIN's part of the
    /// batch (its answers are the client's, its ReadyForQuery is not), so
    /// the statement starts a batch of its own, inside the block, where it
    /// can be looked up and deferred. (Only a BEGIN goes first: it cannot
    /// fail, so the Sync changes nothing about what the batch skips.)
    fn after_batch_begin(
        &mut self,
        sql: &[u8],
        reading: crate::ddl::lexer::Reading,
        state: &mut SessionState,
    ) -> Option<Verdict> {
        let who = crate::ddl::Who {
            user: &self.who.user,
            database: &self.who.database,
        };
        let defer = self.runner.is_some()
            && self.batch_unit().is_none()
            && self.runtime.settings.ddl.policy.in_transaction(who)
                == crate::ddl::policy::InTransaction::Defer
            && super::lookup::plannable_first(
                sql,
                reading,
                state.server_major().unwrap_or(super::ASSUMED_MAJOR),
            );
        if !defer {
            return None;
        }
        let mut out = Vec::new();
        frontend::sync(&mut out);
        let mut unit = Box::new(Unit::new(Vec::new(), true, false, None, Vec::new()));
        unit.part = super::Part::Middle;
        self.push(Group::Unit(unit), state);
        self.hold(Hold::Unit, state);
        Some(Verdict::Hold(out))
    }

    /// The held Parse of a deferred statement, once registered: ddlgate's
    /// statements and the stand-in replace it, and the client's batch is
    /// the unit; or the refusal replaces it.
    fn deferred_parse(
        &mut self,
        registered: super::defer::Registration,
        mut out: Vec<u8>,
    ) -> Verdict {
        match registered {
            Ok((bytes, unit)) => {
                out.extend_from_slice(&bytes);
                self.request = Request::Batch(Some(unit));
            }
            Err(report) => {
                let marker = format!("ddlgate:refused:{}", self.pushed);
                self.stopped.push(Stopped {
                    marker: marker.clone(),
                    group: self.pushed,
                    report,
                });
                frontend::parse(b"", sql::failing_statement(&marker).as_bytes(), &mut out);
            }
        }
        Verdict::Replace(out)
    }

    pub(super) fn on_bind(&mut self, body: &[u8], state: &mut SessionState) -> Verdict {
        let boundary = self.at_boundary();
        self.enter_batch();
        let mut out = Vec::new();
        if boundary {
            self.pending_restore(true, state, &mut out);
        }
        if let Some((_, statement)) = frontend::bind_names(body) {
            if let Some(pending) = self.migrations.get(statement) {
                if boundary && state.tx == TxStatus::Idle {
                    let mut unit = Box::new(Unit::new(Vec::new(), true, false, None, Vec::new()));
                    unit.migration = Some(pending.clone());
                    self.request = Request::Batch(Some(unit));
                } else {
                    // Its stand-in's error reaches the client as ddlgate's.
                    let marker = pending.marker.clone();
                    let report = crate::protocol::backend::Report::new(
                        crate::protocol::backend::Severity::Error,
                        crate::protocol::sqlstate::DDL_BLOCKED,
                        "ddlgate: this schema change is applied as a migration only when it is executed at the start of its own batch (its own Sync), outside a transaction block",
                    );
                    self.stopped.push(Stopped {
                        marker,
                        group: self.pushed,
                        report: encode(report, state),
                    });
                }
                self.copy_into_batch(b'B', body);
                return keep_after(out);
            }
            if let Some(prepared) = self.statements.get(statement).cloned() {
                if boundary {
                    self.start_batch(true, Vec::new(), &prepared.events, state, &mut out);
                }
                // Executed by this batch: what it creates is the batch's to
                // record; outside a unit (the middle of a batch) never.
                if let Some(b) = self.batch_unit_mut() {
                    b.creates.extend(prepared.creates.iter().cloned());
                }
            }
        }
        self.copy_into_batch(b'B', body);
        keep_after(out)
    }

    /// A schema change starts an extended batch: guard first.
    fn start_batch(
        &mut self,
        guard: bool,
        notices: Vec<u8>,
        events: &[event::Event],
        state: &mut SessionState,
        out: &mut Vec<u8>,
    ) {
        let retry = guard && self.retry_allowed(state);
        if guard {
            sql::guard_batch(self.lock_timeout(), out);
            self.push(Group::Proxy { restore: false }, state);
        }
        self.request = Request::Batch(Some(Box::new(Unit::new(
            events.to_vec(),
            true,
            guard,
            retry.then(Vec::new),
            notices,
        ))));
    }

    pub(super) fn on_sync(&mut self, body: &[u8], state: &mut SessionState) -> Verdict {
        self.batch_opened = false;
        let Request::Batch(Some(mut unit)) =
            std::mem::replace(&mut self.request, Request::Boundary)
        else {
            if self.batch_notices.is_empty() {
                self.push(Group::Client(Instant::now()), state);
            } else {
                let unit = Unit::new(
                    Vec::new(),
                    true,
                    false,
                    None,
                    std::mem::take(&mut self.batch_notices),
                );
                self.push(Group::Unit(Box::new(unit)), state);
            }
            return Verdict::Keep;
        };
        if let Some(copy) = &mut unit.copy {
            put_frame(copy, b'S', body);
        }
        let mut out = Vec::new();
        put_frame(&mut out, b'S', body);
        let named = unit.take_named();
        let guard = unit.guard;
        let holding = unit.holding();
        self.push(Group::Unit(unit), state);
        if holding {
            self.hold(Hold::Unit, state);
        }
        if guard {
            sql::restore_batch(self.lock_timeout(), &mut out);
            self.push(Group::Proxy { restore: true }, state);
        }
        self.record(named, state, &mut out);
        Verdict::Replace(out)
    }
}
