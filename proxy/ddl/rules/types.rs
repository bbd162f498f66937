//! Types: ALTER TYPE ... ADD VALUE inside a transaction block, which
//! PostgreSQL before 12 refuses.

use super::Context;
use crate::ddl::op::Op;
use crate::ddl::rule::{Finding, Rule};

pub fn check(op: &Op, ctx: &Context<'_>, out: &mut Vec<Finding>) {
    if let Op::EnumAddValue { type_name } = op {
        if ctx.in_transaction && ctx.server_major < 12 {
            out.push(
                Finding::new(Rule::EnumAddValueInTransaction, None, None)
                    .detail(format!(
                        "adds a value to {type_name} inside a transaction block, which \
                         PostgreSQL {} refuses",
                        ctx.server_major
                    ))
                    .alternative("run ALTER TYPE ... ADD VALUE alone, outside BEGIN ... COMMIT"),
            );
        }
    }
}
