//! Logs and metrics.

pub mod audit;
pub mod logging;
pub mod metrics;
