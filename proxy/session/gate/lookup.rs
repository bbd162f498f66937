//! Catalog facts some rules need, read on the session's own connection just
//! before deciding: a column's current type (is ALTER COLUMN TYPE
//! binary-coercible?) and whether a validated `CHECK (col IS NOT NULL)`
//! exists (then SET NOT NULL skips its scan on PostgreSQL 12+, the last step
//! of the safe recipe). Names travel as Bind parameters, never inside SQL.

use crate::ddl::op::{fold_name, Op};
use crate::ddl::types::SqlType;
use crate::ddl::{Analyzer, Catalog, Mode};
use crate::protocol::backend::data_row;
use crate::protocol::frontend;

const NAME: &[u8] = b"ddlgate_lookup";

const SQL: &str = "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), \
     EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conrelid = a.attrelid \
     AND c.contype = 'c' AND c.convalidated AND pg_catalog.pg_get_constraintdef(c.oid) = \
     'CHECK ((' || pg_catalog.quote_ident(a.attname) || ' IS NOT NULL))') \
     FROM pg_catalog.pg_attribute a WHERE a.attrelid = pg_catalog.to_regclass($1) \
     AND a.attname = $2 AND NOT a.attisdropped";

/// `(table, column)` as written, whose facts would change the decision.
pub fn wanted(sql: &[u8], major: u32) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let stmts =
        Analyzer::default().analyze(sql, Mode::QueryString, false, major, &Catalog::default());
    for s in stmts {
        for op in s.ops {
            if let Op::AlterType { table, column, .. } | Op::SetNotNull { table, column } = op {
                if !out.contains(&(table.clone(), column.clone())) {
                    out.push((table, column));
                }
            }
        }
    }
    out
}

/// One extended batch (own Sync, named statement and portal) with one
/// Execute per column, in order.
pub fn batch(pairs: &[(String, String)], out: &mut Vec<u8>) {
    frontend::parse(NAME, SQL.as_bytes(), out);
    for (table, column) in pairs {
        let attname = attname(column);
        frontend::bind_params(NAME, NAME, &[table.as_bytes(), attname.as_bytes()], out);
        frontend::execute(NAME, out);
        frontend::close_portal(NAME, out);
    }
    frontend::close_statement(NAME, out);
    frontend::sync(out);
}

/// A column name as stored in pg_attribute: quotes removed, unquoted names
/// folded to lower case.
fn attname(column: &str) -> String {
    if column.starts_with('"') {
        column.trim_matches('"').replace("\"\"", "\"")
    } else {
        column.to_lowercase()
    }
}

/// Responses to a lookup batch: each DataRow belongs to the column whose
/// Execute is current; each CommandComplete moves to the next.
pub struct Lookup {
    pub pairs: Vec<(String, String)>,
    next: usize,
}

impl Lookup {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Lookup { pairs, next: 0 }
    }

    pub fn on_message(&mut self, tag: u8, body: &[u8], catalog: &mut Catalog) {
        match tag {
            b'D' => {
                let (Some((table, column)), Some(cols)) =
                    (self.pairs.get(self.next), data_row(body))
                else {
                    return;
                };
                let key = (fold_name(table), fold_name(column));
                if let Some(Some(ty)) = cols.first() {
                    catalog
                        .column_types
                        .insert(key.clone(), SqlType::parse(&String::from_utf8_lossy(ty)));
                }
                if cols.get(1) == Some(&Some(&b"t"[..])) {
                    catalog.not_null_checks.insert(key);
                }
            }
            b'C' => self.next += 1,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants_type_and_not_null_columns_once() {
        let w = wanted(
            b"ALTER TABLE t ALTER COLUMN \"V\" TYPE text, ALTER COLUMN a SET NOT NULL; \
              ALTER TABLE t ALTER COLUMN a SET NOT NULL; ALTER TABLE t ADD COLUMN x int",
            15,
        );
        assert_eq!(
            w,
            vec![("t".into(), "\"V\"".into()), ("t".into(), "a".into())]
        );
        assert_eq!(attname("\"V\""), "V");
        assert_eq!(attname("Abc"), "abc");
    }
}
