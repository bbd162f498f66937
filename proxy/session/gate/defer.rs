//! Schema changes inside the client's transaction block, deferred past its
//! COMMIT (`ddl.in_transaction = "defer"`).
//!
//! A statement the policy rewrites, sent inside an explicit transaction
//! block (by the simple protocol, or as the unnamed statement at the start
//! of an extended batch), is not sent as written. The runner first
//! registers its migration (pending, with a one-time token), then one
//! extended batch runs in the client's transaction, under `lock_timeout`:
//! `ddlgate.confirm(token)` and the plan's leading catalog-only steps (the
//! nullable column, NOT VALID constraints, a shadow column and its
//! trigger). The client gets the statement's own CommandComplete and a
//! NOTICE naming the migration; if a step fails it gets the server's error
//! in a transaction the server aborted, as for the statement itself.
//!
//! In an extended batch those statements go in front of the client's own
//! messages, whose Parse gets a stand-in (`STAND_IN`) so its Bind,
//! Describe and Execute are answered as the statement's would be.
//!
//! The migration then exists exactly when the client's transaction
//! commits (`commit`); later statements of the transaction are kept
//! consistent with it (`consistency`).
//!
//! A query string with several statements is sent in parts, one after
//! another: the statements before a deferral, the deferral, then the rest
//! (scanned again, so it may hold more deferrals). The client gets every
//! part's responses and one ReadyForQuery, from the last part that ran.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::sync::oneshot;

use crate::config::ClientWait;
use crate::ddl::lexer;
use crate::protocol::backend::{Report, Severity};
use crate::protocol::{frontend, reply, sqlstate};
use crate::runner::{Failure, Registered};
use crate::session::pipe::Verdict;
use crate::session::state::SessionState;

use super::consistency::Shadow;
use super::migrate::Pending;
use super::{encode, sql, Action, Gate, Group, Hold, Part, Quiet, Request, Stopped, Unit, Wait};
use crate::protocol::backend::{ready_for_query_status, TxStatus};
use crate::protocol::frame::put_frame;

/// A client Query sent in parts because it holds a deferral.
pub(super) struct Script {
    /// Bytes of the query string sent so far.
    pub offset: usize,
    /// Nothing more is sent: the held Query is dropped when scanned again.
    pub ended: bool,
}

/// Waiting for the runner to register a deferral.
pub(super) struct Registering {
    rx: oneshot::Receiver<Result<Registered, Failure>>,
    pending: Box<Pending>,
    last: bool,
    /// For an extended batch (its Parse held), else a simple Query.
    extended: bool,
}

/// A deferral registered for the held Parse, for its rescan: the messages
/// that confirm it and run its first steps (no Sync: the client's batch
/// follows) with the unit of the client's batch; or the refusal to give.
pub(super) type Registration = Result<(Vec<u8>, Box<Unit>), Vec<u8>>;

/// The unit that confirms a deferral and runs its first steps.
pub(super) struct Confirming {
    id: i64,
    pub(super) tag: &'static str,
    wait: ClientWait,
    shadows: Vec<Shadow>,
    unique_on: Option<String>,
    /// In an extended batch: how many of ddlgate's statements go before
    /// the client's stand-in (whose answer is the client's).
    pub(super) ours: Option<usize>,
    fill: Option<crate::ddl::plan::client::FillNulls>,
    stale_for: Option<(String, String)>,
}

/// Stands in for the client's deferred statement in its extended batch:
/// Describe gives NoData as for the statement, and its CommandComplete
/// (`DO`) is replaced by the statement's tag.
pub(super) const STAND_IN: &str = "DO $ddlgate$BEGIN END$ddlgate$";

/// A deferral confirmed in the open transaction.
pub(super) struct Deferred {
    pub(super) id: i64,
    pub(super) wait: ClientWait,
    pub(super) shadows: Vec<Shadow>,
    pub(super) unique_on: Option<String>,
    /// Its table (folded) and statement, for a later type change to check
    /// (a client's NULL fill: none, it carries over).
    pub(super) stale_for: Option<(String, String)>,
}

/// `ddlgate.confirm` returns the migration's id, or NULL for a token it
/// does not know: then the cast fails, with the marker in its message, and
/// the server aborts the transaction as a failing statement would.
fn confirm_sql(marker: &str) -> String {
    format!("SELECT COALESCE(ddlgate.confirm($1)::pg_catalog.text, '{marker}')::pg_catalog.int8")
}

