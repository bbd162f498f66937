//! Pacing of retries after a lock timeout, shared by the gate (a client's
//! schema change sent again) and the runner (a step tried again).

use std::time::Duration;

/// Exponential backoff with jitter: between half and all of
/// `base * 2^(attempt-1)`, capped at `max`.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max);
    let half = exp / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_within_bounds() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 1..20 {
            let d = backoff(base, max, attempt);
            let cap = base.saturating_mul(1 << (attempt - 1).min(16)).min(max);
            assert!(d >= cap / 2 && d <= cap, "{attempt}: {d:?}");
        }
    }
}
