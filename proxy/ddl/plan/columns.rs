//! ALTER TABLE ... ADD COLUMN plans: a volatile DEFAULT or a serial type as
//! the column added bare, its default set for new rows, the existing rows
//! backfilled in batches, then NOT NULL by the recipe.

use super::alter::{not_null_recipe, Alter};
use super::build::step;
use super::names::object_name;
use super::source::{bare, is_ident, Toks};
use super::{Step, StepKind};
use crate::ddl::op::{quote_ident, unquote};
use crate::ddl::rule::Lock;

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

/// The first token from `from` (before `b`) that starts a column
/// constraint outside parentheses: where a type or a DEFAULT expression
/// ends.
fn constraint_start(t: &Toks<'_>, from: usize, b: usize) -> usize {
    let mut depth = 0;
    for j in from..b {
        match t.tok(j) {
            "(" => depth += 1,
            ")" => depth -= 1,
            _ if depth == 0 && COLUMN_CONSTRAINTS.iter().any(|k| t.is(j, k)) => return j,
            _ => {}
        }
    }
    b
}

/// `ADD [COLUMN] [IF NOT EXISTS] name type [COLLATE c] DEFAULT expr [NOT
/// NULL]` (tokens `i..b`): the column added without its default, the
/// default set for new rows, the existing rows filled in batches, then the
/// NOT NULL recipe. Other column constraints: no plan here.
pub(super) fn add_column(
    t: &Toks<'_>,
    alter: &Alter<'_>,
    mut i: usize,
    b: usize,
) -> Option<Vec<Step>> {
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
    let mut j = constraint_start(t, ty_start, b);
    let ty = t.text(ty_start, j);
    let (mut default, mut not_null) = (None, false);
    let mut identity: Option<(&str, Option<&str>)> = None;
    while j < b {
        if let Some(k) = t.eat(j, &["GENERATED"]) {
            // GENERATED {ALWAYS | BY DEFAULT} AS IDENTITY [(options)]
            let (kind, k) = if t.is(k, "ALWAYS") {
                (t.text(k, k + 1), k + 1)
            } else {
                (t.text(k, k + 2), t.eat(k, &["BY", "DEFAULT"])?)
            };
            j = t.eat(k, &["AS", "IDENTITY"])?;
            let options = match t.close_paren(j) {
                Some(close) if close <= b => {
                    let inner = t.text(j + 1, close - 1);
                    j = close;
                    Some(inner)
                }
                _ => None,
            };
            identity = Some((kind, options));
        } else if t.is(j, "DEFAULT") {
            let start = j + 1;
            j = constraint_start(t, start, b);
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
    let (default, ty, not_null) = match (default, serial, identity) {
        (None, Some(base), None) => (None, base.to_owned(), true),
        (Some(d), None, None) => (Some(d.to_owned()), ty.to_owned(), not_null),
        // An identity column: filled from a sequence of ddlgate's first.
        (None, None, Some(_)) => (None, ty.to_owned(), true),
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
    let mut steps = vec![step(
        StepKind::Brief,
        format!("{head} ADD COLUMN {opt}{column} {ty}"),
        Lock::AccessExclusive,
        Some(column.to_owned()),
        "add the column without a default: existing rows are not touched",
    )];
    let mut identity_seq = None;
    let default = match default {
        Some(d) => d,
        None => {
            // The sequence PostgreSQL would create: table_column_seq, in
            // the table's schema. An identity column gets its own at the
            // end: until then it draws from one of ddlgate's.
            let label = if identity.is_some() {
                "ddlgate_seq"
            } else {
                "seq"
            };
            let seq_name = object_name(&bare(table), Some(&unquote(column)), label);
            let seq = match table.rfind('.') {
                Some(dot) if !table.ends_with('"') || table[..dot].ends_with('"') => {
                    format!("{}.{}", &table[..dot], quote_ident(&seq_name))
                }
                _ => quote_ident(&seq_name),
            };
            let sql = match identity {
                // The identity's options (START WITH, INCREMENT BY...) are
                // sequence options; its SEQUENCE NAME is not.
                Some((_, Some(options))) if options.to_ascii_uppercase().contains("SEQUENCE") => {
                    return None
                }
                Some((_, options)) => format!(
                    "CREATE SEQUENCE {seq} AS {ty}{}",
                    options.map(|o| format!(" {o}")).unwrap_or_default()
                ),
                None => format!("CREATE SEQUENCE {seq} AS {ty} OWNED BY {table}.{column}"),
            };
            identity_seq = Some(seq.clone());
            steps.push(step(
                StepKind::Brief,
                sql,
                Lock::AccessShare,
                Some(seq.clone()),
                "the sequence the column draws from",
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
    steps.push(backfill_step(
        table,
        format!("{column} = DEFAULT"),
        Some(format!("{column} IS NULL")),
        column,
        "fill the existing rows, 1000 pages per transaction",
    ));
    if not_null {
        steps.extend(not_null_recipe(alter, column));
    }
    if let (Some((kind, options)), Some(seq)) = (identity, identity_seq) {
        // The identity's own sequence goes on from where ddlgate's got.
        let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
        steps.push(step(
            StepKind::Brief,
            format!(
                "{head} ALTER COLUMN {column} DROP DEFAULT, ALTER COLUMN {column} ADD GENERATED \
                 {kind} AS IDENTITY{};\nSELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence({}, {}), \
                 s.last_value, s.is_called) FROM {seq} s;\nDROP SEQUENCE {seq}",
                options.map(|o| format!(" ({o})")).unwrap_or_default(),
                literal(table),
                literal(&unquote(column)),
            ),
            Lock::AccessExclusive,
            Some(column.to_owned()),
            "make it an identity column, its sequence going on from the backfill's (brief lock)",
        ));
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

/// A backfill step: `UPDATE table SET set [WHERE filter]` over the existing
/// rows. The runner runs it in throttled batches (`backfill`); its SQL is
/// the same as one script, for a human to run, 1000 pages per transaction.
pub(super) fn backfill_step(
    table: &str,
    set: String,
    filter: Option<String>,
    object: &str,
    what: &str,
) -> Step {
    let table_literal = format!("'{}'", table.replace('\'', "''"));
    let and_filter = filter
        .as_ref()
        .map(|f| format!("\n       AND {f}"))
        .unwrap_or_default();
    let mut backfill = step(
        StepKind::Backfill,
        format!(
            "DO $ddlgate$\nDECLARE\n  last_block bigint := pg_catalog.pg_relation_size({table_literal}::pg_catalog.regclass) / pg_catalog.current_setting('block_size')::int;\n  b bigint := 0;\nBEGIN\n  WHILE b <= last_block LOOP\n    UPDATE {table} SET {set}\n     WHERE ctid >= pg_catalog.format('(%s,0)', b)::tid AND ctid < pg_catalog.format('(%s,0)', b + 1000)::tid{and_filter};\n    COMMIT;\n    b := b + 1000;\n  END LOOP;\nEND $ddlgate$"
        ),
        Lock::RowExclusive,
        Some(object.to_owned()),
        what,
    );
    backfill.backfill = Some(super::Backfill {
        table: table.to_owned(),
        set,
        filter,
    });
    backfill
}
