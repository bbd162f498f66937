//! DDL decision events: one structured log event each (`ddl.blocked`,
//! `ddl.warned`, `ddl.allowed`, `ddl.retried`, `ddl.migrated`, `ddl.deferred`), the same
//! record appended to the audit file, the console's ring of recent
//! decisions, and counters per rule and decision.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use metrics::counter;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::ddl::lexer::{redact, redact_in, Reading};
use crate::ddl::{Decision, Finding, Lock};
use crate::telemetry::audit::Audit;
use crate::telemetry::decisions;

/// Who a session is, for policy and for the record.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub client_addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    #[serde(rename = "ddl.blocked")]
    Blocked,
    #[serde(rename = "ddl.warned")]
    Warned,
    #[serde(rename = "ddl.allowed")]
    Allowed,
    #[serde(rename = "ddl.retried")]
    Retried,
    /// A rewrite handed to the runner as a migration.
    #[serde(rename = "ddl.migrated")]
    Migrated,
    /// A rewrite inside a transaction block: its first steps run there,
    /// the rest after the client's COMMIT.
    #[serde(rename = "ddl.deferred")]
    Deferred,
}

impl Kind {
    pub fn of(decision: Decision) -> Kind {
        match decision {
            Decision::Allow => Kind::Allowed,
            Decision::Warn => Kind::Warned,
            Decision::Block | Decision::Rewrite => Kind::Blocked,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Blocked => "ddl.blocked",
            Kind::Warned => "ddl.warned",
            Kind::Allowed => "ddl.allowed",
            Kind::Retried => "ddl.retried",
            Kind::Migrated => "ddl.migrated",
            Kind::Deferred => "ddl.deferred",
        }
    }
}

/// One DDL decision, as logged and audited.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub event: Kind,
    pub id: String,
    pub at: String,
    pub decision: Decision,
    pub statement: String,
    pub fingerprint: String,
    pub rules: Vec<&'static str>,
    pub lock: Option<Lock>,
    pub table: Option<String>,
    #[serde(flatten)]
    pub who: SessionInfo,
    pub server_version: String,
    /// Rules named in an override comment from a role not trusted with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_overrides: Vec<String>,
    /// Rules lifted by a trusted override comment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Observe mode: the decision was recorded, not carried out.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub observed: bool,
    /// The catalog lookup failed (SQLSTATE: message): decided without its
    /// facts, as if nothing were known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup_error: Option<String>,
}

/// A process-unique event id: process start (ms, hex) and a counter, so ids
/// stay unique across restarts too.
pub fn next_id() -> String {
    static START: OnceLock<u128> = OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let start = START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    });
    format!("{start:x}-{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// [`statement_text`] of a session's statement, its literals read as the
/// server reads them. When that reading is not sure and another could take
/// part of a literal for code, only the statement's length is kept.
pub fn statement_text_read(sql: &[u8], redact_literals: bool, reading: Reading) -> String {
    if !redact_literals {
        return statement_text(sql, false);
    }
    if reading.sure || crate::ddl::lexer::reads_alike(sql) {
        return redact_in(sql, reading.lex);
    }
    format!("<{} bytes, not read>", sql.len())
}

/// Statement text for the record, literals redacted when configured.
pub fn statement_text(sql: &[u8], redact_literals: bool) -> String {
    let text = if redact_literals {
        redact(sql)
    } else {
        String::from_utf8_lossy(sql).into_owned()
    };
    text.trim().to_owned()
}

/// Same for the same statement shape: literals removed, whitespace and case
/// folded.
pub fn fingerprint(sql: &[u8]) -> String {
    let shape = redact(sql)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let digest = Sha256::digest(shape.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The strongest lock and its table among `findings`.
pub fn strongest(findings: &[Finding]) -> (Option<Lock>, Option<String>) {
    findings
        .iter()
        .filter(|f| f.lock.is_some())
        .max_by_key(|f| f.lock)
        .map_or((None, findings.iter().find_map(|f| f.table.clone())), |f| {
            (f.lock, f.table.clone())
        })
}

/// Logs, audits and counts one event.
pub fn emit(e: &Event, audit: Option<&Audit>) {
    if e.event != Kind::Allowed {
        decisions::record(decisions::Decision {
            at: e.at.clone(),
            event: e.event.as_str(),
            id: e.id.clone(),
            decision: e.decision.as_str(),
            rules: e.rules.join(","),
            table: e.table.clone(),
            user: e.who.user.clone(),
            database: e.who.database.clone(),
            statement: e.statement.clone(),
        });
    }
    let rules = e.rules.join(",");
    let lock = e.lock.map(Lock::sql_name);
    macro_rules! log {
        ($level:ident) => {
            $level!(
                event = e.event.as_str(),
                id = %e.id,
                decision = e.decision.as_str(),
                rules = %rules,
                lock,
                table = e.table.as_deref(),
                fingerprint = %e.fingerprint,
                statement = %e.statement,
                user = %e.who.user,
                database = %e.who.database,
                application_name = %e.who.application_name,
                client_addr = %e.who.client_addr,
                server_version = %e.server_version,
                attempt = e.attempt,
                observed = e.observed,
                lookup_error = e.lookup_error.as_deref(),
                ignored_overrides = ?e.ignored_overrides,
                "{}",
                e.event.as_str()
            )
        };
    }
    match e.event {
        Kind::Allowed | Kind::Migrated | Kind::Deferred => log!(info),
        Kind::Warned | Kind::Blocked | Kind::Retried => log!(warn),
    }
    if let Some(a) = audit {
        a.record(e);
    }
    if e.event == Kind::Retried {
        counter!("ddlgate_ddl_retries_total").increment(1);
        return;
    }
    if e.rules.is_empty() {
        counter!("ddlgate_ddl_decisions_total", "rule" => "none", "decision" => e.decision.as_str())
            .increment(1);
    }
    for r in &e.rules {
        counter!("ddlgate_ddl_decisions_total", "rule" => *r, "decision" => e.decision.as_str())
            .increment(1);
    }
    if !e.ignored_overrides.is_empty() {
        counter!("ddlgate_ddl_ignored_overrides_total").increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_literals_case_and_spacing() {
        assert_eq!(
            fingerprint(b"ALTER TABLE t ADD COLUMN c int DEFAULT 1"),
            fingerprint(b"alter table t  add column c int default 42")
        );
        assert_ne!(
            fingerprint(b"ALTER TABLE t ADD COLUMN c int"),
            fingerprint(b"ALTER TABLE u ADD COLUMN c int")
        );
        assert!(now_rfc3339().ends_with('Z'), "{}", now_rfc3339());
    }
}
