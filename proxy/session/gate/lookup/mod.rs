//! Catalog facts some rules need, read on the session's own connection just
//! before deciding:
//! - a column's current type (is ALTER COLUMN TYPE binary-coercible?);
//! - whether a validated `CHECK (col IS NOT NULL)` exists (then SET NOT NULL
//!   skips its scan on PostgreSQL 12+: the last step of the safe recipe);
//! - the table's size: a rewrite, scan or index build of an empty table (or
//!   one under `ddl.small_table_size`) holds its lock for no time;
//! - whether functions a DEFAULT calls are stable (then ADD COLUMN stores
//!   the value once instead of rewriting every row);
//! - whether a new column's type is a domain with constraints (then ADD
//!   COLUMN rewrites the table to check them).
//!
//! - what depends on a column whose type changes (`dependents`), for the
//!   type-change plan.
//!
//! Names travel as Bind parameters, never inside SQL.

use crate::ddl::dependents;
use crate::ddl::lexer::Reading;

use crate::ddl::op::{fold_name, unquote, ConstraintKind, Op, Volatility};
use crate::ddl::rules::constraints::qualify_index;
use crate::ddl::rules::ColumnFacts;
use crate::ddl::types::SqlType;
use crate::ddl::{Analyzer, Catalog, Created, Mode};
use crate::protocol::backend::TxStatus;
use crate::protocol::backend::{data_row, error_field};
use crate::protocol::frontend;

mod sql;
use sql::*;

/// Type names that are never domains, so need no lookup.
const BUILTIN_TYPES: &[&str] = &[
    "integer",
    "bigint",
    "smallint",
    "boolean",
    "double precision",
    "real",
    "text",
    "uuid",
    "json",
    "jsonb",
    "bytea",
    "date",
    "money",
    "xml",
    "oid",
    "tsvector",
    "point",
    "int4range",
    "int8range",
    "tstzrange",
    "daterange",
    "numrange",
    "macaddr",
    "char",
    "name",
];

/// What a migration submitted by the session needs to know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFacts {
    pub role: String,
    pub search_path: String,
    /// `ddlgate.mode` as the session has it, if set.
    pub mode: Option<String>,
    /// `ddlgate.postpone_cutover`, if set.
    pub postpone_cutover: Option<String>,
}

/// One fact to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Type and NOT NULL proof of `(table, column)` as written.
    Column(String, String),
    /// Size of a table as written.
    Size(String),
    /// Volatility of a function (lower-cased name).
    Function(String),
    /// Whether a type (as written) is a domain with constraints.
    Domain(String),
    /// Whether a relation (as written) exists, and what it is.
    Relation(String),
    /// The type or domain a name (as written) resolves to.
    Type(String),
    /// A partitioned table's DEFAULT partition (table as written).
    DefaultPartition(String),
    /// A table's access method (as written).
    AccessMethod(String),
    /// Whether an index's columns are all NOT NULL (name as written,
    /// qualified with its table's schema).
    IndexNotNull(String),
    /// What depends on `(table, column)` as written (a type change's plan).
    Dependents(String, String),
    /// The session's current role and search_path (for the runner).
    Session,
    /// Whether the server's parser accepts a statement (its bytes as
    /// sent): one it rejects is passed on, so the client gets PostgreSQL's
    /// own error rather than a finding about a statement that cannot run.
    Syntax(Vec<u8>),
}

impl Want {
    /// The names the fact is read by: a table and column, or one name.
    fn names(&self) -> (&str, Option<&str>) {
        match self {
            Want::Column(t, c) | Want::Dependents(t, c) => (t, Some(c)),
            Want::Size(n)
            | Want::Function(n)
            | Want::Domain(n)
            | Want::Relation(n)
            | Want::Type(n)
            | Want::DefaultPartition(n)
            | Want::AccessMethod(n)
            | Want::IndexNotNull(n) => (n, None),
            Want::Session | Want::Syntax(_) => ("", None),
        }
    }
}

/// The facts that could change the decision on `sql`.
/// Whether the first statement of `sql` is one ddlgate has a plan for
/// (it may become a migration).
pub fn plannable_first(sql: &[u8], reading: Reading, major: u32) -> bool {
    Analyzer::findings_only()
        .analyze_read(
            sql,
            reading,
            Mode::QueryString,
            true,
            major,
            &Catalog::default(),
        )
        .first()
        .is_some_and(|s| {
            !s.findings.is_empty() && s.findings.iter().all(|f| crate::ddl::plan::covers(f.rule))
        })
}

