//! Classifying a whole query string (or a migration file): statement by
//! statement, tracking the transaction they run in, so that rules about
//! "the same transaction" and "inside a transaction block" see the truth.

use std::borrow::Cow;
use std::ops::Range;

use super::fastpath::is_ddl_word;
use super::lexer::{
    first_word, plain_literal_backslash, skip_trivia, split, word_at, Reading, Strings,
};
use super::op::{fold_name, ConstraintKind, Op};
use super::plan::{self, Plan};
use super::plpgsql::{self, Embedded};
use super::read::{read, ReadBy};
use super::rule::{Finding, Lock};
use super::rules::constraints::qualify_index;
use super::rules::{check, Catalog, Context, TxFacts};
use super::types::SqlType;

/// How statements reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One simple-protocol Query: several statements share an implicit
    /// transaction.
    QueryString,
    /// One statement per Query, as psql runs a file.
    Script,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ddl,
    Begin,
    End,
    Other,
}

/// Why ddlgate cannot judge a statement as the server will read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// A request still running may change `standard_conforming_strings` or
    /// `client_encoding`, and the two readings split the text differently
    /// (then the whole string is one such "statement").
    Unsure,
    /// A schema change with a backslash in a plain `'...'` literal while
    /// `standard_conforming_strings` is off (or may be): ddlgate's parser,
    /// and the runner's connection, read it as standard.
    Backslash,
    /// A schema change with non-ASCII text in a client-only encoding
    /// (SJIS, BIG5, GBK, UHC, GB18030), which ddlgate's parser cannot read.
    Encoding,
}

