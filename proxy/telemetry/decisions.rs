//! The recent gate decisions other than plain allows, kept in memory for
//! the admin console's SHOW BLOCKED: a bounded ring, newest last, written
//! when a decision is made (rarely: schema changes only).

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

/// How many decisions are kept.
const KEPT: usize = 200;

/// One decision as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub at: String,
    /// `ddl.blocked`, `ddl.migrated`, ...
    pub event: &'static str,
    pub id: String,
    pub decision: &'static str,
    pub rules: String,
    pub table: Option<String>,
    pub user: String,
    pub database: String,
    /// As logged (literals redacted per `ddl.redact_literals`).
    pub statement: String,
}

fn ring() -> &'static Mutex<VecDeque<Decision>> {
    static RING: OnceLock<Mutex<VecDeque<Decision>>> = OnceLock::new();
    RING.get_or_init(Mutex::default)
}

pub fn record(d: Decision) {
    let mut ring = ring().lock().unwrap_or_else(|p| p.into_inner());
    if ring.len() == KEPT {
        ring.pop_front();
    }
    ring.push_back(d);
}

/// The kept decisions, newest first.
pub fn recent() -> Vec<Decision> {
    let ring = ring().lock().unwrap_or_else(|p| p.into_inner());
    ring.iter().rev().cloned().collect()
}
