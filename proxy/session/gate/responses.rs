//! The server side of the gate: each response goes to the group at the
//! head of the queue (client's, ddlgate's own, or a held unit), stopped
//! statements' errors are swapped for ddlgate's, and lock timeouts of
//! replayable units are retried after a backoff.

use std::future::Future;
use std::task::Context;

use crate::protocol::backend::{
    error_field, error_is_fatal, ready_for_query_status, without_fields, Report, Severity, TxStatus,
};
use crate::protocol::sqlstate;

use super::super::pipe::Verdict;
use super::super::state::SessionState;
use super::{
    event, sql, Action, Gate, Group, Hold, Part, Quiet, Request, Retry, Unit, Wait, HOLD_LIMIT,
};
use crate::protocol::frame::{put_frame, take_cstr};
use crate::retry::backoff;

impl Gate {
    /// A whole server message.
    pub fn on_server(&mut self, tag: u8, body: &[u8], state: &mut SessionState) -> Verdict {
        // Ended: idle again, or (a string's COMMIT; BEGIN) committed.
        let committed = self.commit_seen;
        let ended =
            tag == b'Z' && !self.deferred.is_empty() && (state.tx == TxStatus::Idle || committed);
        let v = self.on_server_message(tag, body, state);
        let v = if tag == b'Z' && self.own_block {
            self.close_own_block(v, body, state)
        } else {
            v
        };
        if ended {
            self.commit_seen = false;
            return self.transaction_ended(committed, v, body, state);
        }
        v
    }

