//! The rule families. Each file looks at [`Op`]s and emits [`Finding`]s;
//! nothing here does I/O. What the rules may know beyond the statement is in
//! [`Context`]: the server's major version, whether a transaction block is
//! open, what earlier statements of that transaction did, and catalog facts
//! when the caller has them.

mod columns;
pub(crate) mod constraints;
mod destructive;
mod identity;
mod indexes;
mod maintenance;
mod objects;
mod partitions;
mod types;
mod unrecognized;

use std::collections::{HashMap, HashSet};

use super::op::{fold_name, quote_ident, unquote, Op};
use super::rule::{Finding, Lock};
use super::types::SqlType;

/// What is known about the transaction a statement runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxFacts {
    /// Tables created earlier in this transaction (folded names): invisible
    /// to other sessions, so nothing done to them can stall anyone.
    pub created_tables: HashSet<String>,
    /// Those of them that are temporary.
    pub created_temp: HashSet<String>,
    /// Temporary tables the session created (folded names): private to it
    /// for the session's life, so they outlive the transaction.
    pub temp_tables: HashSet<String>,
    /// `(table, constraint)` added NOT VALID earlier in this transaction,
    /// with the lock that adding it took (held until the transaction ends).
    pub not_valid: HashMap<(String, String), Lock>,
    /// Names tables were renamed to earlier in this transaction: such a
    /// name may exist by the time a later statement runs, though the
    /// catalog (read before the string ran) says it does not.
    pub renamed_to: HashSet<String>,
    /// A migration script's own objects (relations and types it created,
    /// folded names): a script's statements are taken to succeed.
    pub session_tables: HashSet<String>,
    /// Objects (pg_class or pg_type OIDs) the session created in the open
    /// transaction, read once their statements succeeded: invisible to
    /// everyone else until it commits.
    pub tx_oids: HashSet<u32>,
    /// Objects the session created in transactions that committed: its
    /// own, trusted while they can hurt nobody (a table, or an index's
    /// table, while small). Empty when `ddl.trust_session_objects` is off.
    pub session_oids: HashSet<u32>,
}

/// What the catalog says about one column beyond its type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnFacts {
    pub not_null: bool,
    /// A CHECK constraint uses it (re-checked when its type changes).
    pub has_check: bool,
    /// An index uses it (rebuilt when its collation changes).
    pub indexed: bool,
    /// Its collation's name; `default` for the database's.
    pub collation: String,
}

/// Facts read from the server's catalog, when the caller has them.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Current column types by folded `(table, column)`.
    pub column_types: HashMap<(String, String), SqlType>,
    /// Columns with a validated `CHECK (col IS NOT NULL)`, folded.
    pub not_null_checks: HashSet<(String, String)>,
    /// Tables known to be empty (or under the configured size), folded:
    /// rules whose harm grows with the table do not apply to them.
    pub small_tables: HashSet<String>,
    /// Functions (lower-cased names) whose every overload is immutable or
    /// stable, so a DEFAULT calling them is computed once.
    pub stable_functions: HashSet<String>,
    /// Domain types (names as written, lower case) that carry constraints.
    pub constrained_domains: HashSet<String>,
    /// Relations (tables, indexes; folded names) that do not exist: a
    /// statement on them fails, or does nothing under IF EXISTS.
    pub missing_relations: HashSet<String>,
    /// Relations (folded names as written) that resolve, in the client's
    /// session, to one of its temporary relations: private to it, so
    /// nobody queues behind them; and no other session (the runner's)
    /// would resolve the name to the same object.
    pub temp_relations: HashSet<String>,
    /// What names (folded, as written) resolve to in the client's session:
    /// the table's OID (an index's table). A migration's runner must find
    /// the same one.
    pub relation_oids: HashMap<String, u32>,
    /// Types and domains (folded names as written) that do not exist.
    pub missing_types: HashSet<String>,
    /// The object itself a name resolves to (folded name as written): a
    /// relation's OID and `relkind`, or a type's OID (kind `'T'`).
    pub objects: HashMap<String, (u32, char)>,
    /// `(table, column)` pairs that do not exist (folded).
    pub absent_columns: HashSet<(String, String)>,
    /// Nullability, constraints, indexes and collation by folded
    /// `(table, column)`.
    pub columns: HashMap<(String, String), ColumnFacts>,
    /// Partitioned tables (folded) and their DEFAULT partition, if any,
    /// with whether it is small enough to scan in no time.
    pub default_partitions: HashMap<String, Option<(String, bool)>>,
    /// Partitioned tables' keys (folded name to `pg_get_partkeydef`, e.g.
    /// `RANGE (k)`).
    pub partition_keys: HashMap<String, String>,
    /// Tables' access methods by folded name.
    pub access_methods: HashMap<String, String>,
    /// Indexes (folded) whose columns are all NOT NULL already.
    pub not_null_indexes: HashSet<String>,
    /// What depends on a column whose type changes, by folded
    /// `(table, column)`.
    pub dependents: HashMap<(String, String), crate::ddl::dependents::Dependents>,
    /// The session's TimeZone setting, when known: timestamp and
    /// timestamptz convert without a rewrite only in UTC.
    pub time_zone: Option<String>,
    /// Relations known to exist (folded): from a schema, or created by
    /// earlier statements.
    pub relations: HashSet<String>,
    /// The facts cover the whole database (a schema file or catalog): a
    /// relation not in `relations` does not exist.
    pub complete: bool,
    /// The server's parser rejects a statement of the string (the session
    /// parsed it without running it): PostgreSQL runs none of the string,
    /// so it goes as sent and the client gets the server's error.
    pub rejected_by_parser: bool,
}

