//! Schema changes inside the client's transaction block, deferred past its
//! COMMIT (`ddl.in_transaction = "defer"`).
//!
//! A statement the policy rewrites, sent by the simple protocol inside an
//! explicit transaction block, is not sent as written. The runner first
//! registers its migration (pending, with a one-time token), then one
//! extended batch runs in the client's transaction, under `lock_timeout`:
//! `ddlgate.confirm(token)` and the plan's leading catalog-only steps (the
//! nullable column, NOT VALID constraints, a shadow column and its
//! trigger). The client gets the statement's own CommandComplete and a
//! NOTICE naming the migration; if a step fails it gets the server's error
//! in a transaction the server aborted, as for the statement itself.
//!
//! The migration then exists exactly when the client's transaction
//! commits. On the COMMIT's ReadyForQuery the runner starts it, and in
//! sync mode that ReadyForQuery waits for it (progress NOTICEs; a WARNING,
//! never an error, if it fails). A transaction that ends otherwise leaves
//! a registration the runner removes.
//!
//! A query string with several statements is sent in parts, one after
//! another: the statements before a deferral, the deferral, then the rest
//! (scanned again, so it may hold more deferrals). The client gets every
//! part's responses and one ReadyForQuery, from the last part that ran.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

use crate::config::ClientWait;
use crate::ddl::lexer;
use crate::protocol::backend::{Report, Severity};
use crate::protocol::frame::put_frame;
use crate::protocol::{frontend, reply, sqlstate};
use crate::runner::{Failure, Progress, Registered};
use crate::session::pipe::Verdict;
use crate::session::state::SessionState;

use super::migrate::Pending;
use super::{encode, sql, Action, Gate, Group, Hold, Part, Request, Stopped, Unit, Wait};

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
}

/// The unit that confirms a deferral and runs its first steps.
pub(super) struct Confirming {
    id: i64,
    tag: &'static str,
    wait: ClientWait,
    shadows: Vec<Shadow>,
    unique_on: Option<String>,
}

/// A deferral confirmed in the open transaction.
pub(super) struct Deferred {
    id: i64,
    wait: ClientWait,
    shadows: Vec<Shadow>,
    unique_on: Option<String>,
}

/// The table (folded) statement `a` makes a unique index on.
pub(super) fn unique_on(a: &crate::ddl::Analyzed) -> Option<String> {
    use crate::ddl::op::{fold_name, ConstraintKind, Op};
    a.ops.iter().find_map(|op| match op {
        Op::AddConstraint {
            table,
            kind: ConstraintKind::Unique { .. } | ConstraintKind::PrimaryKey { .. },
            ..
        }
        | Op::CreateIndex {
            table,
            unique: true,
            ..
        } => Some(fold_name(table)),
        _ => None,
    })
}

/// A column a deferred type change replaces by a shadow column of the new
/// type, until its cut-over after COMMIT. Later statements of the same
/// transaction that name it must reach the final column: a deferred one's
/// in-transaction steps are aimed at the shadow (its later steps run after
/// the cut-over, on the final column, because one table's migrations run
/// in order); any other is refused, saying why.
#[derive(Clone, Debug)]
pub(super) struct Shadow {
    /// The table, folded.
    table: String,
    /// The column as stored.
    column: String,
    /// The shadow column, as SQL.
    shadow: String,
    /// The deferred migration.
    id: i64,
}

/// The columns `plan` (a type change by expand and contract) shadows.
pub(super) fn shadows_of(a: &crate::ddl::Analyzed, plan: &crate::ddl::plan::Plan) -> Vec<Shadow> {
    use crate::ddl::op::{fold_name, unquote, Op};
    use crate::ddl::plan::StepKind;
    if !plan.steps.iter().any(|s| s.kind == StepKind::Cutover) {
        return Vec::new();
    }
    let Some(shadow) = plan.steps.first().and_then(|s| s.object.clone()) else {
        return Vec::new();
    };
    a.ops
        .iter()
        .filter_map(|op| match op {
            Op::AlterType { table, column, .. } => Some(Shadow {
                table: fold_name(table),
                column: unquote(column),
                shadow: shadow.clone(),
                id: 0,
            }),
            _ => None,
        })
        .collect()
}

impl Shadow {
    /// Aims the in-transaction steps of a later deferral at the shadow.
    pub(super) fn retarget(&self, plan: &mut crate::ddl::plan::Plan) {
        let now = plan.split_in_transaction().0.len();
        let column = crate::ddl::op::quote_ident(&self.column);
        for step in &mut plan.steps[..now] {
            step.sql = crate::ddl::plan::retarget(&step.sql, &column, &self.shadow);
        }
    }