    fn on_server_message(&mut self, tag: u8, body: &[u8], state: &mut SessionState) -> Verdict {
        // The end of the client's transaction, if nothing of the client's
        // was analysed since: a ReadyForQuery of ddlgate's own statements
        // sent ahead of the client's (a guard, a restore), or of a request
        // the client pipelined more behind, comes after the later string
        // was analysed, and must not clear what that analysis learned.
        let is_clients = |g: &Group| matches!(g, Group::Client(_) | Group::Unit(_));
        let clients = self.groups.front().is_some_and(is_clients)
            && !self.groups.iter().skip(1).any(is_clients);
        if tag == b'Z' && state.tx == TxStatus::Idle && clients {
            self.analyzer.end_transaction();
            self.tx_defaults.clear();
            self.fills.clear();
            let created = std::mem::take(&mut self.pending_commit);
            if std::mem::take(&mut self.commit_seen) {
                self.analyzer.confirm(created);
            }
        }
        if tag == b'C' && !(self.pending_commit.is_empty() && self.deferred.is_empty()) {
            // COMMIT of a failed transaction answers ROLLBACK; ROLLBACK TO a
            // savepoint too (which objects it undid is not said): trust none.
            match take_cstr(body).map(|(t, _)| t) {
                Some(b"COMMIT") => self.commit_seen = true,
                Some(t) if t.starts_with(b"ROLLBACK") || t.starts_with(b"PREPARE") => {
                    self.pending_commit.clear();
                }
                _ => {}
            }
        }
        if tag == b'E' && error_is_fatal(body) {
            // The connection is about to end: whatever is held, and the
            // server's own goodbye, go to the client now.
            if let Some(Group::Unit(u)) = self.groups.front_mut() {
                u.copy = None;
                let mut out = std::mem::take(&mut u.held);
                put_frame(&mut out, tag, body);
                return Verdict::Replace(out);
            }
            return Verdict::Keep;
        }
        let ours = matches!(
            self.groups.front(),
            Some(Group::Proxy { .. } | Group::Lookup(_))
        );
        if tag == b'E' && !ours && !self.stopped.is_empty() {
            if let Some(report) = self.substitute(body) {
                return match self.groups.front_mut() {
                    Some(Group::Unit(u)) if u.holding() => {
                        u.failed = true;
                        u.held.extend_from_slice(&report);
                        Verdict::Replace(Vec::new())
                    }
                    _ => Verdict::Replace(report),
                };
            }
        }
        match self.groups.front_mut() {
            None => Verdict::Keep,
            Some(Group::Client(_)) => {
                if tag == b'Z' {
                    self.pop(state);
                }
                Verdict::Keep
            }
            Some(Group::Lookup(l)) if l.record.is_some() => match tag {
                b'Z' => self.recorded(state),
                b'S' | b'A' | b'N' => Verdict::Keep,
                _ => {
                    l.on_record_message(tag, body);
                    Verdict::Replace(Vec::new())
                }
            },
            Some(Group::Lookup(l)) => match tag {
                b'Z' => {
                    self.session_facts = l.session.take();
                    if let Some((code, message)) = &l.error {
                        // Decided without the facts: conservatively.
                        tracing::warn!(
                            event = "ddl.lookup_failed",
                            sqlstate = %code,
                            error = %message,
                            "catalog lookup failed; deciding without its facts"
                        );
                        self.lookup_error = Some(format!("{code}: {message}"));
                    }
                    // The savepoint it ran in undoes a failure (a fact's, or
                    // a statement the parser rejected).
                    self.lookup_rollback = state.tx == TxStatus::Failed;
                    self.pop(state);
                    self.release(state);
                    Verdict::Replace(Vec::new())
                }
                b'S' | b'A' | b'N' => Verdict::Keep,
                _ => {
                    l.on_message(tag, body, &mut self.catalog);
                    Verdict::Replace(Vec::new())
                }
            },
            Some(Group::Proxy { restore }) => match tag {
                b'Z' => {
                    self.pop(state);
                    Verdict::Replace(Vec::new())
                }
                b'E' => {
                    if *restore {
                        self.restore_pending = true;
                    }
                    Verdict::Replace(Vec::new())
                }
                // Not responses: the session's own news.
                b'S' | b'A' | b'N' => Verdict::Keep,
                _ => Verdict::Replace(Vec::new()),
            },
            Some(Group::Unit(u)) => {
                let code = |c: &str| error_field(body, b'C') == Some(c.as_bytes());
                if tag == b'N'
                    && (code(sqlstate::DUPLICATE_TABLE) || code(sqlstate::DUPLICATE_OBJECT))
                {
                    u.skipped_create = true;
                }
                if tag == b'E' {
                    if let Some(m) = &mut u.migration {
                        let msg = error_field(body, b'M').unwrap_or_default();
                        if m.executed.is_none() && msg == m.marker.as_bytes() {
                            // The stand-in ran: the migration goes here.
                            m.executed = Some(u.held.len());
                            return Verdict::Replace(Vec::new());
                        }
                    }
                    u.failed = true;
                    if error_field(body, b'C') == Some(sqlstate::LOCK_NOT_AVAILABLE.as_bytes()) {
                        u.lock_timeout_hit = true;
                    }
                }
                if tag == b'Z' {
                    return self.unit_done(body, state);
                }
                if u.quiet != Quiet::Not {
                    if matches!(tag, b'E' | b'N' | b'S') {
                        put_frame(&mut u.held, tag, body);
                    }
                    return Verdict::Replace(Vec::new());
                }
                if let Some(c) = &mut u.confirming {
                    if c.ours == Some(0) {
                        // The client's own stand-in, after ddlgate's
                        // statements: its answer, with the statement's tag.
                        if tag == b'C' {
                            let mut b = bytes::BytesMut::new();
                            crate::protocol::reply::command_complete(c.tag, &mut b);
                            u.held.extend_from_slice(&b);
                        } else {
                            put_frame(&mut u.held, tag, body);
                        }
                        return Verdict::Replace(Vec::new());
                    }
                    // ddlgate's own statements: the client gets the
                    // statement's tag instead, and errors and notices
                    // without positions in text it never sent.
                    match tag {
                        b'E' | b'N' => {
                            let body = without_fields(body, b"Ppq");
                            put_frame(&mut u.held, tag, &body);
                        }
                        b'S' => put_frame(&mut u.held, tag, body),
                        b'C' => {
                            if let Some(n) = &mut c.ours {
                                *n -= 1;
                            }
                        }
                        _ => {}
                    }
                    return Verdict::Replace(Vec::new());
                }
                if u.holding() && matches!(tag, b'G' | b'H' | b'W') {
                    // COPY inside the unit: the client must see this now and
                    // answer with its data, so nothing more is held and the
                    // unit will not be replayed.
                    u.copy = None;
                    let mut out = std::mem::take(&mut u.held);
                    self.release(state);
                    put_frame(&mut out, tag, body);
                    return Verdict::Replace(out);
                }
                if u.holding() {
                    put_frame(&mut u.held, tag, body);
                    if u.held.len() > HOLD_LIMIT {
                        u.copy = None;
                        return Verdict::Replace(std::mem::take(&mut u.held));
                    }
                    return Verdict::Replace(Vec::new());
                }
                Verdict::Keep
            }
        }
    }