pub fn wanted(sql: &[u8], reading: Reading, major: u32) -> Vec<Want> {
    let mut out: Vec<Want> = Vec::new();
    let mut add = |w: Want| {
        // A name that did not decode is not the client's name: looked up,
        // it would not be found, and "missing" would exempt the statement.
        let (a, b) = w.names();
        let undecoded = std::iter::once(a)
            .chain(b)
            .any(|n| n.contains(char::REPLACEMENT_CHARACTER));
        if !undecoded && !out.contains(&w) {
            out.push(w);
        }
    };
    // A client's backfill ddlgate may defer runs as the session's role.
    let first_fill = crate::ddl::lexer::statements(sql, reading.lex)
        .next()
        .and_then(|r| std::str::from_utf8(&sql[r]).ok())
        .filter(|s| crate::ddl::lexer::first_word(s.as_bytes()).eq_ignore_ascii_case(b"UPDATE"))
        .and_then(crate::ddl::plan::client::fill_nulls);
    if first_fill.is_some() {
        add(Want::Session);
    }
    let stmts = Analyzer::findings_only().analyze_read(
        sql,
        reading,
        Mode::QueryString,
        false,
        major,
        &Catalog::default(),
    );
    for (i, s) in stmts.into_iter().enumerate() {
        let plannable =
            !s.findings.is_empty() && s.findings.iter().all(|f| crate::ddl::plan::covers(f.rule));
        // The first statement may become a migration (alone, or deferred
        // past COMMIT), run as the session's role; the facts of later ones
        // would be read before the statements ahead of them ran (a string
        // is sent in parts, each looked up when it comes).
        let first = i == 0;
        if first && plannable {
            add(Want::Session);
        }
        let size_matters = s.findings.iter().any(|f| f.rule.size_bound());
        let has_findings = !s.findings.is_empty();
        // Parsing CREATE TABLE AS (or SELECT INTO) analyses its query, which
        // opens tables: never probed (the lookup opens no table another
        // session may hold).
        let creates = s.ops.iter().any(|op| matches!(op, Op::CreateTable { .. }));
        if has_findings && !creates {
            add(Want::Syntax(sql[s.range.clone()].to_vec()));
        }
        for op in &s.ops {
            if has_findings {
                // A statement on objects that do not exist harms nobody.
                for r in op.existing_relations() {
                    add(Want::Relation(r.to_owned()));
                }
                // Types and domains: whether they are the session's own.
                match op {
                    Op::DropObject { kind, names, .. } if kind == "type" || kind == "domain" => {
                        for n in names {
                            add(Want::Type(n.clone()));
                        }
                    }
                    Op::RenameObject { kind, name, .. } if kind == "type" || kind == "domain" => {
                        add(Want::Type(name.clone()));
                    }
                    _ => {}
                }
                if let Op::DropColumn { table, columns } = op {
                    for c in columns {
                        add(Want::Column(table.clone(), c.clone()));
                    }
                }
            }
            if let (true, Op::AlterType { table, column, .. }) = (first && plannable, op) {
                add(Want::Dependents(table.clone(), column.clone()));
            }
            match op {
                Op::AlterType { table, column, .. }
                | Op::SetNotNull { table, column }
                | Op::DropDefault { table, column } => {
                    add(Want::Column(table.clone(), column.clone()));
                }
                Op::CreatePartition { parent: table, .. } | Op::AttachPartition { table, .. } => {
                    add(Want::DefaultPartition(table.clone()));
                }
                Op::SetAccessMethod { table, .. } => add(Want::AccessMethod(table.clone())),
                Op::AddConstraint {
                    table,
                    kind: ConstraintKind::PrimaryKeyOfIndex { index },
                    ..
                } => add(Want::IndexNotNull(qualify_index(table, index))),
                _ => {}
            }
            if let Op::AddColumn(a) = op {
                if let Some(Volatility::Unknown(fns)) = &a.default {
                    for f in fns {
                        add(Want::Function(f.clone()));
                    }
                }
                if let SqlType::Other(name) = &a.ty {
                    if !BUILTIN_TYPES.contains(&name.as_str()) && !name.ends_with("[]") {
                        add(Want::Domain(name.clone()));
                    }
                }
            }
            if size_matters {
                if let Some(t) = op.sized_table() {
                    add(Want::Size(t.to_owned()));
                }
            }
        }
    }
    out
}