    /// The error for a later statement that cannot be aimed at the shadow.
    pub(super) fn conflict(&self) -> Report {
        Report::new(
            Severity::Error,
            sqlstate::DDL_BLOCKED,
            format!(
                "ddlgate: column \"{}\" is being changed by deferred migration {} in this transaction; this statement cannot reach its final form before COMMIT",
                self.column, self.id
            ),
        )
        .with_detail(
            "The type change runs after COMMIT: until its cut-over the column keeps its old type, \
             and the new one is a shadow column. A statement that is itself deferred is aimed at \
             the shadow; this one would act on the old column."
                .to_owned(),
        )
        .with_hint(
            "Run this statement in a later transaction (a separate migration), after the type change has finished; \
             or set ddl.in_transaction = \"allow\" for the migration's role to run both as written."
                .to_owned(),
        )
    }
}

/// The ReadyForQuery of the client's COMMIT, held while the migrations it
/// committed run.
pub(super) struct CommitWait {
    follows: Vec<Follow>,
    z_body: Vec<u8>,
    started: Instant,
    cancelled: super::CancelSignal,
}

struct Follow {
    id: i64,
    rx: UnboundedReceiver<Progress>,
    step: Option<(usize, usize, String)>,
    done: bool,
}

/// `ddlgate.confirm` returns the migration's id, or NULL for a token it
/// does not know: then the cast fails, with the marker in its message, and
/// the server aborts the transaction as a failing statement would.
fn confirm_sql(marker: &str) -> String {
    format!("SELECT COALESCE(ddlgate.confirm($1)::pg_catalog.text, '{marker}')::pg_catalog.int8")
}

impl Gate {
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
        self.register(pending, after, state, out)
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
    /// wait (its Query held) until it has.
    fn register(
        &mut self,
        pending: Box<Pending>,
        after: Option<usize>,
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
        let event = r.pending.submission.event.clone();
        let mut out = Vec::new();
        let reg = match result {
            Ok(reg) => reg,
            Err(f) => {
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
        let s = &r.pending.submission;
        let (now, later) = match s.plan.split_in_transaction() {
            _ if r.pending.after_commit => (&[][..], &s.plan.steps[..]),
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
                ),
                state,
            ),
        });
        let timeout = self.lock_timeout();
        let mut one = |sql: &[u8], params: &[&[u8]]| {
            frontend::parse(b"", sql, &mut out);
            frontend::bind_params(b"", b"", params, &mut out);
            frontend::execute(b"", &mut out);
        };
        one(sql::guard_sql(timeout).as_bytes(), &[]);
        one(confirm_sql(&marker).as_bytes(), &[reg.token.as_bytes()]);
        for step in now {
            for range in lexer::split(step.sql.as_bytes()) {
                one(&step.sql.as_bytes()[range], &[]);
            }
        }
        one(sql::restore_sql(timeout).as_bytes(), &[]);
        frontend::sync(&mut out);
        let hint = match s.wait {
            ClientWait::Sync => "COMMIT waits for it (ddlgate.mode = sync), with progress notices",
            ClientWait::Async => {
                "COMMIT returns at once; it runs in the background (ddlgate.mode = async)"
            }
        };
        let ran = match now.len() {
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
        unit.part = if r.last { Part::Last } else { Part::Middle };
        unit.confirming = Some(Box::new(Confirming {
            id: reg.id,
            tag: s.plan.tag,
            wait: s.wait,
            shadows: r
                .pending
                .shadows
                .iter()
                .map(|sh| Shadow {
                    id: reg.id,
                    ..sh.clone()
                })
                .collect(),
            unique_on: r.pending.unique_on.clone(),
        }));
        self.push(Group::Unit(unit), state);
        Some(Action::ToServer(out))
    }

    /// The confirming unit's ReadyForQuery: the migration is the
    /// transaction's if everything in it ran. What the client gets for it.
    pub(super) fn confirmed(&mut self, unit: &mut Unit, in_transaction: bool) {
        let Some(c) = unit.confirming.take() else {
            return;
        };
        if unit.failed || !in_transaction {
            unit.notices.clear();
            return;
        }
        let mut b = BytesMut::new();
        reply::command_complete(c.tag, &mut b);
        unit.held.extend_from_slice(&b);
        self.deferred.push(Deferred {
            id: c.id,
            wait: c.wait,
            shadows: c.shadows,
            unique_on: c.unique_on,
        });
    }

