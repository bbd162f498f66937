//! ALTER COLUMN ... TYPE that rewrites the table, as expand/contract: a
//! shadow column of the new type kept in sync by a trigger, backfilled in
//! batches, given NOT NULL, every index (CONCURRENTLY) and constraint (NOT
//! VALID, then VALIDATE) of the old one; then one brief cut-over
//! transaction drops the old column and gives the new one its name, its
//! default, its primary key or unique constraints (USING INDEX) and the
//! other tables' foreign keys (NOT VALID, validated after).
//!
//! The result equals the direct ALTER's but for the column's position: the
//! new column is the table's last. The type, COLLATE and USING expression
//! are the client's text; the indexes, constraints and default are the
//! server's own definitions (`dependents`), with the column renamed.
//!
//! Without USING, the cut-over keeps the old column aside (`swap`), synced
//! back from the new one, until the contract step drops it: until then
//! REVERT swaps back. With USING there is no way back to the old values:
//! the cut-over drops the old column at once.

mod swap;

use super::alter::{column_at, not_null_recipe, not_valid_then_validate, Alter};
use super::build::step;
use super::columns::backfill_step;
use super::names::object_name;
use super::source::{bare, Toks};
use super::{Step, StepKind};
use crate::ddl::dependents::{ConstraintDep, Dependents, IndexDep};
use crate::ddl::op::{quote_ident, unquote};
use crate::ddl::rule::Lock;
use crate::ddl::Catalog;

/// `ALTER [COLUMN] col [SET DATA] TYPE type [COLLATE c] [USING expr]`
/// (tokens `a..b`), with what depends on the column known and nothing
/// among it that the plan cannot carry over.
pub(super) fn alter_type(
    t: &Toks<'_>,
    alter: &Alter<'_>,
    a: usize,
    b: usize,
    catalog: &Catalog,
) -> Option<Vec<Step>> {
    let c = column_at(t, a);
    let column = t.tok(c);
    let ty_start = t
        .eat(c + 1, &["TYPE"])
        .or_else(|| t.eat(c + 1, &["SET", "DATA", "TYPE"]))?;
    let mut ty_end = ty_start;
    let mut depth = 0;
    while ty_end < b {
        match t.tok(ty_end) {
            "(" => depth += 1,
            ")" => depth -= 1,
            _ if depth == 0 && t.is(ty_end, "USING") => break,
            _ => {}
        }
        ty_end += 1;
    }
    let ty = t.text(ty_start, ty_end);
    let using = (ty_end < b).then(|| t.text(ty_end + 1, b));
    let d = catalog.dependents(alter.table, column)?;
    let client_text = t.text(0, t.len());
    if d.table.is_empty() || !d.blockers.is_empty() || client_text.contains("$ddlgate$") {
        return None;
    }
    Some(Retype::new(alter, column, d, using.is_none()).steps(ty, using))
}

/// What REVERT runs after the same type change's cut-over (none with USING).
pub(super) fn revert(
    t: &Toks<'_>,
    alter: &Alter<'_>,
    a: usize,
    b: usize,
    catalog: &Catalog,
) -> Vec<Step> {
    let c = column_at(t, a);
    let column = t.tok(c);
    let using = (a..b).any(|i| t.is(i, "USING"));
    match catalog.dependents(alter.table, column) {
        Some(d) if !using && !d.table.is_empty() && d.blockers.is_empty() => {
            Retype::new(alter, column, d, true).revert()
        }
        _ => Vec::new(),
    }
}

/// The names a type change uses, and the facts it carries over.
struct Retype<'a> {
    alter: &'a Alter<'a>,
    /// The column as the client wrote it.
    column: &'a str,
    d: &'a Dependents,
    /// The new column while it is built.
    shadow: String,
    trigger: String,
    /// Schema-qualified.
    function: String,
    /// The old column is kept aside after the cut-over (no USING).
    keep: bool,
    /// The old column's name while it is kept aside.
    old: String,
    /// The trigger (and its function) that keeps the old column in sync
    /// from the new one while it is kept.
    back_trigger: String,
    back_function: String,
}

/// `name_ddlgate`: the stand-in for `name` while the new column is built.
fn stand_in(name: &str) -> String {
    quote_ident(&object_name(&unquote(name), None, "ddlgate"))
}

