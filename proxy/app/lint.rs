//! `ddlgate lint`: the proxy's classifier and policy run over migration
//! files, for CI. Exit status 1 when anything would be stopped, 2 when the
//! input or configuration cannot be read.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use crate::config::cli::{LintArgs, LintFormat};
use crate::config::file::FileConfig;
use crate::ddl::analyze::decode;
use crate::ddl::lexer::{line_of, skip_trivia};
use crate::ddl::plan::Plan;
use crate::ddl::{Analyzer, Catalog, Decision, Mode, Policy, Rule, Who};

use super::EXIT_CONFIG;

#[derive(Debug, Serialize)]
struct Item {
    file: String,
    line: usize,
    rule: Rule,
    decision: Decision,
    lock: Option<crate::ddl::Lock>,
    table: Option<String>,
    rewrite: bool,
    scan: bool,
    breaks_clients: bool,
    detail: String,
    alternative: String,
    statement: String,
    /// Rule ids named in a `ddlgate:allow` comment that the role may not use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ignored_overrides: Vec<String>,
    /// The statement's safe phased plan, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<Plan>,
}

#[derive(Debug, Serialize)]
struct Report {
    pg_version: u32,
    files: usize,
    statements: usize,
    stopped: usize,
    findings: Vec<Item>,
}

pub fn run(config: Option<&Path>, args: LintArgs) -> ExitCode {
    if args.list_rules {
        let mut out = String::new();
        for r in Rule::ALL {
            out.push_str(&format!(
                "{:<38} {:<8} {}\n",
                r.id(),
                r.default_decision().as_str(),
                r.summary()
            ));
        }
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::stdout().write_all(out.as_bytes());
        return ExitCode::SUCCESS;
    }
    let ddl = match config.map(FileConfig::load).transpose() {
        Ok(file) => match file.map(|f| f.ddl.resolve()).transpose() {
            Ok(ddl) => ddl.unwrap_or_default(),
            Err(e) => return fail(&e.to_string()),
        },
        Err(e) => return fail(&e.to_string()),
    };
    let policy = ddl.policy.clone();
    // The existing database's facts: from a live catalog, a schema file,
    // or nothing (then every fact is unknown and findings say so).
    let url = args
        .database
        .as_deref()
        .filter(|d| d.starts_with("postgres://") || d.starts_with("postgresql://"));
    let mut catalog = Catalog::default();
    if let Some(url) = url {
        match super::catalog::read_live(url, ddl.small_table_size) {
            Ok(c) => catalog = c,
            Err(e) => return fail(&format!("--database: {e}")),
        }
    }
    if let Some(path) = &args.schema {
        match std::fs::read(path) {
            Ok(sql) => catalog = catalog.overlaid_by(&crate::ddl::schema::read_schema(&sql)),
            Err(e) => return fail(&format!("--schema {}: {e}", path.display())),
        }
    }
    // The database name a URL ends in scopes the policy, as a name does.
    let database_name = args.database.as_deref().map(|d| match url {
        Some(u) => crate::upstream::UpstreamTarget::parse(u)
            .ok()
            .and_then(|t| t.database)
            .unwrap_or_default(),
        None => d.to_owned(),
    });
    if args.paths.is_empty() {
        return fail("no input: give migration files, directories, or - for stdin");
    }
    let mut inputs = Vec::new();
    for p in &args.paths {
        if let Err(e) = collect(p, &mut inputs) {
            return fail(&format!("{}: {e}", p.display()));
        }
    }
    let who = Who {
        user: args.user.as_deref().unwrap_or(""),
        database: database_name.as_deref().unwrap_or(""),
    };
    let mut report = Report {
        pg_version: args.pg_version,
        files: inputs.len(),
        statements: 0,
        stopped: 0,
        findings: Vec::new(),
    };
    // One analyzer for all files, in order: later migrations alter the
    // tables earlier ones created, and their column types matter. A table
    // a file creates is that file's own (empty, unseen) until it ends; the
    // next file runs in a later deploy, when others may use it.
    let mut analyzer = Analyzer::for_script();
    for input in &inputs {
        let (name, bytes) = match read_input(input) {
            Ok(v) => v,
            Err(e) => return fail(&format!("{}: {e}", input.display())),
        };
        analyzer.end_transaction();
        analyzer.forget_session_objects();
        let ctx = Lint {
            major: args.pg_version,
            policy: &policy,
            who,
            catalog: &catalog,
        };
        lint_one(&mut analyzer, &name, &bytes, &ctx, &mut report);
    }
    let out = match args.format {
        LintFormat::Json => serde_json::to_string_pretty(&report).expect("serializable") + "\n",
        LintFormat::Text => text(&report, args.plan),
    };
    let _ = std::io::stdout().write_all(out.as_bytes());
    if report.stopped > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

struct Lint<'a> {
    major: u32,
    policy: &'a Policy,
    who: Who<'a>,
    catalog: &'a Catalog,
}