impl Gate {
    /// A string PostgreSQL would run as one implicit transaction, with a
    /// statement ddlgate may defer: a BEGIN of ddlgate's goes first, the
    /// string is then sent in parts inside that block, and its end closes
    /// it (`close_own_block`), so it stays one transaction.
    pub(super) fn open_block(
        &mut self,
        base: usize,
        state: &mut SessionState,
        mut out: Vec<u8>,
    ) -> Verdict {
        frontend::query(b"BEGIN", &mut out);
        let mut unit = Box::new(Unit::new(Vec::new(), false, false, None, Vec::new()));
        unit.quiet = Quiet::Open;
        self.push(Group::Unit(unit), state);
        self.hold(Hold::Unit, state);
        self.own_block = true;
        self.script = Some(Script {
            offset: base,
            ended: false,
        });
        Verdict::Hold(out)
    }

    /// The ReadyForQuery ending the client's string inside a block ddlgate
    /// opened: kept back, and the block closed (COMMIT if the string
    /// succeeded, else ROLLBACK), whose ReadyForQuery the client gets.
    pub(super) fn close_own_block(
        &mut self,
        v: Verdict,
        z_body: &[u8],
        state: &mut SessionState,
    ) -> Verdict {
        if !self.groups.iter().all(Group::is_ours) {
            return v;
        }
        let mut z = Vec::new();
        put_frame(&mut z, b'Z', z_body);
        let before = match v {
            Verdict::Keep => Vec::new(),
            Verdict::Before(b) => b,
            Verdict::Replace(mut out) if out.ends_with(&z) => {
                out.truncate(out.len() - z.len());
                out
            }
            other => return other,
        };
        self.own_block = false;
        let commit = ready_for_query_status(z_body) == Some(TxStatus::InTransaction);
        self.hold(Hold::Wait(Wait::Close(commit)), state);
        Verdict::Replace(before)
    }

    /// Sends the COMMIT or ROLLBACK of a block ddlgate opened.
    pub(super) fn poll_close(&mut self, state: &mut SessionState) -> Option<Action> {
        let Request::Held(Hold::Wait(Wait::Close(commit))) = self.request else {
            return None;
        };
        let mut out = Vec::new();
        frontend::query(if commit { b"COMMIT" } else { b"ROLLBACK" }, &mut out);
        let mut unit = Box::new(Unit::new(Vec::new(), false, false, None, Vec::new()));
        unit.quiet = Quiet::Close;
        self.request = Request::Held(Hold::Unit);
        self.push(Group::Unit(unit), state);
        Some(Action::ToServer(out))
    }

    /// The string's first statement (at `base`) is deferred.
    pub(super) fn defer(
        &mut self,
        base: usize,
        j: &super::judge::Judged,
        pending: Box<Pending>,
        state: &mut SessionState,
        out: Vec<u8>,
    ) -> Verdict {
        self.analyzer.take_unconfirmed();
        self.script = Some(Script {
            offset: base,
            ended: false,
        });
        let after = j.stmts.get(1).map(|a| base + a.range.start);
        self.register(pending, after, false, state, out)
    }

    /// Statement `i` of `sql` (the string from `base` on) may be deferred:
    /// the statements before it go now, as a part, and the rest is scanned
    /// again (and looked up) once they ran.
    pub(super) fn split(
        &mut self,
        sql: &[u8],
        base: usize,
        j: super::judge::Judged,
        i: usize,
        state: &mut SessionState,
        mut out: Vec<u8>,
    ) -> Verdict {
        let mut frame = Vec::new();
        frontend::query(&sql[..j.stmts[i - 1].range.end], &mut frame);
        let notices = j
            .notices
            .into_iter()
            .flat_map(|r| encode(r, state))
            .collect();
        let mut unit = Box::new(Unit::new(j.events, false, j.guard, None, notices));
        unit.creates = self.analyzer.take_unconfirmed();
        unit.part = Part::Middle;
        self.send_unit(unit, frame, state, &mut out);
        self.hold(Hold::Unit, state);
        self.script = Some(Script {
            offset: base + j.stmts[i].range.start,
            ended: false,
        });
        Verdict::Hold(out)
    }