    /// A foreign key deferred in a transaction that deferred the unique
    /// index it references: it cannot be added (even NOT VALID) before
    /// that index exists, so all of it runs after COMMIT, queued behind the
    /// index on the referenced table's queue (one table's migrations run
    /// in order).
    pub(super) fn after_deferred_unique(&self, a: &crate::ddl::Analyzed, p: &mut Pending) {
        use crate::ddl::op::{fold_name, ConstraintKind, Op};
        let referenced = a.ops.iter().find_map(|op| match op {
            Op::AddConstraint {
                kind: ConstraintKind::ForeignKey { references },
                ..
            } => Some(references.clone()),
            _ => None,
        });
        let Some(referenced) = referenced else {
            return;
        };
        let folded = fold_name(&referenced);
        if self
            .deferred
            .iter()
            .any(|d| d.unique_on.as_deref() == Some(folded.as_str()))
        {
            p.after_commit = true;
            p.submission.plan.table = Some(referenced);
        }
    }

    /// The shadow of a column statement `a` names, if an earlier deferral
    /// of this transaction made one on its table.
    pub(super) fn shadowing(&self, a: &crate::ddl::Analyzed, text: &[u8]) -> Option<Shadow> {
        let table = crate::ddl::op::fold_name(a.table()?);
        let text = std::str::from_utf8(text).ok()?;
        self.deferred
            .iter()
            .flat_map(|d| &d.shadows)
            .find(|sh| {
                sh.table == table
                    && crate::ddl::plan::mentions(text, &crate::ddl::op::quote_ident(&sh.column))
            })
            .cloned()
    }

    /// The client's transaction ended (ReadyForQuery, idle) with
    /// deferrals in it: committed, they start, and in sync mode `v`'s
    /// ReadyForQuery waits for them; otherwise they are forgotten.
    pub(super) fn transaction_ended(
        &mut self,
        committed: bool,
        v: Verdict,
        z_body: &[u8],
        state: &mut SessionState,
    ) -> Verdict {
        let deferred = std::mem::take(&mut self.deferred);
        let Some(runner) = self.runner.clone() else {
            return v;
        };
        let database = self.who.database.clone();
        if !committed {
            runner.forget(&database, deferred.iter().map(|d| d.id).collect());
            return v;
        }
        let mut follows = Vec::new();
        for d in &deferred {
            let rx = runner.follow(&database, d.id);
            if d.wait == ClientWait::Sync {
                follows.push(Follow {
                    id: d.id,
                    rx,
                    step: None,
                    done: false,
                });
            }
        }
        // Only a COMMIT with nothing behind it is held: responses the
        // client pipelined after it must not overtake its ReadyForQuery.
        if follows.is_empty() || !self.groups.is_empty() || !self.at_boundary() {
            return v;
        }
        let before = match v {
            Verdict::Keep => Vec::new(),
            Verdict::Before(b) => b,
            Verdict::Replace(mut out) => {
                // It ends with this ReadyForQuery.
                out.truncate(out.len().saturating_sub(5 + z_body.len()));
                out
            }
            other => return other,
        };
        let cancelled = self.cancel_signal();
        let wait = CommitWait {
            follows,
            z_body: z_body.to_vec(),
            started: Instant::now(),
            cancelled,
        };
        self.hold(Hold::Wait(Wait::Commit(Box::new(wait))), state);
        Verdict::Replace(before)
    }

    /// The held COMMIT: progress notices of its migrations, then (all done,
    /// or the client cancelled its wait) its ReadyForQuery.
    pub(super) fn poll_commit(
        &mut self,
        cx: &mut Context<'_>,
        state: &mut SessionState,
        client_at_boundary: bool,
    ) -> Option<Action> {
        if !client_at_boundary {
            return None;
        }
        let Request::Held(Hold::Wait(Wait::Commit(w))) = &mut self.request else {
            return None;
        };
        let mut reports = Vec::new();
        let cancelled = w.cancelled.as_mut().poll(cx).is_ready();
        let secs = w.started.elapsed().as_secs_f64();
        for f in w.follows.iter_mut().filter(|f| !f.done) {
            while !f.done {
                match f.rx.poll_recv(cx) {
                    Poll::Pending => break,
                    Poll::Ready(p) => f.progress(p, secs, &mut reports),
                }
            }
        }
        if cancelled {
            for f in w.follows.iter().filter(|f| !f.done) {
                reports.push(Report::new(
                    Severity::Notice,
                    "00000",
                    format!("ddlgate: stopped waiting for migration {}; it goes on in the background", f.id),
                ).with_hint(format!("SHOW MIGRATION {} in the admin console (database ddlgate) shows its progress.", f.id)));
            }
        }
        let mut out: Vec<u8> = reports.into_iter().flat_map(|r| encode(r, state)).collect();
        if !cancelled && w.follows.iter().any(|f| !f.done) {
            return (!out.is_empty()).then_some(Action::ToClient(out));
        }
        put_frame(&mut out, b'Z', &w.z_body);
        self.request = Request::Boundary;
        self.sync_outstanding(state);
        Some(Action::ToClient(out))
    }
}

