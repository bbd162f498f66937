//! Example statements for every rule that takes a table lock, shared by the
//! server-truth test (tests/rules/locks.rs) and the through-the-proxy test
//! (tests/proxy/gate_rules.rs). Run after SETUP with `search_path = lt`.

use ddlgate::ddl::Rule;

pub const SETUP: &str = "
DROP SCHEMA IF EXISTS lt CASCADE;
CREATE SCHEMA lt;
SET search_path = lt;
CREATE TABLE u (id int PRIMARY KEY);
INSERT INTO u SELECT g FROM generate_series(1, 100) g;
CREATE TABLE t (id int NOT NULL, a int, b int, ref int, v varchar(10), n numeric(10,2),
                ts timestamp(3));
INSERT INTO t SELECT g, g, g, g, 'x', 1, now() FROM generate_series(1, 100) g;
CREATE INDEX t_b_idx ON t (b);
CREATE TABLE e (id int);
CREATE TABLE p (k int) PARTITION BY RANGE (k);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
CREATE TABLE p2 (k int);
CREATE MATERIALIZED VIEW mv AS SELECT id FROM u;
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
ANALYZE;
";

/// `(rule, statements run first in the same transaction, statement, table
/// whose lock and file are observed)`.
pub const EXAMPLES: &[(Rule, &str, &str, &str)] = &[
    (
        Rule::AddColumnVolatileDefault,
        "",
        "ALTER TABLE t ADD COLUMN z timestamptz DEFAULT clock_timestamp()",
        "t",
    ),
    (
        Rule::AddColumnVolatileDefault,
        "",
        "ALTER TABLE t ADD COLUMN z uuid DEFAULT gen_random_uuid()",
        "t",
    ),
    (
        Rule::AddColumnSerial,
        "",
        "ALTER TABLE t ADD COLUMN z bigserial",
        "t",
    ),
    (
        Rule::AddColumnIdentity,
        "",
        "ALTER TABLE t ADD COLUMN z int GENERATED ALWAYS AS IDENTITY",
        "t",
    ),
    (
        Rule::AddColumnGeneratedStored,
        "",
        "ALTER TABLE t ADD COLUMN z int GENERATED ALWAYS AS (a * 2) STORED",
        "t",
    ),
    (
        Rule::AddColumnConstrainedDomain,
        "",
        "ALTER TABLE t ADD COLUMN z posint",
        "t",
    ),
    (
        Rule::AddColumnNotNullWithoutDefault,
        "",
        "ALTER TABLE e ADD COLUMN z int NOT NULL",
        "e",
    ),
    (
        Rule::SetNotNull,
        "",
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
        "t",
    ),
    (
        Rule::AlterColumnType,
        "",
        "ALTER TABLE t ALTER COLUMN a TYPE bigint",
        "t",
    ),
    (
        Rule::AlterColumnType,
        "",
        "ALTER TABLE t ALTER COLUMN v TYPE varchar(5)",
        "t",
    ),
    (
        Rule::AlterColumnType,
        "",
        "ALTER TABLE t ALTER COLUMN n TYPE numeric(12,4)",
        "t",
    ),
    (
        Rule::AddCheckConstraint,
        "",
        "ALTER TABLE t ADD CONSTRAINT ck CHECK (a >= 0)",
        "t",
    ),
    (
        Rule::AddCheckConstraint,
        "",
        "ALTER TABLE t ADD COLUMN z int CHECK (z > 0)",
        "t",
    ),
    (
        Rule::AddForeignKey,
        "",
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (ref) REFERENCES u (id)",
        "t",
    ),
    (
        Rule::AddForeignKey,
        "",
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (ref) REFERENCES u (id)",
        "u",
    ),
    (
        Rule::ValidateInSameTransaction,
        "ALTER TABLE t ADD CONSTRAINT fk2 FOREIGN KEY (ref) REFERENCES u (id) NOT VALID",
        "ALTER TABLE t VALIDATE CONSTRAINT fk2",
        "t",
    ),
    (
        Rule::ValidateInSameTransaction,
        "ALTER TABLE t ADD CONSTRAINT ck2 CHECK (a > 0) NOT VALID",
        "ALTER TABLE t VALIDATE CONSTRAINT ck2",
        "t",
    ),
    (
        Rule::AddUniqueConstraint,
        "",
        "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE (a)",
        "t",
    ),
    (
        Rule::AddUniqueConstraint,
        "",
        "ALTER TABLE t ADD COLUMN z int UNIQUE",
        "t",
    ),
    (
        Rule::AddPrimaryKey,
        "",
        "ALTER TABLE t ADD PRIMARY KEY (id)",
        "t",
    ),
    (
        Rule::AddExcludeConstraint,
        "",
        "ALTER TABLE t ADD CONSTRAINT ex EXCLUDE USING btree (a WITH =)",
        "t",
    ),
    (Rule::CreateIndex, "", "CREATE INDEX t_a_idx ON t (a)", "t"),
    (
        Rule::CreateIndex,
        "",
        "CREATE UNIQUE INDEX t_a_idx ON ONLY t USING btree (a) WHERE a > 0",
        "t",
    ),
    (Rule::DropIndex, "", "DROP INDEX t_b_idx", "t"),
    (Rule::Reindex, "", "REINDEX TABLE t", "t"),
    (
        Rule::RenameColumn,
        "",
        "ALTER TABLE t RENAME COLUMN a TO a2",
        "t",
    ),
    (Rule::RenameTable, "", "ALTER TABLE t RENAME TO t2", "t"),
    (Rule::DropColumn, "", "ALTER TABLE t DROP COLUMN b", "t"),
    (Rule::DropTable, "", "DROP TABLE t", "t"),
    (Rule::Truncate, "", "TRUNCATE t", "t"),
    (Rule::Cluster, "", "CLUSTER t USING t_b_idx", "t"),
    (Rule::LockTable, "", "LOCK TABLE t", "t"),
    (Rule::LockTable, "", "LOCK TABLE t IN SHARE MODE", "t"),
    (
        Rule::SetLoggedUnlogged,
        "",
        "ALTER TABLE t SET UNLOGGED",
        "t",
    ),
    (
        Rule::RefreshMaterializedView,
        "",
        "REFRESH MATERIALIZED VIEW mv",
        "mv",
    ),
    (
        Rule::DetachPartition,
        "",
        "ALTER TABLE p DETACH PARTITION p1",
        "p",
    ),
    (
        Rule::AttachPartition,
        "",
        "ALTER TABLE p ATTACH PARTITION p2 FOR VALUES FROM (100) TO (200)",
        "p",
    ),
];
