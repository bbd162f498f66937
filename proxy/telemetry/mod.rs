//! Logs and metrics.

pub mod audit;
pub mod decisions;
pub mod latency;
pub mod logging;
pub mod metrics;