impl Catalog {
    /// These facts with `other`'s taking precedence.
    pub fn overlaid_by(&self, other: &Catalog) -> Catalog {
        let mut c = self.clone();
        c.column_types.extend(other.column_types.clone());
        c.not_null_checks
            .extend(other.not_null_checks.iter().cloned());
        c.small_tables.extend(other.small_tables.iter().cloned());
        c.stable_functions
            .extend(other.stable_functions.iter().cloned());
        c.constrained_domains
            .extend(other.constrained_domains.iter().cloned());
        c.missing_relations
            .extend(other.missing_relations.iter().cloned());
        c.absent_columns
            .extend(other.absent_columns.iter().cloned());
        c.temp_relations
            .extend(other.temp_relations.iter().cloned());
        c.relation_oids.extend(other.relation_oids.clone());
        c.objects.extend(other.objects.clone());
        c.missing_types.extend(other.missing_types.iter().cloned());
        c.columns.extend(other.columns.clone());
        c.default_partitions
            .extend(other.default_partitions.clone());
        c.access_methods.extend(other.access_methods.clone());
        c.partition_keys.extend(other.partition_keys.clone());
        c.not_null_indexes
            .extend(other.not_null_indexes.iter().cloned());
        c.dependents.extend(other.dependents.clone());
        if other.time_zone.is_some() {
            c.time_zone.clone_from(&other.time_zone);
        }
        c.relations.extend(other.relations.iter().cloned());
        c.complete |= other.complete;
        c.rejected_by_parser |= other.rejected_by_parser;
        c
    }

    /// Whether the relation is known not to exist: looked up and not
    /// found, or, for a table, absent from a complete schema. (Indexes,
    /// views and sequences are also made by statements that do not name
    /// them, such as ADD UNIQUE, so a schema's silence proves nothing.)
    pub fn is_missing(&self, name: &str, table: bool) -> bool {
        let n = fold_name(name);
        self.missing_relations.contains(&n)
            || (table && self.complete && !self.relations.contains(&n))
    }

    /// Whether the name resolves to the session's temporary relation.
    pub fn is_temp(&self, name: &str) -> bool {
        self.temp_relations.contains(&fold_name(name))
    }

    /// Whether any relation `op` names resolves to a temporary one of the
    /// client's session: such a statement runs there, as sent, or not at
    /// all (no other session would resolve it to the same object).
    pub fn names_temp(&self, op: &Op) -> bool {
        op.existing_relations()
            .into_iter()
            .chain(op.table())
            .any(|n| self.is_temp(n))
    }

    pub fn column(&self, table: &str, column: &str) -> Option<&ColumnFacts> {
        self.columns.get(&(fold_name(table), fold_name(column)))
    }

    pub fn dependents(
        &self,
        table: &str,
        column: &str,
    ) -> Option<&crate::ddl::dependents::Dependents> {
        self.dependents.get(&(fold_name(table), fold_name(column)))
    }

