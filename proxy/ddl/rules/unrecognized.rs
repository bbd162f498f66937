//! Schema changes that neither front end could classify, and procedural
//! code (DO) whose effect cannot be known.

use super::Context;
use crate::ddl::op::Op;
use crate::ddl::rule::{Finding, Rule};

pub fn check(op: &Op, _ctx: &Context<'_>, out: &mut Vec<Finding>) {
    match op {
        Op::Unrecognized {
            alter_table: true,
            table,
        } => out.push(
            Finding::new(Rule::UnrecognizedAlterTable, table.as_deref(), None)
                .detail(
                    "an ALTER TABLE form ddlgate does not know: its lock and rewrite are unknown",
                )
                .alternative("review it by hand; allow it with an override comment if it is safe"),
        ),
        Op::Unrecognized {
            alter_table: false,
            table,
        } => out.push(
            Finding::new(Rule::UnrecognizedDdl, table.as_deref(), None)
                .detail("a schema change ddlgate does not know")
                .alternative("review it by hand"),
        ),
        Op::Opaque => out.push(
            Finding::new(Rule::UnrecognizedDdl, None, None)
                .detail(
                    "a DO block that runs SQL built at run time (or is not PL/pgSQL): \
                     the schema changes it makes cannot be known in advance",
                )
                .alternative("send the schema changes as plain statements so each can be checked"),
        ),
        _ => {}
    }
}
