//! Judging the SQL of one Query or Parse: classify, apply the policy, emit
//! one event per schema change, and build what the client is told.

use crate::config::ddl::GateMode;
use crate::config::ClientWait;
use crate::ddl::analyze::Kind as StmtKind;
use crate::ddl::lexer::{first_word, Reading};
use crate::ddl::op::fold_name;
use crate::ddl::policy::InTransaction;
use crate::ddl::{Analyzed, Decision, Finding, Judgement, Mode, Rule, Who};
use crate::protocol::backend::{Report, Severity};
use crate::protocol::sqlstate;

use super::event::{self, Event, Kind};
use super::{Gate, ASSUMED_MAJOR};
use crate::session::SessionState;

/// The verdict on a query string.
pub struct Judged {
    pub stmts: Vec<Analyzed>,
    /// The first statement the policy stops, its event id and the error
    /// the client gets.
    pub stop: Option<(usize, String, Report)>,
    /// Some schema change takes a lock readers or writers can queue behind,
    /// and none must run outside a transaction block: worth a lock_timeout.
    pub guard: bool,
    /// The string holds BEGIN/COMMIT/ROLLBACK: it cannot be replayed whole.
    pub tx_control: bool,
    /// The string holds a COPY: no guard or restore may be sent around it.
    pub copy: bool,
    /// Warnings for the client.
    pub notices: Vec<Report>,
    /// The events of the statements let through, to repeat on a retry.
    pub events: Vec<Event>,
    /// The statement is a migration the runner applies.
    pub migrate: Option<Box<super::migrate::Pending>>,
    /// The first statement, inside the client's transaction block, is
    /// deferred: its first steps run there, the rest after COMMIT.
    pub defer: Option<Box<super::migrate::Pending>>,
    /// A later statement (by index) may be deferred: the ones before it go
    /// first, and it is decided when the rest is scanned again.
    pub split: Option<usize>,
    /// The string is one implicit transaction with a statement that may be
    /// deferred: ddlgate opens a block around it first.
    pub open: bool,
}

