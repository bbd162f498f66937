//! What a schema change does, independent of how it was read: the sqlparser
//! front end (`parsed.rs`) and the token front end (`tokens.rs`) both turn a
//! statement into [`Op`]s, and the rules look only at these.

use super::rule::Lock;
use super::types::SqlType;

/// A DEFAULT or generation expression, reduced to what the rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Volatility {
    /// Constants and stable functions such as `now()`: evaluated once.
    Stable,
    /// Evaluated per row (`random()`, `clock_timestamp()`), named here.
    Volatile(String),
    /// Calls functions ddlgate does not know (named, lower case); volatile
    /// unless the catalog says every one of them is not.
    Unknown(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintKind {
    Check,
    ForeignKey {
        references: String,
    },
    Unique {
        using_index: bool,
    },
    PrimaryKey {
        using_index: bool,
    },
    /// ADD PRIMARY KEY USING INDEX: sets the index's columns NOT NULL,
    /// scanning the table for any that are not already.
    PrimaryKeyOfIndex {
        index: String,
    },
    Exclude,
    NotNull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddColumn {
    pub table: String,
    pub column: String,
    pub ty: SqlType,
    pub default: Option<Volatility>,
    pub not_null: bool,
    pub identity: bool,
    pub generated_stored: bool,
    /// Constraints written on the column itself (`c int UNIQUE`).
    pub constraints: Vec<ConstraintKind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    AddColumn(AddColumn),
    SetNotNull {
        table: String,
        column: String,
    },
    AlterType {
        table: String,
        column: String,
        to: SqlType,
        using: bool,
        /// `COLLATE name` as written, when given.
        collate: Option<String>,
    },
    /// ALTER COLUMN ... DROP DEFAULT.
    DropDefault {
        table: String,
        column: String,
    },
    /// ALTER COLUMN ... DROP IDENTITY.
    DropIdentity {
        table: String,
        column: String,
    },
    /// ALTER COLUMN ... ADD GENERATED ALWAYS AS IDENTITY, or SET GENERATED
    /// ALWAYS: values clients insert into the column are rejected after.
    IdentityAlways {
        table: String,
        column: String,
    },
    /// A rename (or SET SCHEMA) of something clients name other than a
    /// table or column: a view, sequence, function, type, schema, enum
    /// value, constraint, ... `kind` says which, in words.
    RenameObject {
        kind: String,
        name: String,
        to: String,
    },
    /// DROP of something clients use other than a table or index.
    DropObject {
        kind: String,
        names: Vec<String>,
        cascade: bool,
    },
    /// ALTER DOMAIN ... ADD CONSTRAINT (without NOT VALID), SET NOT NULL or
    /// VALIDATE CONSTRAINT: every column of the domain is checked.
    DomainCheck {
        domain: String,
        what: String,
    },
    /// CREATE TABLE ... PARTITION OF parent.
    CreatePartition {
        table: String,
        parent: String,
    },
    /// ALTER TABLE ... SET ACCESS METHOD.
    SetAccessMethod {
        table: String,
        method: String,
    },
    AddConstraint {
        table: String,
        name: Option<String>,
        kind: ConstraintKind,
        not_valid: bool,
    },
    ValidateConstraint {
        table: String,
        name: String,
    },
    RenameColumn {
        table: String,
        from: String,
        to: String,
    },
    RenameTable {
        table: String,
        to: String,
    },
    DropColumn {
        table: String,
        columns: Vec<String>,
    },
    DropTable {
        tables: Vec<String>,
    },
    Truncate {
        tables: Vec<String>,
    },
    CreateTable {
        table: String,
        /// TEMP/TEMPORARY: private to the session.
        temporary: bool,
        /// IF NOT EXISTS: the table may be an existing one, not new.
        if_not_exists: bool,
        /// Columns and types, when the front end read them.
        columns: Vec<(String, SqlType)>,
    },
    CreateIndex {
        table: String,
        name: Option<String>,
        concurrently: bool,
        unique: bool,
        /// IF NOT EXISTS: the name may be an existing index, not new.
        if_not_exists: bool,
    },
    DropIndex {
        names: Vec<String>,
        concurrently: bool,
    },
    Reindex {
        target: String,
        concurrently: bool,
    },
    Vacuum {
        full: bool,
        tables: Vec<String>,
    },
    Cluster {
        table: Option<String>,
    },
    LockTable {
        tables: Vec<String>,
        mode: Lock,
    },
    AttachPartition {
        table: String,
        partition: String,
    },
    DetachPartition {
        table: String,
        partition: String,
        concurrently: bool,
    },
    SetTablespace {
        table: String,
    },
    SetLogged {
        table: String,
    },
    RefreshMaterializedView {
        name: String,
        concurrently: bool,
    },
    EnumAddValue {
        type_name: String,
    },
    /// A change known to be brief (catalog only), still taking `lock`.
    Brief {
        table: Option<String>,
        lock: Lock,
    },
    /// CREATE VIEW / MATERIALIZED VIEW / SEQUENCE / TYPE / DOMAIN: a new
    /// object clients may name (nothing of anyone else's is touched).
    CreateObject {
        /// In words, as [`Op::DropObject`] names kinds.
        kind: String,
        name: String,
        temporary: bool,
        /// OR REPLACE or IF NOT EXISTS: it may be an existing object.
        may_exist: bool,
    },
    /// Procedural code (DO) whose effect cannot be known.
    Opaque,
    /// A DDL form neither front end understands.
    Unrecognized {
        alter_table: bool,
        table: Option<String>,
    },
}

impl Op {
    /// The front end read less than PostgreSQL's grammar requires (a DROP
    /// naming nothing, an empty name, IF NOT EXISTS on an unnamed index):
    /// such a reading must not become a finding about an object that is
    /// not there. The server rejects these statements.
    pub fn incomplete(&self) -> bool {
        let empty_list = match self {
            Op::DropTable { tables } | Op::Truncate { tables } | Op::LockTable { tables, .. } => {
                tables.is_empty()
            }
            Op::DropIndex { names, .. } | Op::DropObject { names, .. } => names.is_empty(),
            Op::DropColumn { columns, .. } => columns.is_empty(),
            Op::CreateIndex {
                name: None,
                if_not_exists: true,
                ..
            } => true,
            _ => false,
        };
        let empty_name = match self {
            Op::RenameColumn { from, to, .. } => from.is_empty() || to.is_empty(),
            Op::RenameTable { to, .. } => to.is_empty(),
            Op::DropIndex { names, .. } | Op::DropObject { names, .. } => {
                names.iter().any(String::is_empty)
            }
            Op::DropTable { tables } | Op::Truncate { tables } => {
                tables.iter().any(String::is_empty)
            }
            _ => false,
        };
        empty_list || empty_name || self.table() == Some("")
    }

    /// The table the operation acts on, when it names one.
    pub fn table(&self) -> Option<&str> {
        match self {
            Op::AddColumn(a) => Some(&a.table),
            Op::CreatePartition { parent, .. } => Some(parent),
            Op::DropDefault { table, .. }
            | Op::DropIdentity { table, .. }
            | Op::IdentityAlways { table, .. }
            | Op::SetAccessMethod { table, .. }
            | Op::SetNotNull { table, .. }
            | Op::AlterType { table, .. }
            | Op::AddConstraint { table, .. }
            | Op::ValidateConstraint { table, .. }
            | Op::RenameColumn { table, .. }
            | Op::RenameTable { table, .. }
            | Op::DropColumn { table, .. }
            | Op::CreateTable { table, .. }
            | Op::CreateIndex { table, .. }
            | Op::AttachPartition { table, .. }
            | Op::DetachPartition { table, .. }
            | Op::SetTablespace { table }
            | Op::SetLogged { table } => Some(table),
            Op::DropTable { tables }
            | Op::Truncate { tables }
            | Op::Vacuum { tables, .. }
            | Op::LockTable { tables, .. } => tables.first().map(String::as_str),
            Op::Cluster { table } | Op::Brief { table, .. } | Op::Unrecognized { table, .. } => {
                table.as_deref()
            }
            Op::Reindex { target, .. } => Some(target),
            Op::RefreshMaterializedView { name, .. } => Some(name),
            Op::DropIndex { .. }
            | Op::EnumAddValue { .. }
            | Op::CreateObject { .. }
            | Op::Opaque
            | Op::RenameObject { .. }
            | Op::DropObject { .. }
            | Op::DomainCheck { .. } => None,
        }
    }

    /// The existing relations the operation needs (tables, indexes): if
    /// none of them exists, it fails or does nothing. Empty for operations
    /// that create their target.
    pub fn existing_relations(&self) -> Vec<&str> {
        match self {
            Op::DropTable { tables } | Op::Truncate { tables } | Op::LockTable { tables, .. } => {
                tables.iter().map(String::as_str).collect()
            }
            Op::DropIndex { names, .. } => names.iter().map(String::as_str).collect(),
            // REINDEX SCHEMA/DATABASE name no relation.
            Op::CreateTable { .. }
            | Op::CreateObject { .. }
            | Op::Opaque
            | Op::EnumAddValue { .. }
            | Op::Reindex { .. } => Vec::new(),
            Op::DropObject { kind, names, .. } if is_relation_kind(kind) => {
                names.iter().map(String::as_str).collect()
            }
            Op::RenameObject { kind, name, .. } if is_relation_kind(kind) => vec![name],
            Op::Vacuum { tables, .. } => tables.iter().map(String::as_str).collect(),
            _ => self.table().into_iter().collect(),
        }
    }

    /// The table whose size decides how long the operation holds its lock:
    /// the partition being attached, else the table acted on.
    pub fn sized_table(&self) -> Option<&str> {
        match self {
            Op::AttachPartition { partition, .. } => Some(partition),
            Op::DropIndex { .. } | Op::Vacuum { full: false, .. } => None,
            _ => self.table(),
        }
    }

    /// Whether PostgreSQL refuses to run it inside a transaction block.
    pub fn needs_own_transaction(&self) -> bool {
        match self {
            Op::CreateIndex { concurrently, .. }
            | Op::DropIndex { concurrently, .. }
            | Op::Reindex { concurrently, .. }
            | Op::DetachPartition { concurrently, .. } => *concurrently,
            Op::Vacuum { .. } => true,
            _ => false,
        }
    }
}

/// Object kinds (as [`Op::RenameObject`] and [`Op::DropObject`] name them)
/// that live in pg_class, so `to_regclass` finds them.
pub fn is_relation_kind(kind: &str) -> bool {
    matches!(
        kind,
        "view" | "materialized view" | "sequence" | "foreign table"
    )
}

/// Folds an identifier as PostgreSQL does: unquoted parts to lower case.
/// Used to compare names across statements (`T` and `t` are one table).
pub fn fold_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut quoted = false;
    for c in name.chars() {
        if c == '"' {
            quoted = !quoted;
            continue;
        }
        if quoted {
            out.push(c);
        } else {
            out.extend(c.to_lowercase());
        }
    }
    // Unqualified and `public.` names are the same table in the common
    // search_path.
    out.strip_prefix("public.")
        .map(str::to_owned)
        .unwrap_or(out)
}

/// One identifier as PostgreSQL stores it: quotes removed (`"A""b"` is
/// `A"b`), unquoted names folded to lower case.
pub fn unquote(ident: &str) -> String {
    if let Some(inner) = ident.strip_prefix('"') {
        // One closing quote; doubled quotes inside stand for one.
        inner
            .strip_suffix('"')
            .unwrap_or(inner)
            .replace("\"\"", "\"")
    } else {
        ident.to_lowercase()
    }
}

/// Quotes an identifier for generated SQL unless it is plainly safe.
pub fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_and_quotes_names() {
        assert_eq!(fold_name("Public.Users"), "users");
        assert_eq!(fold_name("\"Users\""), "Users");
        assert_eq!(quote_ident("users"), "users");
        assert_eq!(quote_ident("Users"), "\"Users\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(unquote("\"Weird \"\"Name\"\"\""), "Weird \"Name\"");
    }
}
