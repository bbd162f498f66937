//! What hangs on a column whose type is about to change, as the server's
//! catalog shows it: its default, NOT NULL, comment and sequence, the
//! indexes and constraints that use it, the foreign keys of other tables
//! that reference it, and whatever else depends on it that a phased type
//! change cannot carry over (views, policies, triggers on the column...).
//!
//! Read by the gate's lookup, used by the type-change plan. Definitions are
//! the server's own text (`pg_get_indexdef`, `pg_get_constraintdef`,
//! `pg_get_expr`), names are quoted as the server quotes them, comments are
//! already string literals (`quote_literal`). The query that reads them
//! is here with the rows it gives (`SQL`, `on_row`).

/// One column's dependents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dependents {
    /// The table, schema-qualified and quoted (`public.orders`).
    pub table: String,
    /// The table's schema, quoted.
    pub schema: String,
    /// The column's name as the server quotes it in definitions.
    pub column: String,
    pub not_null: bool,
    /// Its DEFAULT expression.
    pub default: Option<String>,
    /// Its comment, as a string literal.
    pub comment: Option<String>,
    /// Its statistics target, when set.
    pub statistics: Option<i32>,
    /// The sequence the column owns (serial), schema-qualified.
    pub sequence: Option<String>,
    pub indexes: Vec<IndexDep>,
    /// The table's own CHECK and FOREIGN KEY constraints that use it.
    pub constraints: Vec<ConstraintDep>,
    /// Other tables' foreign keys (or the table's own) that reference it.
    pub referencing: Vec<ConstraintDep>,
    /// What the plan cannot carry over, described as the server does
    /// (`view pv`, `policy p on table t`, `privileges granted on the column`).
    pub blockers: Vec<String>,
}

/// An index that uses the column (in its keys, INCLUDE, expressions or
/// predicate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexDep {
    /// Unqualified, quoted.
    pub name: String,
    /// `pg_get_indexdef`.
    pub def: String,
    /// The PRIMARY KEY or UNIQUE constraint it backs, if any.
    pub constraint: Option<IndexConstraint>,
    pub clustered: bool,
    pub replica_identity: bool,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexConstraint {
    /// Quoted.
    pub name: String,
    pub primary: bool,
    pub deferrable: bool,
    pub deferred: bool,
}

/// A CHECK or FOREIGN KEY constraint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConstraintDep {
    /// The table it is on, schema-qualified and quoted.
    pub table: String,
    /// Quoted.
    pub name: String,
    /// `pg_get_constraintdef` (ends with `NOT VALID` when not validated).
    pub def: String,
    pub foreign_key: bool,
    pub comment: Option<String>,
}

impl ConstraintDep {
    /// The server keeps it unvalidated: so does the plan.
    pub fn validated(&self) -> bool {
        !self.def.ends_with(" NOT VALID")
    }
}

/// The lookup: `$1` the table as written, `$2` the column as stored. One
/// row per dependent, `(kind, name, def, other, flags, comment, extra)`,
/// all text; it reads only the catalog, so it opens no table.
pub const SQL: &str = "WITH col AS (\
  SELECT a.attrelid AS rel, a.attnum AS num, a.attname, a.attnotnull, a.attstattarget, \
         a.attidentity, a.attgenerated, a.attacl, a.attinhcount, \
         c.relkind, c.relispartition, n.nspname, c.relname \
    FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid \
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
   WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1) AND a.attname OPERATOR(pg_catalog.=) $2 AND NOT a.attisdropped) \
SELECT 'column', pg_catalog.format('%I.%I', col.nspname, col.relname), \
       pg_catalog.pg_get_expr(d.adbin, d.adrelid), pg_catalog.quote_ident(col.attname), \
       CASE WHEN col.attnotnull THEN 'n' ELSE '' END, \
       pg_catalog.quote_literal(pg_catalog.col_description(col.rel, col.num)), \
       pg_catalog.concat(pg_catalog.quote_ident(col.nspname), ' ', \
                         CASE WHEN col.attstattarget OPERATOR(pg_catalog.<>) -1 THEN col.attstattarget END::pg_catalog.text) \
  FROM col LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid OPERATOR(pg_catalog.=) col.rel AND d.adnum OPERATOR(pg_catalog.=) col.num \
