//! Types and domains: ALTER TYPE ... ADD VALUE inside a transaction block,
//! which PostgreSQL before 12 refuses; domain constraints checked against
//! every column of the domain.

use super::Context;
use crate::ddl::op::Op;
use crate::ddl::rule::{Finding, Lock, Rule};

pub fn check(op: &Op, ctx: &Context<'_>, out: &mut Vec<Finding>) {
    if let Op::DomainCheck { domain, what } = op {
        out.push(
            Finding::new(Rule::DomainConstraintScan, None, Some(Lock::Share))
                .scan()
                .detail(format!(
                    "{what} on domain {domain} reads every table with a column of {domain}, holding SHARE on each: their writes wait for the scan"
                ))
                .alternative(format!(
                    "ALTER DOMAIN {domain} ADD CONSTRAINT ... NOT VALID checks new values at once without a scan; validating takes SHARE on each table using the domain, so run it when their writes can wait (PostgreSQL has no online form)"
                )),
        );
    }
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
