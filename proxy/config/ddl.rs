//! The `[ddl]` section: the gate's policy, lock-queue protection and audit
//! trail, validated into [`DdlSettings`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{bad, parse_duration, parse_size, ConfigError};
use crate::ddl::policy::RuleDecisions;
use crate::ddl::{Decision, Policy, Rule};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DdlSection {
    pub enabled: Option<bool>,
    pub mode: Option<String>,
    pub trust_session_objects: Option<bool>,
    pub lock_timeout: Option<String>,
    pub lock_retries: Option<u32>,
    pub retry_backoff: Option<String>,
    pub retry_backoff_max: Option<String>,
    pub on_unrecognized: Option<String>,
    pub override_roles: Option<Vec<String>>,
    pub audit_log: Option<PathBuf>,
    pub redact_literals: Option<bool>,
    pub small_table_size: Option<String>,
    pub in_transaction: Option<String>,
    #[serde(default)]
    pub rules: HashMap<String, String>,
    #[serde(default)]
    pub database: HashMap<String, ScopeSection>,
    #[serde(default)]
    pub role: HashMap<String, ScopeSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSection {
    #[serde(default)]
    pub rules: HashMap<String, String>,
    pub in_transaction: Option<String>,
}

/// Whether decisions are carried out or only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateMode {
    /// Block, rewrite, warn and guard as decided.
    Enforce,
    /// Shadow: every decision is logged, audited and counted as it would be
    /// taken, and every statement runs exactly as the client sent it.
    Observe,
}

impl GateMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GateMode::Enforce => "enforce",
            GateMode::Observe => "observe",
        }
    }
}

/// Validated settings of the DDL gate.
#[derive(Debug, Clone, PartialEq)]
pub struct DdlSettings {
    /// Off: every statement is relayed unchanged, as by a plain proxy.
    pub enabled: bool,
    pub mode: GateMode,
    /// Changes to tables the session created itself (and their indexes) are
    /// nobody else's risk: let them through.
    pub trust_session_objects: bool,
    /// `lock_timeout` set around DDL the client did not give one.
    pub lock_timeout: Duration,
    /// Further attempts after a DDL gives up on its lock (55P03).
    pub lock_retries: u32,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    pub policy: Policy,
    /// JSON-lines file every DDL decision is appended to.
    pub audit_log: Option<PathBuf>,
    /// Replace literals in logged statements with `?`.
    pub redact_literals: bool,
    /// Tables up to this many bytes (heap, from the catalog) are exempt from
    /// the rules whose harm grows with size; 0 = only empty tables.
    pub small_table_size: u64,
}

impl Default for DdlSettings {
    fn default() -> Self {
        DdlSettings {
            enabled: true,
            mode: GateMode::Enforce,
            trust_session_objects: true,
            lock_timeout: Duration::from_secs(2),
            lock_retries: 5,
            retry_backoff: Duration::from_millis(500),
            retry_backoff_max: Duration::from_secs(10),
            policy: Policy::default(),
            audit_log: None,
            redact_literals: true,
            small_table_size: 0,
        }
    }
}

impl DdlSection {
    pub fn resolve(self) -> Result<DdlSettings, ConfigError> {
        let mut s = DdlSettings::default();
        if let Some(v) = self.enabled {
            s.enabled = v;
        }
        if let Some(v) = &self.mode {
            s.mode = match v.as_str() {
                "enforce" => GateMode::Enforce,
                "observe" => GateMode::Observe,
                _ => return Err(bad("ddl.mode", format!("'{v}' is not enforce or observe"))),
            };
        }
        if let Some(v) = self.trust_session_objects {
            s.trust_session_objects = v;
        }
        if let Some(v) = &self.lock_timeout {
            s.lock_timeout = parse_duration("ddl.lock_timeout", v)?;
            if s.lock_timeout.is_zero() || s.lock_timeout > Duration::from_secs(600) {
                return Err(bad("ddl.lock_timeout", "must be between 1ms and 10min"));
            }
        }
        if let Some(v) = self.lock_retries {
            if v > 100 {
                return Err(bad("ddl.lock_retries", "must be at most 100"));
            }
            s.lock_retries = v;
        }
        if let Some(v) = &self.retry_backoff {
            s.retry_backoff = parse_duration("ddl.retry_backoff", v)?;
        }
        if let Some(v) = &self.retry_backoff_max {
            s.retry_backoff_max = parse_duration("ddl.retry_backoff_max", v)?;
        }
        if s.retry_backoff_max < s.retry_backoff {
            return Err(bad(
                "ddl.retry_backoff_max",
                "must not be less than ddl.retry_backoff",
            ));
        }
        if let Some(v) = &self.on_unrecognized {
            s.policy.on_unrecognized = match v.as_str() {
                "default" => None,
                "allow" | "warn" | "block" => Decision::parse(v),
                _ => {
                    return Err(bad(
                        "ddl.on_unrecognized",
                        format!("'{v}' is not default, allow, warn or block"),
                    ))
                }
            };
        }
        s.policy.override_roles = self
            .override_roles
            .unwrap_or_default()
            .into_iter()
            .collect();
        s.audit_log = self.audit_log;
        if let Some(v) = self.redact_literals {
            s.redact_literals = v;
        }
        if let Some(v) = &self.small_table_size {
            s.small_table_size = parse_size("ddl.small_table_size", v)? as u64;
        }
        s.policy.rules = decisions("ddl.rules", self.rules)?;
        if let Some(v) = &self.in_transaction {
            s.policy.in_transaction = in_transaction("ddl.in_transaction", v)?;
        }
        for (db, scope) in self.database {
            let key = format!("ddl.database.{db}.rules");
            if let Some(v) = &scope.in_transaction {
                let k = format!("ddl.database.{db}.in_transaction");
                s.policy
                    .in_transaction_databases
                    .insert(db.clone(), in_transaction(&k, v)?);
            }
            s.policy.databases.insert(db, decisions(&key, scope.rules)?);
        }
        for (role, scope) in self.role {
            let key = format!("ddl.role.{role}.rules");
            if let Some(v) = &scope.in_transaction {
                let k = format!("ddl.role.{role}.in_transaction");
                s.policy
                    .in_transaction_roles
                    .insert(role.clone(), in_transaction(&k, v)?);
            }
            s.policy.roles.insert(role, decisions(&key, scope.rules)?);
        }
        Ok(s)
    }
}

