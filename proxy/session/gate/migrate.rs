//! A schema change the runner applies on the client's behalf. The
//! client's statement is replaced by one that fails with a marker when
//! executed (`sql::raising_statement`); the unit's responses are held, and
//! when the marker's error arrives at its ReadyForQuery the statement is
//! submitted to the runner. While it runs, the client hears progress
//! notices and its later messages wait; then it gets exactly what
//! PostgreSQL would have sent (CommandComplete with the statement's tag),
//! or the failing step's error with the migration's id.
//!
//! A client that cancels or disconnects stops waiting; the migration goes
//! on, and only CANCEL in the console stops it.

use std::future::Future;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::config::ClientWait;
use crate::protocol::backend::{Report, Severity};
use crate::protocol::frame::put_frame;
use crate::protocol::{reply, sqlstate};
use crate::runner::{Failure, Progress, Submission};

use super::super::state::SessionState;
use super::{encode, Action, Gate, Hold, Request, Unit, Wait};

/// The migration a unit stands for, until it is submitted.
#[derive(Clone)]
pub(super) struct Pending {
    pub marker: String,
    pub submission: Submission,
    /// Where in the unit's held responses the statement's own answer
    /// goes, once the marker's error has been seen (it was executed).
    pub executed: Option<usize>,
    /// Deferred: the columns it shadows until its cut-over.
    pub shadows: Vec<super::consistency::Shadow>,
    /// Deferred: the table it makes a unique index on (a later foreign
    /// key of the transaction that needs it waits for it).
    pub unique_on: Option<String>,
    /// Deferred whole: none of its steps run in the client's transaction.
    pub after_commit: bool,
    /// The client's own backfill, deferred (`fill`).
    pub fill: Option<crate::ddl::plan::client::FillNulls>,
}

/// A session waiting for its migration.
pub(super) struct Waiting {
    rx: UnboundedReceiver<Progress>,
    /// The unit's responses, with the statement's answer to go at `at`.
    held: Vec<u8>,
    at: usize,
    notices: Vec<u8>,
    z_body: Vec<u8>,
    tag: &'static str,
    wait: ClientWait,
    id: Option<i64>,
    started: Instant,
    step: Option<(usize, usize, String)>,
    cancelled: super::CancelSignal,
    /// How long it may stay blocked before its first step (0: no bound).
    queued_wait_timeout: std::time::Duration,
    queued: super::queued::Queued,
}

impl Gate {
    /// The unit's ReadyForQuery has come and its statement was executed:
    /// submit the migration and hold the ReadyForQuery until it is done.
    pub(super) fn start_migration(
        &mut self,
        unit: &mut Unit,
        pending: Box<Pending>,
        z_body: &[u8],
        state: &mut SessionState,
    ) {
        let Some(runner) = self.runner.clone() else {
            unreachable!("migration units exist only with a runner");
        };
        let at = pending.executed.unwrap_or(unit.held.len());
        let tag = pending.submission.plan.tag;
        let wait = pending.submission.wait;
        let queued_wait_timeout = runner.settings().queued_wait_timeout;
        let rx = runner.submit(pending.submission);
        let cancelled = self.cancel_signal();
        let waiting = Wait::Migration(Box::new(Waiting {
            rx,
            held: std::mem::take(&mut unit.held),
            at,
            notices: std::mem::take(&mut unit.notices),
            z_body: z_body.to_vec(),
            tag,
            wait,
            id: None,
            started: Instant::now(),
            step: None,
            cancelled,
            queued_wait_timeout,
            queued: super::queued::Queued::Free,
        }));
        self.hold(Hold::Wait(waiting), state);
    }

    /// Progress of the migration the session waits for: notices while it
    /// runs, then the statement's answer and ReadyForQuery (which ends the
    /// wait and lets the client's later messages go).
    pub(super) fn poll_migration(
        &mut self,
        cx: &mut Context<'_>,
        state: &mut SessionState,
        client_at_boundary: bool,
    ) -> Option<Action> {
        if !client_at_boundary {
            return None;
        }
        let Request::Held(Hold::Wait(Wait::Migration(w))) = &mut self.request else {
            return None;
        };
        let mut notices = Vec::new();
        let mut answer: Option<Result<(), Report>> = None;
        if w.cancelled.as_mut().poll(cx).is_ready() {
            let id = w.id.map_or_else(
                || "its migration".to_owned(),
                |id| format!("migration {id}"),
            );
            answer = Some(Err(Report::new(
                Severity::Error,
                sqlstate::QUERY_CANCELED,
                "canceling statement due to user request",
            )
            .with_detail(format!(
                "ddlgate stopped waiting; {id} goes on in the background. CANCEL in the admin console (database ddlgate) stops it."
            ))));
        }
        while answer.is_none() {
            match w.rx.poll_recv(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    answer = Some(Err(Report::new(
                        Severity::Error,
                        sqlstate::ADMIN_SHUTDOWN,
                        format!(
                            "ddlgate stopped before {} finished; it resumes when ddlgate restarts",
                            w.id.map_or("the migration".into(), |id| format!("migration {id}"))
                        ),
                    )));
                }
                Poll::Ready(Some(p)) => {
                    if let Some(done) = w.progress(p, &mut notices) {
                        answer = Some(done);
                    }
                }
            }
        }
        if answer.is_none() {
            let name = w.name();
            let timeout = w.queued_wait_timeout.as_secs();
            if let Some(why) = w.queued.expired(cx) {
                {
                    answer = Some(Err(Report::new(
                        Severity::Error,
                        sqlstate::LOCK_NOT_AVAILABLE,
                        format!(
                            "ddlgate: {name} could not start within queued_wait_timeout ({timeout} s): {why}",
                        ),
                    )
                    .with_detail(
                        "It stays queued and runs when the lock is free; this client stopped waiting."
                            .to_owned(),
                    )
                    .with_hint(format!(
                        "SHOW MIGRATIONS in the admin console (database ddlgate) shows who holds the lock; CANCEL {} drops the migration.",
                        w.id.unwrap_or_default()
                    ))));
                }
            }
        }
        let mut out: Vec<u8> = notices.into_iter().flat_map(|r| encode(r, state)).collect();
        let Some(answer) = answer else {
            return (!out.is_empty()).then_some(Action::ToClient(out));
        };
        let Request::Held(Hold::Wait(Wait::Migration(w))) =
            std::mem::replace(&mut self.request, Request::Boundary)
        else {
            unreachable!()
        };
        out.extend_from_slice(&w.held[..w.at]);
        match answer {
            Ok(()) => {
                let mut b = BytesMut::new();
                reply::command_complete(w.tag, &mut b);
                out.extend_from_slice(&b);
            }
            Err(report) => out.extend(encode(report, state)),
        }
        out.extend_from_slice(&w.held[w.at..]);
        out.extend_from_slice(&w.notices);
        put_frame(&mut out, b'Z', &w.z_body);
        self.sync_outstanding(state);
        Some(Action::ToClient(out))
    }
}