/// The statement name each fact is read with, and its SQL.
const STATEMENTS: [(&[u8], &str); 11] = [
    (COLUMN, COLUMN_SQL),
    (TYPE, TYPE_SQL),
    (SIZE, SIZE_SQL),
    (FUNCTION, FUNCTION_SQL),
    (DOMAIN, DOMAIN_SQL),
    (RELATION, RELATION_SQL),
    (PARTITIONS, PARTITIONS_SQL),
    (ACCESS_METHOD, ACCESS_METHOD_SQL),
    (INDEX_NOT_NULL, INDEX_NOT_NULL_SQL),
    (SESSION, SESSION_SQL),
    (DEPENDENTS, dependents::SQL),
];

/// After a lookup that failed inside the client's transaction: undoes the
/// failure, leaving the transaction as the client left it.
pub const ROLLBACK_SQL: &str =
    "ROLLBACK TO SAVEPOINT ddlgate_lookup; RELEASE SAVEPOINT ddlgate_lookup";

impl Want {
    fn statement(&self) -> &'static [u8] {
        match self {
            Want::Column(..) => COLUMN,
            Want::Size(_) => SIZE,
            Want::Function(_) => FUNCTION,
            Want::Domain(_) => DOMAIN,
            Want::Relation(_) => RELATION,
            Want::Type(_) => TYPE,
            Want::DefaultPartition(_) => PARTITIONS,
            Want::AccessMethod(_) => ACCESS_METHOD,
            Want::IndexNotNull(_) => INDEX_NOT_NULL,
            Want::Session => SESSION,
            Want::Dependents(..) => DEPENDENTS,
            Want::Syntax(_) => SYNTAX,
        }
    }
}

/// One extended batch (own Sync, named statements and portals) with one
/// Execute per fact, in order. Inside a transaction block it runs in a
/// savepoint, so that an error (a name the server rejects, a statement
/// timeout, a cancel) can be rolled back without aborting the client's
/// transaction.
pub fn batch(wants: &[Want], in_transaction: bool, out: &mut Vec<u8>) {
    // A batch that failed earlier skipped its Closes: close first (closing
    // a statement that does not exist is not an error).
    for (name, _) in STATEMENTS {
        frontend::close_statement(name, out);
    }
    frontend::close_statement(SYNTAX, out);
    if in_transaction {
        run_once(SAVEPOINT, SAVEPOINT_SQL, out);
    }
    // First: a statement the parser rejects skips the rest of the batch,
    // and its facts are not needed.
    for w in wants {
        if let Want::Syntax(text) = w {
            frontend::parse(SYNTAX, text, out);
            frontend::close_statement(SYNTAX, out);
        }
    }
    for (name, sql) in STATEMENTS {
        if wants.iter().any(|w| w.statement() == name) {
            frontend::parse(name, sql.as_bytes(), out);
        }
    }
    for w in wants.iter().filter(|w| !matches!(w, Want::Syntax(_))) {
        let name = w.statement();
        match w.names() {
            // The column as pg_attribute stores it.
            (table, Some(column)) => {
                let attname = unquote(column);
                frontend::bind_params(name, name, &[table.as_bytes(), attname.as_bytes()], out);
            }
            (n, None) => frontend::bind_params(name, name, &[n.as_bytes()], out),
        }
        frontend::execute(name, out);
        frontend::close_portal(name, out);
    }
    for (name, _) in STATEMENTS {
        if wants.iter().any(|w| w.statement() == name) {
            frontend::close_statement(name, out);
        }
    }
    if in_transaction {
        run_once(RELEASE, RELEASE_SQL, out);
    }
    frontend::sync(out);
}

fn run_once(name: &[u8], sql: &str, out: &mut Vec<u8>) {
    frontend::close_statement(name, out);
    frontend::parse(name, sql.as_bytes(), out);
    frontend::bind(name, name, out);
    frontend::execute(name, out);
    frontend::close_portal(name, out);
    frontend::close_statement(name, out);
}