fn lint_one(analyzer: &mut Analyzer, name: &str, sql: &[u8], ctx: &Lint<'_>, r: &mut Report) {
    let (policy, who) = (ctx.policy, ctx.who);
    for a in analyzer.analyze(sql, Mode::Script, false, ctx.major, ctx.catalog) {
        r.statements += 1;
        let text = &sql[a.range.clone()];
        let judgement = policy.judge(text, &a.findings, who);
        if judgement.decision().stops() {
            r.stopped += 1;
        }
        let start = skip_trivia(sql, a.range.start);
        let line = line_of(sql, start);
        let statement = decode(&sql[start..a.range.end]).trim().to_owned();
        for (f, j) in a.findings.iter().zip(&judgement.judged) {
            r.findings.push(Item {
                file: name.to_owned(),
                line,
                rule: f.rule,
                decision: j.decision,
                lock: f.lock,
                table: f.table.clone(),
                rewrite: f.rewrite,
                scan: f.scan,
                breaks_clients: f.breaks_clients,
                detail: f.detail.clone(),
                alternative: f.alternative.clone(),
                statement: statement.clone(),
                ignored_overrides: judgement.ignored_overrides.clone(),
                plan: a.plan.clone(),
            });
        }
    }
}

fn text(r: &Report, plans: bool) -> String {
    let mut out = String::new();
    let mut last_plan: Option<(&str, usize)> = None;
    for f in &r.findings {
        out.push_str(&format!(
            "{}:{}: {} [{}] {}\n    instead: {}\n",
            f.file,
            f.line,
            f.decision.as_str(),
            f.rule,
            f.detail,
            f.alternative
        ));
        // A statement's plan once, after its first finding.
        if let (true, Some(plan)) = (plans, &f.plan) {
            if last_plan != Some((&f.file, f.line)) {
                out.push_str("    plan:\n");
                for line in plan.render().lines() {
                    out.push_str(&format!("      {line}\n"));
                }
                last_plan = Some((&f.file, f.line));
            }
        }
        if !f.ignored_overrides.is_empty() {
            out.push_str(&format!(
                "    note: ddlgate:allow {} ignored: the role (--user) is not in ddl.override_roles\n",
                f.ignored_overrides.join(",")
            ));
        }
    }
    out.push_str(&format!(
        "{} file(s), {} statement(s), {} finding(s), {} statement(s) would be stopped \
         (PostgreSQL {})\n",
        r.files,
        r.statements,
        r.findings.len(),
        r.stopped,
        r.pg_version
    ));
    out
}

/// Files as given, and `.sql` files under directories in name order (the
/// order migration tools apply them).
fn collect(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if p.as_os_str() == "-" || !p.is_dir() {
        out.push(p.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for e in entries {
        if e.is_dir() {
            collect(&e, out)?;
        } else if e.extension().is_some_and(|x| x == "sql") {
            out.push(e);
        }
    }
    Ok(())
}

fn read_input(p: &Path) -> std::io::Result<(String, Vec<u8>)> {
    if p.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        return Ok(("<stdin>".into(), buf));
    }
    Ok((p.display().to_string(), std::fs::read(p)?))
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("ddlgate lint: {msg}");
    ExitCode::from(EXIT_CONFIG)
}
