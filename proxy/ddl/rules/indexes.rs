//! Indexes: CREATE / DROP / REINDEX without CONCURRENTLY, and CONCURRENTLY
//! forms sent inside a transaction block (which PostgreSQL refuses).

use super::Context;
use crate::ddl::op::Op;
use crate::ddl::rule::{Finding, Lock, Rule};

pub fn check(op: &Op, ctx: &Context<'_>, out: &mut Vec<Finding>) {
    match op {
        Op::CreateIndex {
            table,
            name,
            concurrently: false,
            unique,
            ..
        } => {
            let u = if *unique { "UNIQUE " } else { "" };
            let name = name.as_deref().unwrap_or("<name>");
            out.push(
                Finding::new(Rule::CreateIndex, Some(table), Some(Lock::Share))
                    .scan()
                    .detail(format!(
                        "builds the index reading all of {table} while holding SHARE, which \
                         blocks every INSERT, UPDATE and DELETE"
                    ))
                    .alternative(format!(
                        "CREATE {u}INDEX CONCURRENTLY {name} ON {table} (...); -- outside a \
                         transaction block; if it fails, DROP INDEX CONCURRENTLY the invalid \
                         index and retry{}",
                        if ctx.server_major == 14 {
                            " (needs 14.4 or later: 14.0-14.3 can corrupt such indexes)"
                        } else {
                            ""
                        }
                    )),
            );
        }
        Op::DropIndex {
            names,
            concurrently: false,
        } => {
            let names = names.join(", ");
            out.push(
                Finding::new(Rule::DropIndex, None, Some(Lock::AccessExclusive))
                    .detail(format!(
                        "drops {names} holding ACCESS EXCLUSIVE on its table, blocking reads \
                         while it waits for the lock"
                    ))
                    .alternative(format!(
                        "DROP INDEX CONCURRENTLY {names}; -- one index per statement, outside a \
                         transaction block"
                    )),
            );
        }
        Op::Reindex {
            target,
            concurrently: false,
        } => {
            let alternative = if ctx.server_major >= 12 {
                format!("REINDEX ... CONCURRENTLY {target}; -- outside a transaction block")
            } else {
                "CREATE INDEX CONCURRENTLY a copy of the index, DROP INDEX CONCURRENTLY the old \
                 one, then rename the copy"
                    .to_owned()
            };
            out.push(
                Finding::new(Rule::Reindex, Some(target), Some(Lock::Share))
                    .scan()
                    .detail(format!(
                        "rebuilds indexes of {target}, blocking writes and any query that uses \
                         the index being rebuilt"
                    ))
                    .alternative(alternative),
            );
        }
        _ => {}
    }
}

/// CONCURRENTLY (and DETACH ... CONCURRENTLY) inside a transaction block.
pub fn check_transaction(op: &Op, ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let concurrently = matches!(
        op,
        Op::CreateIndex {
            concurrently: true,
            ..
        } | Op::DropIndex {
            concurrently: true,
            ..
        } | Op::Reindex {
            concurrently: true,
            ..
        } | Op::DetachPartition {
            concurrently: true,
            ..
        }
    );
    if concurrently && ctx.in_transaction {
        out.push(
            Finding::new(Rule::ConcurrentlyInTransaction, op.table(), None)
                .detail(
                    "a CONCURRENTLY operation was sent inside a transaction block (or with other \
                     statements in one query string); PostgreSQL refuses it",
                )
                .alternative("send it alone, outside BEGIN ... COMMIT"),
        );
    }
}