/// Objects a unit of the client's created, read right behind it (nothing
/// else runs on the session in between, so their names resolve as they
/// did): the session keeps their OIDs, never their names.
pub struct Record {
    named: Vec<Created>,
    catalog: Catalog,
    /// How the unit ended, once it has: its transaction status when it
    /// succeeded (`None`: it failed, or has not ended).
    pub outcome: Option<TxStatus>,
    /// The server answered a CREATE ... IF NOT EXISTS with "already
    /// exists, skipping": those objects are not new.
    pub skipped: bool,
}

impl Record {
    /// What to read for `named` (permanent objects as written), if any.
    pub fn wants(named: &[Created]) -> Vec<Want> {
        let mut out = Vec::new();
        for c in named {
            let w = match c {
                Created::Named { name, type_, .. }
                    if !name.contains(char::REPLACEMENT_CHARACTER) =>
                {
                    if *type_ {
                        Want::Type(name.clone())
                    } else {
                        Want::Relation(name.clone())
                    }
                }
                _ => continue,
            };
            if !out.contains(&w) {
                out.push(w);
            }
        }
        out
    }

    /// The OIDs of the objects the unit made: permanent ones its names
    /// resolve to (a name that resolves to a temporary relation names
    /// another object than the one created).
    pub fn made(&self) -> Vec<Created> {
        let mut out = Vec::new();
        for c in &self.named {
            let Created::Named {
                name, may_exist, ..
            } = c
            else {
                continue;
            };
            if *may_exist && self.skipped {
                continue;
            }
            let n = fold_name(name);
            if self.catalog.temp_relations.contains(&n) {
                continue;
            }
            if let Some(&(oid, _)) = self.catalog.objects.get(&n) {
                out.push(Created::Oid(oid));
            }
        }
        out
    }
}

/// Responses to a lookup batch: each DataRow belongs to the fact whose
/// Execute is current; each CommandComplete moves to the next.
pub struct Lookup {
    pub wants: Vec<Want>,
    next: usize,
    /// The current fact's query returned a row.
    got_row: bool,
    /// CommandCompletes to pass before the first fact's (the savepoint's).
    prelude: usize,
    /// The server's error, if the lookup failed: SQLSTATE and message.
    pub error: Option<(String, String)>,
    /// Tables up to this many bytes count as small.
    small_table_bytes: u64,
    /// The session's role, search_path and mode, if asked for.
    pub session: Option<SessionFacts>,
    /// Read for what a unit created, not for a decision.
    pub record: Option<Box<Record>>,
}

impl Lookup {
    pub fn new(mut wants: Vec<Want>, small_table_bytes: u64, in_transaction: bool) -> Self {
        // Probes answer with no CommandComplete: not in the Execute order.
        wants.retain(|w| !matches!(w, Want::Syntax(_)));
        Lookup {
            wants,
            next: 0,
            got_row: false,
            prelude: usize::from(in_transaction),
            error: None,
            small_table_bytes,
            session: None,
            record: None,
        }
    }

    /// The lookup behind a unit that creates `named` objects (with its
    /// batch in `out`), or `None` when there is nothing to read.
    pub fn recording(named: Vec<Created>, in_transaction: bool, out: &mut Vec<u8>) -> Option<Self> {
        let wants = Record::wants(&named);
        if wants.is_empty() {
            return None;
        }
        batch(&wants, in_transaction, out);
        let mut l = Lookup::new(wants, 0, in_transaction);
        l.record = Some(Box::new(Record {
            named,
            catalog: Catalog::default(),
            outcome: None,
            skipped: false,
        }));
        Some(l)
    }

    /// A message of a recording lookup: into its own facts.
    pub fn on_record_message(&mut self, tag: u8, body: &[u8]) {
        if let Some(mut r) = self.record.take() {
            self.on_message(tag, body, &mut r.catalog);
            self.record = Some(r);
        }
    }

