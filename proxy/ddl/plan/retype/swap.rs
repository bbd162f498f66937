//! The type change's cut-over, its contract, and REVERT's swap back.
//!
//! Kept aside (no USING), the old column loses its default, NOT NULL and
//! the PRIMARY KEY / UNIQUE constraints (which move to the new column); its
//! other indexes and constraints stay under `_ddlgate_old` names, and a
//! trigger writes each new value back into it (NULL where the old type
//! cannot hold it, so no application write fails). REVERT first proves
//! every row's old value is there (a CHECK, NOT VALID then VALIDATE; from
//! then on a write the old type cannot hold fails), rebuilds the old
//! column's unique indexes CONCURRENTLY, then swaps back in one brief
//! transaction and validates the referencing keys.

use super::super::build::step;
use super::super::names::object_name;
use super::super::source::bare;
use super::super::{Step, StepKind};
use super::{aside, build_as, stand_in, Retype};
use crate::ddl::op::unquote;
use crate::ddl::rule::Lock;

impl Retype<'_> {
    /// The forward cut-over: the old column dropped, or (kept) set aside.
    pub(super) fn cutover(&self) -> Step {
        let (head, table, column, shadow) =
            (self.alter.head, self.alter.table, self.column, &self.shadow);
        let d = self.d;
        let mut sql = vec![
            format!("DROP TRIGGER {} ON {table}", self.trigger),
            format!("DROP FUNCTION {}()", self.function),
        ];
        for r in &d.referencing {
            sql.push(format!(
                "ALTER TABLE {} DROP CONSTRAINT {}",
                r.table, r.name
            ));
        }
        if let Some(seq) = &d.sequence {
            // Owned by the old column, it would be dropped with it.
            sql.push(format!("ALTER SEQUENCE {seq} OWNED BY {table}.{shadow}"));
        }
        if self.keep {
            for index in &d.indexes {
                match &index.constraint {
                    Some(c) => sql.push(format!("{head} DROP CONSTRAINT {}", c.name)),
                    None => sql.push(format!(
                        "ALTER INDEX {}.{} RENAME TO {}",
                        d.schema,
                        index.name,
                        aside(&index.name)
                    )),
                }
            }
            for con in &d.constraints {
                sql.push(format!(
                    "{head} RENAME CONSTRAINT {} TO {}",
                    con.name,
                    aside(&con.name)
                ));
            }
            if d.default.is_some() {
                sql.push(format!("{head} ALTER COLUMN {column} DROP DEFAULT"));
            }
            if d.not_null {
                sql.push(format!("{head} ALTER COLUMN {column} DROP NOT NULL"));
            }
            sql.push(format!("{head} RENAME COLUMN {column} TO {}", self.old));
        } else {
            sql.push(format!("{head} DROP COLUMN {column}"));
        }
        sql.push(format!("{head} RENAME COLUMN {shadow} TO {column}"));
        self.take_over(&mut sql);
        if self.keep {
            let (old, trigger, function) = (&self.old, &self.back_trigger, &self.back_function);
            sql.push(format!(
                "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql \
                 SET search_path FROM CURRENT AS $ddlgate$BEGIN BEGIN NEW.{old} := NEW.{column}; \
                 EXCEPTION WHEN OTHERS THEN NEW.{old} := NULL; END; RETURN NEW; END$ddlgate$"
            ));
            sql.push(format!(
                "CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION {function}()"
            ));
        }
        self.add_referencing(&mut sql);
        let what = if self.keep {
            "cut over in one brief transaction: the new column takes the old one's name, \
             default, indexes and constraints; the old one is kept aside, in sync, until the \
             contract step"
        } else {
            "cut over in one brief transaction: the old column dropped, the new one takes its \
             name, default, indexes and constraints"
        };
        step(
            StepKind::Cutover,
            sql.join(";\n"),
            Lock::AccessExclusive,
            Some(column.to_owned()),
            what,
        )
    }

    /// The new column takes the old one's name's belongings: default,
    /// index names, PRIMARY KEY / UNIQUE (USING INDEX), constraint names,
    /// marks and comments.
    fn take_over(&self, sql: &mut Vec<String>) {
        let (head, table, column) = (self.alter.head, self.alter.table, self.column);
        let d = self.d;
        if let Some(default) = &d.default {
            sql.push(format!(
                "{head} ALTER COLUMN {column} SET DEFAULT {default}"
            ));
        }
        for index in &d.indexes {
            let built = stand_in(&index.name);
            let name = match &index.constraint {
                None => {
                    sql.push(format!(
                        "ALTER INDEX {}.{built} RENAME TO {}",
                        d.schema, index.name
                    ));
                    &index.name
                }
                Some(c) => {
                    sql.push(using_index(head, c, &built));
                    &c.name
                }
            };
            if index.clustered {
                sql.push(format!("{head} CLUSTER ON {name}"));
            }
            if index.replica_identity {
                sql.push(format!("{head} REPLICA IDENTITY USING INDEX {name}"));
            }
            if let Some(comment) = &index.comment {
                sql.push(format!("COMMENT ON INDEX {}.{name} IS {comment}", d.schema));
            }
        }
        for con in &d.constraints {
            sql.push(format!(
                "{head} RENAME CONSTRAINT {} TO {}",
                stand_in(&con.name),
                con.name
            ));
            if let Some(comment) = &con.comment {
                sql.push(format!(
                    "COMMENT ON CONSTRAINT {} ON {table} IS {comment}",
                    con.name
                ));
            }
        }
        if let Some(comment) = &d.comment {
            sql.push(format!("COMMENT ON COLUMN {table}.{column} IS {comment}"));
        }
        if let Some(n) = d.statistics {
            sql.push(format!("{head} ALTER COLUMN {column} SET STATISTICS {n}"));
        }
    }

    /// The other tables' foreign keys, re-added NOT VALID (validated after).
    fn add_referencing(&self, sql: &mut Vec<String>) {
        for r in &self.d.referencing {
            let not_valid = if r.validated() { " NOT VALID" } else { "" };
            sql.push(format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {}{not_valid}",
                r.table, r.name, r.def
            ));
            if let Some(comment) = &r.comment {
                sql.push(format!(
                    "COMMENT ON CONSTRAINT {} ON {} IS {comment}",
                    r.name, r.table
                ));
            }
        }
    }

    /// The end of the grace period: the old column and its sync go.
    pub(super) fn contract(&self) -> Step {
        let (head, table) = (self.alter.head, self.alter.table);
        step(
            StepKind::Contract,
            format!(
                "DROP TRIGGER IF EXISTS {} ON {table};\nDROP FUNCTION IF EXISTS {}();\n\
                 {head} DROP COLUMN IF EXISTS {}",
                self.back_trigger, self.back_function, self.old
            ),
            Lock::AccessExclusive,
            Some(self.old.clone()),
            "drop the old column, kept aside since the cut-over (brief lock)",
        )
    }

    /// REVERT after the cut-over, before the contract.
    pub(super) fn revert(&self) -> Vec<Step> {
        let (head, table, column, old) =
            (self.alter.head, self.alter.table, self.column, &self.old);
        let d = self.d;
        let check = crate::ddl::op::quote_ident(&object_name(
            &bare(table),
            Some(&unquote(column)),
            "ddlgate_revert",
        ));
        let complete = if d.not_null {
            format!("{old} IS NOT NULL")
        } else {
            format!("{old} IS NOT NULL OR {column} IS NULL")
        };
        let mut steps = vec![
            step(
                StepKind::Brief,
                format!("{head} ADD CONSTRAINT {check} CHECK ({complete}) NOT VALID"),
                Lock::AccessExclusive,
                Some(check.clone()),
                "from now on, writes the old type cannot hold fail (brief lock)",
            ),
            step(
                StepKind::Validate,
                format!("{head} VALIDATE CONSTRAINT {check}"),
                Lock::ShareUpdateExclusive,
                Some(check.clone()),
                "prove every row's old value is there, without blocking reads or writes",
            ),
        ];
        for index in d.indexes.iter().filter(|i| i.constraint.is_some()) {
            steps.push(build_as(
                index,
                &aside(&index.name),
                &d.column,
                old,
                "build the old column's unique index again without blocking writes",
            ));
        }
        let mut sql = vec![
            format!("DROP TRIGGER {} ON {table}", self.back_trigger),
            format!("DROP FUNCTION {}()", self.back_function),
        ];
        for r in &d.referencing {
            sql.push(format!(
                "ALTER TABLE {} DROP CONSTRAINT {}",
                r.table, r.name
            ));
        }
        if let Some(seq) = &d.sequence {
            sql.push(format!("ALTER SEQUENCE {seq} OWNED BY {table}.{old}"));
        }
        if d.not_null {
            // The validated check lets it skip its scan.
            sql.push(format!("{head} ALTER COLUMN {old} SET NOT NULL"));
        }
        sql.push(format!("{head} DROP CONSTRAINT {check}"));
        sql.push(format!("{head} DROP COLUMN {column}"));
        sql.push(format!("{head} RENAME COLUMN {old} TO {column}"));
        if let Some(default) = &d.default {
            sql.push(format!(
                "{head} ALTER COLUMN {column} SET DEFAULT {default}"
            ));
        }
        for index in &d.indexes {
            let name = match &index.constraint {
                None => {
                    sql.push(format!(
                        "ALTER INDEX {}.{} RENAME TO {}",
                        d.schema,
                        aside(&index.name),
                        index.name
                    ));
                    &index.name
                }
                Some(c) => {
                    sql.push(using_index(head, c, &aside(&index.name)));
                    if let Some(comment) = &index.comment {
                        sql.push(format!(
                            "COMMENT ON INDEX {}.{} IS {comment}",
                            d.schema, c.name
                        ));
                    }
                    &c.name
                }
            };
            if index.clustered {
                sql.push(format!("{head} CLUSTER ON {name}"));
            }
            if index.replica_identity {
                sql.push(format!("{head} REPLICA IDENTITY USING INDEX {name}"));
            }
        }
        for con in &d.constraints {
            sql.push(format!(
                "{head} RENAME CONSTRAINT {} TO {}",
                aside(&con.name),
                con.name
            ));
        }
        self.add_referencing(&mut sql);
        steps.push(step(
            StepKind::Cutover,
            sql.join(";\n"),
            Lock::AccessExclusive,
            Some(column.to_owned()),
            "swap back in one brief transaction: the old column takes its name, default, \
             indexes and constraints again; the new one is dropped",
        ));
        steps.extend(self.validate_referencing());
        steps
    }
}

/// `ADD CONSTRAINT name PRIMARY KEY | UNIQUE USING INDEX index`, deferrable
/// as before.
fn using_index(head: &str, c: &crate::ddl::dependents::IndexConstraint, index: &str) -> String {
    let kind = if c.primary { "PRIMARY KEY" } else { "UNIQUE" };
    let deferrable = match (c.deferrable, c.deferred) {
        (true, true) => " DEFERRABLE INITIALLY DEFERRED",
        (true, false) => " DEFERRABLE",
        _ => "",
    };
    format!(
        "{head} ADD CONSTRAINT {} {kind} USING INDEX {index}{deferrable}",
        c.name
    )
}