impl Unreadable {
    /// Why, for the client's error.
    pub fn reason(self) -> &'static str {
        match self {
            Unreadable::Unsure => {
                "a request sent before it is still running and may change \
                 standard_conforming_strings or client_encoding, and the text reads differently \
                 under them (a backslash in a quoted string, or multibyte text)"
            }
            Unreadable::Backslash => {
                "it holds a backslash in a quoted string while standard_conforming_strings is \
                 off (or may be), which ddlgate cannot read exactly"
            }
            Unreadable::Encoding => {
                "it holds non-ASCII text in a client-only encoding (SJIS, BIG5, GBK, UHC, \
                 GB18030), which ddlgate cannot read exactly"
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Analyzed {
    /// Where the statement is in the input (with its leading comments).
    pub range: Range<usize>,
    pub kind: Kind,
    pub ops: Vec<Op>,
    pub read_by: Option<ReadBy>,
    pub findings: Vec<Finding>,
    /// It ran inside a transaction block.
    pub in_transaction: bool,
    /// The safe phased form, when every finding has one.
    pub plan: Option<Plan>,
    /// The gate cannot read it as the server will: refused whatever the
    /// policy says.
    pub unreadable: Option<Unreadable>,
}

impl Analyzed {
    /// The first table the statement names, for logs.
    pub fn table(&self) -> Option<&str> {
        self.findings
            .iter()
            .find_map(|f| f.table.as_deref())
            .or_else(|| self.ops.iter().find_map(Op::table))
    }
}

/// Carries facts from one statement to the next: what the open
/// transaction did, and the column types earlier statements defined.
#[derive(Debug, Default)]
pub struct Analyzer {
    facts: TxFacts,
    explicit_block: bool,
    /// Column types from CREATE TABLE / ADD COLUMN / ALTER TYPE seen so far
    /// (a migration file usually defines the tables it later alters).
    /// Facts the caller passes in win over these.
    learned: Catalog,
    /// Remember the tables (and their indexes) this session creates, across
    /// transactions, as its own scratch objects.
    trust_session_objects: bool,
    /// Objects created by the statements analyzed last, not yet known to
    /// exist: a CREATE that fails (the name is taken by another session's
    /// table) or is rolled back must not make that name the session's.
    /// The gate confirms them once the server says the statement succeeded
    /// and committed (`confirm_later`); a script (lint) takes them at once.
    unconfirmed: Vec<Created>,
    confirm_later: bool,
    /// Only the findings are wanted (the gate's pre-pass that finds which
    /// facts to look up): no plans are built.
    findings_only: bool,
}

/// An object a statement creates, the session's own once the statement
/// succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A permanent relation (table, index, view, sequence; an index's name
    /// qualified with its table's schema) or, with `type_`, a type or
    /// domain, named as written. A session's gate reads its OID right
    /// after the statement succeeded and keeps only that (`Oid`); a script
    /// keeps the name.
    Named {
        name: String,
        type_: bool,
        /// IF NOT EXISTS: the name may have been an existing object.
        may_exist: bool,
    },
    TempTable(String),
    /// The object with this OID (in pg_class or pg_type).
    Oid(u32),
}

impl Analyzer {
    /// An analyzer for one session; `trust_session_objects` makes the
    /// tables it creates (and their indexes) its own, so that later changes
    /// to them are not a risk to anyone, once the caller confirms that the
    /// statements creating them succeeded (`take_unconfirmed`, `confirm`).
    pub fn for_session(trust_session_objects: bool) -> Self {
        Analyzer {
            trust_session_objects,
            confirm_later: true,
            ..Analyzer::default()
        }
    }

    /// An analyzer for a migration script, whose statements are taken to
    /// succeed: what they create is the script's own at once.
    pub fn for_script() -> Self {
        Analyzer {
            trust_session_objects: true,
            ..Analyzer::default()
        }
    }

    /// An analyzer whose callers need findings, never plans.
    pub fn findings_only() -> Self {
        Analyzer {
            findings_only: true,
            ..Analyzer::default()
        }
    }

    /// What the last statements created, to confirm once they succeed.
    pub fn take_unconfirmed(&mut self) -> Vec<Created> {
        std::mem::take(&mut self.unconfirmed)
    }

    /// The objects exist and are the session's: the statements that created
    /// them succeeded and committed.
    pub fn confirm(&mut self, created: Vec<Created>) {
        let f = &mut self.facts;
        for c in created {
            match c {
                Created::Named { name, .. } => {
                    f.session_tables.insert(fold_name(&name));
                }
                Created::TempTable(t) => {
                    f.temp_tables.insert(t);
                }
                Created::Oid(oid) => {
                    // Bounded: past it the oldest are forgotten (judged
                    // like anyone's), never trusted wrongly.
                    if f.session_oids.len() >= MAX_SESSION_OBJECTS {
                        f.session_oids.clear();
                    }
                    f.session_oids.insert(oid);
                }
            }
        }
    }

    /// Objects the open transaction created (their statements succeeded):
    /// invisible to other sessions until it commits.
    pub fn created_in_transaction(&mut self, oids: impl IntoIterator<Item = u32>) {
        self.facts.tx_oids.extend(oids);
    }

    fn created(&mut self, c: Created) {
        if matches!(c, Created::Named { .. }) && !self.trust_session_objects {
            return;
        }
        if self.confirm_later {
            self.unconfirmed.push(c);
        } else {
            self.confirm(vec![c]);
        }
    }

    /// Forgets the session's own objects (a new migration file in lint:
    /// earlier files ran in earlier deploys).
    pub fn forget_session_objects(&mut self) {
        self.facts.session_tables.clear();
        self.facts.session_oids.clear();
    }

    /// The transaction ended (the session saw ReadyForQuery 'I').
    pub fn end_transaction(&mut self) {
        self.explicit_block = false;
        // Called on every idle ReadyForQuery: free when there is nothing.
        if !self.facts.created_tables.is_empty()
            || !self.facts.not_valid.is_empty()
            || !self.facts.renamed_to.is_empty()
            || !self.facts.tx_oids.is_empty()
        {
            self.clear_facts();
        }
    }

    /// Forgets what the transaction did; temporary tables and the
    /// session's own objects stay known.
    fn clear_facts(&mut self) {
        let f = &mut self.facts;
        f.created_tables.clear();
        f.created_temp.clear();
        f.not_valid.clear();
        f.renamed_to.clear();
        f.tx_oids.clear();
    }

    /// Analyzes `sql` read as a fresh session reads it (ddlgate's own SQL,
    /// migration files); see [`Analyzer::analyze_read`].
    pub fn analyze(
        &mut self,
        sql: &[u8],
        mode: Mode,
        session_in_tx: bool,
        server_major: u32,
        catalog: &Catalog,
    ) -> Vec<Analyzed> {
        self.analyze_read(
            sql,
            Reading::STANDARD,
            mode,
            session_in_tx,
            server_major,
            catalog,
        )
    }

    /// Analyzes a session's `sql`, split as `reading` says the server reads
    /// it. When the reading is not sure and another would split it
    /// otherwise, the whole string is one statement marked
    /// [`Unreadable::Unsure`]; a schema change the parser cannot read as
    /// the server will is marked too.
    pub fn analyze_read(
        &mut self,
        sql: &[u8],
        reading: Reading,
        mode: Mode,
        session_in_tx: bool,
        server_major: u32,
        catalog: &Catalog,
    ) -> Vec<Analyzed> {
        if reading.ambiguous(sql) {
            return vec![Analyzed {
                range: 0..sql.len(),
                kind: Kind::Other,
                ops: Vec::new(),
                read_by: None,
                findings: Vec::new(),
                in_transaction: self.explicit_block || session_in_tx,
                plan: None,
                unreadable: Some(Unreadable::Unsure),
            }];
        }
        if catalog.rejected_by_parser {
            // The server parses the whole string before running any of it:
            // nothing runs, nothing changes, and its error is the answer.
            return split(sql, reading.lex)
                .into_iter()
                .map(|range| Analyzed {
                    range,
                    kind: Kind::Other,
                    ops: Vec::new(),
                    read_by: None,
                    findings: Vec::new(),
                    in_transaction: self.explicit_block || session_in_tx,
                    plan: None,
                    unreadable: None,
                })
                .collect();
        }
        self.explicit_block |= session_in_tx;
        let pieces = split(sql, reading.lex);
        let implicit = mode == Mode::QueryString && pieces.len() > 1;
        let mut out = Vec::with_capacity(pieces.len());
        for range in pieces {
            let text = &sql[range.clone()];
            let kind = kind_of(text);
            let in_transaction = self.explicit_block || implicit;
            let mut a = Analyzed {
                range,
                kind,
                ops: Vec::new(),
                read_by: None,
                findings: Vec::new(),
                in_transaction,
                plan: None,
                unreadable: None,
            };
            if kind == Kind::Ddl {
                a.unreadable = unreadable(text, reading);
                if a.unreadable.is_some() {
                    out.push(a);
                    continue;
                }
            }
            match kind {
                Kind::Begin => self.explicit_block = true,
                Kind::End => {
                    self.explicit_block = false;
                    self.clear_facts();
                }
                Kind::Ddl => {
                    let text = decode(text);
                    match self.ddl(&text, in_transaction, server_major, catalog) {
                        Some((ops, by, mut findings)) => {
                            if !self.findings_only {
                                a.plan = self.plan(&text, &findings, server_major, catalog);
                            }
                            if let Some(plan) = &a.plan {
                                // The safe form is the plan's exact SQL.
                                let sql = plan.sql();
                                for f in &mut findings {
                                    f.alternative.clone_from(&sql);
                                }
                            }
                            a.ops = ops;
                            a.read_by = Some(by);
                            a.findings = findings;
                        }
                        // A DO block that changes no schema: ordinary traffic.
                        None => a.kind = Kind::Other,
                    }
                }
                Kind::Other => {}
            }
            if !self.explicit_block && mode == Mode::Script {
                self.clear_facts();
            }
            out.push(a);
        }
        if !self.explicit_block {
            self.clear_facts();
        }
        out
    }

    /// Reads and checks one schema change; a DO block by the statements its
    /// body runs (`None` when it runs none).
    fn ddl(
        &mut self,
        text: &str,
        in_transaction: bool,
        server_major: u32,
        catalog: &Catalog,
    ) -> Option<(Vec<Op>, ReadBy, Vec<Finding>)> {
        if !first_word(text.as_bytes()).eq_ignore_ascii_case(b"DO") {
            let (ops, by) = read(text);
            let ops = if ops.is_empty() || ops.iter().any(Op::incomplete) {
                vec![Op::Unrecognized {
                    alter_table: first_word(text.as_bytes()).eq_ignore_ascii_case(b"ALTER")
                        && second_word(text.as_bytes()).eq_ignore_ascii_case(b"TABLE"),
                    table: None,
                }]
            } else {
                ops
            };
            let findings = self.check_ops(&ops, in_transaction, server_major, catalog, true);
            return Some((ops, by, findings));
        }
        let Some(body) = plpgsql::embedded(text) else {
            let ops = vec![Op::Opaque];
            let findings = self.check_ops(&ops, in_transaction, server_major, catalog, true);
            return Some((ops, ReadBy::Tokens, findings));
        };
        if body.is_empty() {
            return None;
        }
        let (mut all_ops, mut all_findings) = (Vec::new(), Vec::new());
        for e in body {
            // A DO block runs as one statement: its parts share a transaction.
            let (ops, facts) = match e {
                Embedded::Dynamic => (vec![Op::Opaque], true),
                Embedded::Sql { text, templated } => {
                    let (ops, _) = read(&text);
                    let ops = if ops.is_empty() || ops.iter().any(Op::incomplete) {
                        vec![Op::Unrecognized {
                            alter_table: false,
                            table: None,
                        }]
                    } else {
                        ops
                    };
                    // Stand-in names from format(): no fact about them holds.
                    (ops, !templated)
                }
            };
            let none = Catalog::default();
            let cat = if facts { catalog } else { &none };
            all_findings.extend(self.check_ops(&ops, true, server_major, cat, facts));
            all_ops.extend(ops);
        }
        Some((all_ops, ReadBy::Tokens, all_findings))
    }

    /// The plan for a statement whose findings all have a safe phased form.
    /// Its brief parts are checked to be safe by the same rules.
    fn plan(
        &self,
        text: &str,
        findings: &[Finding],
        server_major: u32,
        catalog: &Catalog,
    ) -> Option<Plan> {
        if findings.is_empty() || !findings.iter().all(|f| plan::covers(f.rule)) {
            return None;
        }
        let ctx = Context {
            server_major,
            in_transaction: false,
            tx: &self.facts,
            catalog,
        };
        let brief_ok = |part: &str| {
            let (ops, _) = read(part);
            !ops.is_empty() && ops.iter().all(|op| check(op, &ctx).is_empty())
        };
        plan::plan(text, catalog, &brief_ok)
    }

    /// Findings for the parts of one statement, then remembering what they
    /// create when `remember` (not for stand-in names).
    fn check_ops(
        &mut self,
        ops: &[Op],
        in_transaction: bool,
        server_major: u32,
        catalog: &Catalog,
        remember: bool,
    ) -> Vec<Finding> {
        let merged;
        let learned_nothing =
            self.learned.column_types.is_empty() && self.learned.relations.is_empty();
        let catalog = if learned_nothing || !remember {
            catalog
        } else {
            merged = self.learned.overlaid_by(catalog);
            &merged
        };
        let ctx = Context {
            server_major,
            in_transaction,
            tx: &self.facts,
            catalog,
        };
        // The parts of one statement are judged against the state before it.
        let findings = ops.iter().flat_map(|op| check(op, &ctx)).collect();
        if remember {
            for op in ops {
                self.remember(op);
            }
        }
        findings
    }

    fn learn(&mut self, table: &str, column: &str, ty: &SqlType) {
        self.learned
            .column_types
            .insert((fold_name(table), fold_name(column)), ty.clone());
    }

    fn remember(&mut self, op: &Op) {
        match op {
            Op::CreateTable {
                table,
                temporary,
                if_not_exists,
                columns,
            } => {
                self.learned.relations.insert(fold_name(table));
                if *temporary {
                    self.facts.created_tables.insert(fold_name(table));
                    self.facts.created_temp.insert(fold_name(table));
                    self.created(Created::TempTable(fold_name(table)));
                } else {
                    // IF NOT EXISTS may have found another session's table:
                    // new in this transaction only if the server says so.
                    if !*if_not_exists {
                        self.facts.created_tables.insert(fold_name(table));
                    }
                    self.created(Created::Named {
                        name: table.clone(),
                        type_: false,
                        may_exist: *if_not_exists,
                    });
                }
                if !*if_not_exists {
                    for (column, ty) in columns {
                        self.learn(table, column, ty);
                    }
                }
            }
            Op::CreateIndex {
                table,
                name: Some(name),
                if_not_exists,
                ..
            } => {
                self.learned.relations.insert(fold_name(name));
                let t = fold_name(table);
                let f = &self.facts;
                // An index on a temporary table is temporary: nothing to keep.
                if !(f.temp_tables.contains(&t) || f.created_temp.contains(&t)) {
                    self.created(Created::Named {
                        name: qualify_index(table, name),
                        type_: false,
                        may_exist: *if_not_exists,
                    });
                }
            }
            Op::CreateObject {
                kind,
                name,
                temporary: false,
                may_exist,
            } => {
                let type_ = kind == "type" || kind == "domain";
                self.created(Created::Named {
                    name: name.clone(),
                    type_,
                    may_exist: *may_exist,
                });
            }
            Op::DropTable { tables } => {
                // A script's names (a session's OIDs die with their objects,
                // and a DROP that fails forgets nothing).
                for t in tables {
                    let t = fold_name(t);
                    self.facts.session_tables.remove(&t);
                    if !self.confirm_later {
                        self.facts.temp_tables.remove(&t);
                    }
                }
            }
            Op::DropIndex { names, .. } => {
                for n in names {
                    self.facts.session_tables.remove(&fold_name(n));
                }
            }
            Op::RenameTable { table, to } => {
                // `to` is bare; it stays in the table's schema.
                // The new name is the session's once the rename succeeds
                // (it fails if another session's table has that name).
                let to = fold_name(to);
                // A session's objects keep their OIDs; a script's names move.
                if self.facts.session_tables.remove(&fold_name(table)) && !self.confirm_later {
                    self.created(Created::Named {
                        name: to.clone(),
                        type_: false,
                        may_exist: false,
                    });
                }
                if self.facts.temp_tables.remove(&fold_name(table)) {
                    self.created(Created::TempTable(to.clone()));
                }
                self.facts.renamed_to.insert(to);
            }
            Op::AddColumn(a) => self.learn(&a.table, &a.column, &a.ty),
            Op::AlterType {
                table, column, to, ..
            } => self.learn(table, column, to),
            Op::AddConstraint {
                table,
                name: Some(name),
                kind,
                not_valid: true,
            } => {
                let lock = match kind {
                    ConstraintKind::ForeignKey { .. } => Lock::ShareRowExclusive,
                    _ => Lock::AccessExclusive,
                };
                self.facts
                    .not_valid
                    .insert((fold_name(table), fold_name(name)), lock);
            }
            _ => {}
        }
    }
}

/// The most objects a session is known to have created (OIDs); a session
/// that creates more starts over, judged like anyone's.
const MAX_SESSION_OBJECTS: usize = 10_000;

/// SQL arrives in the client's encoding; keywords and names that matter
/// here are ASCII, so a lossy decode classifies the same.
/// Why a schema change's text cannot be read as the server reads it.
fn unreadable(text: &[u8], reading: Reading) -> Option<Unreadable> {
    let lex = reading.lex;
    let backslash = memchr::memchr(b'\\', text).is_some();
    if backslash {
        let escape = lex.strings == Strings::Escape || !reading.sure;
        // A DO body is read by the server's scanner too, and a body that
        // sets the setting reads its later EXECUTE strings otherwise.
        let is_do = first_word(text).eq_ignore_ascii_case(b"DO");
        if (escape && (is_do || plain_literal_backslash(text, lex)))
            || (is_do && contains_ignore_case(text, b"standard_conforming_strings"))
        {
            return Some(Unreadable::Backslash);
        }
    }
    if lex.encoding.is_client_only() && !text.is_ascii() {
        return Some(Unreadable::Encoding);
    }
    None
}

fn contains_ignore_case(text: &[u8], word: &[u8]) -> bool {
    text.windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word))
}

pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

fn kind_of(text: &[u8]) -> Kind {
    let w = first_word(text);
    if is_ddl_word(w) {
        return Kind::Ddl;
    }
    let second = second_word(text);
    if w.eq_ignore_ascii_case(b"BEGIN") || w.eq_ignore_ascii_case(b"START") {
        Kind::Begin
    } else if [&b"COMMIT"[..], b"END", b"ROLLBACK", b"ABORT"]
        .iter()
        .any(|k| w.eq_ignore_ascii_case(k))
        && !second.eq_ignore_ascii_case(b"TO")
        && !second.eq_ignore_ascii_case(b"PREPARED")
    {
        Kind::End
    } else {
        Kind::Other
    }
}

fn second_word(text: &[u8]) -> &[u8] {
    let start = skip_trivia(text, 0);
    let first = word_at(text, start);
    word_at(text, skip_trivia(text, start + first.len()))
}
