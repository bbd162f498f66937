//! Policy: the decision for each finding, from built-in safe defaults,
//! overridden by the configuration globally, per database and per role, and
//! for one statement by a `/* ddlgate:allow rule-id */` comment when the
//! session's role is trusted with it.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::lexer::leading_comments;
use super::rule::{Decision, Finding, Rule};

pub type RuleDecisions = HashMap<Rule, Decision>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// Global per-rule decisions.
    pub rules: RuleDecisions,
    /// Per database name; wins over `rules`.
    pub databases: HashMap<String, RuleDecisions>,
    /// Per role name; wins over `databases`.
    pub roles: HashMap<String, RuleDecisions>,
    /// Roles whose `ddlgate:allow` comments are honoured.
    pub override_roles: HashSet<String>,
    /// Replaces the defaults of both unrecognized-* rules when set.
    pub on_unrecognized: Option<Decision>,
    /// What a statement to be rewritten gets inside a transaction block,
    /// where it cannot be applied in phases: globally, per database, per
    /// role (the role's wins).
    pub in_transaction: InTransaction,
    pub in_transaction_databases: HashMap<String, InTransaction>,
    pub in_transaction_roles: HashMap<String, InTransaction>,
}

/// A `rewrite` statement inside a transaction block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InTransaction {
    /// Its catalog-only first steps run in the client's transaction, the
    /// rest as a migration that exists once the client commits.
    #[default]
    Defer,
    /// Blocked, with the plan and the advice to send it on its own.
    Block,
    /// Run as written under lock_timeout, with a WARNING saying why.
    Allow,
}

impl InTransaction {
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "defer" => Some(InTransaction::Defer),
            "block" => Some(InTransaction::Block),
            "allow" => Some(InTransaction::Allow),
            _ => None,
        }
    }
}

/// Who runs the statement.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub user: &'a str,
    pub database: &'a str,
}

/// The decision on one finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judged {
    pub rule: Rule,
    pub decision: Decision,
    /// Allowed by the statement's override comment.
    pub overridden: bool,
}

/// The decision on a whole statement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Judgement {
    pub judged: Vec<Judged>,
    /// Rules named in an override comment from a role not trusted with it.
    pub ignored_overrides: Vec<String>,
}

impl Judgement {
    /// The strongest decision; a statement with no findings is allowed.
    pub fn decision(&self) -> Decision {
        self.judged
            .iter()
            .map(|j| j.decision)
            .max()
            .unwrap_or(Decision::Allow)
    }
}

impl Policy {
    /// What `who`'s rewrite statements get inside a transaction block.
    pub fn in_transaction(&self, who: Who<'_>) -> InTransaction {
        self.in_transaction_roles
            .get(who.user)
            .or_else(|| self.in_transaction_databases.get(who.database))
            .copied()
            .unwrap_or(self.in_transaction)
    }

    pub fn decide(&self, rule: Rule, who: Who<'_>) -> Decision {
        let scoped = |m: &HashMap<String, RuleDecisions>, k: &str| {
            m.get(k).and_then(|r| r.get(&rule)).copied()
        };
        scoped(&self.roles, who.user)
            .or_else(|| scoped(&self.databases, who.database))
            .or_else(|| self.rules.get(&rule).copied())
            .or_else(|| {
                matches!(rule, Rule::UnrecognizedAlterTable | Rule::UnrecognizedDdl)
                    .then_some(self.on_unrecognized)
                    .flatten()
            })
            .unwrap_or_else(|| rule.default_decision())
    }

    /// Decides every finding of the statement `sql`.
    pub fn judge(&self, sql: &[u8], findings: &[Finding], who: Who<'_>) -> Judgement {
        let wanted = override_rules(sql);
        let trusted = self.override_roles.contains(who.user);
        let mut j = Judgement::default();
        if !trusted {
            j.ignored_overrides = wanted.clone();
        }
        for f in findings {
            let overridden = trusted && wanted.iter().any(|w| w == f.rule.id());
            let decision = if overridden {
                Decision::Allow
            } else {
                self.decide(f.rule, who)
            };
            j.judged.push(Judged {
                rule: f.rule,
                decision,
                overridden,
            });
        }
        j
    }
}

/// Rule ids named by `ddlgate:allow` in the statement's leading comments.
pub fn override_rules(sql: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for c in leading_comments(sql) {
        let text = String::from_utf8_lossy(c);
        let mut rest = text.as_ref();
        while let Some(i) = rest.find("ddlgate:allow") {
            rest = &rest[i + "ddlgate:allow".len()..];
            let ids = rest
                .split(|ch: char| ch.is_whitespace() || ch == ',')
                .filter(|s| !s.is_empty())
                .take_while(|s| {
                    s.chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
                });
            out.extend(ids.map(str::to_owned));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: Rule) -> Finding {
        Finding::new(rule, Some("t"), None)
    }

    #[test]
    fn role_beats_database_beats_global_beats_default() {
        let mut p = Policy::default();
        let who = Who {
            user: "app",
            database: "shop",
        };
        assert_eq!(p.decide(Rule::DropTable, who), Decision::Block);
        p.rules.insert(Rule::DropTable, Decision::Warn);
        assert_eq!(p.decide(Rule::DropTable, who), Decision::Warn);
        p.databases
            .insert("shop".into(), [(Rule::DropTable, Decision::Allow)].into());
        assert_eq!(p.decide(Rule::DropTable, who), Decision::Allow);
        p.roles
            .insert("app".into(), [(Rule::DropTable, Decision::Block)].into());
        assert_eq!(p.decide(Rule::DropTable, who), Decision::Block);
        p.on_unrecognized = Some(Decision::Allow);
        assert_eq!(p.decide(Rule::UnrecognizedAlterTable, who), Decision::Allow);
    }

    #[test]
    fn override_comments_need_a_trusted_role() {
        let sql = b"/* ddlgate:allow drop-table, truncate */ DROP TABLE t";
        assert_eq!(override_rules(sql), vec!["drop-table", "truncate"]);
        let mut p = Policy::default();
        let who = Who {
            user: "dev",
            database: "db",
        };
        let j = p.judge(sql, &[finding(Rule::DropTable)], who);
        assert_eq!(j.decision(), Decision::Block);
        assert_eq!(j.ignored_overrides, vec!["drop-table", "truncate"]);
        p.override_roles.insert("dev".into());
        let j = p.judge(sql, &[finding(Rule::DropTable)], who);
        assert_eq!(j.decision(), Decision::Allow);
        assert!(j.judged[0].overridden);
        assert!(j.ignored_overrides.is_empty());
        // Only the rules named are lifted.
        let j = p.judge(sql, &[finding(Rule::DropColumn)], who);
        assert_eq!(j.decision(), Decision::Block);
        // A comment after the first token is not an override.
        assert!(override_rules(b"DROP TABLE t /* ddlgate:allow drop-table */").is_empty());
    }
}
