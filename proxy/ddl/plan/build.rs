//! Building a plan from one statement's text: CREATE INDEX, DROP INDEX,
//! REINDEX, and ALTER TABLE with its subcommands each planned on its own
//! (brief ones batched into one statement, in the order written, so the
//! schema is valid after every step).

use super::names::{columns_addition, object_name};
use super::source::{bare, is_ident, Toks};
use super::{Plan, Step, StepKind};
use crate::ddl::op::{quote_ident, unquote};
use crate::ddl::rule::Lock;

/// The plan for `sql`, if it has a safe phased form. `brief_ok` tells
/// whether a lone `ALTER TABLE <table> <subcommand>` is safe as it is
/// (the rules find nothing in it); a subcommand that is neither safe nor
/// plannable means the statement has no plan.
pub fn plan(sql: &str, brief_ok: &dyn Fn(&str) -> bool) -> Option<Plan> {
    let t = Toks::new(sql);
    let steps = if t.is(0, "CREATE") {
        create_index(&t)?
    } else if t.eat(0, &["DROP", "INDEX"]).is_some() {
        drop_index(&t)?
    } else if t.is(0, "REINDEX") {
        reindex(&t)?
    } else if t.eat(0, &["ALTER", "TABLE"]).is_some() {
        alter_table(&t, brief_ok)?
    } else {
        return None;
    };
    (!steps.is_empty()).then_some(Plan { steps })
}

fn step(kind: StepKind, sql: String, lock: Lock, object: Option<String>, what: &str) -> Step {
    Step {
        kind,
        in_transaction: !matches!(
            kind,
            StepKind::BuildIndex
                | StepKind::DropIndex
                | StepKind::Reindex
                | StepKind::Detach
                | StepKind::Backfill
        ),
        sql,
        lock,
        object,
        what: what.to_owned(),
    }
}