    /// Asks the runner to register the deferral; the client's messages
    /// wait (its Query or Parse held) until it has. `after`: where the
    /// Query's string goes on; `None` for its last statement or a Parse.
    pub(super) fn register(
        &mut self,
        pending: Box<Pending>,
        after: Option<usize>,
        extended: bool,
        state: &mut SessionState,
        out: Vec<u8>,
    ) -> Verdict {
        let Some(runner) = self.runner.clone() else {
            unreachable!("deferrals are decided only with a runner");
        };
        if let Some(s) = &mut self.script {
            match after {
                Some(o) => s.offset = o,
                None => s.ended = true,
            }
        }
        let done = if pending.after_commit {
            0
        } else {
            pending.submission.plan.split_in_transaction().0.len()
        };
        let rx = runner.preregister(pending.submission.clone(), done);
        let wait = Wait::Register(Box::new(Registering {
            rx,
            pending,
            last: after.is_none(),
            extended,
        }));
        self.hold(Hold::Wait(wait), state);
        Verdict::Hold(out)
    }

    /// Once registered: the batch that confirms the migration and runs its
    /// first steps in the client's transaction. If the runner refused it,
    /// a failing statement aborts that transaction, with the refusal as
    /// its error.
    pub(super) fn poll_register(
        &mut self,
        cx: &mut Context<'_>,
        state: &mut SessionState,
    ) -> Option<Action> {
        let Request::Held(Hold::Wait(Wait::Register(r))) = &mut self.request else {
            return None;
        };
        let result = match Pin::new(&mut r.rx).poll(cx) {
            Poll::Pending => return None,
            Poll::Ready(Ok(result)) => result,
            Poll::Ready(Err(_)) => Err(Failure::new(
                sqlstate::ADMIN_SHUTDOWN,
                "ddlgate's runner stopped before it registered the deferred migration",
            )),
        };
        let Request::Held(Hold::Wait(Wait::Register(r))) =
            std::mem::replace(&mut self.request, Request::Held(Hold::Unit))
        else {
            unreachable!("checked above")
        };
        if r.extended {
            // The held Parse, scanned again, takes it.
            self.registered = Some(match result {
                Ok(reg) => {
                    let (mut out, mut unit, ours) = self.confirm(&reg, &r.pending, state);
                    frontend::parse(b"", STAND_IN.as_bytes(), &mut out);
                    if let Some(c) = &mut unit.confirming {
                        c.ours = Some(ours);
                    }
                    Ok((out, unit))
                }
                Err(f) => Err(encode(super::migrate::report(f, None), state)),
            });
            self.release(state);
            return Some(Action::Rescan);
        }
        let event = r.pending.submission.event.clone();
        let reg = match result {
            Ok(reg) => reg,
            Err(f) => {
                let mut out = Vec::new();
                let marker = format!("ddlgate:refused:{event}");
                let report = super::migrate::report(f, None);
                self.stopped.push(Stopped {
                    marker: marker.clone(),
                    group: self.pushed,
                    report: encode(report, state),
                });
                frontend::query(sql::failing_statement(&marker).as_bytes(), &mut out);
                let mut unit = Box::new(Unit::new(Vec::new(), false, false, None, Vec::new()));
                unit.part = Part::Last;
                self.push(Group::Unit(unit), state);
                return Some(Action::ToServer(out));
            }
        };
        let (mut out, mut unit, _) = self.confirm(&reg, &r.pending, state);
        frontend::sync(&mut out);
        unit.part = if r.last { Part::Last } else { Part::Middle };
        self.push(Group::Unit(unit), state);
        Some(Action::ToServer(out))
    }