/// `name_ddlgate_old`: `name` kept aside after the cut-over.
fn aside(name: &str) -> String {
    quote_ident(&object_name(&unquote(name), None, "ddlgate_old"))
}

impl<'a> Retype<'a> {
    fn new(alter: &'a Alter<'a>, column: &'a str, d: &'a Dependents, keep: bool) -> Self {
        let stored = unquote(column);
        let table = bare(alter.table);
        Retype {
            keep,
            old: aside(column),
            back_trigger: quote_ident(&object_name("zz_ddlgate", Some(&stored), "revert")),
            back_function: format!(
                "{}.{}",
                d.schema,
                quote_ident(&object_name(&table, Some(&stored), "ddlgate_revert"))
            ),
            alter,
            column,
            d,
            shadow: stand_in(column),
            // Last in name order among BEFORE triggers, so it copies the
            // value the application's own triggers left.
            trigger: quote_ident(&object_name("zz_ddlgate", Some(&stored), "sync")),
            function: format!(
                "{}.{}",
                d.schema,
                quote_ident(&object_name(&table, Some(&stored), "ddlgate_sync"))
            ),
        }
    }

    fn steps(&self, ty: &str, using: Option<&str>) -> Vec<Step> {
        let (head, table, column, shadow) =
            (self.alter.head, self.alter.table, self.column, &self.shadow);
        let (value, copy) = match using {
            Some(expr) => (
                format!("({expr})"),
                format!("(SELECT ({expr}) FROM (SELECT NEW.*) AS ddlgate_row)"),
            ),
            None => (column.to_owned(), format!("NEW.{column}")),
        };
        let (trigger, function) = (&self.trigger, &self.function);
        let mut expand = step(
            StepKind::Brief,
            format!(
                "{head} ADD COLUMN {shadow} {ty};\n\
                 CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql \
                 SET search_path FROM CURRENT AS \
                 $ddlgate$BEGIN NEW.{shadow} := {copy}; RETURN NEW; END$ddlgate$;\n\
                 CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION {function}()"
            ),
            Lock::AccessExclusive,
            Some(shadow.clone()),
            "add the new column, kept in sync with the old one by a trigger (brief lock)",
        );
        expand.undo = Some(format!(
            "DROP TRIGGER IF EXISTS {trigger} ON {table}; DROP FUNCTION IF EXISTS {function}(); \
             {head} DROP COLUMN IF EXISTS {shadow}"
        ));
        let mut steps = vec![
            expand,
            backfill_step(
                table,
                format!("{shadow} = {value}"),
                None,
                shadow,
                "copy every row's value into the new column, 1000 pages per transaction",
            ),
        ];
        if self.d.not_null {
            steps.extend(not_null_recipe(self.alter, shadow));
        }
        for index in &self.d.indexes {
            steps.push(self.build(index));
        }
        for con in &self.d.constraints {
            let def = self.on_shadow(con);
            let name = stand_in(&con.name);
            if con.validated() {
                steps.extend(not_valid_then_validate(self.alter, &name, &def));
            } else {
                steps.push(step(
                    StepKind::Brief,
                    format!("{head} ADD CONSTRAINT {name} {def}"),
                    Lock::AccessExclusive,
                    Some(name.clone()),
                    "add the constraint, not validated as before (brief lock)",
                ));
            }
        }
        steps.push(self.cutover());
        steps.extend(self.validate_referencing());
        if self.keep {
            steps.push(self.contract());
        }
        steps
    }

    /// VALIDATE of the other tables' foreign keys, re-added NOT VALID.
    fn validate_referencing(&self) -> Vec<Step> {
        self.d
            .referencing
            .iter()
            .filter(|r| r.validated())
            .map(|r| {
                step(
                    StepKind::Validate,
                    format!("ALTER TABLE {} VALIDATE CONSTRAINT {}", r.table, r.name),
                    Lock::ShareUpdateExclusive,
                    Some(r.name.clone()),
                    "check the referencing rows without blocking reads or writes",
                )
            })
            .collect()
    }

