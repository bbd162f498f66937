//! Partitions: DETACH without CONCURRENTLY, ATTACH scanning the partition,
//! CREATE TABLE ... PARTITION OF locking the parent, and either of them
//! scanning the DEFAULT partition when the parent has one.

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
        Op::CreatePartition { table, parent } => {
            if let Some(f) = scans_default(parent, ctx) {
                out.push(f);
                return;
            }
            out.push(
                Finding::new(
                    Rule::CreatePartitionOf,
                    Some(parent),
                    Some(Lock::AccessExclusive),
                )
                .detail(format!(
                    "creates {table} as a partition of {parent}, holding ACCESS EXCLUSIVE on {parent} (brief, but every query on it waits)"
                ))
                .alternative(format!(
                    "CREATE TABLE {table} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS); then ALTER TABLE {parent} ATTACH PARTITION {table} with the same bound, which takes only SHARE UPDATE EXCLUSIVE on {parent}"
                )),
            );
        }
        Op::AttachPartition { table, partition } => {
            if let Some(f) = scans_default(table, ctx) {
                out.push(f);
            }
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

/// The finding for a new partition of `parent` when the parent has (or may
/// have) a DEFAULT partition that PostgreSQL scans, under ACCESS EXCLUSIVE,
/// for rows that now belong elsewhere. `None` when the catalog shows there
/// is none, or that it is small.
fn scans_default(parent: &str, ctx: &Context<'_>) -> Option<Finding> {
    let known = ctx
        .catalog
        .default_partitions
        .get(&crate::ddl::op::fold_name(parent));
    let (what, name) = match known {
        Some(None) | Some(Some((_, true))) => return None,
        Some(Some((name, false))) => (format!("the DEFAULT partition {name}"), name.clone()),
        None => (
            format!("the DEFAULT partition of {parent}, if it has one (the catalog was not read)"),
            "<its default partition>".to_owned(),
        ),
    };
    Some(
        Finding::new(
            Rule::PartitionScansDefault,
            Some(parent),
            Some(Lock::AccessExclusive),
        )
        .scan()
        .detail(format!(
            "PostgreSQL scans {what} under ACCESS EXCLUSIVE for rows that belong in the new partition: every query on it waits for the scan"
        ))
        .alternative(format!(
            "first add a CHECK constraint to {name} that excludes the new partition's range, NOT VALID then VALIDATE; PostgreSQL then skips the scan"
        )),
    )
}
