//! The statements the lookup reads facts with, on the client's own
//! connection: every type, function and operator in them is pg_catalog's,
//! so nothing the client created (a `pg_temp` type, a schema it puts first
//! in its search_path) answers instead. Names travel as Bind parameters.

pub(super) const COLUMN: &[u8] = b"ddlgate_lookup_column";

pub(super) const SIZE: &[u8] = b"ddlgate_lookup_size";

pub(super) const FUNCTION: &[u8] = b"ddlgate_lookup_function";

pub(super) const DOMAIN: &[u8] = b"ddlgate_lookup_domain";

pub(super) const RELATION: &[u8] = b"ddlgate_lookup_relation";

/// A row if the relation exists: whether it is one of the session's temporary
/// relations; the OID of its table (an index's table); its own OID and
/// relkind; and its table's heap size (NULL unless a plain table or
/// matview, or while another session holds or awaits ACCESS EXCLUSIVE on
/// it: see SIZE_SQL).
pub(super) const RELATION_SQL: &str = "SELECT c.relpersistence OPERATOR(pg_catalog.=) 't', \
     t.oid::pg_catalog.int8, c.oid::pg_catalog.int8, c.relkind::pg_catalog.text, \
     CASE WHEN t.relkind OPERATOR(pg_catalog.=) ANY ('{r,m}'::pg_catalog.\"char\"[]) \
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l \
     WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.relation OPERATOR(pg_catalog.=) t.oid \
     AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d \
     WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
     AND l.mode OPERATOR(pg_catalog.=) 'AccessExclusiveLock' \
     AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()) \
     THEN pg_catalog.pg_relation_size(t.oid) END \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_class t \
     ON t.oid OPERATOR(pg_catalog.=) COALESCE((SELECT i.indrelid FROM pg_catalog.pg_index i \
       WHERE i.indexrelid OPERATOR(pg_catalog.=) c.oid), c.oid) \
     WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)";

pub(super) const TYPE: &[u8] = b"ddlgate_lookup_type";

/// A row if the type (or domain) exists: its OID.
pub(super) const TYPE_SQL: &str = "SELECT t.oid::pg_catalog.int8 FROM pg_catalog.pg_type t \
     WHERE t.oid OPERATOR(pg_catalog.=) pg_catalog.to_regtype($1)";

pub(super) const DOMAIN_SQL: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c \
     WHERE c.contypid OPERATOR(pg_catalog.=) pg_catalog.to_regtype($1))";

/// True only if the name exists and no overload of it is volatile.
pub(super) const FUNCTION_SQL: &str =
    "SELECT pg_catalog.bool_and(p.provolatile OPERATOR(pg_catalog.<>) 'v') \
     FROM pg_catalog.pg_proc p WHERE p.proname OPERATOR(pg_catalog.=) $1";