/// `CREATE [UNIQUE] INDEX [IF NOT EXISTS] [name] ON table ...` with
/// CONCURRENTLY added, and the name PostgreSQL would choose when none is
/// given.
fn create_index(t: &Toks<'_>) -> Option<Vec<Step>> {
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
    Some(vec![step(
        StepKind::BuildIndex,
        text,
        Lock::ShareUpdateExclusive,
        Some(name),
        what,
    )])
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
fn drop_index(t: &Toks<'_>) -> Option<Vec<Step>> {
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
    Some(
        t.split_commas(i, end)
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
            .collect(),
    )
}

/// `REINDEX [(options)] {INDEX|TABLE|SCHEMA|DATABASE} name` with
/// CONCURRENTLY added; system catalogs cannot be reindexed concurrently.
fn reindex(t: &Toks<'_>) -> Option<Vec<Step>> {
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
    Some(vec![step(
        StepKind::Reindex,
        sql,
        Lock::ShareUpdateExclusive,
        None,
        "rebuild without blocking writes or reads of the index",
    )])
}

/// The pieces of `ALTER TABLE [IF EXISTS] [ONLY] name [*] sub, sub, ...`.
struct Alter<'a> {
    /// `ALTER TABLE [IF EXISTS] [ONLY] name [*]` as written.
    head: &'a str,
    /// The table name as written.
    table: &'a str,
    /// Token ranges of the subcommands.
    subs: Vec<(usize, usize)>,
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

fn alter_table(t: &Toks<'_>, brief_ok: &dyn Fn(&str) -> bool) -> Option<Vec<Step>> {
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
        match subcommand(t, &alter, a, b) {
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
    // Nothing phased: the statement was safe as it was.
    steps
        .iter()
        .any(|s| s.kind != StepKind::Brief)
        .then_some(steps)
}

/// The phased steps of one subcommand (tokens `a..b`), if it has them.
fn subcommand(t: &Toks<'_>, alter: &Alter<'_>, a: usize, b: usize) -> Option<Vec<Step>> {
    if t.is(a, "ADD") {
        return add_constraint(t, alter, a + 1, b).or_else(|| add_column(t, alter, a + 1, b));
    }
    if t.is(a, "ALTER") {
        let c = if t.is(a + 1, "COLUMN") { a + 2 } else { a + 1 };
        if t.eat(c + 1, &["SET", "NOT", "NULL"]) == Some(b) {
            return Some(not_null_recipe(alter, t.tok(c)));
        }
        return None;
    }
    if t.eat(a, &["DETACH", "PARTITION"]).is_some() && t.name_end(a + 2) == Some(b) {
        return Some(vec![step(
            StepKind::Detach,
            format!("{} {} CONCURRENTLY", alter.head, t.text(a, b)),
            Lock::ShareUpdateExclusive,
            None,
            "detach the partition without blocking queries on the parent (PostgreSQL \
             leaves the partition's bound on it as a CHECK constraint)",
        )]);
    }
    None
}

/// ADD [CONSTRAINT name] CHECK / FOREIGN KEY / UNIQUE / PRIMARY KEY, from
/// token `i` (after ADD) to `b`.
fn add_constraint(t: &Toks<'_>, alter: &Alter<'_>, mut i: usize, b: usize) -> Option<Vec<Step>> {
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

/// Keywords that end a column's type and start a column constraint.
const COLUMN_CONSTRAINTS: &[&str] = &[
    "DEFAULT",
    "NOT",
    "NULL",
    "CONSTRAINT",
    "CHECK",
    "UNIQUE",
    "PRIMARY",
    "REFERENCES",
    "GENERATED",
];

/// `ADD [COLUMN] [IF NOT EXISTS] name type [COLLATE c] DEFAULT expr [NOT
/// NULL]` (tokens `i..b`): the column added without its default, the
/// default set for new rows, the existing rows filled in batches, then the
/// NOT NULL recipe. Other column constraints: no plan here.
fn add_column(t: &Toks<'_>, alter: &Alter<'_>, mut i: usize, b: usize) -> Option<Vec<Step>> {
    if t.is(i, "COLUMN") {
        i += 1;
    }
    let if_not_exists = t.eat(i, &["IF", "NOT", "EXISTS"]);
    if let Some(j) = if_not_exists {
        i = j;
    }
    let column = t.tok(i);
    if !is_ident(column) {
        return None;
    }
    let ty_start = i + 1;
    let mut j = ty_start;
    let mut depth = 0;
    while j < b {
        match t.tok(j) {
            "(" => depth += 1,
            ")" => depth -= 1,
            _ if depth == 0 && COLUMN_CONSTRAINTS.iter().any(|k| t.is(j, k)) => break,
            _ => {}
        }
        j += 1;
    }
    let ty = t.text(ty_start, j);
    let (mut default, mut not_null) = (None, false);
    while j < b {
        if t.is(j, "DEFAULT") {
            let start = j + 1;
            j = start;
            let mut depth = 0;
            while j < b {
                match t.tok(j) {
                    "(" => depth += 1,
                    ")" => depth -= 1,
                    _ if depth == 0 && COLUMN_CONSTRAINTS.iter().any(|k| t.is(j, k)) => break,
                    _ => {}
                }
                j += 1;
            }
            default = Some(t.text(start, j));
        } else if let Some(n) = t.eat(j, &["NOT", "NULL"]) {
            not_null = true;
            j = n;
        } else if t.is(j, "NULL") {
            j += 1;
        } else {
            return None;
        }
    }
    // serial types: the column, a sequence it owns, its default; then the
    // same backfill (each existing row draws from the sequence, as the
    // direct ALTER does) and NOT NULL, which serial implies.
    let serial = serial_base(ty);
    let (default, ty, not_null) = match (default, serial) {
        (None, Some(base)) => (None, base.to_owned(), true),
        (Some(d), None) => (Some(d.to_owned()), ty.to_owned(), not_null),
        _ => return None,
    };
    let (head, table) = (alter.head, alter.table);
    let opt = if if_not_exists.is_some() {
        "IF NOT EXISTS "
    } else {
        ""
    };
    if table.contains("$ddlgate$") || column.contains("$ddlgate$") {
        return None;
    }
    let table_literal = format!("'{}'", table.replace('\'', "''"));
    let mut steps = vec![step(
        StepKind::Brief,
        format!("{head} ADD COLUMN {opt}{column} {ty}"),
        Lock::AccessExclusive,
        Some(column.to_owned()),
        "add the column without a default: existing rows are not touched",
    )];
    let default = match default {
        Some(d) => d,
        None => {
            // The sequence PostgreSQL would create: table_column_seq, in
            // the table's schema.
            let seq_name = object_name(&bare(table), Some(&unquote(column)), "seq");
            let seq = match table.rfind('.') {
                Some(dot) if !table.ends_with('"') || table[..dot].ends_with('"') => {
                    format!("{}.{}", &table[..dot], quote_ident(&seq_name))
                }
                _ => quote_ident(&seq_name),
            };
            steps.push(step(
                StepKind::Brief,
                format!("CREATE SEQUENCE {seq} AS {ty} OWNED BY {table}.{column}"),
                Lock::AccessShare,
                Some(seq.clone()),
                "the sequence the serial column draws from",
            ));
            format!(
                "pg_catalog.nextval('{}'::pg_catalog.regclass)",
                seq.replace('\'', "''")
            )
        }
    };
    steps.push(step(
        StepKind::Brief,
        format!("{head} ALTER COLUMN {column} SET DEFAULT {default}"),
        Lock::AccessExclusive,
        Some(column.to_owned()),
        "new rows get the default from now on",
    ));
    steps.extend([

        step(
            StepKind::Backfill,
            format!(
                "DO $ddlgate$\nDECLARE\n  last_block bigint := pg_catalog.pg_relation_size({table_literal}::pg_catalog.regclass) / pg_catalog.current_setting('block_size')::int;\n  b bigint := 0;\nBEGIN\n  WHILE b <= last_block LOOP\n    UPDATE {table} SET {column} = DEFAULT\n     WHERE ctid >= pg_catalog.format('(%s,0)', b)::tid AND ctid < pg_catalog.format('(%s,0)', b + 1000)::tid\n       AND {column} IS NULL;\n    COMMIT;\n    b := b + 1000;\n  END LOOP;\nEND $ddlgate$"
            ),
            Lock::RowExclusive,
            Some(column.to_owned()),
            "fill the existing rows, 1000 pages per transaction",
        ),
    ]);
    if not_null {
        steps.extend(not_null_recipe(alter, column));
    }
    Some(steps)
}

/// The integer type behind a serial type name.
fn serial_base(ty: &str) -> Option<&'static str> {
    match ty.trim().to_ascii_lowercase().as_str() {
        "serial" | "serial4" => Some("integer"),
        "bigserial" | "serial8" => Some("bigint"),
        "smallserial" | "serial2" => Some("smallint"),
        _ => None,
    }
}

fn not_valid_then_validate(alter: &Alter<'_>, name: &str, def: &str) -> Vec<Step> {
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
fn not_null_recipe(alter: &Alter<'_>, column: &str) -> Vec<Step> {
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
fn paren_columns(t: &Toks<'_>, i: usize) -> Option<Vec<String>> {
    let close = t.close_paren(i)?;
    Some(
        t.split_commas(i + 1, close - 1)
            .into_iter()
            .map(|(a, _)| unquote(t.tok(a)))
            .collect(),
    )
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
        // `E'...'`, `interval '1 day'`: a prefix or a type, not a column.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sqls(sql: &str) -> Vec<String> {
        plan(sql, &|_| true)
            .map(|p| p.steps.into_iter().map(|s| s.sql).collect())
            .unwrap_or_default()
    }

    #[test]
    fn index_names_as_postgres_would_choose() {
        assert_eq!(
            sqls("CREATE INDEX ON t (a, b)"),
            ["CREATE INDEX CONCURRENTLY t_a_b_idx ON t (a, b)"]
        );
        assert_eq!(
            sqls("create unique index on s.\"T\" using btree (lower(email)) include (id) where x"),
            ["create unique index CONCURRENTLY \"T_lower_id_idx\" on s.\"T\" using btree (lower(email)) include (id) where x"]
        );
        assert_eq!(
            sqls("CREATE INDEX IF NOT EXISTS i ON t ((a::text), (a + b))"),
            ["CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t ((a::text), (a + b))"]
        );
        // Names read off PostgreSQL 15 for the same statements.
        assert_eq!(
            sqls("CREATE INDEX ON t ((a::text), (a + b))")[0],
            "CREATE INDEX CONCURRENTLY t_a_expr_idx ON t ((a::text), (a + b))"
        );
        assert_eq!(
            sqls("create index on \"Weird \"\"Name\"\"\" (\"Col A\")")[0],
            "create index CONCURRENTLY \"Weird \"\"Name\"\"_Col A_idx\" on \"Weird \"\"Name\"\"\" (\"Col A\")"
        );
        let long = format!(
            "CREATE INDEX ON longtable_{} (longcolumn_{}, c)",
            "a".repeat(57),
            "b".repeat(40)
        );
        assert!(sqls(&long)[0].starts_with(
            "CREATE INDEX CONCURRENTLY longtable_aaaaaaaaaaaaaaaaaaa_longcolumn_bbbbbbbbbbbbbbbbbb_idx ON"
        ), "{}", sqls(&long)[0]);
        assert!(sqls("CREATE INDEX CONCURRENTLY i ON t (a)").is_empty());
        assert!(sqls("CREATE INDEX i ON ONLY p (a)").is_empty());
    }

    #[test]
    fn constraint_names_as_postgres_would_choose() {
        assert_eq!(
            sqls("ALTER TABLE t ADD CHECK (a > 0)")[0],
            "ALTER TABLE t ADD CONSTRAINT t_a_check CHECK (a > 0) NOT VALID"
        );
        assert_eq!(
            sqls("ALTER TABLE t ADD CHECK (a > b)")[0],
            "ALTER TABLE t ADD CONSTRAINT t_check CHECK (a > b) NOT VALID"
        );
        assert_eq!(
            sqls("ALTER TABLE t ADD FOREIGN KEY (a, b) REFERENCES u")[1],
            "ALTER TABLE t VALIDATE CONSTRAINT t_a_b_fkey"
        );
        assert_eq!(
            sqls("ALTER TABLE t ADD UNIQUE NULLS NOT DISTINCT (a) INCLUDE (b) WITH (fillfactor = 70) USING INDEX TABLESPACE pg_default DEFERRABLE"),
            [
                "CREATE UNIQUE INDEX CONCURRENTLY t_a_b_key ON t (a) INCLUDE (b) NULLS NOT DISTINCT WITH (fillfactor = 70) TABLESPACE pg_default",
                "ALTER TABLE t ADD CONSTRAINT t_a_b_key UNIQUE USING INDEX t_a_b_key DEFERRABLE"
            ]
        );
    }

    #[test]
    fn subcommands_are_split_and_brief_ones_batched() {
        assert_eq!(
            sqls("ALTER TABLE ONLY t ADD COLUMN x int, ALTER COLUMN a SET NOT NULL, ALTER COLUMN x SET DEFAULT 1, DETACH PARTITION p"),
            [
                "ALTER TABLE ONLY t ADD COLUMN x int",
                "ALTER TABLE ONLY t ADD CONSTRAINT t_a_not_null CHECK (a IS NOT NULL) NOT VALID",
                "ALTER TABLE ONLY t VALIDATE CONSTRAINT t_a_not_null",
                "ALTER TABLE ONLY t ALTER COLUMN a SET NOT NULL",
                "ALTER TABLE ONLY t DROP CONSTRAINT t_a_not_null",
                "ALTER TABLE ONLY t ALTER COLUMN x SET DEFAULT 1",
                "ALTER TABLE ONLY t DETACH PARTITION p CONCURRENTLY",
            ]
        );
        // A part that is unsafe and has no plan: no plan at all.
        assert!(
            plan("ALTER TABLE t ADD CHECK (a > 0), DROP COLUMN b", &|s| !s
                .contains("DROP"))
            .is_none()
        );
        // Nothing phased: safe as written.
        assert!(sqls("ALTER TABLE t ADD COLUMN x int").is_empty());
    }

    #[test]
    fn drop_and_reindex() {
        assert_eq!(
            sqls("DROP INDEX IF EXISTS a, s.b RESTRICT"),
            [
                "DROP INDEX CONCURRENTLY IF EXISTS a",
                "DROP INDEX CONCURRENTLY IF EXISTS s.b"
            ]
        );
        assert!(sqls("DROP INDEX a CASCADE").is_empty());
        assert_eq!(
            sqls("REINDEX (VERBOSE) TABLE t"),
            ["REINDEX (VERBOSE) TABLE CONCURRENTLY t"]
        );
        assert!(sqls("REINDEX SYSTEM d").is_empty());
    }
}
