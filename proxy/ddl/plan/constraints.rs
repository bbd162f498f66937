//! ALTER TABLE ... ADD CONSTRAINT plans: CHECK and FOREIGN KEY as NOT VALID
//! then VALIDATE; UNIQUE and PRIMARY KEY as a unique index built
//! CONCURRENTLY, then the constraint USING it; with the names PostgreSQL
//! would choose.

use super::alter::{not_null_recipe, not_valid_then_validate, paren_columns, Alter};
use super::build::step;
use super::names::{columns_addition, object_name};
use super::source::{bare, is_ident, Toks};
use super::{Step, StepKind};
use crate::ddl::op::{quote_ident, unquote};
use crate::ddl::rule::Lock;

/// `ADD` at token `i` adds a table constraint, not a column.
pub(super) fn is_constraint(t: &Toks<'_>, i: usize) -> bool {
    [
        "CONSTRAINT",
        "CHECK",
        "FOREIGN",
        "UNIQUE",
        "PRIMARY",
        "EXCLUDE",
    ]
    .iter()
    .any(|k| t.is(i, k))
}

/// ADD [CONSTRAINT name] CHECK / FOREIGN KEY / UNIQUE / PRIMARY KEY, from
/// token `i` (after ADD) to `b`.
pub(super) fn add_constraint(
    t: &Toks<'_>,
    alter: &Alter<'_>,
    mut i: usize,
    b: usize,
) -> Option<Vec<Step>> {
    let given = if t.is(i, "CONSTRAINT") {
        i += 2;
        Some(t.tok(i - 1).to_owned())
    } else {
        None
    };
    let def = t.text(i, b);
    let not_valid = (i..b).any(|j| t.eat(j, &["NOT", "VALID"]).is_some());
    let table = bare(alter.table);
    if t.is(i, "CHECK") && !not_valid {
        let name = given.unwrap_or_else(|| {
            let close = t.close_paren(i + 1).unwrap_or(b);
            let col = single_column(t, i + 2, close - 1);
            quote_ident(&object_name(&table, col.as_deref(), "check"))
        });
        return Some(not_valid_then_validate(alter, &name, def));
    }
    if t.eat(i, &["FOREIGN", "KEY"]).is_some() && !not_valid {
        let name = given.unwrap_or_else(|| {
            let cols = paren_columns(t, i + 2).unwrap_or_default();
            quote_ident(&object_name(&table, Some(&columns_addition(&cols)), "fkey"))
        });
        return Some(not_valid_then_validate(alter, &name, def));
    }
    let primary = t.eat(i, &["PRIMARY", "KEY"]).is_some();
    if !primary && !t.is(i, "UNIQUE") {
        return None;
    }
    let mut j = if primary { i + 2 } else { i + 1 };
    let nulls_start = j;
    if t.is(j, "NULLS") {
        j += if t.is(j + 1, "NOT") { 3 } else { 2 };
    }
    let nulls = t.text(nulls_start, j);
    if t.tok(j) != "(" {
        // USING INDEX: already the online form.
        return None;
    }
    let cols_end = t.close_paren(j)?;
    let columns = t.text(j, cols_end);
    let mut k = cols_end;
    let mut index_params = Vec::new();
    let mut tablespace = None;
    while k < b {
        if t.is(k, "INCLUDE") || t.is(k, "WITH") && t.tok(k + 1) == "(" {
            let end = t.close_paren(k + 1)?;
            index_params.push(t.text(k, end));
            k = end;
        } else if let Some(n) = t.eat(k, &["USING", "INDEX", "TABLESPACE"]) {
            tablespace = Some(t.tok(n));
            k = n + 1;
        } else {
            break;
        }
    }
    // What is left are constraint attributes (DEFERRABLE, INITIALLY ...).
    let attributes = t.text(k, b);
    // The constraint's name covers its INCLUDE columns too.
    let mut cols = paren_columns(t, j).unwrap_or_default();
    for p in index_params
        .iter()
        .filter(|p| p.to_uppercase().starts_with("INCLUDE"))
    {
        let inc = Toks::new(p);
        cols.extend(paren_columns(&inc, 1).unwrap_or_default());
    }
    let name = given.unwrap_or_else(|| {
        if primary {
            quote_ident(&object_name(&table, None, "pkey"))
        } else {
            quote_ident(&object_name(&table, Some(&columns_addition(&cols)), "key"))
        }
    });
    let mut steps = Vec::new();
    if primary {
        // The key's columns must be NOT NULL; doing that online first keeps
        // ADD PRIMARY KEY from scanning under ACCESS EXCLUSIVE.
        for (a, _) in t.split_commas(j + 1, cols_end - 1) {
            steps.extend(not_null_recipe(alter, t.tok(a)));
        }
    }
    let mut index = format!(
        "CREATE UNIQUE INDEX CONCURRENTLY {name} ON {} {columns}",
        alter.table
    );
    for p in index_params
        .iter()
        .filter(|p| p.to_uppercase().starts_with("INCLUDE"))
    {
        index.push(' ');
        index.push_str(p);
    }
    if !nulls.is_empty() {
        index.push(' ');
        index.push_str(nulls);
    }
    for p in index_params
        .iter()
        .filter(|p| !p.to_uppercase().starts_with("INCLUDE"))
    {
        index.push(' ');
        index.push_str(p);
    }
    if let Some(ts) = tablespace {
        index.push_str(&format!(" TABLESPACE {ts}"));
    }
    steps.push(step(
        StepKind::BuildIndex,
        index,
        Lock::ShareUpdateExclusive,
        Some(name.clone()),
        "build the constraint's unique index without blocking writes",
    ));
    let kw = if primary { "PRIMARY KEY" } else { "UNIQUE" };
    let mut attach = format!(
        "{} ADD CONSTRAINT {name} {kw} USING INDEX {name}",
        alter.head
    );
    if !attributes.is_empty() {
        attach.push(' ');
        attach.push_str(attributes);
    }
    steps.push(step(
        StepKind::Brief,
        attach,
        Lock::AccessExclusive,
        Some(name),
        "make the index the constraint (catalog only)",
    ));
    Some(steps)
}

