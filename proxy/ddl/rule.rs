//! The rules: stable ids, what each one is about, and the decision it gets
//! when the configuration says nothing. A finding is one rule applied to one
//! statement, with the lock and effects on the named table.

use std::fmt;

use serde::Serialize;

/// Table lock levels, weakest first, as PostgreSQL names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lock {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl Lock {
    pub const ALL: [Lock; 8] = [
        Lock::AccessShare,
        Lock::RowShare,
        Lock::RowExclusive,
        Lock::ShareUpdateExclusive,
        Lock::Share,
        Lock::ShareRowExclusive,
        Lock::Exclusive,
        Lock::AccessExclusive,
    ];

    /// As written in SQL (`LOCK TABLE t IN <name> MODE`).
    pub fn sql_name(self) -> &'static str {
        match self {
            Lock::AccessShare => "ACCESS SHARE",
            Lock::RowShare => "ROW SHARE",
            Lock::RowExclusive => "ROW EXCLUSIVE",
            Lock::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            Lock::Share => "SHARE",
            Lock::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Lock::Exclusive => "EXCLUSIVE",
            Lock::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// As `pg_locks.mode` shows it.
    pub fn pg_locks_mode(self) -> &'static str {
        match self {
            Lock::AccessShare => "AccessShareLock",
            Lock::RowShare => "RowShareLock",
            Lock::RowExclusive => "RowExclusiveLock",
            Lock::ShareUpdateExclusive => "ShareUpdateExclusiveLock",
            Lock::Share => "ShareLock",
            Lock::ShareRowExclusive => "ShareRowExclusiveLock",
            Lock::Exclusive => "ExclusiveLock",
            Lock::AccessExclusive => "AccessExclusiveLock",
        }
    }

    /// Whether holding (or queueing for) this lock stops plain SELECTs.
    pub fn blocks_reads(self) -> bool {
        self == Lock::AccessExclusive
    }

    /// Whether it stops INSERT/UPDATE/DELETE.
    pub fn blocks_writes(self) -> bool {
        self >= Lock::Share
    }
}

impl Serialize for Lock {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.sql_name())
    }
}

impl fmt::Display for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// What the configuration can make of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Warn,
    /// Run the safe phased plan instead. Until the rewriter exists this
    /// behaves as `Block`, with the plan in the hint.
    Rewrite,
    Block,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Decision::Allow),
            "warn" => Some(Decision::Warn),
            "rewrite" => Some(Decision::Rewrite),
            "block" => Some(Decision::Block),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Warn => "warn",
            Decision::Rewrite => "rewrite",
            Decision::Block => "block",
        }
    }

    /// Whether the statement is stopped before reaching the server.
    pub fn stops(self) -> bool {
        matches!(self, Decision::Block | Decision::Rewrite)
    }
}

macro_rules! rules {
    ($( $variant:ident = $id:literal, $family:literal, $default:ident, $summary:literal; )*) => {
        /// Every rule. Ids are stable: configuration, override comments,
        /// metrics and audit logs refer to them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Rule { $( $variant, )* }

        impl Rule {
            pub const ALL: &'static [Rule] = &[ $( Rule::$variant, )* ];

            pub fn id(self) -> &'static str {
                match self { $( Rule::$variant => $id, )* }
            }

            /// The file under `ddl/rules/` that implements it.
            pub fn family(self) -> &'static str {
                match self { $( Rule::$variant => $family, )* }
            }

            /// The decision when nothing is configured: safe.
            pub fn default_decision(self) -> Decision {
                match self { $( Rule::$variant => Decision::$default, )* }
            }

            /// One line saying what the rule catches.
            pub fn summary(self) -> &'static str {
                match self { $( Rule::$variant => $summary, )* }
            }
        }
    };
}