impl Waiting {
    fn name(&self) -> String {
        self.id
            .map_or_else(|| "migration".to_owned(), |id| format!("migration {id}"))
    }

    fn notice(&self, text: String) -> Report {
        let secs = self.started.elapsed().as_secs_f64();
        Report::new(
            Severity::Notice,
            "00000",
            format!("ddlgate: {}: {text} ({secs:.1} s)", self.name()),
        )
    }

    /// A notice for `p`, or the end of the wait.
    fn progress(&mut self, p: Progress, notices: &mut Vec<Report>) -> Option<Result<(), Report>> {
        match p {
            Progress::Recorded(id) => {
                self.id = Some(id);
                if self.wait == ClientWait::Async {
                    notices.push(
                        Report::new(
                            Severity::Notice,
                            "00000",
                            format!("ddlgate: recorded as migration {id}; it runs in the background"),
                        )
                        .with_hint(format!(
                            "SHOW MIGRATION {id} in the admin console (psql, database ddlgate) shows its progress."
                        )),
                    );
                    return Some(Ok(()));
                }
                notices.push(self.notice("applying the change as a phased migration".into()));
                None
            }
            Progress::Refused(f) => Some(Err(report(f, None))),
            Progress::Waiting(why) => {
                if self.step.is_none() {
                    self.queued.blocked(&why, self.queued_wait_timeout);
                }
                notices.push(self.notice(why));
                None
            }
            Progress::Step { n, total, what } => {
                self.queued.started();
                notices.push(self.notice(format!("step {n} of {total}: {what}")));
                self.step = Some((n, total, what));
                None
            }
            Progress::Retrying {
                n,
                attempt,
                delay_ms,
            } => {
                notices.push(self.notice(format!(
                    "step {n} gave up waiting for its lock after lock_timeout; retry {attempt} in {delay_ms} ms"
                )));
                None
            }
            Progress::Paused => {
                let id = self.id.unwrap_or_default();
                notices.push(self.notice(format!(
                    "paused by an operator; this statement waits for RESUME {id} (or CANCEL {id}) in the admin console"
                )));
                None
            }
            Progress::Postponed => {
                let id = self.id.unwrap_or_default();
                notices.push(self.notice(format!(
                    "ready to cut over; the cut-over is postponed until COMPLETE {id} in the admin console (the new column is kept in sync until then)"
                )));
                Some(Ok(()))
            }
            Progress::Kept(left) => {
                let id = self.id.unwrap_or_default();
                notices.push(self.notice(format!(
                    "cut over; the old column is kept aside and in sync for {} s (contract_after): REVERT {id} in the admin console swaps back, COMPLETE {id} drops it now",
                    left.as_secs()
                )));
                Some(Ok(()))
            }
            Progress::Succeeded | Progress::Discarded => Some(Ok(())),
            Progress::Failed(f) => {
                let at = self.step.as_ref().map(|(n, total, what)| {
                    format!("{} failed at step {n} of {total} ({what}).", self.name())
                });
                Some(Err(report(f, at.or_else(|| Some(format!("{} failed.", self.name()))))
                    .with_hint(format!(
                        "SHOW MIGRATION {0} in the admin console (database ddlgate) shows its steps; RETRY {0} runs it again, CANCEL {0} undoes what it did.",
                        self.id.unwrap_or_default()
                    ))))
            }
            Progress::Cancelled => Some(Err(Report::new(
                Severity::Error,
                sqlstate::QUERY_CANCELED,
                format!("ddlgate: {} was cancelled by an operator", self.name()),
            ))),
        }
    }
}

pub(super) fn report(f: Failure, detail: Option<String>) -> Report {
    let mut r = Report::new(Severity::Error, f.sqlstate, f.message);
    let detail = match (f.detail, detail) {
        (Some(a), Some(b)) => Some(format!("{a}\n{b}")),
        (a, b) => a.or(b),
    };
    if let Some(d) = detail {
        r = r.with_detail(d);
    }
    if let Some(h) = f.hint {
        r = r.with_hint(h);
    }
    r
}
