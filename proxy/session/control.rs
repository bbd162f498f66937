//! Things that end a relaying session from outside its traffic: the idle
//! timeout, and the drain and forced phases of a shutdown. Polled only when
//! the relay has nothing else to do, so the busy path never pays for them.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::protocol::backend::TxStatus;

use super::state::SessionState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    IdleTimeout,
    Shutdown,
}

struct IdleTimer {
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    last_activity: Instant,
}

pub struct Control {
    idle: Option<IdleTimer>,
    /// Waits for the drain; `None` once the drain has begun.
    drain: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    force: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Control {
    pub fn new(
        idle_timeout: Option<Duration>,
        drain: CancellationToken,
        force: CancellationToken,
    ) -> Self {
        Control {
            idle: idle_timeout.map(|timeout| IdleTimer {
                timeout,
                sleep: Box::pin(tokio::time::sleep(timeout)),
                last_activity: Instant::now(),
            }),
            drain: Some(Box::pin(drain.cancelled_owned())),
            force: Box::pin(force.cancelled_owned()),
        }
    }

    /// Notes traffic, for the idle timeout.
    #[inline]
    pub fn activity(&mut self) {
        if let Some(t) = &mut self.idle {
            t.last_activity = Instant::now();
        }
    }

    /// `quiet`: the session is outside a transaction with nothing in flight,
    /// so it can be closed without losing work.
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        state: &SessionState,
        quiet: bool,
    ) -> Option<Signal> {
        if self.force.as_mut().poll(cx).is_ready() {
            return Some(Signal::Shutdown);
        }
        if let Some(drain) = &mut self.drain {
            if drain.as_mut().poll(cx).is_ready() {
                self.drain = None;
            }
        }
        if self.drain.is_none() && quiet {
            return Some(Signal::Shutdown);
        }
        if let Some(t) = &mut self.idle {
            while t.sleep.as_mut().poll(cx).is_ready() {
                let deadline = t.last_activity + t.timeout;
                if deadline <= Instant::now() && quiet && state.tx == TxStatus::Idle {
                    return Some(Signal::IdleTimeout);
                }
                let next = deadline.max(Instant::now() + Duration::from_millis(1));
                let next = if quiet {
                    next
                } else {
                    Instant::now() + t.timeout
                };
                t.sleep.as_mut().reset(next);
            }
        }
        None
    }
}