impl Drop for Gate {
    /// The session ended inside a transaction with deferrals: the server
    /// rolls it back, so they go.
    fn drop(&mut self) {
        if let (Some(runner), false) = (&self.runner, self.deferred.is_empty()) {
            let ids = self.deferred.iter().map(|d| d.id).collect();
            runner.forget(&self.who.database, ids);
        }
    }
}

impl Follow {
    fn notice(&self, text: String, secs: f64) -> Report {
        Report::new(
            Severity::Notice,
            "00000",
            format!("ddlgate: migration {}: {text} ({secs:.1} s)", self.id),
        )
    }

    /// A COMMIT that committed never fails: a migration that did is a
    /// WARNING naming it and how to inspect it.
    fn warning(&self, message: String, detail: Option<String>) -> Report {
        let at = self
            .step
            .as_ref()
            .map_or_else(String::new, |(n, total, what)| {
                format!(" It stopped at step {n} of {total} ({what}).")
            });
        Report::new(Severity::Warning, sqlstate::WARNING, message)
            .with_detail(format!(
                "Your transaction committed; the schema is in the valid state the migration's last finished step left.{at}{}",
                detail.map_or_else(String::new, |d| format!("\n{d}"))
            ))
            .with_hint(format!(
                "SHOW MIGRATION {0} in the admin console (psql, database ddlgate) shows its steps and error; RETRY {0} runs it again, CANCEL {0} undoes it.",
                self.id
            ))
    }

    fn progress(&mut self, p: Option<Progress>, secs: f64, out: &mut Vec<Report>) {
        let Some(p) = p else {
            self.done = true;
            out.push(self.warning(
                format!(
                    "ddlgate stopped before deferred migration {} finished; it resumes when ddlgate restarts",
                    self.id
                ),
                None,
            ));
            return;
        };
        match p {
            Progress::Recorded(_) => {}
            Progress::Waiting(why) => out.push(self.notice(why, secs)),
            Progress::Step { n, total, what } => {
                out.push(self.notice(format!("step {n} of {total}: {what}"), secs));
                self.step = Some((n, total, what));
            }
            Progress::Retrying {
                n,
                attempt,
                delay_ms,
            } => out.push(self.notice(
                format!("step {n} gave up waiting for its lock after lock_timeout; retry {attempt} in {delay_ms} ms"),
                secs,
            )),
            Progress::Paused => out.push(self.notice(
                format!("paused by an operator; COMMIT waits for RESUME {0} (or CANCEL {0}) in the admin console", self.id),
                secs,
            )),
            Progress::Postponed => {
                self.done = true;
                out.push(self.notice(
                    format!("ready to cut over; the cut-over waits for COMPLETE {} in the admin console", self.id),
                    secs,
                ));
            }
            Progress::Kept(left) => {
                self.done = true;
                out.push(self.notice(
                    format!(
                        "cut over; the old column is kept aside and in sync for {} s (contract_after): REVERT {1} swaps back, COMPLETE {1} drops it now",
                        left.as_secs(),
                        self.id
                    ),
                    secs,
                ));
            }
            Progress::Succeeded => {
                self.done = true;
                out.push(self.notice("done".into(), secs));
            }
            Progress::Discarded => self.done = true,
            Progress::Refused(f) | Progress::Failed(f) => {
                self.done = true;
                out.push(self.warning(
                    format!(
                        "ddlgate: deferred migration {} failed after COMMIT: {}",
                        self.id, f.message
                    ),
                    Some(format!("SQLSTATE {}", f.sqlstate)),
                ));
            }
            Progress::Cancelled => {
                self.done = true;
                out.push(self.warning(
                    format!(
                        "ddlgate: deferred migration {} was cancelled by an operator",
                        self.id
                    ),
                    None,
                ));
            }
        }
    }
}
