//! ALTER TABLE plans: the statement split into its subcommands, each
//! planned on its own (constraints in `constraints`, columns in `columns`),
//! the brief ones batched into one statement, in the order written so the
//! schema is valid after every step; and the NOT NULL recipe they share.

use super::build::{step, Form};
use super::names::object_name;
use super::source::{bare, Toks};
use super::{columns, constraints, partitions, retype, Step, StepKind};
use crate::ddl::op::{quote_ident, unquote};
use crate::ddl::rule::Lock;
use crate::ddl::Catalog;

/// The pieces of `ALTER TABLE [IF EXISTS] [ONLY] name [*] sub, sub, ...`.
pub(super) struct Alter<'a> {
    /// `ALTER TABLE [IF EXISTS] [ONLY] name [*]` as written.
    pub head: &'a str,
    /// The table name as written.
    pub table: &'a str,
    /// Token ranges of the subcommands.
    pub subs: Vec<(usize, usize)>,
}

fn parse_alter<'a>(t: &Toks<'a>) -> Option<Alter<'a>> {
    let mut i = 2;
    if let Some(j) = t.eat(i, &["IF", "EXISTS"]) {
        i = j;
    }
    if t.is(i, "ONLY") {
        i += 1;
    }
    let name_start = i;
    let mut end = t.name_end(i)?;
    let table = t.text(name_start, end);
    if t.tok(end) == "*" {
        end += 1;
    }
    Some(Alter {
        head: t.text(0, end),
        table,
        subs: t.split_commas(end, t.len()),
    })
}

pub(super) fn alter_table(
    t: &Toks<'_>,
    catalog: &Catalog,
    brief_ok: &dyn Fn(&str) -> bool,
) -> Option<Form> {
    let alter = parse_alter(t)?;
    let mut steps = Vec::new();
    let mut brief: Vec<&str> = Vec::new();
    let flush = |brief: &mut Vec<&str>, steps: &mut Vec<Step>| {
        if !brief.is_empty() {
            steps.push(step(
                StepKind::Brief,
                format!("{} {}", alter.head, brief.join(", ")),
                Lock::AccessExclusive,
                None,
                "the changes that only touch the catalog, in one brief statement",
            ));
            brief.clear();
        }
    };
    for &(a, b) in &alter.subs {
        // A type change that is safe as it is stays as it is.
        let safe_type_change = is_type_change(t, a, b)
            && brief_ok(&format!("ALTER TABLE {} {}", alter.table, t.text(a, b)));
        let phased = if safe_type_change {
            None
        } else {
            subcommand(t, &alter, a, b, catalog)
        };
        match phased {
            Some(phased) => {
                flush(&mut brief, &mut steps);
                steps.extend(phased);
            }
            None => {
                let text = t.text(a, b);
                if !brief_ok(&format!("ALTER TABLE {} {text}", alter.table)) {
                    return None;
                }
                brief.push(text);
            }
        }
    }
    flush(&mut brief, &mut steps);
    let revert = match alter.subs.as_slice() {
        [(a, b)] => revert(t, &alter, *a, *b, catalog, &steps),
        _ => Vec::new(),
    };
    // Nothing phased: the statement was safe as it was.
    steps
        .iter()
        .any(|s| s.kind != StepKind::Brief)
        .then(|| Form {
            table: Some(alter.table.to_owned()),
            steps,
            revert,
        })
}

/// What undoes a lone subcommand once it is made (its phased `steps`): a
/// type change swaps back (`retype`); an added column or constraint is
/// dropped; NOT NULL is dropped again.
fn revert(
    t: &Toks<'_>,
    alter: &Alter<'_>,
    a: usize,
    b: usize,
    catalog: &Catalog,
    steps: &[Step],
) -> Vec<Step> {
    if is_type_change(t, a, b) {
        return retype::revert(t, alter, a, b, catalog);
    }
    let brief = |sql: String, object: &str, what: &str| {
        vec![step(
            StepKind::Brief,
            sql,
            Lock::AccessExclusive,
            Some(object.to_owned()),
            what,
        )]
    };
    if t.is(a, "ADD") && constraints::is_constraint(t, a + 1) {
        // The constraint the plan adds is the last step's object.
        return match steps.last().and_then(|s| s.object.as_deref()) {
            Some(name) => brief(
                format!("{} DROP CONSTRAINT IF EXISTS {name}", alter.head),
                name,
                "drop the added constraint (brief lock)",
            ),
            None => Vec::new(),
        };
    }
    if t.is(a, "ALTER") {
        let c = column_at(t, a);
        if t.eat(c + 1, &["SET", "NOT", "NULL"]) == Some(b) {
            let column = t.tok(c);
            return brief(
                format!("{} ALTER COLUMN {column} DROP NOT NULL", alter.head),
                column,
                "drop NOT NULL again (brief lock)",
            );
        }
    }
    if t.is(a, "ADD") && !constraints::is_constraint(t, a + 1) {
        let mut c = if t.is(a + 1, "COLUMN") { a + 2 } else { a + 1 };
        if let Some(j) = t.eat(c, &["IF", "NOT", "EXISTS"]) {
            c = j;
        }
        let column = t.tok(c);
        return vec![step(
            StepKind::Brief,
            format!("{} DROP COLUMN IF EXISTS {column}", alter.head),
            Lock::AccessExclusive,
            Some(column.to_owned()),
            "drop the added column (brief lock)",
        )];
    }
    Vec::new()
}

