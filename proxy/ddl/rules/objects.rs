//! Renames and drops of what clients name besides tables and columns:
//! views, sequences, functions, types, domains, schemas, enum values,
//! constraints (ON CONFLICT ON CONSTRAINT names them), extensions.

use super::Context;
use crate::ddl::op::{is_relation_kind, Op};
use crate::ddl::rule::{Finding, Lock, Rule};

pub fn check(op: &Op, _ctx: &Context<'_>, out: &mut Vec<Finding>) {
    match op {
        Op::RenameObject { kind, name, to } => {
            // A constraint is renamed under its table's ACCESS EXCLUSIVE.
            let lock =
                (is_relation_kind(kind) || kind == "constraint").then_some(Lock::AccessExclusive);
            let what = if to.is_empty() {
                format!("renames {kind} {name}")
            } else if to.starts_with("schema ") {
                format!("moves {kind} {name} to {to}")
            } else {
                format!("renames {kind} {name} to {to}")
            };
            out.push(
                Finding::new(Rule::RenameObject, None, lock)
                    .breaks_clients()
                    .detail(format!(
                        "{what}; running code that uses the old name fails at once"
                    ))
                    .alternative(
                        "expand/contract: create the new name beside the old one (a view, a \
                         wrapper function, a second value), move every client to it, then \
                         drop the old name",
                    ),
            );
        }
        Op::DropObject {
            kind,
            names,
            cascade,
        } => {
            let lock = is_relation_kind(kind).then_some(Lock::AccessExclusive);
            let also = if *cascade {
                ", and with CASCADE everything that depends on it (tables' columns and \
                 defaults included)"
            } else {
                ""
            };
            out.push(
                Finding::new(Rule::DropObject, None, lock)
                    .breaks_clients()
                    .detail(format!(
                        "drops {kind} {}{also}; clients still using it fail",
                        names.join(", ")
                    ))
                    .alternative(
                        "contract phase only: deploy code that no longer uses it, then drop it \
                         with an override after review",
                    ),
            );
        }
        _ => {}
    }
}