rules! {
    AddColumnVolatileDefault = "add-column-volatile-default", "columns", Rewrite,
        "ADD COLUMN with a volatile DEFAULT rewrites the table under ACCESS EXCLUSIVE";
    AddColumnDefaultBeforePg11 = "add-column-default-before-pg11", "columns", Rewrite,
        "before PostgreSQL 11, ADD COLUMN with any DEFAULT rewrites the table";
    AddColumnSerial = "add-column-serial", "columns", Rewrite,
        "ADD COLUMN of a serial type fills every row, rewriting the table";
    AddColumnIdentity = "add-column-identity", "columns", Rewrite,
        "ADD COLUMN ... GENERATED AS IDENTITY fills every row, rewriting the table";
    AddColumnGeneratedStored = "add-column-generated-stored", "columns", Rewrite,
        "ADD COLUMN ... GENERATED ALWAYS AS (...) STORED rewrites the table";
    AddColumnConstrainedDomain = "add-column-constrained-domain", "columns", Rewrite,
        "ADD COLUMN of a domain type with constraints rewrites the table to check them";
    AddColumnNotNullWithoutDefault = "add-column-not-null-without-default", "columns", Block,
        "ADD COLUMN ... NOT NULL without a DEFAULT fails on any non-empty table";
    SetNotNull = "set-not-null", "columns", Rewrite,
        "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE";
    AlterColumnType = "alter-column-type", "columns", Rewrite,
        "ALTER COLUMN TYPE rewrites the table and its indexes under ACCESS EXCLUSIVE";
    AddCheckConstraint = "add-check-constraint", "constraints", Rewrite,
        "ADD CHECK without NOT VALID scans the table under ACCESS EXCLUSIVE";
    AddForeignKey = "add-foreign-key", "constraints", Rewrite,
        "ADD FOREIGN KEY without NOT VALID scans the table, blocking writes on both tables";
    ValidateInSameTransaction = "validate-in-same-transaction", "constraints", Block,
        "VALIDATE CONSTRAINT in the transaction that added it NOT VALID keeps the strong lock through the scan";
    AddUniqueConstraint = "add-unique-constraint", "constraints", Rewrite,
        "ADD UNIQUE without USING INDEX builds an index under ACCESS EXCLUSIVE";
    AddPrimaryKey = "add-primary-key", "constraints", Rewrite,
        "ADD PRIMARY KEY without USING INDEX builds an index under ACCESS EXCLUSIVE";
    AddExcludeConstraint = "add-exclude-constraint", "constraints", Block,
        "ADD EXCLUDE builds an index under ACCESS EXCLUSIVE and has no online alternative";
    CreateIndex = "create-index-non-concurrent", "indexes", Rewrite,
        "CREATE INDEX without CONCURRENTLY blocks writes for the whole build";
    DropIndex = "drop-index-non-concurrent", "indexes", Rewrite,
        "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table";
    Reindex = "reindex-non-concurrent", "indexes", Rewrite,
        "REINDEX without CONCURRENTLY blocks writes and locks out readers of the index";
    ConcurrentlyInTransaction = "concurrently-in-transaction", "indexes", Block,
        "a CONCURRENTLY operation cannot run inside a transaction block";
    RenameColumn = "rename-column", "destructive", Block,
        "RENAME COLUMN breaks running clients that use the old name";
    RenameTable = "rename-table", "destructive", Block,
        "RENAME of a table breaks running clients that use the old name";
    DropColumn = "drop-column", "destructive", Block,
        "DROP COLUMN breaks clients still using the column and loses its data";
    DropTable = "drop-table", "destructive", Block,
        "DROP TABLE loses data and breaks clients still using the table";
    Truncate = "truncate", "destructive", Block,
        "TRUNCATE empties tables under ACCESS EXCLUSIVE";
    VacuumFull = "vacuum-full", "maintenance", Block,
        "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE";
    Cluster = "cluster", "maintenance", Block,
        "CLUSTER rewrites the table under ACCESS EXCLUSIVE";
    LockTable = "lock-table", "maintenance", Warn,
        "LOCK TABLE takes an explicit lock held to the end of the transaction";
    SetTablespace = "set-tablespace", "maintenance", Block,
        "SET TABLESPACE copies the table under ACCESS EXCLUSIVE";
    SetLoggedUnlogged = "set-logged-unlogged", "maintenance", Block,
        "SET LOGGED / UNLOGGED rewrites the table under ACCESS EXCLUSIVE";
    RefreshMaterializedView = "refresh-materialized-view", "maintenance", Warn,
        "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks readers of the view";
    DetachPartition = "detach-partition-non-concurrent", "partitions", Rewrite,
        "DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on the parent";
    AttachPartition = "attach-partition", "partitions", Warn,
        "ATTACH PARTITION scans the partition unless a CHECK constraint implies its bound";
    DropDefaultNotNull = "drop-default-not-null", "identity", Warn,
        "DROP DEFAULT on a NOT NULL column makes INSERTs that omit the column fail";
    DropIdentity = "drop-identity", "identity", Warn,
        "DROP IDENTITY leaves a NOT NULL column without values for INSERTs that omit it";
    IdentityAlways = "identity-always", "identity", Warn,
        "GENERATED ALWAYS AS IDENTITY on an existing column rejects the values clients insert into it";
    RenameObject = "rename-object", "objects", Block,
        "renaming (or moving) a view, sequence, function, type, schema, enum value or constraint breaks clients that name it";
    DropObject = "drop-object", "objects", Block,
        "DROP of a view, sequence, function, type, schema or extension breaks the clients that use it";
    DomainConstraintScan = "domain-constraint-scan", "types", Block,
        "a domain constraint checked now scans every column of the domain under SHARE, blocking writes";
    CreatePartitionOf = "create-partition-of", "partitions", Warn,
        "CREATE TABLE ... PARTITION OF takes ACCESS EXCLUSIVE on the partitioned table";
    PartitionScansDefault = "partition-scans-default", "partitions", Block,
        "a new partition makes PostgreSQL scan the DEFAULT partition under ACCESS EXCLUSIVE";
    SetAccessMethod = "set-access-method", "maintenance", Block,
        "SET ACCESS METHOD to another method rewrites the table under ACCESS EXCLUSIVE";
    EnumAddValueInTransaction = "enum-add-value-in-transaction", "types", Block,
        "before PostgreSQL 12, ALTER TYPE ... ADD VALUE cannot run inside a transaction block";
    UnrecognizedAlterTable = "unrecognized-alter-table", "unrecognized", Block,
        "an ALTER TABLE form ddlgate cannot classify";
    UnrecognizedDdl = "unrecognized-ddl", "unrecognized", Warn,
        "a schema change ddlgate cannot classify (including DO blocks)";
}