    /// The index built on the new column under a stand-in name.
    fn build(&self, index: &IndexDep) -> Step {
        build_as(
            index,
            &stand_in(&index.name),
            &self.d.column,
            &self.shadow,
            "build the index on the new column without blocking writes",
        )
    }

    /// A constraint's definition on the new column. A foreign key's
    /// referenced columns are another table's: only its own list changes.
    fn on_shadow(&self, con: &ConstraintDep) -> String {
        let t = Toks::new(&con.def);
        let until = if con.foreign_key {
            (0..t.len())
                .find(|&i| t.is(i, "REFERENCES"))
                .unwrap_or(t.len())
        } else {
            t.len()
        };
        // The rest as printed, from the end of the renamed part.
        let rest = until
            .checked_sub(1)
            .map_or(0, |last| t.t[last].end.min(con.def.len()));
        format!(
            "{}{}",
            rename_column(&t, 0, until, &self.d.column, &self.shadow),
            &con.def[rest..]
        )
    }
}

/// `index`'s definition built CONCURRENTLY as `name`, on column `to`
/// instead of `column`.
fn build_as(index: &IndexDep, name: &str, column: &str, to: &str, what: &str) -> Step {
    let t = Toks::new(&index.def);
    let at = (0..t.len()).find(|&i| t.is(i, "INDEX")).unwrap_or(0);
    let on = (at..t.len()).find(|&i| t.is(i, "ON")).unwrap_or(at);
    step(
        StepKind::BuildIndex,
        format!(
            "{} CONCURRENTLY {name} {}",
            t.text(0, at + 1),
            rename_column(&t, on, t.len(), column, to)
        ),
        Lock::ShareUpdateExclusive,
        Some(name.to_owned()),
        what,
    )
}

/// Tokens `from..until` of a server-printed definition, with every
/// reference to the column (`column` as the server quotes it) renamed to
/// `to`. A token that is a function's name, a type after `::`, a
/// collation, or part of a qualified name is not a column reference.
/// `sql` with each reference to `column` (as written or quoted) replaced
/// by `to`: a later statement's steps aimed at a column a type change in
/// the same transaction shadows.
pub fn retarget(sql: &str, column: &str, to: &str) -> String {
    let t = Toks::new(sql);
    rename_column(&t, 0, t.len(), column, to)
}

/// Whether `sql` refers to `column` (as written or quoted) the way
/// `retarget` would replace.
pub fn mentions(sql: &str, column: &str) -> bool {
    let t = Toks::new(sql);
    (0..t.len()).any(|i| is_reference(&t, i, &unquote(column)))
}

fn is_reference(t: &Toks<'_>, i: usize, stored: &str) -> bool {
    // `::` is two tokens.
    let cast = t.tok(i.wrapping_sub(1)) == ":" && t.tok(i.wrapping_sub(2)) == ":";
    unquote(t.tok(i)) == stored
        && !cast
        && t.tok(i.wrapping_sub(1)) != "."
        && !t.is(i.wrapping_sub(1), "COLLATE")
        && !matches!(t.tok(i + 1), "(" | ".")
}