    /// ddlgate's error for a stopped statement, if `body` is the error of its
    /// stand-in.
    fn substitute(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        let msg = error_field(body, b'M').unwrap_or_default();
        let i = self
            .stopped
            .iter()
            .position(|s| memchr::memmem::find(msg, s.marker.as_bytes()).is_some())?;
        Some(self.stopped.swap_remove(i).report)
    }

    /// The header of a server message that streams through.
    pub fn on_server_streamed(&mut self) -> Verdict {
        match self.groups.front_mut() {
            Some(Group::Unit(u)) if u.holding() => {
                // Too large to hold: release what is held, give up the retry.
                u.copy = None;
                Verdict::Before(std::mem::take(&mut u.held))
            }
            _ => Verdict::Keep,
        }
    }

    fn unit_done(&mut self, z_body: &[u8], state: &mut SessionState) -> Verdict {
        let Some(Group::Unit(mut unit)) = self.pop(state) else {
            unreachable!("unit_done is called with a unit at the head");
        };
        match unit.quiet {
            Quiet::Not => {}
            // Only its errors, in front of the client's next answer.
            Quiet::Before => return Verdict::Replace(std::mem::take(&mut unit.held)),
            Quiet::Open => {
                self.release(state);
                return Verdict::Replace(std::mem::take(&mut unit.held));
            }
            Quiet::Close => {
                self.release(state);
                let mut out = std::mem::take(&mut unit.held);
                put_frame(&mut out, b'Z', z_body);
                return Verdict::Replace(out);
            }
        }
        let idle = ready_for_query_status(z_body) == Some(TxStatus::Idle);
        if let Some(m) = unit.migration.take() {
            if m.executed.is_some() && idle && !unit.failed {
                self.start_migration(&mut unit, m, z_body, state);
                return Verdict::Replace(Vec::new());
            }
            if let Some(at) = m.executed {
                // Ran where no migration can start: the client hears why.
                let report = Report::new(
                    Severity::Error,
                    sqlstate::DDL_BLOCKED,
                    "ddlgate: this schema change is applied as a migration only outside a transaction block",
                );
                let bytes = report.to_bytes();
                unit.held.splice(at..at, bytes.iter().copied());
            }
            // Prepared only, or failed before it ran: answered as is.
            self.release(state);
        }
        let ddl = &self.runtime.settings.ddl;
        if unit.holding() && unit.lock_timeout_hit && idle && unit.attempt < ddl.lock_retries {
            unit.attempt += 1;
            let delay = backoff(ddl.retry_backoff, ddl.retry_backoff_max, unit.attempt);
            let notice = Report::new(
                Severity::Warning,
                sqlstate::WARNING,
                format!(
                    "ddlgate: the schema change gave up waiting for its lock after lock_timeout; \
                     retry {} of {} in {} ms",
                    unit.attempt,
                    ddl.lock_retries,
                    delay.as_millis()
                ),
            )
            .with_detail(
                "Waiting longer would have queued every query on the table behind it.".to_owned(),
            )
            .to_bytes()
            .to_vec();
            self.retried(&unit);
            unit.held.clear();
            unit.lock_timeout_hit = false;
            unit.failed = false;
            let cancelled = self.cancel_signal();
            let retry = Wait::Retry(Retry {
                sleep: Box::pin(tokio::time::sleep(delay)),
                unit,
                cancelled,
                aborting: false,
            });
            self.hold(Hold::Wait(retry), state);
            return Verdict::Replace(notice);
        }
        if unit.holding() || unit.part != Part::Whole {
            self.release(state);
        }
        let status = ready_for_query_status(z_body);
        self.confirmed(&mut unit, status == Some(TxStatus::InTransaction));
        if unit.part != Part::Whole {
            let failed = unit.failed || status == Some(TxStatus::Failed);
            if let Some(s) = &mut self.script {
                s.ended |= failed;
            }
            if unit.part == Part::Middle && !failed {
                // The client's Query goes on: one ReadyForQuery at its end.
                let mut out = std::mem::take(&mut unit.held);
                out.extend_from_slice(&unit.notices);
                return Verdict::Replace(out);
            }
        }
        if !unit.failed {
            let created = std::mem::take(&mut unit.creates);
            let status = ready_for_query_status(z_body);
            match status {
                Some(TxStatus::Idle) => self.analyzer.confirm(created),
                Some(TxStatus::InTransaction) => self.pending_commit.extend(created),
                _ => {}
            }
            // The lookup behind it keeps what it created.
            let record = self.groups.iter_mut().find_map(|g| match g {
                Group::Lookup(l) => l.record.as_mut(),
                _ => None,
            });
            if let Some(r) = record {
                r.outcome = status;
                r.skipped = unit.skipped_create;
            }
        }
        let mut out = std::mem::take(&mut unit.held);
        out.extend_from_slice(&unit.notices);
        put_frame(&mut out, b'Z', z_body);
        Verdict::Replace(out)
    }

