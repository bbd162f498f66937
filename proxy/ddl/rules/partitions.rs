//! Partitions: DETACH without CONCURRENTLY, ATTACH scanning the partition.

use super::Context;
use crate::ddl::op::Op;
use crate::ddl::rule::{Finding, Lock, Rule};

pub fn check(op: &Op, ctx: &Context<'_>, out: &mut Vec<Finding>) {
    match op {
        Op::DetachPartition {
            table,
            partition,
            concurrently: false,
        } => {
            let alternative = if ctx.server_major >= 14 {
                format!(
                    "ALTER TABLE {table} DETACH PARTITION {partition} CONCURRENTLY; -- outside a \
                     transaction block"
                )
            } else {
                "upgrade to PostgreSQL 14 for DETACH ... CONCURRENTLY, or schedule a window"
                    .to_owned()
            };
            out.push(
                Finding::new(
                    Rule::DetachPartition,
                    Some(table),
                    Some(Lock::AccessExclusive),
                )
                .detail(format!(
                    "detaches {partition} holding ACCESS EXCLUSIVE on {table}, blocking all \
                         queries on the partitioned table"
                ))
                .alternative(alternative),
            );
        }
        Op::AttachPartition { table, partition } => {
            let lock = if ctx.server_major >= 12 {
                Lock::ShareUpdateExclusive
            } else {
                Lock::AccessExclusive
            };
            out.push(
                Finding::new(Rule::AttachPartition, Some(table), Some(lock))
                    .detail(format!(
                        "attaches {partition} to {table} ({lock} on {table}), scanning \
                         {partition} under ACCESS EXCLUSIVE to prove its rows fit the bound"
                    ))
                    .alternative(format!(
                        "first ALTER TABLE {partition} ADD CONSTRAINT ... CHECK (<the bound>) \
                         NOT VALID and VALIDATE it; the ATTACH then skips the scan"
                    )),
            );
        }
        _ => {}
    }
}