    /// The statements that confirm registration `reg` of `pending` and run
    /// its first steps in the client's transaction, under lock_timeout (no
    /// Sync), the unit whose responses they are, and how many statements.
    fn confirm(
        &mut self,
        reg: &Registered,
        pending: &Pending,
        state: &SessionState,
    ) -> (Vec<u8>, Box<Unit>, usize) {
        let mut out = Vec::new();
        let s = &pending.submission;
        let (now, later) = match s.plan.split_in_transaction() {
            _ if pending.after_commit => (&[][..], &s.plan.steps[..]),
            split => split,
        };
        let marker = format!("ddlgate:unconfirmed:{}", reg.id);
        self.stopped.push(Stopped {
            marker: marker.clone(),
            group: self.pushed,
            report: encode(
                Report::new(
                    Severity::Error,
                    sqlstate::DDL_BLOCKED,
                    format!(
                        "ddlgate could not confirm deferred migration {} in this transaction",
                        reg.id
                    ),
                )
                .with_detail(
                    "Its registration was gone (removed by an operator, or its token was spent)."
                        .to_owned(),
                )
                .with_hint(
                    "The transaction is aborted: ROLLBACK and run the migration again.".to_owned(),
                ),
                state,
            ),
        });
        let timeout = self.lock_timeout();
        let mut ours = 0;
        let mut one = |sql: &[u8], params: &[&[u8]]| {
            frontend::parse(b"", sql, &mut out);
            frontend::bind_params(b"", b"", params, &mut out);
            frontend::execute(b"", &mut out);
            ours += 1;
        };
        one(sql::guard_sql(timeout).as_bytes(), &[]);
        one(confirm_sql(&marker).as_bytes(), &[reg.token.as_bytes()]);
        for step in now {
            // ddlgate's own SQL.
            for range in lexer::split(step.sql.as_bytes(), lexer::Lexical::STANDARD) {
                one(&step.sql.as_bytes()[range], &[]);
            }
        }
        one(sql::restore_sql(timeout).as_bytes(), &[]);
        let hint = match s.wait {
            ClientWait::Sync => "COMMIT waits for it (ddlgate.mode = sync), with progress notices",
            ClientWait::Async => {
                "COMMIT returns at once; it runs in the background (ddlgate.mode = async)"
            }
        };
        let ran = match now.len() {
            _ if pending.fill.is_some() => {
                "no row changed in this transaction (UPDATE 0); the same rows get the same \
                 value in batches after COMMIT"
                    .to_owned()
            }
            0 => "it runs after COMMIT".to_owned(),
            n => format!(
                "{n} of its {} steps ran in this transaction, the rest run after COMMIT",
                n + later.len()
            ),
        };
        let notice = Report::new(
            Severity::Notice,
            "00000",
            format!("ddlgate: deferred as migration {}: {ran}", reg.id),
        )
        .with_hint(format!(
            "{hint}. ROLLBACK discards it. SHOW MIGRATION {} in the admin console (psql, database ddlgate) shows it.",
            reg.id
        ));
        let mut unit = Box::new(Unit::new(
            Vec::new(),
            true,
            false,
            None,
            encode(notice, state),
        ));
        unit.confirming = Some(Box::new(Confirming {
            id: reg.id,
            tag: s.plan.tag,
            wait: s.wait,
            shadows: pending
                .shadows
                .iter()
                .map(|sh| sh.of_migration(reg.id))
                .collect(),
            unique_on: pending.unique_on.clone(),
            ours: None,
            fill: pending.fill.clone(),
            stale_for: match (&pending.fill, &s.plan.table) {
                (None, Some(t)) => Some((crate::ddl::op::fold_name(t), s.statement.clone())),
                _ => None,
            },
        }));
        (out, unit, ours)
    }

    /// The confirming unit's ReadyForQuery: the migration is the
    /// transaction's if everything in it ran. What the client gets for it.
    pub(super) fn confirmed(&mut self, unit: &mut Unit, in_transaction: bool) {
        let Some(c) = unit.confirming.take() else {
            return;
        };
        if unit.failed || !in_transaction {
            unit.notices.clear();
            // Unconfirmed (or undone with the transaction): removed when
            // the transaction ends, like any registration it did not commit.
            self.deferred.push(Deferred {
                id: c.id,
                wait: ClientWait::Async,
                shadows: Vec::new(),
                unique_on: None,
                stale_for: None,
            });
            return;
        }
        if c.ours.is_none() {
            // The client's stand-in's tag was swapped as it came.
            // A client's backfill changed no row here: `UPDATE 0` is
            // what ran in this transaction (counting them would scan the
            // table under the lock SET DEFAULT took).
            let tag = match &c.fill {
                Some(_) => "UPDATE 0".to_owned(),
                None => c.tag.to_owned(),
            };
            let mut b = BytesMut::new();
            reply::command_complete(&tag, &mut b);
            unit.held.extend_from_slice(&b);
        }
        if let Some(f) = c.fill {
            self.fills.push(f);
        }
        self.deferred.push(Deferred {
            id: c.id,
            wait: c.wait,
            shadows: c.shadows,
            unique_on: c.unique_on,
            stale_for: c.stale_for,
        });
    }
}
