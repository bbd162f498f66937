//! Changes that break clients or lose data: RENAME COLUMN / TABLE,
//! DROP COLUMN / TABLE, TRUNCATE.

use super::Context;
use crate::ddl::op::Op;
use crate::ddl::rule::{Finding, Lock, Rule};

const AE: Option<Lock> = Some(Lock::AccessExclusive);

pub fn check(op: &Op, _ctx: &Context<'_>, out: &mut Vec<Finding>) {
    match op {
        Op::RenameColumn { table, from, to } => out.push(
            Finding::new(Rule::RenameColumn, Some(table), AE)
                .breaks_clients()
                .detail(format!(
                    "renames {table}.{from} to {to}; running code that names {from} fails at once"
                ))
                .alternative(format!(
                    "expand/contract: ALTER TABLE {table} ADD COLUMN {to} ...; keep both in sync \
                     with a trigger and backfill; move clients to {to}; drop {from} last"
                )),
        ),
        Op::RenameTable { table, to } => out.push(
            Finding::new(Rule::RenameTable, Some(table), AE)
                .breaks_clients()
                .detail(format!(
                    "renames {table} to {to}; running code that names {table} fails at once"
                ))
                .alternative(format!(
                    "ALTER TABLE {table} RENAME TO {to}; CREATE VIEW {table} AS SELECT * FROM \
                     {to}; -- in one transaction, so old clients keep working; drop the view last"
                )),
        ),
        Op::DropColumn { table, columns } => {
            let cols = columns.join(", ");
            out.push(
                Finding::new(Rule::DropColumn, Some(table), AE)
                    .breaks_clients()
                    .detail(format!(
                        "drops {table}.{cols} and its data; code still reading it fails"
                    ))
                    .alternative(
                        "contract phase only: deploy code that no longer uses the column, then \
                         drop it with an override after review",
                    ),
            );
        }
        Op::DropTable { tables } => {
            let names = tables.join(", ");
            out.push(
                Finding::new(Rule::DropTable, tables.first().map(String::as_str), AE)
                    .breaks_clients()
                    .detail(format!("drops {names} and all of its data"))
                    .alternative(
                        "rename it aside first and drop it after a grace period, with an \
                         override after review",
                    ),
            );
        }
        Op::Truncate { tables } => {
            let names = tables.join(", ");
            let mut f = Finding::new(Rule::Truncate, tables.first().map(String::as_str), AE);
            // A fresh, empty file replaces the table's: no scan, but a new
            // relfilenode like a rewrite.
            f.rewrite = true;
            out.push(
                f.breaks_clients()
                    .detail(format!(
                        "empties {names} under ACCESS EXCLUSIVE (CASCADE empties referencing \
                         tables too)"
                    ))
                    .alternative("DELETE in batches, or an override after review"),
            );
        }
        _ => {}
    }
}