/// `defer`, `block` or `allow`.
fn in_transaction(key: &str, v: &str) -> Result<crate::ddl::policy::InTransaction, ConfigError> {
    crate::ddl::policy::InTransaction::parse(v)
        .ok_or_else(|| bad(key, format!("'{v}' is not defer, block or allow")))
}

fn decisions(key: &str, raw: HashMap<String, String>) -> Result<RuleDecisions, ConfigError> {
    raw.into_iter()
        .map(|(id, d)| {
            let k = format!("{key}.{id}");
            let rule = Rule::from_id(&id)
                .ok_or_else(|| bad(&k, "is not a rule id (see `ddlgate lint --list-rules`)"))?;
            let decision = Decision::parse(&d)
                .ok_or_else(|| bad(&k, format!("'{d}' is not allow, warn, block or rewrite")))?;
            Ok((rule, decision))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<DdlSettings, ConfigError> {
        let section: DdlSection = toml::from_str(toml_text).unwrap();
        section.resolve()
    }

    #[test]
    fn scoped_rules_and_defaults() {
        let s = parse(
            r#"
            lock_timeout = "500ms"
            override_roles = ["migrator"]
            on_unrecognized = "warn"
            [rules]
            drop-table = "warn"
            [database.analytics.rules]
            create-index-non-concurrent = "allow"
            [role.etl.rules]
            truncate = "allow"
            "#,
        )
        .unwrap();
        assert_eq!(s.lock_timeout, Duration::from_millis(500));
        assert_eq!(s.policy.rules[&Rule::DropTable], Decision::Warn);
        assert_eq!(
            s.policy.databases["analytics"][&Rule::CreateIndex],
            Decision::Allow
        );
        assert_eq!(s.policy.roles["etl"][&Rule::Truncate], Decision::Allow);
        assert!(s.policy.override_roles.contains("migrator"));
        assert_eq!(s.policy.on_unrecognized, Some(Decision::Warn));
    }

    #[test]
    fn in_transaction_by_database_and_role() {
        use crate::ddl::policy::InTransaction;
        use crate::ddl::Who;
        let s = parse(
            r#"
            in_transaction = "block"
            [database.app]
            in_transaction = "allow"
            [role.careful]
            in_transaction = "block"
            "#,
        )
        .unwrap();
        let who = |user, database| Who { user, database };
        assert_eq!(
            s.policy.in_transaction(who("x", "other")),
            InTransaction::Block
        );
        assert_eq!(
            s.policy.in_transaction(who("x", "app")),
            InTransaction::Allow
        );
        assert_eq!(
            s.policy.in_transaction(who("careful", "app")),
            InTransaction::Block
        );
        assert_eq!(
            parse("").unwrap().policy.in_transaction(who("x", "app")),
            InTransaction::Defer
        );
        let e = parse("in_transaction = \"later\"").unwrap_err();
        assert_eq!(e.key, "ddl.in_transaction");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = parse("[rules]\nno-such-rule = \"allow\"").unwrap_err();
        assert_eq!(e.key, "ddl.rules.no-such-rule");
        let e = parse("[role.app.rules]\ntruncate = \"maybe\"").unwrap_err();
        assert_eq!(e.key, "ddl.role.app.rules.truncate");
        let e = parse("on_unrecognized = \"rewrite\"").unwrap_err();
        assert_eq!(e.key, "ddl.on_unrecognized");
        let e = parse("mode = \"shadow\"").unwrap_err();
        assert_eq!(e.key, "ddl.mode");
        assert_eq!(parse("mode = \"observe\"").unwrap().mode, GateMode::Observe);
        let e = parse("lock_timeout = \"0\"").unwrap_err();
        assert_eq!(e.key, "ddl.lock_timeout");
    }
}