fn rename_column(t: &Toks<'_>, from: usize, until: usize, column: &str, to: &str) -> String {
    let mut out = String::new();
    let mut copied = t.t.get(from).map_or(t.sql.len(), |r| r.start);
    let stored = unquote(column);
    for i in from..until {
        if is_reference(t, i, &stored) {
            let r = &t.t[i];
            out.push_str(&t.sql[copied..r.start]);
            out.push_str(to);
            copied = r.end;
        }
    }
    let end = if until == 0 {
        copied
    } else {
        t.t[until - 1].end.max(copied)
    };
    out.push_str(&t.sql[copied..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ddl::dependents::IndexConstraint;

    /// A serial primary key with a comment, a partial index and a CHECK,
    /// referenced by another table's foreign key.
    fn facts() -> Catalog {
        let d = Dependents {
            table: "public.orders".into(),
            schema: "public".into(),
            column: "id".into(),
            not_null: true,
            default: Some("nextval('orders_id_seq'::regclass)".into()),
            comment: Some("'the key'".into()),
            statistics: None,
            sequence: Some("public.orders_id_seq".into()),
            indexes: vec![
                IndexDep {
                    name: "orders_pkey".into(),
                    def: "CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (id)".into(),
                    constraint: Some(IndexConstraint {
                        name: "orders_pkey".into(),
                        primary: true,
                        deferrable: false,
                        deferred: false,
                    }),
                    ..IndexDep::default()
                },
                IndexDep {
                    name: "recent".into(),
                    def: "CREATE INDEX recent ON public.orders USING btree (id) WHERE (id > 1000)"
                        .into(),
                    clustered: true,
                    ..IndexDep::default()
                },
            ],
            constraints: vec![ConstraintDep {
                name: "positive".into(),
                def: "CHECK ((id > 0))".into(),
                ..ConstraintDep::default()
            }],
            referencing: vec![ConstraintDep {
                table: "public.lines".into(),
                name: "lines_order_fkey".into(),
                def: "FOREIGN KEY (order_id) REFERENCES orders(id) ON DELETE CASCADE".into(),
                foreign_key: true,
                ..ConstraintDep::default()
            }],
            blockers: Vec::new(),
        };
        let mut c = Catalog::default();
        c.dependents.insert(("orders".into(), "id".into()), d);
        c
    }

    #[test]
    fn a_referenced_serial_key_changes_type_by_expand_and_contract() {
        let plan = crate::ddl::plan::plan(
            "ALTER TABLE orders ALTER COLUMN id TYPE bigint",
            &facts(),
            &|_| false,
        )
        .expect("a plan");
        insta::assert_snapshot!(plan.render());
        // REVERT, from the cut-over until the contract.
        let revert = crate::ddl::plan::Plan {
            steps: plan.revert.clone(),
            revert: Vec::new(),
            ..plan.clone()
        };
        insta::assert_snapshot!("revert", revert.render());
        // With USING: the trigger computes the client's expression.
        let plan = crate::ddl::plan::plan(
            "ALTER TABLE orders ALTER id SET DATA TYPE numeric(20) USING id * 10",
            &facts(),
            &|_| false,
        )
        .expect("a plan");
        assert!(plan.steps[0]
            .sql
            .contains("NEW.id_ddlgate := (SELECT (id * 10) FROM (SELECT NEW.*) AS ddlgate_row)"));
        assert_eq!(
            plan.steps[1].backfill.as_ref().unwrap().set,
            "id_ddlgate = (id * 10)"
        );
        // No way back from a USING expression: the old column goes at once.
        assert!(plan.revert.is_empty());
        assert!(plan.steps.iter().all(|s| s.kind != StepKind::Contract));
        // Something the plan cannot carry over: no plan.
        let mut c = facts();
        c.dependents
            .values_mut()
            .for_each(|d| d.blockers.push("view public.v".into()));
        assert!(
            crate::ddl::plan::plan("ALTER TABLE orders ALTER id TYPE bigint", &c, &|_| false)
                .is_none()
        );
    }

    #[test]
    fn column_references_renamed_in_server_definitions() {
        let def = "CREATE INDEX i ON public.t USING btree (((v + 1)), lower(v), v COLLATE \"C\") \
                   WHERE (v::text <> 'v'::v) AND s.v IS NULL";
        let t = Toks::new(def);
        assert_eq!(
            rename_column(&t, 3, t.len(), "v", "v_ddlgate"),
            "ON public.t USING btree (((v_ddlgate + 1)), lower(v_ddlgate), v_ddlgate COLLATE \"C\") \
             WHERE (v_ddlgate::text <> 'v'::v) AND s.v IS NULL"
        );
        let later = "ALTER TABLE t ADD CONSTRAINT v_positive CHECK (V > 0 AND t.v < 9)";
        assert!(mentions(later, "v") && !mentions(later, "w"));
        assert_eq!(
            retarget(later, "v", "v_ddlgate"),
            "ALTER TABLE t ADD CONSTRAINT v_positive CHECK (v_ddlgate > 0 AND t.v < 9)"
        );
        let t = Toks::new("CHECK ((\"Weird\" > 0))");
        assert_eq!(
            rename_column(&t, 0, t.len(), "\"Weird\"", "\"Weird_ddlgate\""),
            "CHECK ((\"Weird_ddlgate\" > 0))"
        );
    }
}