impl Gate {
    pub(super) fn judge(
        &mut self,
        sql: &[u8],
        reading: Reading,
        mode: Mode,
        in_tx: bool,
        may_migrate: bool,
        state: &SessionState,
    ) -> Judged {
        let server_version = state.server_version.as_str();
        let major = state.server_major().unwrap_or(ASSUMED_MAJOR);
        // Facts looked up for this statement serve it alone.
        let mut catalog = std::mem::take(&mut self.catalog);
        catalog.time_zone.clone_from(&state.time_zone);
        let lookup_error = self.lookup_error.take();
        self.looked_up.clear();
        let stmts = self
            .analyzer
            .analyze_read(sql, reading, mode, in_tx, major, &catalog);
        let runtime = self.runtime.clone();
        let ddl = &runtime.settings.ddl;
        let observe = ddl.mode == GateMode::Observe;
        let session = self.who.clone();
        let who = Who {
            user: &session.user,
            database: &session.database,
        };
        let mut j = Judged {
            stmts: Vec::new(),
            stop: None,
            guard: false,
            tx_control: false,
            copy: false,
            notices: Vec::new(),
            events: Vec::new(),
            migrate: None,
            defer: None,
            split: None,
            open: false,
        };
        let alone = stmts.len() == 1;
        // A deferral splits the string into parts sent one after another,
        // each inside the client's open transaction block: a string that
        // switches to COPY is not split, and one that opens or ends a block
        // is split at its BEGIN/COMMIT first (each its own part), so every
        // part starts where the server says which block it is in.
        let open_block = state.tx == crate::protocol::backend::TxStatus::InTransaction;
        let splittable = mode == Mode::QueryString
            && !stmts.iter().any(|a| {
                a.kind == StmtKind::Other
                    && first_word(&sql[a.range.clone()]).eq_ignore_ascii_case(b"COPY")
            });
        // A BEGIN/COMMIT with a statement ddlgate may defer after it: the
        // string goes in parts from there (the statements before it, judged
        // here; then the BEGIN/COMMIT alone; then the rest, judged when it
        // is scanned again), so nothing is judged twice. Without one, a
        // string of several statements outside a block is one implicit
        // transaction: ddlgate opens a block around it first.
        let control = stmts
            .iter()
            .position(|a| matches!(a.kind, StmtKind::Begin | StmtKind::End));
        // Nothing is split or opened around a string with a statement
        // ddlgate cannot read: it is refused where it stands.
        let unreadable = stmts.iter().any(|a| a.unreadable.is_some());
        let plannable = |a: &Analyzed| {
            a.kind == StmtKind::Ddl
                && !a.findings.is_empty()
                && a.findings.iter().all(|f| crate::ddl::plan::covers(f.rule))
        };
        let may_defer = !unreadable
            && splittable
            && may_migrate
            && !observe
            && self.runner.is_some()
            && ddl.policy.in_transaction(who) == InTransaction::Defer;
        let mut split_at = None;
        match control {
            Some(b) if may_defer && stmts[b + 1..].iter().any(plannable) => {
                if b == 0 {
                    j.split = Some(1);
                    j.stmts = stmts;
                    self.session_facts = None;
                    return j;
                }
                split_at = Some(b);
            }
            None if may_defer
                && state.tx == crate::protocol::backend::TxStatus::Idle
                && stmts.len() > 1
                && stmts.iter().any(plannable) =>
            {
                j.open = true;
                j.stmts = stmts;
                self.session_facts = None;
                return j;
            }
            _ => {}
        }

        for (i, a) in stmts.iter().enumerate() {
            if split_at == Some(i) {
                j.split = Some(i);
                break;
            }
            if let Some(why) = a.unreadable {
                let text = &sql[a.range.clone()];
                let judgement = crate::ddl::Judgement {
                    judged: Vec::new(),
                    ignored_overrides: Vec::new(),
                };
                let mut e = self.event(Kind::Blocked, text, a, &judgement, server_version);
                e.decision = Decision::Block;
                e.statement = event::statement_text_read(text, ddl.redact_literals, reading);
                e.lookup_error.clone_from(&lookup_error);
                event::emit(&e, self.runtime.audit.as_deref());
                if observe {
                    // Recorded, run as sent: observe mode never stops.
                    continue;
                }
                j.stop = Some((i, e.id.clone(), unreadable_report(&e.id, why)));
                break;
            }
            match a.kind {
                StmtKind::Begin | StmtKind::End => j.tx_control = true,
                StmtKind::Other => {
                    // COPY switches the connection into copy mode: nothing
                    // may be pipelined behind its query string.
                    if first_word(&sql[a.range.clone()]).eq_ignore_ascii_case(b"COPY") {
                        j.copy = true;
                    }
                }
                StmtKind::Ddl => {
                    let text = &sql[a.range.clone()];
                    // It names a temporary relation of this session: it
                    // runs here as sent, or not at all, never elsewhere.
                    let private = a.ops.iter().any(|op| catalog.names_temp(op));
                    let relation_oid = a
                        .plan
                        .as_ref()
                        .and_then(|p| p.table.as_deref())
                        .and_then(|t| catalog.relation_oids.get(&fold_name(t)).copied());
                    // A column an earlier deferral in this transaction
                    // shadows until its cut-over.
                    let shadow = self.shadowing(a, text);
                    let judgement = ddl.policy.judge(text, &a.findings, who);
                    let mut decision = judgement.decision();
                    // Inside a transaction block no plan can run: by policy,
                    // a statement to be rewritten runs as written instead.
                    let in_transaction = ddl.policy.in_transaction(who);
                    let as_written = a.in_transaction
                        && decision == Decision::Rewrite
                        && in_transaction == InTransaction::Allow;
                    if as_written {
                        decision = Decision::Warn;
                    }
                    let mut e = self.event(Kind::of(decision), text, a, &judgement, server_version);
                    e.statement = event::statement_text_read(text, ddl.redact_literals, reading);
                    e.lookup_error.clone_from(&lookup_error);
                    let deferrable = a.in_transaction
                        && in_transaction == InTransaction::Defer
                        && splittable
                        && decision == Decision::Rewrite
                        && !observe
                        && may_migrate
                        && !private;
                    // In the block the server said it is in: no BEGIN or
                    // COMMIT ahead of it in the string.
                    let defer = deferrable && open_block && control.is_none_or(|b| b > i);
                    if defer && i > 0 {
                        j.split = Some(i);
                        break;
                    }
                    if let (true, Some(report)) = (defer, self.stale_for_retype(a)) {
                        event::emit(&e, self.runtime.audit.as_deref());
                        j.stop = Some((i, e.id, report));
                        break;
                    }
                    if defer {
                        match self.migration(text, a, &judgement, &e.id, state, relation_oid) {
                            Ok(Some(mut p)) => {
                                if let Some(sh) = &shadow {
                                    sh.retarget(&mut p.submission.plan);
                                }
                                p.shadows = super::consistency::shadows_of(a, &p.submission.plan);
                                p.unique_on = super::consistency::unique_on(a);
                                self.after_deferred_unique(a, &mut p);
                                self.after_fill(a, &mut p);
                                e.event = Kind::Deferred;
                                event::emit(&e, self.runtime.audit.as_deref());
                                j.defer = Some(p);
                                break;
                            }
                            Ok(None) => {}
                            Err(report) => {
                                event::emit(&e, self.runtime.audit.as_deref());
                                j.stop = Some((i, e.id, report));
                                break;
                            }
                        }
                    }
                    if let (Some(sh), false) = (&shadow, observe) {
                        event::emit(&e, self.runtime.audit.as_deref());
                        j.stop = Some((i, e.id, sh.conflict()));
                        break;
                    }
                    if !observe && decision.stops() && alone && !in_tx && may_migrate && !private {
                        match self.migration(text, a, &judgement, &e.id, state, relation_oid) {
                            Ok(Some(p)) => {
                                e.event = Kind::Migrated;
                                event::emit(&e, self.runtime.audit.as_deref());
                                j.migrate = Some(p);
                                break;
                            }
                            Ok(None) => {}
                            Err(report) => {
                                event::emit(&e, self.runtime.audit.as_deref());
                                j.stop = Some((i, e.id, report));
                                break;
                            }
                        }
                    }
                    event::emit(&e, self.runtime.audit.as_deref());
                    if observe {
                        // Shadow: recorded as decided, run as sent.
                        continue;
                    }
                    if decision.stops() {
                        let mut report = block_report(&e.id, a, &judgement);
                        if a.in_transaction && decision == Decision::Rewrite {
                            let detail = report.detail.take();
                            let why = if in_transaction == InTransaction::Defer {
                                "ddlgate defers such a statement past COMMIT only inside an \
                                 explicit transaction block (BEGIN), sent by the simple protocol \
                                 in a string without COPY, or as the unnamed \
                                 statement at the start of an extended batch, and when its plan \
                                 can run as the session's role"
                            } else {
                                "its phased form (CONCURRENTLY steps, batches) cannot run \
                                 there (ddl.in_transaction = \"block\")"
                            };
                            report = report.with_detail(format!(
                                "{}\nIt is inside a transaction block: {why}. Send it on its \
                                 own, outside the transaction, and ddlgate applies it in \
                                 phases; or set ddl.in_transaction = \"allow\" to run it as \
                                 written under lock_timeout.",
                                detail.unwrap_or_default()
                            ));
                        }
                        j.stop = Some((i, e.id, report));
                        break;
                    }
                    j.events.push(e);
                    self.note_default(text, state);
                    if as_written {
                        j.notices
                            .push(as_written_report(&a.findings, self.lock_timeout()));
                    } else if decision == Decision::Warn {
                        j.notices.push(warn_report(&a.findings, &judgement));
                    }
                    j.guard |= a.ops.iter().all(|op| !op.needs_own_transaction());
                }
            }
        }
        j.guard &= !j.copy;
        j.stmts = stmts;
        self.session_facts = None;
        j
    }

