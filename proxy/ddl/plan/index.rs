//! Plans for indexes: CREATE [UNIQUE] INDEX with CONCURRENTLY and the name
//! PostgreSQL would choose, DROP INDEX one CONCURRENTLY statement per index,
//! REINDEX CONCURRENTLY.

use super::build::{step, Form};
use super::names::{columns_addition, object_name};
use super::source::{bare, is_ident, Toks};
use super::{Step, StepKind};
use crate::ddl::op::{quote_ident, unquote};
use crate::ddl::rule::Lock;

/// `CREATE [UNIQUE] INDEX [IF NOT EXISTS] [name] ON table ...` with
/// CONCURRENTLY added, and the name PostgreSQL would choose when none is
/// given.
pub(super) fn create_index(t: &Toks<'_>) -> Option<Form> {
    let mut i = 1;
    let unique = t.is(i, "UNIQUE");
    if unique {
        i += 1;
    }
    if !t.is(i, "INDEX") {
        return None;
    }
    let index_kw = i;
    i += 1;
    if t.is(i, "CONCURRENTLY") {
        return None;
    }
    if let Some(j) = t.eat(i, &["IF", "NOT", "EXISTS"]) {
        i = j;
    }
    let given = (!t.is(i, "ON")).then(|| t.tok(i).to_owned());
    if given.is_some() {
        i += 1;
    }
    let on = i;
    if !t.is(on, "ON") {
        return None;
    }
    // ON ONLY a partitioned table: no concurrent form.
    if t.is(on + 1, "ONLY") {
        return None;
    }
    let table_end = t.name_end(on + 1)?;
    let table = t.text(on + 1, table_end);
    let name = match &given {
        Some(n) => n.clone(),
        None => quote_ident(&object_name(
            &bare(table),
            Some(&columns_addition(&index_columns(t, table_end)?)),
            "idx",
        )),
    };
    let sql = t.sql;
    let head_end = t.end_of(index_kw);
    let mut text = format!("{} CONCURRENTLY", &sql[t.t[0].start..head_end]);
    if given.is_none() {
        text.push(' ');
        text.push_str(&name);
    }
    text.push_str(&sql[head_end..t.end_of(t.len() - 1)]);
    let what = if unique {
        "build the unique index without blocking writes"
    } else {
        "build the index without blocking writes"
    };
    // REVERT drops it again, in the table's schema (where it was built).
    let qualified = match table.rfind('.') {
        Some(dot) if !table.ends_with('"') || table[..dot].ends_with('"') => {
            format!("{}.{name}", &table[..dot])
        }
        _ => name.clone(),
    };
    let revert = vec![step(
        StepKind::DropIndex,
        format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified}"),
        Lock::ShareUpdateExclusive,
        Some(qualified),
        "drop the index without blocking reads or writes",
    )];
    Some(Form {
        table: Some(table.to_owned()),
        steps: vec![step(
            StepKind::BuildIndex,
            text,
            Lock::ShareUpdateExclusive,
            Some(name),
            what,
        )],
        revert,
    })
}

/// The names PostgreSQL derives an index's name from: each key and
/// INCLUDE column, or for an expression its function or type name, else
/// "expr". `at` is just past the table name.
fn index_columns(t: &Toks<'_>, mut at: usize) -> Option<Vec<String>> {
    if t.is(at, "USING") {
        at += 2;
    }
    let close = t.close_paren(at)?;
    let mut names: Vec<String> = t
        .split_commas(at + 1, close - 1)
        .into_iter()
        .map(|(a, b)| element_name(t, a, b))
        .collect();
    if t.is(close, "INCLUDE") {
        let end = t.close_paren(close + 1)?;
        names.extend(
            t.split_commas(close + 2, end - 1)
                .into_iter()
                .map(|(a, _)| unquote(t.tok(a))),
        );
    }
    Some(names)
}

