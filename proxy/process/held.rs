//! What large messages held whole (a Query or Parse ddlgate reads before
//! it passes on) may take, across all sessions: a byte budget that a
//! session reserves from before buffering one, and gives back once the
//! gate has seen it. Small messages (the usual case) take nothing from it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Messages up to this size are not counted: every session may hold one.
pub const UNCOUNTED: usize = 1 << 20;

/// Bytes of large held messages, for all sessions.
#[derive(Debug)]
pub struct HeldBudget {
    used: AtomicUsize,
}

impl HeldBudget {
    pub fn new() -> Arc<Self> {
        Arc::new(HeldBudget {
            used: AtomicUsize::new(0),
        })
    }

    /// Reserves `n` bytes if that keeps the total within `max`.
    pub fn try_reserve(self: &Arc<Self>, n: usize, max: usize) -> Option<HeldGuard> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= max)
            })
            .ok()?;
        Some(HeldGuard {
            budget: self.clone(),
            n,
        })
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// A reservation, given back when dropped.
#[derive(Debug)]
pub struct HeldGuard {
    budget: Arc<HeldBudget>,
    n: usize,
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_budget_and_are_given_back() {
        let b = HeldBudget::new();
        let a = b.try_reserve(60, 100).unwrap();
        assert!(b.try_reserve(50, 100).is_none());
        let c = b.try_reserve(40, 100).unwrap();
        assert_eq!(b.used(), 100);
        drop(a);
        drop(c);
        assert_eq!(b.used(), 0);
    }
}