/// The phased steps of one subcommand (tokens `a..b`), if it has them.
fn subcommand(
    t: &Toks<'_>,
    alter: &Alter<'_>,
    a: usize,
    b: usize,
    catalog: &Catalog,
) -> Option<Vec<Step>> {
    if t.is(a, "ADD") {
        return constraints::add_constraint(t, alter, a + 1, b)
            .or_else(|| columns::add_column(t, alter, a + 1, b));
    }
    if t.is(a, "ALTER") {
        let c = column_at(t, a);
        if t.eat(c + 1, &["SET", "NOT", "NULL"]) == Some(b) {
            return Some(not_null_recipe(alter, t.tok(c)));
        }
        if is_type_change(t, a, b) {
            return retype::alter_type(t, alter, a, b, catalog);
        }
        return None;
    }
    if t.eat(a, &["ATTACH", "PARTITION"]).is_some() {
        return partitions::attach(t, alter, a + 2, b, catalog);
    }
    if t.eat(a, &["DETACH", "PARTITION"]).is_some() && t.name_end(a + 2) == Some(b) {
        return Some(vec![step(
            StepKind::Detach,
            format!("{} {} CONCURRENTLY", alter.head, t.text(a, b)),
            Lock::ShareUpdateExclusive,
            Some(t.text(a + 2, b).to_owned()),
            "detach the partition without blocking queries on the parent (PostgreSQL \
             leaves the partition's bound on it as a CHECK constraint)",
        )]);
    }
    None
}

/// The column token of `ALTER [COLUMN] col ...` starting at token `a`.
pub(super) fn column_at(t: &Toks<'_>, a: usize) -> usize {
    if t.is(a + 1, "COLUMN") {
        a + 2
    } else {
        a + 1
    }
}

/// `ALTER [COLUMN] col [SET DATA] TYPE ...` (tokens `a..b`).
fn is_type_change(t: &Toks<'_>, a: usize, b: usize) -> bool {
    let c = column_at(t, a);
    t.is(a, "ALTER")
        && c < b
        && (t.is(c + 1, "TYPE") || t.eat(c + 1, &["SET", "DATA", "TYPE"]).is_some())
}

pub(super) fn not_valid_then_validate(alter: &Alter<'_>, name: &str, def: &str) -> Vec<Step> {
    vec![
        step(
            StepKind::Brief,
            format!("{} ADD CONSTRAINT {name} {def} NOT VALID", alter.head),
            Lock::AccessExclusive,
            Some(name.to_owned()),
            "add the constraint for new rows only (brief lock)",
        ),
        step(
            StepKind::Validate,
            format!("{} VALIDATE CONSTRAINT {name}", alter.head),
            Lock::ShareUpdateExclusive,
            Some(name.to_owned()),
            "check the existing rows without blocking reads or writes",
        ),
    ]
}

/// SET NOT NULL without its scan under ACCESS EXCLUSIVE: a validated CHECK
/// proves it first (PostgreSQL 12+ then skips the scan).
pub(super) fn not_null_recipe(alter: &Alter<'_>, column: &str) -> Vec<Step> {
    let (head, table) = (alter.head, bare(alter.table));
    let check = quote_ident(&object_name(&table, Some(&unquote(column)), "not_null"));
    vec![
        step(
            StepKind::Brief,
            format!("{head} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID"),
            Lock::AccessExclusive,
            Some(check.clone()),
            "a NOT NULL check for new rows only (brief lock)",
        ),
        step(
            StepKind::Validate,
            format!("{head} VALIDATE CONSTRAINT {check}"),
            Lock::ShareUpdateExclusive,
            Some(check.clone()),
            "prove the existing rows have no NULLs without blocking reads or writes",
        ),
        step(
            StepKind::Brief,
            format!("{head} ALTER COLUMN {column} SET NOT NULL"),
            Lock::AccessExclusive,
            None,
            "set NOT NULL, which the validated check lets skip its scan",
        ),
        step(
            StepKind::Brief,
            format!("{head} DROP CONSTRAINT {check}"),
            Lock::AccessExclusive,
            Some(check),
            "drop the check, now redundant",
        ),
    ]
}

/// The column names in the parenthesized list at `i`, as stored.
pub(super) fn paren_columns(t: &Toks<'_>, i: usize) -> Option<Vec<String>> {
    let close = t.close_paren(i)?;
    Some(
        t.split_commas(i + 1, close - 1)
            .into_iter()
            .map(|(a, _)| unquote(t.tok(a)))
            .collect(),
    )
}
