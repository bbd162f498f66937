//! The client's COMMIT with deferrals in its transaction: the migrations
//! start, and in sync mode the COMMIT's ReadyForQuery waits for them with
//! progress notices (a failure is a WARNING: the COMMIT did commit). A
//! transaction that ended otherwise, or a session that ended inside one,
//! leaves registrations the runner removes.

use std::future::Future;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::config::ClientWait;
use crate::protocol::backend::{Report, Severity};
use crate::protocol::frame::put_frame;
use crate::protocol::sqlstate;
use crate::runner::Progress;
use crate::session::pipe::Verdict;
use crate::session::state::SessionState;

use super::{encode, Action, Gate, Hold, Request, Wait};

/// The ReadyForQuery of the client's COMMIT, held while the migrations it
/// committed run.
pub(super) struct CommitWait {
    follows: Vec<Follow>,
    /// The ReadyForQuery to send at the end (none for a part of a string).
    z_body: Option<Vec<u8>>,
    started: Instant,
    cancelled: super::CancelSignal,
}

struct Follow {
    id: i64,
    rx: UnboundedReceiver<Progress>,
    step: Option<(usize, usize, String)>,
    done: bool,
    queued: super::queued::Queued,
    queued_wait_timeout: std::time::Duration,
}

impl Gate {
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
                    queued: super::queued::Queued::Free,
                    queued_wait_timeout: runner.settings().queued_wait_timeout,
                });
            }
        }
        // Only a COMMIT with nothing behind it is held: responses the
        // client pipelined after it must not overtake its ReadyForQuery.
        if follows.is_empty() || !self.groups.is_empty() || !self.at_boundary() {
            return v;
        }
        // The ReadyForQuery goes to the client after the wait, unless it
        // ended a part of the client's string (then the next part waits).
        let mut z = Vec::new();
        put_frame(&mut z, b'Z', z_body);
        let (before, emit_z) = match v {
            Verdict::Keep => (Vec::new(), true),
            Verdict::Before(b) => (b, true),
            Verdict::Replace(mut out) if out.ends_with(&z) => {
                out.truncate(out.len() - z.len());
                (out, true)
            }
            Verdict::Replace(out) => (out, false),
            other => return other,
        };
        let cancelled = self.cancel_signal();
        let wait = CommitWait {
            follows,
            z_body: emit_z.then(|| z_body.to_vec()),
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
            if !f.done {
                f.unblocked(cx, &mut reports);
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
        if let Some(z) = &w.z_body {
            put_frame(&mut out, b'Z', z);
        }
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
    /// Kept from starting for longer than `queued_wait_timeout` by a lock
    /// someone else holds: the COMMIT stops waiting for it (a WARNING: it
    /// committed, and the migration stays queued).
    fn unblocked(&mut self, cx: &mut Context<'_>, out: &mut Vec<Report>) {
        let timeout = self.queued_wait_timeout.as_secs();
        let Some(why) = self.queued.expired(cx).map(str::to_owned) else {
            return;
        };
        self.done = true;
        out.push(self.warning(
            format!(
                "ddlgate: deferred migration {} could not start within queued_wait_timeout ({timeout} s): {why}",
                self.id
            ),
            Some("It stays queued and runs when the lock is free; COMMIT stopped waiting.".into()),
        ));
    }

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
            Progress::Waiting(why) => {
                if self.step.is_none() {
                    self.queued.blocked(&why, self.queued_wait_timeout);
                }
                out.push(self.notice(why, secs));
            }
            Progress::Step { n, total, what } => {
                self.queued.started();
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