    /// The migration that applies statement `a` (alone in its message,
    /// outside a transaction block; or deferred past COMMIT), when the
    /// runner can: every finding
    /// that stops it is a `rewrite`, its plan needs no backfill, and the
    /// session's role is known. An unknown `ddlgate.mode` is the client's
    /// error, as an unknown value of a real setting would be.
    fn migration(
        &mut self,
        text: &[u8],
        a: &Analyzed,
        judgement: &Judgement,
        event_id: &str,
        state: &SessionState,
        relation_oid: Option<u32>,
    ) -> Result<Option<Box<super::migrate::Pending>>, Report> {
        let rewrite_only = judgement
            .judged
            .iter()
            .all(|j| !j.decision.stops() || j.decision == Decision::Rewrite);
        let Some(plan) = a.plan.as_ref().filter(|p| p.runnable()) else {
            return Ok(None);
        };
        if !rewrite_only {
            return Ok(None);
        }
        self.pending(text, plan, event_id, state, relation_oid)
    }

    /// What the runner is handed to apply `plan` for statement `text` as
    /// the session's role: none without a runner, the role, or text that
    /// means the same on the runner's (UTF-8) connection.
    pub(super) fn pending(
        &mut self,
        text: &[u8],
        plan: &crate::ddl::plan::Plan,
        event_id: &str,
        state: &SessionState,
        relation_oid: Option<u32>,
    ) -> Result<Option<Box<super::migrate::Pending>>, Report> {
        let Some(runner) = self.runner.as_ref() else {
            return Ok(None);
        };
        let Some(statement) = std::str::from_utf8(text)
            .ok()
            .filter(|t| state.client_utf8 || t.is_ascii())
        else {
            return Ok(None);
        };
        let Some(facts) = self.session_facts.take() else {
            return Ok(None);
        };
        let wait = match facts.mode.as_deref().map(str::trim) {
            None | Some("") => runner.settings().wait_for(&facts.role),
            Some(v) => match ClientWait::parse(&v.to_ascii_lowercase()) {
                Some(w) => w,
                None => {
                    return Err(Report::new(
                        Severity::Error,
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("invalid value for parameter \"ddlgate.mode\": \"{v}\""),
                    )
                    .with_hint("Available values: sync, async.".to_owned()))
                }
            },
        };
        let postpone_cutover = match facts.postpone_cutover.as_deref().map(str::trim) {
            None | Some("") => runner.settings().postpone_cutover,
            Some(v) => parse_bool(v).ok_or_else(|| {
                Report::new(
                    Severity::Error,
                    sqlstate::INVALID_PARAMETER_VALUE,
                    "parameter \"ddlgate.postpone_cutover\" requires a Boolean value",
                )
            })?,
        };
        Ok(Some(Box::new(super::migrate::Pending {
            marker: format!("ddlgate:migrate:{event_id}"),
            submission: crate::runner::Submission {
                database: self.who.database.clone(),
                login: self.who.user.clone(),
                wait,
                role: facts.role,
                search_path: facts.search_path,
                relation_oid,
                statement: statement.trim().to_owned(),
                plan: plan.clone(),
                event: event_id.to_owned(),
                postpone_cutover,
            },
            executed: None,
            shadows: Vec::new(),
            unique_on: None,
            after_commit: false,
            fill: None,
        })))
    }