    pub fn on_message(&mut self, tag: u8, body: &[u8], catalog: &mut Catalog) {
        match tag {
            b'D' => {
                self.got_row = true;
                let (Some(want), Some(cols)) = (self.wants.get(self.next), data_row(body)) else {
                    return;
                };
                match want {
                    Want::Column(table, column) => {
                        let key = (fold_name(table), fold_name(column));
                        if let Some(Some(ty)) = cols.first() {
                            let ty = SqlType::parse(&String::from_utf8_lossy(ty));
                            catalog.column_types.insert(key.clone(), ty);
                        }
                        let yes = |i: usize| cols.get(i) == Some(&Some(&b"t"[..]));
                        if yes(1) {
                            catalog.not_null_checks.insert(key.clone());
                        }
                        if cols.len() >= 6 {
                            let collation = cols[5]
                                .map(|c| String::from_utf8_lossy(c).into_owned())
                                .unwrap_or_default();
                            catalog.columns.insert(
                                key,
                                ColumnFacts {
                                    not_null: yes(2),
                                    has_check: yes(3),
                                    indexed: yes(4),
                                    collation,
                                },
                            );
                        }
                    }
                    Want::Size(table) => {
                        let bytes = cols
                            .first()
                            .copied()
                            .flatten()
                            .and_then(|b| std::str::from_utf8(b).ok()?.parse::<u64>().ok());
                        if bytes.is_some_and(|b| b <= self.small_table_bytes) {
                            catalog.small_tables.insert(fold_name(table));
                        }
                    }
                    Want::Function(name) => {
                        if cols.first() == Some(&Some(&b"t"[..])) {
                            catalog.stable_functions.insert(name.clone());
                        }
                    }
                    Want::Domain(name) => {
                        if cols.first() == Some(&Some(&b"t"[..])) {
                            catalog.constrained_domains.insert(name.clone());
                        }
                    }
                    Want::Relation(name) => {
                        let n = fold_name(name);
                        if cols.first() == Some(&Some(&b"t"[..])) {
                            catalog.temp_relations.insert(n.clone());
                        }
                        if let Some(oid) = number::<u32>(&cols, 1) {
                            catalog.relation_oids.insert(n.clone(), oid);
                        }
                        let kind = cols.get(3).copied().flatten().and_then(|k| k.first());
                        if let (Some(oid), Some(&kind)) = (number::<u32>(&cols, 2), kind) {
                            catalog.objects.insert(n.clone(), (oid, char::from(kind)));
                        }
                        if number::<u64>(&cols, 4).is_some_and(|b| b <= self.small_table_bytes) {
                            catalog.small_tables.insert(n);
                        }
                    }
                    Want::Type(name) => {
                        if let Some(oid) = number::<u32>(&cols, 0) {
                            catalog.objects.insert(fold_name(name), (oid, 'T'));
                        }
                    }
                    Want::Dependents(table, column) => dependents::on_row(
                        &cols,
                        catalog
                            .dependents
                            .entry((fold_name(table), fold_name(column)))
                            .or_default(),
                    ),
                    Want::DefaultPartition(parent) => {
                        let default = cols.first().copied().flatten().map(|name| {
                            let small = cols
                                .get(1)
                                .copied()
                                .flatten()
                                .and_then(|b| std::str::from_utf8(b).ok()?.parse::<u64>().ok())
                                .is_some_and(|b| b <= self.small_table_bytes);
                            (String::from_utf8_lossy(name).into_owned(), small)
                        });
                        catalog
                            .default_partitions
                            .insert(fold_name(parent), default);
                        if let Some(Some(key)) = cols.get(2) {
                            catalog.partition_keys.insert(
                                fold_name(parent),
                                String::from_utf8_lossy(key).into_owned(),
                            );
                        }
                    }
                    Want::IndexNotNull(index) => {
                        if cols.first() == Some(&Some(&b"t"[..])) {
                            catalog.not_null_indexes.insert(fold_name(index));
                        }
                    }
                    Want::Session => {
                        if let (Some(Some(role)), Some(Some(path))) = (cols.first(), cols.get(1)) {
                            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                            self.session = Some(SessionFacts {
                                role: text(role),
                                search_path: text(path),
                                mode: cols.get(2).copied().flatten().map(text),
                                postpone_cutover: cols.get(3).copied().flatten().map(text),
                            });
                        }
                    }
                    // Never executed: no rows.
                    Want::Syntax(_) => {}
                    Want::AccessMethod(table) => {
                        if let Some(Some(am)) = cols.first() {
                            catalog
                                .access_methods
                                .insert(fold_name(table), String::from_utf8_lossy(am).into_owned());
                        }
                    }
                }
            }
            b'C' if self.prelude > 0 => self.prelude -= 1,
            b'E' => {
                let field = |c| {
                    String::from_utf8_lossy(error_field(body, c).unwrap_or_default()).into_owned()
                };
                // Only the parser's own errors carry a position with 42601
                // ("cannot insert multiple commands", a split the server
                // reads otherwise, has none: that stays a failed lookup).
                let code = field(b'C');
                if code == crate::protocol::sqlstate::SYNTAX_ERROR
                    && error_field(body, b'P').is_some()
                {
                    catalog.rejected_by_parser = true;
                    return;
                }
                self.error = Some((code, field(b'M')));
            }
            b'C' => {
                // No row: the relation or column does not exist.
                match self.wants.get(self.next) {
                    Some(Want::Relation(name)) if !self.got_row => {
                        catalog.missing_relations.insert(fold_name(name));
                    }
                    Some(Want::Type(name)) if !self.got_row => {
                        catalog.missing_types.insert(fold_name(name));
                    }
                    Some(Want::Column(table, column)) if !self.got_row => {
                        catalog
                            .absent_columns
                            .insert((fold_name(table), fold_name(column)));
                    }
                    _ => {}
                }
                self.got_row = false;
                self.next += 1;
            }
            _ => {}
        }
    }
}