    pub fn column_type(&self, table: &str, column: &str) -> Option<&SqlType> {
        self.column_types
            .get(&(fold_name(table), fold_name(column)))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The server's major version (e.g. 15).
    pub server_major: u32,
    /// The statement runs inside a transaction block (explicit, or the
    /// implicit one of a multi-statement query string).
    pub in_transaction: bool,
    pub tx: &'a TxFacts,
    pub catalog: &'a Catalog,
}

/// Every finding for one operation.
pub fn check(op: &Op, ctx: &Context<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    indexes::check_transaction(op, ctx, &mut out);
    if harmless(op, ctx) {
        return out;
    }
    columns::check(op, ctx, &mut out);
    constraints::check(op, ctx, &mut out);
    indexes::check(op, ctx, &mut out);
    destructive::check(op, ctx, &mut out);
    identity::check(op, ctx, &mut out);
    objects::check(op, ctx, &mut out);
    maintenance::check(op, ctx, &mut out);
    partitions::check(op, ctx, &mut out);
    types::check(op, ctx, &mut out);
    unrecognized::check(op, ctx, &mut out);
    if let Some(t) = op.sized_table() {
        if ctx.catalog.small_tables.contains(&fold_name(t)) {
            out.retain(|f| !f.rule.size_bound());
        }
    }
    out
}

/// Whether nobody else can be affected, whatever the statement does: it
/// acts on objects created in this transaction (invisible to everyone
/// else), on temporary relations (private to the session), on the
/// session's own objects while they can hurt nobody (a table while it holds
/// no data), or on objects that do not exist (it fails, or does nothing
/// under IF EXISTS).
fn harmless(op: &Op, ctx: &Context<'_>) -> bool {
    let tx = ctx.tx;
    if let Some(t) = op.table() {
        // A name the session trusts as one of its temporary tables must
        // still be one: a temporary table that went away where the gate
        // could not follow (DISCARD, a DROP or RENAME built at run time)
        // leaves the name to a permanent table. The catalog, read for the
        // statement, says what it resolves to now.
        let now_permanent =
            ctx.catalog.relation_oids.contains_key(&fold_name(t)) && !ctx.catalog.is_temp(t);
        let t = fold_name(t);
        let temp = tx.temp_tables.contains(&t) || tx.created_temp.contains(&t);
        let permanent = (tx.created_tables.contains(&t) && !tx.created_temp.contains(&t))
            || tx.session_tables.contains(&t);
        if permanent || (temp && !now_permanent) || owned(&t, ctx) {
            return true;
        }
    }
    let tables = !matches!(
        op,
        Op::DropIndex { .. } | Op::DropObject { .. } | Op::RenameObject { .. }
    );
    let types = matches!(op,
        Op::DropObject { kind, .. } | Op::RenameObject { kind, .. } if kind == "type" || kind == "domain");
    let missing = |name: &str| {
        if types {
            return ctx.catalog.missing_types.contains(&fold_name(name));
        }
        ctx.catalog.is_missing(name, tables) && !tx.renamed_to.contains(&fold_name(name))
    };
    // Temporary relations are private to the session: nobody else can
    // queue behind them or lose them.
    let targets = match op {
        Op::DropObject { names, .. } => names.iter().map(String::as_str).collect(),
        Op::RenameObject { name, .. } => vec![name.as_str()],
        _ => op.existing_relations(),
    };
    let script_own = |t: &str| {
        matches!(op, Op::DropIndex { .. } | Op::DropObject { .. })
            && tx.session_tables.contains(&fold_name(t))
    };
    if !targets.is_empty()
        && targets
            .iter()
            .all(|t| missing(t) || ctx.catalog.is_temp(t) || owned(t, ctx) || script_own(t))
    {
        return true;
    }
    if op.table().is_some_and(|t| ctx.catalog.is_temp(t)) {
        return true;
    }
    if let Op::DropColumn { table, columns } = op {
        let t = fold_name(table);
        return !columns.is_empty()
            && columns.iter().all(|c| {
                ctx.catalog
                    .absent_columns
                    .contains(&(t.clone(), fold_name(c)))
            });
    }
    false
}

/// Whether `name` resolves (in the catalog read for the statement) to an
/// object the session created: in the open transaction, or earlier while
/// it can hurt nobody (a table, matview or index whose table is under
/// `small_table_size`; a view, sequence, type or domain).
fn owned(name: &str, ctx: &Context<'_>) -> bool {
    let n = fold_name(name);
    let Some(&(oid, kind)) = ctx.catalog.objects.get(&n) else {
        return false;
    };
    if ctx.tx.tx_oids.contains(&oid) {
        return true;
    }
    if !ctx.tx.session_oids.contains(&oid) {
        return false;
    }
    match kind {
        // Holds data (its own, or its table's): trusted only while small.
        'r' | 'm' | 'p' | 'i' | 'I' | 't' => ctx.catalog.small_tables.contains(&n),
        _ => true,
    }
}

/// An identifier without quotes or schema, for building new names.
fn bare(name: &str) -> String {
    unquote(name.rsplit('.').next().unwrap_or(name))
}

/// A new object name derived from existing ones, quoted when needed and
/// kept within PostgreSQL's 63-byte limit.
fn derived_name(parts: &[&str], suffix: &str) -> String {
    let mut base: String = parts.iter().map(|p| bare(p)).collect::<Vec<_>>().join("_");
    let max = 63 - suffix.len() - 1;
    while base.len() > max {
        base.pop();
    }
    quote_ident(&format!("{base}_{suffix}"))
}

/// A name as a string literal (for `nextval('...')`).
fn literal_of_name(name: &str) -> String {
    format!("'{}'", name.replace('\'', "''"))
}