    fn event(
        &self,
        kind: Kind,
        text: &[u8],
        a: &Analyzed,
        judgement: &Judgement,
        server_version: &str,
    ) -> Event {
        let ddl = &self.runtime.settings.ddl;
        let (lock, table) = event::strongest(&a.findings);
        Event {
            event: kind,
            id: event::next_id(),
            at: event::now_rfc3339(),
            decision: judgement.decision(),
            statement: event::statement_text(text, ddl.redact_literals),
            fingerprint: event::fingerprint(text),
            rules: a.findings.iter().map(|f| f.rule.id()).collect(),
            lock,
            table: table.or_else(|| a.table().map(str::to_owned)),
            who: (*self.who).clone(),
            server_version: server_version.to_owned(),
            ignored_overrides: judgement.ignored_overrides.clone(),
            overridden: judgement
                .judged
                .iter()
                .filter(|j| j.overridden)
                .map(|j| j.rule.id())
                .collect(),
            attempt: None,
            observed: ddl.mode == GateMode::Observe,
            lookup_error: None,
        }
    }
}

fn describe(f: &Finding) -> String {
    let mut s = f.detail.clone();
    let mut facts = Vec::new();
    if let Some(l) = f.lock {
        facts.push(match &f.table {
            Some(t) => format!("{l} lock on {t}"),
            None => format!("{l} lock"),
        });
    }
    if f.rewrite {
        facts.push("rewrites the table".into());
    } else if f.scan {
        facts.push("reads the whole table".into());
    }
    if f.breaks_clients {
        facts.push("breaks running clients".into());
    }
    if !facts.is_empty() {
        s.push_str(&format!(" [{}]", facts.join("; ")));
    }
    s
}

/// The ErrorResponse for a stopped statement: message naming the rule,
/// DETAIL with what it would do, HINT with the safe alternative.
/// The WARNING of a statement run as written inside a transaction block
/// (`ddl.in_transaction = "allow"`).
fn as_written_report(findings: &[Finding], lock_timeout: std::time::Duration) -> Report {
    let rules: Vec<&str> = findings.iter().map(|f| f.rule.id()).collect();
    Report::new(
        Severity::Warning,
        "01000",
        format!(
            "ddlgate: {} inside a transaction block runs as written (ddl.in_transaction = allow): \
             its phased form cannot run there",
            rules.join(", ")
        ),
    )
    .with_detail(findings.iter().map(describe).collect::<Vec<_>>().join("\n"))
    .with_hint(format!(
        "It waits at most lock_timeout ({} ms) for its lock, then fails; the lock it takes is \
         held until the transaction ends. Sent on its own, outside a transaction, ddlgate applies \
         it in phases.",
        lock_timeout.as_millis()
    ))
}

