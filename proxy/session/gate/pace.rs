//! Backfill traffic (`crate::pacing`) in the session: a marked session's
//! request, at a boundary with nothing in flight, is held unscanned until
//! its pacer admits it; the admission (its slot) is kept until every answer
//! is in. Its requests are not the application's: no latency is recorded.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Action, Gate, Hold, Request, Wait};
use crate::pacing::Admission;
use crate::session::pipe::Verdict;
use crate::session::state::SessionState;

/// Waiting for the pacer: the admission to come.
pub(super) struct PaceWait {
    pub admit: Pin<Box<dyn Future<Output = Admission> + Send>>,
}

impl Gate {
    /// Before client message `tag`: whether it must wait for the pacer.
    pub(super) fn pace_first(&mut self, tag: u8, state: &mut SessionState) -> Option<Verdict> {
        let pacer = self.pace.as_ref()?;
        // Terminate is not a request; within one, the admission holds.
        if tag == b'X' || self.admitted.is_some() || !self.groups.is_empty() || !self.at_boundary()
        {
            return None;
        }
        let admit = Box::pin(pacer.clone().admit());
        metrics::gauge!("ddlgate_backfill_traffic_waiting").increment(1.0);
        self.hold(Hold::Wait(Wait::Pace(PaceWait { admit })), state);
        Some(Verdict::Hold(Vec::new()))
    }

    pub(super) fn poll_pace(
        &mut self,
        cx: &mut Context<'_>,
        state: &mut SessionState,
    ) -> Option<Action> {
        let Request::Held(Hold::Wait(Wait::Pace(w))) = &mut self.request else {
            return None;
        };
        let Poll::Ready(admission) = w.admit.as_mut().poll(cx) else {
            return None;
        };
        metrics::gauge!("ddlgate_backfill_traffic_waiting").decrement(1.0);
        metrics::histogram!("ddlgate_backfill_traffic_delay_seconds")
            .record(admission.waited.as_secs_f64());
        self.paced.requests += 1;
        self.paced.waited += admission.waited;
        if admission.waited >= std::time::Duration::from_secs(1) {
            tracing::info!(
                event = "backfill_traffic.delayed",
                waited_ms = admission.waited.as_millis() as u64,
                "backfill traffic request delayed for the application"
            );
        }
        self.admitted = Some(admission);
        self.request = Request::Boundary;
        self.sync_outstanding(state);
        Some(Action::Rescan)
    }

    /// Every answer is in: the slot goes back.
    pub(super) fn release_pace(&mut self) {
        if self.groups.is_empty() && self.at_boundary() {
            self.admitted = None;
        }
    }
}

impl Gate {
    /// A paced session's requests and their total wait.
    pub fn backfill_traffic(&self) -> Option<(u64, std::time::Duration)> {
        self.pace
            .as_ref()
            .map(|_| (self.paced.requests, self.paced.waited))
    }
}

/// A paced session's totals, logged when it ends.
#[derive(Debug, Default)]
pub(super) struct Paced {
    pub requests: u64,
    pub waited: std::time::Duration,
}