/// Words of an expression that are not column references.
const NOT_COLUMNS: &[&str] = &[
    "and",
    "or",
    "not",
    "null",
    "is",
    "in",
    "like",
    "ilike",
    "similar",
    "between",
    "true",
    "false",
    "case",
    "when",
    "then",
    "else",
    "end",
    "any",
    "all",
    "some",
    "distinct",
    "from",
    "array",
    "cast",
    "as",
    "escape",
    "isnull",
    "notnull",
    "unknown",
    "at",
    "time",
    "zone",
    "collate",
    "current_date",
    "current_timestamp",
    "current_time",
    "localtime",
    "localtimestamp",
    "current_user",
    "session_user",
    "user",
    "interval",
    "symmetric",
    "overlaps",
];

/// The one column a CHECK expression references (tokens `a..b`), if it
/// references exactly one: PostgreSQL then names it `table_column_check`.
fn single_column(t: &Toks<'_>, a: usize, b: usize) -> Option<String> {
    let mut found: Option<String> = None;
    for j in a..b {
        let tok = t.tok(j);
        let prev = if j > a { t.tok(j - 1) } else { "" };
        let is_cast_type = prev == ":" || t.is(j.saturating_sub(1), "AS");
        // `interval '1 day'`: a type, not a column.
        let before_literal = t.tok(j + 1).starts_with('\'');
        if !is_ident(tok)
            || before_literal
            || t.tok(j + 1) == "("
            || t.tok(j + 1) == "."
            || is_cast_type
            || tok.starts_with('\'')
            || NOT_COLUMNS.contains(&tok.to_ascii_lowercase().as_str()) && !tok.starts_with('"')
        {
            continue;
        }
        let name = unquote(tok);
        match &found {
            Some(f) if *f != name => return None,
            _ => found = Some(name),
        }
    }
    found
}
