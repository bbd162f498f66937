//! Consistency inside a transaction with deferrals: later statements of
//! the same transaction must see a schema on which they succeed and mean
//! what they meant, though part of an earlier statement waits for COMMIT.
//!
//! - A type change's column is shadowed until its cut-over: a later
//!   deferred statement naming it runs its in-transaction steps on the
//!   shadow (its other steps run after the cut-over, on the final column,
//!   since one table's migrations run in order); any other is refused.
//! - A foreign key on a unique index deferred in the same transaction is
//!   deferred whole, behind that index.

use crate::protocol::backend::{Report, Severity};
use crate::protocol::sqlstate;

use super::migrate::Pending;
use super::Gate;

/// The table (folded) statement `a` makes a unique index on.
pub(super) fn unique_on(a: &crate::ddl::Analyzed) -> Option<String> {
    use crate::ddl::op::{fold_name, ConstraintKind, Op};
    a.ops.iter().find_map(|op| match op {
        Op::AddConstraint {
            table,
            kind: ConstraintKind::Unique { .. } | ConstraintKind::PrimaryKey { .. },
            ..
        }
        | Op::CreateIndex {
            table,
            unique: true,
            ..
        } => Some(fold_name(table)),
        _ => None,
    })
}

/// A column a deferred type change replaces by a shadow column of the new
/// type, until its cut-over after COMMIT. Later statements of the same
/// transaction that name it must reach the final column: a deferred one's
/// in-transaction steps are aimed at the shadow (its later steps run after
/// the cut-over, on the final column, because one table's migrations run
/// in order); any other is refused, saying why.
#[derive(Clone, Debug)]
pub(super) struct Shadow {
    /// The table, folded.
    table: String,
    /// The column as stored.
    column: String,
    /// The shadow column, as SQL.
    shadow: String,
    /// The deferred migration.
    id: i64,
}

/// The columns `plan` (a type change by expand and contract) shadows.
pub(super) fn shadows_of(a: &crate::ddl::Analyzed, plan: &crate::ddl::plan::Plan) -> Vec<Shadow> {
    use crate::ddl::op::{fold_name, unquote, Op};
    use crate::ddl::plan::StepKind;
    if !plan.steps.iter().any(|s| s.kind == StepKind::Cutover) {
        return Vec::new();
    }
    let Some(shadow) = plan.steps.first().and_then(|s| s.object.clone()) else {
        return Vec::new();
    };
    a.ops
        .iter()
        .filter_map(|op| match op {
            Op::AlterType { table, column, .. } => Some(Shadow {
                table: fold_name(table),
                column: unquote(column),
                shadow: shadow.clone(),
                id: 0,
            }),
            _ => None,
        })
        .collect()
}

impl Shadow {
    /// This shadow, made by deferred migration `id`.
    pub(super) fn of_migration(&self, id: i64) -> Shadow {
        Shadow { id, ..self.clone() }
    }

    /// Aims the in-transaction steps of a later deferral at the shadow.
    pub(super) fn retarget(&self, plan: &mut crate::ddl::plan::Plan) {
        let now = plan.split_in_transaction().0.len();
        let column = crate::ddl::op::quote_ident(&self.column);
        for step in &mut plan.steps[..now] {
            step.sql = crate::ddl::plan::retarget(&step.sql, &column, &self.shadow);
        }
    }

    /// The error for a later statement that cannot be aimed at the shadow.
    pub(super) fn conflict(&self) -> Report {
        Report::new(
            Severity::Error,
            sqlstate::DDL_BLOCKED,
            format!(
                "ddlgate: column \"{}\" is being changed by deferred migration {} in this transaction; this statement cannot reach its final form before COMMIT",
                self.column, self.id
            ),
        )
        .with_detail(
            "The type change runs after COMMIT: until its cut-over the column keeps its old type, \
             and the new one is a shadow column. A statement that is itself deferred is aimed at \
             the shadow; this one would act on the old column."
                .to_owned(),
        )
        .with_hint(
            "Run this statement in a later transaction (a separate migration), after the type change has finished; \
             or set ddl.in_transaction = \"allow\" for the migration's role to run both as written."
                .to_owned(),
        )
    }
}

impl Gate {
    /// A type change deferred after an earlier deferral of this transaction
    /// on the same column (an index, a constraint, SET NOT NULL): what
    /// depends on the column was read before that one has run, so the
    /// cut-over would not carry it over. Refused, saying why.
    pub(super) fn stale_for_retype(&self, a: &crate::ddl::Analyzed) -> Option<Report> {
        use crate::ddl::op::{fold_name, Op};
        a.ops.iter().find_map(|op| {
            let Op::AlterType { table, column, .. } = op else {
                return None;
            };
            let table = fold_name(table);
            let (d, _) = self.deferred.iter().find_map(|d| {
                let (t, statement) = d.stale_for.as_ref()?;
                (*t == table && crate::ddl::plan::mentions(statement, column)).then_some((d, ()))
            })?;
            Some(
                Report::new(
                    Severity::Error,
                    sqlstate::DDL_BLOCKED,
                    format!(
                        "ddlgate: column {column} has a change deferred earlier in this transaction (migration {}); its type change cannot carry that change over",
                        d.id
                    ),
                )
                .with_detail(
                    "The earlier change runs after COMMIT, and the type change was planned from the column as it is now, without it."
                        .to_owned(),
                )
                .with_hint(
                    "Change the type first in the transaction, or in a separate migration; or set ddl.in_transaction = \"allow\" for the migration's role to run both as written."
                        .to_owned(),
                ),
            )
        })
    }

    /// A foreign key deferred in a transaction that deferred the unique
    /// index it references: it cannot be added (even NOT VALID) before
    /// that index exists, so all of it runs after COMMIT, queued behind the
    /// index on the referenced table's queue (one table's migrations run
    /// in order).
    pub(super) fn after_deferred_unique(&self, a: &crate::ddl::Analyzed, p: &mut Pending) {
        use crate::ddl::op::{fold_name, ConstraintKind, Op};
        let referenced = a.ops.iter().find_map(|op| match op {
            Op::AddConstraint {
                kind: ConstraintKind::ForeignKey { references },
                ..
            } => Some(references.clone()),
            _ => None,
        });
        let Some(referenced) = referenced else {
            return;
        };
        let folded = fold_name(&referenced);
        if self
            .deferred
            .iter()
            .any(|d| d.unique_on.as_deref() == Some(folded.as_str()))
        {
            p.after_commit = true;
            p.submission.plan.table = Some(referenced);
            // The OID the session read was the referencing table's; the
            // referenced one was resolved by the deferral it queues behind.
            p.submission.relation_oid = None;
        }
    }

    /// The shadow of a column statement `a` names, if an earlier deferral
    /// of this transaction made one on its table.
    pub(super) fn shadowing(&self, a: &crate::ddl::Analyzed, text: &[u8]) -> Option<Shadow> {
        let table = crate::ddl::op::fold_name(a.table()?);
        let text = std::str::from_utf8(text).ok()?;
        self.deferred
            .iter()
            .flat_map(|d| &d.shadows)
            .find(|sh| {
                sh.table == table
                    && crate::ddl::plan::mentions(text, &crate::ddl::op::quote_ident(&sh.column))
            })
            .cloned()
    }
}