    /// The end of a recording lookup: the OIDs of what its unit created
    /// are the transaction's (invisible to others) and, once it commits,
    /// the session's.
    fn recorded(&mut self, state: &mut SessionState) -> Verdict {
        let Some(Group::Lookup(mut l)) = self.pop(state) else {
            unreachable!("recorded is called with a lookup at the head");
        };
        // The savepoint it ran in undoes a failure of its own.
        self.lookup_rollback |= state.tx == TxStatus::Failed;
        let Some(r) = l.record.take() else {
            return Verdict::Replace(Vec::new());
        };
        if l.error.is_some() {
            return Verdict::Replace(Vec::new());
        }
        let made = r.made();
        match r.outcome {
            Some(TxStatus::Idle) => self.analyzer.confirm(made),
            Some(TxStatus::InTransaction) => {
                let oids = made.iter().filter_map(|c| match c {
                    crate::ddl::Created::Oid(o) => Some(*o),
                    _ => None,
                });
                self.analyzer.created_in_transaction(oids);
                self.pending_commit.extend(made);
            }
            _ => {}
        }
        Verdict::Replace(Vec::new())
    }

    fn retried(&self, unit: &Unit) {
        for e in &unit.events {
            let mut e = e.clone();
            e.event = event::Kind::Retried;
            e.at = event::now_rfc3339();
            e.attempt = Some(unit.attempt);
            event::emit(&e, self.runtime.audit.as_deref());
        }
    }

    /// When a retry's wait is over: the messages to send again, in front
    /// of anything the client sent meanwhile. When the client cancelled
    /// during the wait: its error, once `client_at_boundary`.
    pub(super) fn poll_retry(
        &mut self,
        cx: &mut Context<'_>,
        state: &mut SessionState,
        client_at_boundary: bool,
    ) -> Option<Action> {
        let Request::Held(Hold::Wait(Wait::Retry(r))) = &mut self.request else {
            return None;
        };
        if !r.aborting && r.cancelled.as_mut().poll(cx).is_ready() {
            r.aborting = true;
        }
        if r.aborting {
            if !client_at_boundary {
                return None;
            }
            self.release(state);
            tracing::info!("ddl retry cancelled by the client");
            let mut out = Report::new(
                Severity::Error,
                sqlstate::QUERY_CANCELED,
                "canceling statement due to user request",
            )
            .with_detail("ddlgate was waiting to retry the schema change; it was not retried.")
            .to_bytes()
            .to_vec();
            put_frame(&mut out, b'Z', b"I");
            return Some(Action::ToClient(out));
        }
        if r.sleep.as_mut().poll(cx).is_pending() {
            return None;
        }
        let Request::Held(Hold::Wait(Wait::Retry(Retry { mut unit, .. }))) =
            std::mem::replace(&mut self.request, Request::Held(Hold::Unit))
        else {
            unreachable!("checked above")
        };
        let copy = unit.copy.clone().unwrap_or_default();
        let mut out = Vec::new();
        let timeout = self.lock_timeout();
        if unit.extended {
            sql::guard_batch(timeout, &mut out);
        } else {
            sql::guard_query(timeout, &mut out);
        }
        self.push(Group::Proxy { restore: false }, state);
        out.extend_from_slice(&copy);
        unit.held.clear();
        let extended = unit.extended;
        self.push(Group::Unit(unit), state);
        if extended {
            sql::restore_batch(timeout, &mut out);
        } else {
            sql::restore_query(timeout, &mut out);
        }
        self.push(Group::Proxy { restore: true }, state);
        Some(Action::ToServer(out))
    }
}