UNION ALL \
SELECT 'sequence', pg_catalog.format('%I.%I', sn.nspname, s.relname), NULL, NULL, NULL, NULL, NULL \
  FROM col JOIN pg_catalog.pg_depend dp ON dp.refobjid OPERATOR(pg_catalog.=) col.rel AND dp.refobjsubid OPERATOR(pg_catalog.=) col.num \
   AND dp.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND dp.deptype OPERATOR(pg_catalog.=) 'a' \
  JOIN pg_catalog.pg_class s ON s.oid OPERATOR(pg_catalog.=) dp.objid AND s.relkind OPERATOR(pg_catalog.=) 'S' \
  JOIN pg_catalog.pg_namespace sn ON sn.oid OPERATOR(pg_catalog.=) s.relnamespace \
UNION ALL \
SELECT 'index', pg_catalog.quote_ident(ic.relname), pg_catalog.pg_get_indexdef(i.indexrelid), \
       pg_catalog.quote_ident(k.conname), \
       pg_catalog.concat(k.contype, CASE WHEN k.condeferrable THEN 'd' END, \
              CASE WHEN k.condeferred THEN 'D' END, CASE WHEN i.indisclustered THEN 'c' END, \
              CASE WHEN i.indisreplident THEN 'r' END), \
       pg_catalog.quote_literal(pg_catalog.obj_description(i.indexrelid, 'pg_class')), \
       (SELECT ts.spcname::pg_catalog.text FROM pg_catalog.pg_tablespace ts WHERE ts.oid OPERATOR(pg_catalog.=) ic.reltablespace) \
  FROM col JOIN pg_catalog.pg_index i ON i.indrelid OPERATOR(pg_catalog.=) col.rel \
  JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid \
  LEFT JOIN pg_catalog.pg_constraint k ON k.conindid OPERATOR(pg_catalog.=) i.indexrelid AND k.conrelid OPERATOR(pg_catalog.=) col.rel \
       AND k.contype OPERATOR(pg_catalog.=) ANY ('{p,u,x}'::pg_catalog.\"char\"[]) \
 WHERE col.num OPERATOR(pg_catalog.=) ANY (i.indkey) OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend x \
       WHERE x.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND x.objid OPERATOR(pg_catalog.=) i.indexrelid \
         AND x.refobjid OPERATOR(pg_catalog.=) col.rel AND x.refobjsubid OPERATOR(pg_catalog.=) col.num) \
UNION ALL \
SELECT 'constraint', pg_catalog.quote_ident(k.conname), pg_catalog.pg_get_constraintdef(k.oid), \
       NULL, k.contype::pg_catalog.text, \
       pg_catalog.quote_literal(pg_catalog.obj_description(k.oid, 'pg_constraint')), NULL \
  FROM col JOIN pg_catalog.pg_constraint k ON k.conrelid OPERATOR(pg_catalog.=) col.rel AND k.contype OPERATOR(pg_catalog.=) ANY ('{c,f}'::pg_catalog.\"char\"[]) \
 WHERE col.num OPERATOR(pg_catalog.=) ANY (k.conkey) \
UNION ALL \
SELECT 'referencing', pg_catalog.quote_ident(k.conname), pg_catalog.pg_get_constraintdef(k.oid), \
       pg_catalog.format('%I.%I', rn.nspname, r.relname), NULL, \
       pg_catalog.quote_literal(pg_catalog.obj_description(k.oid, 'pg_constraint')), NULL \
  FROM col JOIN pg_catalog.pg_constraint k ON k.confrelid OPERATOR(pg_catalog.=) col.rel AND k.contype OPERATOR(pg_catalog.=) 'f' \
       AND k.conparentid OPERATOR(pg_catalog.=) 0 \
  JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) k.conrelid \
  JOIN pg_catalog.pg_namespace rn ON rn.oid OPERATOR(pg_catalog.=) r.relnamespace \
 WHERE col.num OPERATOR(pg_catalog.=) ANY (k.confkey) \
UNION ALL \
SELECT 'blocker', CASE WHEN dp.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
         THEN (SELECT CASE WHEN v.relkind OPERATOR(pg_catalog.=) 'm' THEN 'materialized view ' ELSE 'view ' END \
                      OPERATOR(pg_catalog.||) pg_catalog.format('%I.%I', vn.nspname, v.relname) \
                 FROM pg_catalog.pg_rewrite w JOIN pg_catalog.pg_class v ON v.oid OPERATOR(pg_catalog.=) w.ev_class \
                 JOIN pg_catalog.pg_namespace vn ON vn.oid OPERATOR(pg_catalog.=) v.relnamespace WHERE w.oid OPERATOR(pg_catalog.=) dp.objid) \
         ELSE pg_catalog.pg_describe_object(dp.classid, dp.objid, dp.objsubid) END, \
       NULL, NULL, NULL, NULL, NULL \
  FROM col JOIN pg_catalog.pg_depend dp \
    ON dp.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
   AND dp.refobjid OPERATOR(pg_catalog.=) col.rel AND dp.refobjsubid OPERATOR(pg_catalog.=) col.num \
 WHERE NOT (dp.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND EXISTS (\
            SELECT 1 FROM pg_catalog.pg_attrdef ad WHERE ad.oid OPERATOR(pg_catalog.=) dp.objid AND ad.adnum OPERATOR(pg_catalog.=) col.num)) \
   AND NOT (dp.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass AND EXISTS (\
            SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.oid OPERATOR(pg_catalog.=) dp.objid \
               AND k.contype OPERATOR(pg_catalog.=) ANY ('{c,f,p,u}'::pg_catalog.\"char\"[]))) \
   AND NOT (dp.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND EXISTS (\
            SELECT 1 FROM pg_catalog.pg_class k WHERE k.oid OPERATOR(pg_catalog.=) dp.objid \
               AND (k.relkind OPERATOR(pg_catalog.=) 'i' OR (k.relkind OPERATOR(pg_catalog.=) 'S' AND dp.deptype OPERATOR(pg_catalog.=) 'a')))) \
UNION ALL \
SELECT 'blocker', b, NULL, NULL, NULL, NULL, NULL FROM col, LATERAL (VALUES \
   (CASE WHEN col.attidentity OPERATOR(pg_catalog.<>) '' THEN 'the column is an identity column' END), \
   (CASE WHEN col.attgenerated OPERATOR(pg_catalog.<>) '' THEN 'the column is a generated column' END), \
   (CASE WHEN col.attacl IS NOT NULL THEN 'privileges granted on the column' END), \
   (CASE WHEN col.relkind OPERATOR(pg_catalog.=) 'p' OR col.relispartition OR col.attinhcount > 0 \
         OR EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhparent OPERATOR(pg_catalog.=) col.rel) \
         THEN 'the table has partitions or inheritance parents or children' END), \
   (CASE WHEN col.relkind OPERATOR(pg_catalog.<>) 'r' AND col.relkind OPERATOR(pg_catalog.<>) 'p' THEN 'it is not a table' END), \
   (CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables pt \
              WHERE pt.schemaname OPERATOR(pg_catalog.=) col.nspname AND pt.tablename OPERATOR(pg_catalog.=) col.relname) \
         THEN 'the table is published for logical replication (its subscribers have no \
              column for the new one)' END)) v(b) \
 WHERE b IS NOT NULL";

/// Adds one row of the lookup to `d`.
pub fn on_row(cols: &[Option<&[u8]>], d: &mut Dependents) {
    let text = |i: usize| -> Option<String> {
        cols.get(i)
            .copied()
            .flatten()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let name = text(1).unwrap_or_default();
    match text(0).as_deref() {
        Some("column") => {
            d.table = name;
            d.default = text(2);
            d.column = text(3).unwrap_or_default();
            d.not_null = text(4).as_deref() == Some("n");
            d.comment = text(5);
            let extra = text(6).unwrap_or_default();
            let (schema, stats) = extra.rsplit_once(' ').unwrap_or((&extra, ""));
            d.schema = schema.to_owned();
            d.statistics = stats.parse().ok();
        }
        Some("sequence") => d.sequence = Some(name),
        Some("index") => {
            let flags = text(4).unwrap_or_default();
            let has = |c: char| flags.contains(c);
            let constraint = text(3).and_then(|conname| {
                if has('x') {
                    // Exclusion constraints are not carried over.
                    d.blockers.push(format!("exclusion constraint {conname}"));
                    return None;
                }
                Some(IndexConstraint {
                    name: conname,
                    primary: has('p'),
                    deferrable: has('d'),
                    deferred: has('D'),
                })
            });
            if let Some(space) = text(6) {
                d.blockers
                    .push(format!("index {name} (in tablespace {space})"));
            }
            d.indexes.push(IndexDep {
                name,
                def: text(2).unwrap_or_default(),
                constraint,
                clustered: has('c'),
                replica_identity: has('r'),
                comment: text(5),
            });
        }
        Some(kind @ ("constraint" | "referencing")) => {
            let dep = ConstraintDep {
                table: if kind == "referencing" {
                    text(3).unwrap_or_default()
                } else {
                    String::new()
                },
                name,
                def: text(2).unwrap_or_default(),
                foreign_key: kind == "referencing" || text(4).as_deref() == Some("f"),
                comment: text(5),
            };
            if kind == "referencing" {
                d.referencing.push(dep);
            } else {
                d.constraints.push(dep);
            }
        }
        Some("blocker") => d.blockers.push(name),
        _ => {}
    }
}