impl Rule {
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.id() == id)
    }

    /// Whether the harm grows with the table's size (a rewrite, scan or
    /// index build under the lock), so the rule does not apply to an empty
    /// table. Breaking clients, losing data and lock modes do not shrink.
    pub fn size_bound(self) -> bool {
        use Rule::*;
        matches!(
            self,
            AddColumnVolatileDefault
                | AddColumnDefaultBeforePg11
                | AddColumnSerial
                | AddColumnIdentity
                | AddColumnGeneratedStored
                | AddColumnConstrainedDomain
                | AddColumnNotNullWithoutDefault
                | SetNotNull
                | AlterColumnType
                | AddCheckConstraint
                | AddForeignKey
                | ValidateInSameTransaction
                | AddUniqueConstraint
                | AddPrimaryKey
                | AddExcludeConstraint
                | CreateIndex
                | Reindex
                | VacuumFull
                | Cluster
                | SetTablespace
                | SetLoggedUnlogged
                | SetAccessMethod
                | AttachPartition
        )
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// One rule applied to one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: Rule,
    /// The table acted on, as written.
    pub table: Option<String>,
    /// The strongest lock the statement takes on that table.
    pub lock: Option<Lock>,
    /// The table's file is rewritten (new relfilenode).
    pub rewrite: bool,
    /// The whole table is read under the lock.
    pub scan: bool,
    /// Clients running against the current schema may fail afterwards.
    pub breaks_clients: bool,
    /// What the statement would do, in a sentence.
    pub detail: String,
    /// The safe way to reach the same schema, as SQL where there is one.
    pub alternative: String,
}

impl Finding {
    pub fn new(rule: Rule, table: Option<&str>, lock: Option<Lock>) -> Self {
        Finding {
            rule,
            table: table.map(str::to_owned),
            lock,
            rewrite: false,
            scan: false,
            breaks_clients: false,
            detail: String::new(),
            alternative: String::new(),
        }
    }

    pub fn rewrite(mut self) -> Self {
        self.rewrite = true;
        self.scan = true;
        self
    }

    pub fn scan(mut self) -> Self {
        self.scan = true;
        self
    }

    pub fn breaks_clients(mut self) -> Self {
        self.breaks_clients = true;
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = d.into();
        self
    }

    pub fn alternative(mut self, a: impl Into<String>) -> Self {
        self.alternative = a.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Rule::ALL {
            assert!(seen.insert(r.id()), "duplicate id {}", r.id());
            assert!(r
                .id()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            assert_eq!(Rule::from_id(r.id()), Some(*r));
        }
    }

    #[test]
    fn lock_order_matches_conflicts() {
        assert!(Lock::AccessExclusive.blocks_reads());
        assert!(!Lock::Exclusive.blocks_reads());
        assert!(Lock::Share.blocks_writes());
        assert!(!Lock::ShareUpdateExclusive.blocks_writes());
    }
}
