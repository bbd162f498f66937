//! Plans: the safe phased form of a schema change, as an ordered list of
//! steps, each with its exact SQL, the lock it takes, and whether it may run
//! inside a transaction block. Pure: statement text in, plan out. The gate's
//! hint renders a plan; the runner executes one.
//!
//! SQL in a plan is the client's own text wherever it can be (names,
//! column lists, expressions, index definitions, all sliced by `source`),
//! with ddlgate adding only keywords and the names PostgreSQL would have
//! chosen (`names`). Nothing is re-rendered from a parse tree.

mod alter;
mod build;
pub mod client;
mod columns;
mod constraints;
mod index;
mod names;
mod partitions;
mod retype;
mod source;

use serde::{Deserialize, Serialize};

use super::rule::{Lock, Rule};

pub use build::plan;
pub use retype::{mentions, retarget};

/// What a step does, for the runner: how to check whether it already
/// happened, which timeouts apply, and how to undo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A catalog-only change under a brief lock.
    Brief,
    /// CREATE [UNIQUE] INDEX CONCURRENTLY.
    BuildIndex,
    /// DROP INDEX CONCURRENTLY.
    DropIndex,
    /// REINDEX ... CONCURRENTLY.
    Reindex,
    /// VALIDATE CONSTRAINT: a scan under SHARE UPDATE EXCLUSIVE.
    Validate,
    /// DETACH PARTITION ... CONCURRENTLY.
    Detach,
    /// Fills existing rows in short batches, each its own transaction.
    Backfill,
    /// A type change's switch to the new column, in one brief
    /// transaction: past it the change is made (nothing before it is
    /// undone by CANCEL; REVERT swaps back).
    Cutover,
    /// The end of a type change's grace period: the old column, kept aside
    /// and in sync since the cut-over, is dropped (after `contract_after`,
    /// or at COMPLETE).
    Contract,
}

impl StepKind {
    pub const ALL: [StepKind; 9] = [
        StepKind::Brief,
        StepKind::BuildIndex,
        StepKind::DropIndex,
        StepKind::Reindex,
        StepKind::Validate,
        StepKind::Detach,
        StepKind::Backfill,
        StepKind::Cutover,
        StepKind::Contract,
    ];

    /// The name stored and shown (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Brief => "brief",
            StepKind::BuildIndex => "build_index",
            StepKind::DropIndex => "drop_index",
            StepKind::Reindex => "reindex",
            StepKind::Validate => "validate",
            StepKind::Detach => "detach",
            StepKind::Backfill => "backfill",
            StepKind::Cutover => "cutover",
            StepKind::Contract => "contract",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        StepKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub kind: StepKind,
    pub sql: String,
    /// The strongest table lock it takes.
    pub lock: Lock,
    /// It may run inside a transaction block (CONCURRENTLY forms may not).
    pub in_transaction: bool,
    /// The index or constraint it creates, validates or drops, as SQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// What it does, in a few words.
    pub what: String,
    /// For a backfill: what the runner's batches do (`sql` is the same as
    /// one script, for a human to run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill: Option<Backfill>,
    /// What undoes it (CANCEL), when ddlgate's own objects do not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
}

/// A backfill as the runner runs it: `UPDATE table SET set WHERE filter`
/// over the existing rows, one short batch per transaction. Each part is
/// the client's own text (names, expressions) with ddlgate's keywords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfill {
    /// The table, as written.
    pub table: String,
    /// The assignments, e.g. `c = DEFAULT`.
    pub set: String,
    /// Only the rows that still need it, e.g. `c IS NULL`: a row the
    /// application wrote since keeps its value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The CommandComplete tag PostgreSQL sends for the statement.
    #[serde(skip)]
    pub tag: &'static str,
    /// The relation the statement works on, as written (the table, or for
    /// DROP INDEX and REINDEX INDEX the first index): migrations on one
    /// relation run one after another.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub steps: Vec<Step>,
    /// What REVERT runs to undo the change once it is made (for a type
    /// change, until its contract step); empty when it cannot be undone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revert: Vec<Step>,
}

impl Plan {
    /// The steps' SQL on one line, each ended by `;`. ddlgate's own
    /// multi-line steps (a backfill's DO block, statements it puts one per
    /// line) are joined onto the line; the client's text is left exactly
    /// as written.
    pub fn sql(&self) -> String {
        self.steps
            .iter()
            .map(|s| match s.kind {
                StepKind::Backfill => format!(
                    "{};",
                    s.sql
                        .split('\n')
                        .map(str::trim)
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                _ => format!("{};", s.sql.replace(";\n", "; ")),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether the runner can apply it: every backfill says how.
    pub fn runnable(&self) -> bool {
        self.steps
            .iter()
            .all(|s| s.kind != StepKind::Backfill || s.backfill.is_some())
    }

    /// For a statement inside the client's transaction block: the leading
    /// catalog-only steps, which can run there (their brief locks are then
    /// held until the client's COMMIT, as the statement's own would be),
    /// and the rest, which can only run after it (CONCURRENTLY builds,
    /// backfills, scans, and every step after them).
    pub fn split_in_transaction(&self) -> (&[Step], &[Step]) {
        let at = self
            .steps
            .iter()
            .position(|s| s.kind != StepKind::Brief)
            .unwrap_or(self.steps.len());
        self.steps.split_at(at)
    }

    /// The plan as a script that runs as printed (psql -f, or statement by
    /// statement): each step's SQL with a comment saying what it does.
    pub fn render(&self) -> String {
        let n = self.steps.len();
        let mut out = String::new();
        for (i, s) in self.steps.iter().enumerate() {
            let tx = if s.in_transaction {
                ""
            } else {
                ", outside a transaction block"
            };
            out.push_str(&format!(
                "-- step {} of {n} ({}{tx}): {}\n{};\n",
                i + 1,
                s.lock,
                s.what,
                s.sql
            ));
        }
        out
    }
}

/// The rules a plan removes: a statement whose findings are all among
/// these gets one.
pub fn covers(rule: Rule) -> bool {
    use Rule::*;
    matches!(
        rule,
        CreateIndex
            | AddColumnVolatileDefault
            | AddColumnSerial
            | AddColumnIdentity
            | AddColumnDefaultBeforePg11
            | AlterColumnType
            | DropIndex
            | Reindex
            | AddCheckConstraint
            | AddForeignKey
            | AddUniqueConstraint
            | AddPrimaryKey
            | SetNotNull
            | DetachPartition
            | AttachPartition
    )
}