/// Column `i` of a row, read as a number.
fn number<T: std::str::FromStr>(cols: &[Option<&[u8]>], i: usize) -> Option<T> {
    cols.get(i)
        .copied()
        .flatten()
        .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The facts wanted, without the parser probes.
    fn facts(sql: &[u8]) -> Vec<Want> {
        wanted(sql, Reading::STANDARD, 15)
            .into_iter()
            .filter(|w| !matches!(w, Want::Syntax(_)))
            .collect()
    }

    #[test]
    fn every_statement_with_a_finding_is_parsed_by_the_server_first() {
        let w = wanted(
            b"ALTER TABLE t ADD COLUMN x int; DROP TABLE u; CREATE TABLE v AS SELECT 1",
            Reading::STANDARD,
            15,
        );
        assert!(
            w.contains(&Want::Syntax(b" DROP TABLE u".to_vec())),
            "{w:?}"
        );
        assert_eq!(w.iter().filter(|w| matches!(w, Want::Syntax(_))).count(), 1);
        // Bytes as the client sent them, whatever their encoding.
        assert!(wanted(b"DROP TABLE caf\xe9", Reading::STANDARD, 15)
            .contains(&Want::Syntax(b"DROP TABLE caf\xe9".to_vec())));
    }

    #[test]
    fn wants_columns_and_sizes_once() {
        let w = facts(
            b"ALTER TABLE t ALTER COLUMN \"V\" TYPE text, ALTER COLUMN a SET NOT NULL; \
              ALTER TABLE t ALTER COLUMN a SET NOT NULL; ALTER TABLE t ADD COLUMN x int; \
              ALTER TABLE p ATTACH PARTITION p2 FOR VALUES IN (1)",
        );
        // The first statement may become a migration: the session's facts
        // and what depends on the column too.
        assert_eq!(
            w,
            vec![
                Want::Session,
                Want::Relation("t".into()),
                Want::Dependents("t".into(), "\"V\"".into()),
                Want::Column("t".into(), "\"V\"".into()),
                Want::Size("t".into()),
                Want::Column("t".into(), "a".into()),
                Want::Relation("p".into()),
                Want::DefaultPartition("p".into()),
                Want::Size("p2".into()),
            ]
        );
        // Names that did not decode (a LATIN1 client's bytes) are not looked up.
        assert!(facts(b"DROP TABLE caf\xe9").is_empty());
        // No finding: nothing to look up. A finding: whether its objects exist.
        assert!(facts(b"ALTER TABLE t ADD COLUMN x int; SELECT 1").is_empty());
        assert_eq!(
            facts(b"DROP TABLE IF EXISTS t; ALTER TABLE u DROP COLUMN IF EXISTS c"),
            vec![
                Want::Relation("t".into()),
                Want::Relation("u".into()),
                Want::Column("u".into(), "c".into()),
            ]
        );
        assert_eq!(unquote("\"V\""), "V");
        assert_eq!(unquote("Abc"), "abc");
    }
}