fn block_report(id: &str, a: &Analyzed, judgement: &Judgement) -> Report {
    let findings = &a.findings;
    let stopped: Vec<(&Finding, Decision)> = findings
        .iter()
        .zip(&judgement.judged)
        .filter(|(_, j)| j.decision.stops())
        .map(|(f, j)| (f, j.decision))
        .collect();
    let rewrite_only = stopped.iter().all(|(_, d)| *d == Decision::Rewrite);
    let (first, _) = stopped[0];
    let rules: Vec<&str> = stopped.iter().map(|(f, _)| f.rule.id()).collect();
    let (code, message) = if rewrite_only {
        (
            sqlstate::DDL_NEEDS_REWRITE,
            format!(
                "ddlgate: {} ({}): run it as the safe phased change in HINT",
                rules.join(", "),
                first.rule.summary()
            ),
        )
    } else {
        (
            sqlstate::DDL_BLOCKED,
            format!(
                "ddlgate blocked this statement: {} ({})",
                rules.join(", "),
                first.rule.summary()
            ),
        )
    };
    let detail = stopped
        .iter()
        .map(|(f, _)| describe(f))
        .collect::<Vec<_>>()
        .join("\n");
    // The plan as SQL that runs as printed, when there is one.
    let mut hint = match &a.plan {
        Some(plan) => plan.render().trim_end().to_owned(),
        None => stopped
            .iter()
            .map(|(f, _)| as_comment(&f.alternative))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    hint.push_str(&format!(
        "\n-- After review, a role listed in ddl.override_roles may run it as sent, starting it with /* ddlgate:allow {} */ (event {id}).",
        rules.join(",")
    ));
    Report::new(Severity::Error, code, message)
        .with_detail(detail)
        .with_hint(hint)
}

fn warn_report(findings: &[Finding], judgement: &Judgement) -> Report {
    let warned: Vec<&Finding> = findings
        .iter()
        .zip(&judgement.judged)
        .filter(|(_, j)| j.decision == Decision::Warn)
        .map(|(f, _)| f)
        .collect();
    let rules: Vec<&str> = warned.iter().map(|f| f.rule.id()).collect();
    let first: Option<Rule> = warned.first().map(|f| f.rule);
    Report::new(
        Severity::Warning,
        sqlstate::WARNING,
        format!(
            "ddlgate: {} ({})",
            rules.join(", "),
            first.map_or("", Rule::summary)
        ),
    )
    .with_detail(
        warned
            .iter()
            .map(|f| describe(f))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .with_hint(
        warned
            .iter()
            .map(|f| as_comment(&f.alternative))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The refusal of a statement ddlgate cannot read as the server will.
fn unreadable_report(id: &str, why: crate::ddl::Unreadable) -> Report {
    let hint = match why {
        crate::ddl::Unreadable::Unsure => {
            "Send it again once the requests before it have answered; or write the string \
             without backslashes (E'...' strings, or standard_conforming_strings = on)."
        }
        crate::ddl::Unreadable::Backslash => {
            "Write the literal as E'...' (backslash escapes) or set standard_conforming_strings \
             = on for the statement."
        }
        crate::ddl::Unreadable::Encoding => "Send schema changes with client_encoding UTF8.",
    };
    Report::new(
        Severity::Error,
        sqlstate::DDL_BLOCKED,
        format!(
            "ddlgate refused this query string: it cannot tell how the server splits or reads \
             it: {}",
            why.reason()
        ),
    )
    .with_detail(format!("event {id}"))
    .with_hint(hint.to_owned())
}

/// Advice with no exact SQL behind it, as SQL comments: a hint is always a
/// script that runs as printed (psql -f), and only a plan's steps do
/// anything.
fn as_comment(advice: &str) -> String {
    advice
        .lines()
        .map(|l| format!("-- {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Boolean setting's value as PostgreSQL reads one (any unique prefix of
/// on/off/true/false/yes/no, or 1/0).
fn parse_bool(v: &str) -> Option<bool> {
    let v = v.to_ascii_lowercase();
    let is = |word: &str, min: usize| v.len() >= min && word.starts_with(v.as_str());
    if v == "1" || is("true", 1) || is("yes", 1) || is("on", 2) {
        Some(true)
    } else if v == "0" || is("false", 1) || is("no", 1) || is("off", 2) {
        Some(false)
    } else {
        None
    }
}