/// A column's type; whether a validated `CHECK (col IS NOT NULL)` proves it
/// has no NULLs; whether it is NOT NULL; whether any CHECK uses it; whether
/// any index uses it; its collation.
pub(super) const COLUMN_SQL: &str = "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), \
     EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c \
     WHERE c.conrelid OPERATOR(pg_catalog.=) a.attrelid \
     AND c.contype OPERATOR(pg_catalog.=) 'c' AND c.convalidated \
     AND pg_catalog.pg_get_constraintdef(c.oid) OPERATOR(pg_catalog.=) \
     pg_catalog.concat('CHECK ((', pg_catalog.quote_ident(a.attname), ' IS NOT NULL))')), \
     a.attnotnull, \
     EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c \
     WHERE c.conrelid OPERATOR(pg_catalog.=) a.attrelid \
     AND c.contype OPERATOR(pg_catalog.=) 'c' AND a.attnum OPERATOR(pg_catalog.=) ANY (c.conkey)), \
     EXISTS (SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class i \
     ON i.oid OPERATOR(pg_catalog.=) d.objid \
     WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
     AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
     AND d.refobjid OPERATOR(pg_catalog.=) a.attrelid \
     AND d.refobjsubid OPERATOR(pg_catalog.=) a.attnum \
     AND i.relkind OPERATOR(pg_catalog.=) ANY ('{i,I}'::pg_catalog.\"char\"[])), \
     COALESCE((SELECT l.collname FROM pg_catalog.pg_collation l \
     WHERE l.oid OPERATOR(pg_catalog.=) a.attcollation), '') \
     FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1) \
     AND a.attname OPERATOR(pg_catalog.=) $2 AND NOT a.attisdropped";

pub(super) const PARTITIONS: &[u8] = b"ddlgate_lookup_partitions";

/// A row per partitioned table: its DEFAULT partition's name (NULL when it
/// has none), that partition's size (unknown, NULL, while another session
/// holds or awaits ACCESS EXCLUSIVE on it: see SIZE_SQL), and its key.
pub(super) const PARTITIONS_SQL: &str = "SELECT CASE WHEN d.oid IS NOT NULL \
     THEN pg_catalog.format('%I.%I', n.nspname, d.relname) END, \
     CASE WHEN d.oid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l \
     WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.relation OPERATOR(pg_catalog.=) d.oid \
     AND l.mode OPERATOR(pg_catalog.=) 'AccessExclusiveLock' \
     AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()) \
     THEN pg_catalog.pg_relation_size(d.oid) END, \
     pg_catalog.pg_get_partkeydef(p.partrelid) \
     FROM pg_catalog.pg_partitioned_table p \
     LEFT JOIN pg_catalog.pg_class d ON d.oid OPERATOR(pg_catalog.=) p.partdefid \
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) d.relnamespace \
     WHERE p.partrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)";

pub(super) const INDEX_NOT_NULL: &[u8] = b"ddlgate_lookup_index_not_null";

/// True when every column of the index is NOT NULL already.
pub(super) const INDEX_NOT_NULL_SQL: &str =
    "SELECT pg_catalog.bool_and(a.attnotnull) FROM pg_catalog.pg_index i \
     JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid \
     AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey) \
     WHERE i.indexrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)";

pub(super) const DEPENDENTS: &[u8] = b"ddlgate_lookup_dependents";

pub(super) const SESSION: &[u8] = b"ddlgate_lookup_session";

/// Who the session is now and how it resolves names: what a migration
/// runs as; and `ddlgate.mode`, a custom setting the server keeps for
/// ddlgate (so SET, SET LOCAL, RESET, ALTER ROLE ... SET and a pooler's
/// DISCARD ALL all mean what they mean in PostgreSQL). The parameter is
/// unused (every fact is read by a name).
pub(super) const SESSION_SQL: &str = "SELECT CAST(current_user AS pg_catalog.text), \
     pg_catalog.current_setting('search_path'), \
     pg_catalog.current_setting('ddlgate.mode', true), \
     pg_catalog.current_setting('ddlgate.postpone_cutover', true) WHERE $1::pg_catalog.text IS NOT NULL";

pub(super) const ACCESS_METHOD: &[u8] = b"ddlgate_lookup_access_method";

pub(super) const ACCESS_METHOD_SQL: &str = "SELECT a.amname FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_am a ON a.oid OPERATOR(pg_catalog.=) c.relam \
     WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)";

/// Heap size of plain tables and materialized views; NULL for partitioned
/// tables (their data is in the partitions) and anything else. Reading the
/// size opens the table (ACCESS SHARE), which would queue behind an ACCESS
/// EXCLUSIVE lock held or awaited by another session: then the size is
/// NULL (unknown), rather than the lookup waiting.
pub(super) const SIZE_SQL: &str = "SELECT CASE WHEN c.relkind OPERATOR(pg_catalog.=) \
     ANY ('{r,m}'::pg_catalog.\"char\"[]) AND NOT EXISTS (\
     SELECT 1 FROM pg_catalog.pg_locks l WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' \
     AND l.relation OPERATOR(pg_catalog.=) c.oid \
     AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d \
     WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
     AND l.mode OPERATOR(pg_catalog.=) 'AccessExclusiveLock' \
     AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()) \
     THEN pg_catalog.pg_relation_size(c.oid) END \
     FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)";

/// A statement the server parses (never runs) to learn whether its parser
/// accepts it: a schema change is judged only once PostgreSQL would run it.
pub(super) const SYNTAX: &[u8] = b"ddlgate_lookup_syntax";

pub(super) const SAVEPOINT: &[u8] = b"ddlgate_lookup_savepoint";

pub(super) const SAVEPOINT_SQL: &str = "SAVEPOINT ddlgate_lookup";

pub(super) const RELEASE: &[u8] = b"ddlgate_lookup_release";

pub(super) const RELEASE_SQL: &str = "RELEASE SAVEPOINT ddlgate_lookup";