fn element_name(t: &Toks<'_>, a: usize, b: usize) -> String {
    if t.tok(a) == "(" {
        let end = t.close_paren(a).unwrap_or(b);
        return expression_name(t, a + 1, end - 1);
    }
    if t.tok(a + 1) == "(" {
        return unquote(t.tok(a));
    }
    unquote(t.tok(a))
}

/// PostgreSQL's FigureIndexColname, for the common shapes.
fn expression_name(t: &Toks<'_>, a: usize, b: usize) -> String {
    // A cast at the top level names the type.
    let mut depth = 0;
    for j in a..b {
        match t.tok(j) {
            "(" => depth += 1,
            ")" => depth -= 1,
            ":" if depth == 0 && t.tok(j + 1) == ":" && j + 2 < b => {
                // A cast of a column is named for the column, else the type.
                if j == a + 1 && is_ident(t.tok(a)) {
                    return unquote(t.tok(a));
                }
                let ty = t.name_end(j + 2).unwrap_or(j + 3) - 1;
                return unquote(t.tok(ty));
            }
            _ => {}
        }
    }
    if b == a + 1 && is_ident(t.tok(a)) {
        return unquote(t.tok(a));
    }
    if let Some(end) = t.name_end(a) {
        if t.tok(end) == "(" && t.close_paren(end) == Some(b) {
            return unquote(t.tok(end - 1));
        }
    }
    "expr".to_owned()
}

/// `DROP INDEX [IF EXISTS] a, b`: one DROP INDEX CONCURRENTLY each. CASCADE
/// has no concurrent form.
pub(super) fn drop_index(t: &Toks<'_>) -> Option<Form> {
    let mut i = 2;
    if t.is(i, "CONCURRENTLY") {
        return None;
    }
    let if_exists = t.eat(i, &["IF", "EXISTS"]);
    if let Some(j) = if_exists {
        i = j;
    }
    let mut end = t.len();
    if t.is(end - 1, "CASCADE") {
        return None;
    }
    if t.is(end - 1, "RESTRICT") {
        end -= 1;
    }
    let opt = if if_exists.is_some() {
        "IF EXISTS "
    } else {
        ""
    };
    let steps: Vec<Step> = t
        .split_commas(i, end)
        .into_iter()
        .map(|(a, b)| {
            let name = t.text(a, b);
            step(
                StepKind::DropIndex,
                format!("DROP INDEX CONCURRENTLY {opt}{name}"),
                Lock::ShareUpdateExclusive,
                Some(name.to_owned()),
                "drop the index without blocking reads or writes",
            )
        })
        .collect();
    Some(Form {
        table: steps.first().and_then(|s| s.object.clone()),
        steps,
        revert: Vec::new(),
    })
}

/// `REINDEX [(options)] {INDEX|TABLE|SCHEMA|DATABASE} name` with
/// CONCURRENTLY added; system catalogs cannot be reindexed concurrently.
pub(super) fn reindex(t: &Toks<'_>) -> Option<Form> {
    let mut i = 1;
    if t.tok(i) == "(" {
        i = t.close_paren(i)?;
    }
    if !["INDEX", "TABLE", "SCHEMA", "DATABASE"]
        .iter()
        .any(|k| t.is(i, k))
        || t.is(i + 1, "CONCURRENTLY")
    {
        return None;
    }
    let at = t.end_of(i);
    let sql = format!(
        "{} CONCURRENTLY{}",
        &t.sql[t.t[0].start..at],
        &t.sql[at..t.end_of(t.len() - 1)]
    );
    // A table's or an index's migrations run in turn; a schema's or a
    // database's have no one relation.
    let table = (t.is(i, "INDEX") || t.is(i, "TABLE"))
        .then(|| Some(t.text(i + 1, t.name_end(i + 1)?).to_owned()))
        .flatten();
    Some(Form {
        table,
        steps: vec![step(
            StepKind::Reindex,
            sql,
            Lock::ShareUpdateExclusive,
            None,
            "rebuild without blocking writes or reads of the index",
        )],
        revert: Vec::new(),
    })
}
