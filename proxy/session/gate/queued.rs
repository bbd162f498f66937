//! Whether a migration a client waits for is kept from starting by a lock
//! someone else holds on its table (any role may take the advisory lock
//! that serialises a table's migrations): the client waits for it at most
//! `[runner] queued_wait_timeout`, then is answered while the migration
//! stays queued. Shared by both waits (a statement's, a COMMIT's).

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::Sleep;

pub(super) enum Queued {
    /// Not blocked (or already running a step).
    Free,
    Blocked {
        why: String,
        until: Pin<Box<Sleep>>,
    },
}

impl Queued {
    /// The runner says the migration waits (`why`) before its first step:
    /// the bound starts now, or keeps running with the latest reason. A
    /// zero `timeout` means no bound.
    pub(super) fn blocked(&mut self, why: &str, timeout: Duration) {
        if timeout.is_zero() {
            return;
        }
        match self {
            Queued::Blocked { why: w, .. } => why.clone_into(w),
            Queued::Free => {
                *self = Queued::Blocked {
                    why: why.to_owned(),
                    until: Box::pin(tokio::time::sleep(timeout)),
                }
            }
        }
    }

    /// A step started: it is no longer waiting for the lock.
    pub(super) fn started(&mut self) {
        *self = Queued::Free;
    }

    /// The reason, once the bound has passed.
    pub(super) fn expired(&mut self, cx: &mut Context<'_>) -> Option<&str> {
        match self {
            Queued::Blocked { why, until } => until.as_mut().poll(cx).is_ready().then_some(why),
            Queued::Free => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[tokio::test(start_paused = true)]
    async fn the_bound_runs_from_the_first_wait_until_a_step_starts() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut q = Queued::Free;
        q.blocked("held by pid 7", Duration::from_secs(60));
        tokio::time::advance(Duration::from_secs(30)).await;
        q.blocked("held by pid 8", Duration::from_secs(60));
        assert_eq!(q.expired(&mut cx), None);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(q.expired(&mut cx), Some("held by pid 8"));
        q.started();
        assert_eq!(q.expired(&mut cx), None);
        let mut unbounded = Queued::Free;
        unbounded.blocked("held", Duration::ZERO);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(unbounded.expired(&mut cx), None);
    }
}
