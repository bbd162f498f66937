//! Whole-table maintenance and explicit locks: VACUUM FULL, CLUSTER,
//! SET TABLESPACE, SET LOGGED/UNLOGGED, REFRESH MATERIALIZED VIEW, LOCK TABLE.

use super::Context;
use crate::ddl::op::Op;
use crate::ddl::rule::{Finding, Lock, Rule};

const AE: Option<Lock> = Some(Lock::AccessExclusive);
const REPACK: &str = "use an online rebuild tool (pg_repack / pg_squeeze) instead";

pub fn check(op: &Op, ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let f = match op {
        Op::SetAccessMethod { table, method } => {
            let current = ctx
                .catalog
                .access_methods
                .get(&crate::ddl::op::fold_name(table));
            if current.is_some_and(|c| c == method) {
                // Its own method already: nothing to rewrite.
                return;
            }
            let known = match current {
                Some(c) => format!("from {c} to {method}"),
                None => format!("to {method} (nothing happens if that is its method already)"),
            };
            Finding::new(Rule::SetAccessMethod, Some(table), AE)
                .rewrite()
                .detail(format!("moves {table} {known}, rewriting it under ACCESS EXCLUSIVE"))
                .alternative(
                    "create a table with the new access method and copy the data online, then swap the names",
                )
        }
        Op::Vacuum { full: true, tables } => {
            let t = tables.first().map(String::as_str);
            let what = if tables.is_empty() {
                "every table in the database".to_owned()
            } else {
                tables.join(", ")
            };
            Finding::new(Rule::VacuumFull, t, AE)
                .rewrite()
                .detail(format!("rewrites {what} under ACCESS EXCLUSIVE"))
                .alternative(REPACK)
        }
        Op::Cluster { table } => {
            let what = table
                .as_deref()
                .unwrap_or("every previously clustered table");
            Finding::new(Rule::Cluster, table.as_deref(), AE)
                .rewrite()
                .detail(format!(
                    "rewrites {what} in index order under ACCESS EXCLUSIVE"
                ))
                .alternative(REPACK)
        }
        Op::SetTablespace { table } => Finding::new(Rule::SetTablespace, Some(table), AE)
            .rewrite()
            .detail(format!(
                "copies {table} to another tablespace under ACCESS EXCLUSIVE"
            ))
            .alternative(REPACK),
        Op::SetLogged { table } => Finding::new(Rule::SetLoggedUnlogged, Some(table), AE)
            .rewrite()
            .detail(format!("rewrites {table} under ACCESS EXCLUSIVE"))
            .alternative("create the table with the right persistence and copy the data online"),
        Op::RefreshMaterializedView {
            name,
            concurrently: false,
        } => {
            // A new file for the view, filled from its query: the view
            // itself is not read.
            let mut f = Finding::new(Rule::RefreshMaterializedView, Some(name), AE);
            f.rewrite = true;
            f.detail(format!(
                "recomputes {name}, blocking its readers until done"
            ))
            .alternative(format!(
                "REFRESH MATERIALIZED VIEW CONCURRENTLY {name}; -- needs a unique index on it"
            ))
        }
        Op::LockTable { tables, mode } if mode.blocks_writes() => {
            let names = tables.join(", ");
            let blocks = if mode.blocks_reads() {
                "all access"
            } else {
                "writes"
            };
            Finding::new(
                Rule::LockTable,
                tables.first().map(String::as_str),
                Some(*mode),
            )
            .detail(format!(
                "locks {names} in {mode} mode until the transaction ends, blocking {blocks}"
            ))
            .alternative("keep the transaction short; ddlgate applies its lock_timeout")
        }
        _ => return,
    };
    out.push(f);
}
