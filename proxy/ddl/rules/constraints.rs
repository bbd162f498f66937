//! Constraints: CHECK and FOREIGN KEY without NOT VALID, VALIDATE in the
//! transaction that added the constraint, UNIQUE / PRIMARY KEY built under
//! the table lock, and EXCLUDE.

use super::{derived_name, Context};
use crate::ddl::op::{fold_name, ConstraintKind, Op};
use crate::ddl::rule::{Finding, Lock, Rule};

pub fn check(op: &Op, ctx: &Context<'_>, out: &mut Vec<Finding>) {
    match op {
        Op::AddConstraint {
            table,
            name,
            kind,
            not_valid,
        } => add(table, name.as_deref(), kind, *not_valid, ctx, out),
        Op::ValidateConstraint { table, name } => {
            let Some(held) = ctx.tx.not_valid.get(&(fold_name(table), fold_name(name))) else {
                return;
            };
            out.push(
                Finding::new(Rule::ValidateInSameTransaction, Some(table), Some(*held))
                    .scan()
                    .detail(format!(
                        "validates {name} while this transaction still holds the lock taken by \
                         adding it, so {table} stays locked for the whole scan"
                    ))
                    .alternative(format!(
                        "commit first, then validate in a transaction of its own: ALTER TABLE \
                         {table} VALIDATE CONSTRAINT {name};"
                    )),
            );
        }
        _ => {}
    }
}

fn add(
    table: &str,
    name: Option<&str>,
    kind: &ConstraintKind,
    not_valid: bool,
    ctx: &Context<'_>,
    out: &mut Vec<Finding>,
) {
    let shown = name.unwrap_or("<constraint>");
    let validate = format!("ALTER TABLE {table} VALIDATE CONSTRAINT {shown};");
    match kind {
        ConstraintKind::Check if !not_valid => out.push(
            Finding::new(
                Rule::AddCheckConstraint,
                Some(table),
                Some(Lock::AccessExclusive),
            )
            .scan()
            .detail(format!(
                "checks every row of {table} while holding ACCESS EXCLUSIVE"
            ))
            .alternative(format!(
                "add NOT VALID to this statement (a brief lock), then in a separate \
                     transaction: {validate}"
            )),
        ),
        ConstraintKind::ForeignKey { references } if !not_valid => out.push(
            Finding::new(
                Rule::AddForeignKey,
                Some(table),
                Some(Lock::ShareRowExclusive),
            )
            .scan()
            .detail(format!(
                "checks every row of {table} against {references}, blocking writes to both \
                     tables (SHARE ROW EXCLUSIVE) for the whole scan"
            ))
            .alternative(format!(
                "add NOT VALID to this statement (a brief lock), then in a separate \
                     transaction: {validate}"
            )),
        ),
        ConstraintKind::Unique { using_index: false }
        | ConstraintKind::PrimaryKey { using_index: false } => {
            let (rule, kw) = match kind {
                ConstraintKind::Unique { .. } => (Rule::AddUniqueConstraint, "UNIQUE"),
                _ => (Rule::AddPrimaryKey, "PRIMARY KEY"),
            };
            let constraint = name.map(str::to_owned).unwrap_or_else(|| {
                derived_name(&[table], if kw == "UNIQUE" { "key" } else { "pkey" })
            });
            out.push(
                Finding::new(rule, Some(table), Some(Lock::AccessExclusive))
                    .scan()
                    .detail(format!(
                        "builds a unique index over all of {table} while holding ACCESS EXCLUSIVE"
                    ))
                    .alternative(format!(
                        "CREATE UNIQUE INDEX CONCURRENTLY {constraint} ON {table} (<same columns>); \
                         ALTER TABLE {table} ADD CONSTRAINT {constraint} {kw} USING INDEX {constraint};{}",
                        if kw == "PRIMARY KEY" {
                            " -- the key columns must already be NOT NULL"
                        } else {
                            ""
                        }
                    )),
            );
        }
        ConstraintKind::PrimaryKeyOfIndex { index } => {
            let qualified = qualify_index(table, index);
            if ctx
                .catalog
                .not_null_indexes
                .contains(&fold_name(&qualified))
            {
                // Its columns are NOT NULL already: a catalog change.
                return;
            }
            out.push(
                Finding::new(Rule::AddPrimaryKey, Some(table), Some(Lock::AccessExclusive))
                    .scan()
                    .detail(format!(
                        "makes {index} the primary key of {table}: any of its columns not yet NOT NULL is set so, scanning all of {table} under ACCESS EXCLUSIVE"
                    ))
                    .alternative(format!(
                        "first make each of {index}'s columns NOT NULL online: ALTER TABLE \
                         {table} ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE \
                         CONSTRAINT c; ALTER COLUMN col SET NOT NULL; DROP CONSTRAINT c; this \
                         statement is then a catalog change"
                    )),
            );
        }
        ConstraintKind::Exclude => out.push(
            Finding::new(
                Rule::AddExcludeConstraint,
                Some(table),
                Some(Lock::AccessExclusive),
            )
            .scan()
            .detail(format!(
                "builds an exclusion index over all of {table} while holding ACCESS EXCLUSIVE"
            ))
            .alternative(
                "no online form exists: schedule it for a maintenance window, or enforce the \
                     rule in the application",
            ),
        ),
        _ => {}
    }
}

/// An index named in `USING INDEX` lives in its table's schema.
pub fn qualify_index(table: &str, index: &str) -> String {
    match table.rsplit_once('.') {
        Some((schema, _)) if !index.contains('.') => format!("{schema}.{index}"),
        _ => index.to_owned(),
    }
}
