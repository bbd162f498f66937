//! A client's own backfill inside a migration transaction, recognised so it
//! can run as a batched backfill after COMMIT (the gate decides when the
//! result is the same). The shape is the one Django sends to make a column
//! NOT NULL with a default: `ALTER TABLE t ALTER COLUMN c SET DEFAULT v`,
//! then `UPDATE t SET c = v WHERE c IS NULL`. Inside the transaction that
//! UPDATE runs under the ACCESS EXCLUSIVE lock SET DEFAULT took, which is
//! held until COMMIT: a rewrite of every NULL row with the table closed.

use super::columns::backfill_step;
use super::source::{is_ident, Toks};
use super::Plan;
use crate::ddl::op::{fold_name, unquote};

/// `ALTER TABLE t ALTER [COLUMN] c SET DEFAULT v`, alone: (table folded,
/// column as stored, the default's text).
pub fn set_default(sql: &str) -> Option<(String, String, String)> {
    let t = Toks::new(sql);
    let mut i = t.eat(0, &["ALTER", "TABLE"])?;
    i = t.eat(i, &["ONLY"]).unwrap_or(i);
    let end = t.name_end(i)?;
    let table = fold_name(t.text(i, end));
    let mut i = t.eat(end, &["ALTER"])?;
    i = t.eat(i, &["COLUMN"]).unwrap_or(i);
    if !is_ident(t.tok(i)) {
        return None;
    }
    let column = unquote(t.tok(i));
    let from = t.eat(i + 1, &["SET", "DEFAULT"])?;
    let value = constant(&t, from)?;
    Some((table, column, value))
}

/// `UPDATE t SET c = v WHERE c IS NULL` with `v` a constant: (table as
/// written, table folded, column as written, column as stored, `v`).
pub fn fill_nulls(sql: &str) -> Option<FillNulls> {
    let t = Toks::new(sql);
    let i = t.eat(0, &["UPDATE"])?;
    let end = t.name_end(i)?;
    let table = t.text(i, end).to_owned();
    let i = t.eat(end, &["SET"])?;
    if !is_ident(t.tok(i)) || t.tok(i + 1) != "=" {
        return None;
    }
    let column = t.tok(i).to_owned();
    let (v, mut j) = (i + 2, i + 2);
    while j < t.len() && !t.is(j, "WHERE") {
        j += 1;
    }
    let value = constant(&Toks::new(t.text(v, j)), 0)?;
    let w = t.eat(j, &["WHERE"])?;
    let ok =
        unquote(t.tok(w)) == unquote(&column) && t.eat(w + 1, &["IS", "NULL"]) == Some(t.len());
    ok.then(|| FillNulls {
        text: sql.trim().to_owned(),
        folded: fold_name(&table),
        stored: unquote(&column),
        table,
        column,
        value,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillNulls {
    /// The client's statement as written.
    pub text: String,
    pub table: String,
    pub folded: String,
    pub column: String,
    pub stored: String,
    pub value: String,
}

impl FillNulls {
    /// The same rows set to the same value, in throttled batches.
    pub fn plan(&self) -> Plan {
        let (table, column, value) = (&self.table, &self.column, &self.value);
        Plan {
            tag: "UPDATE",
            table: Some(table.clone()),
            steps: vec![backfill_step(
                table,
                format!("{column} = {value}"),
                Some(format!("{column} IS NULL")),
                column,
                "set the column on every row where it is NULL, 1000 pages per transaction",
            )],
            revert: Vec::new(),
        }
    }

    /// The client's UPDATE as written.
    pub fn update_sql(&self) -> &str {
        &self.text
    }
}

/// A constant from token `from` to the end: one literal (a string, a
/// number, NULL, TRUE, FALSE), optionally signed and cast (`'x'::text`,
/// `CAST`-free). Its text as written.
fn constant(t: &Toks<'_>, from: usize) -> Option<String> {
    let mut i = from;
    if matches!(t.tok(i), "-" | "+") {
        i += 1;
    }
    let lit = t.tok(i);
    let literal = lit.starts_with('\'')
        || lit.starts_with('$')
        || lit.as_bytes().first().is_some_and(u8::is_ascii_digit)
        || ["NULL", "TRUE", "FALSE"]
            .iter()
            .any(|k| lit.eq_ignore_ascii_case(k));
    if !literal {
        return None;
    }
    i += 1;
    // Numbers lex as several tokens (`1`, `.`, `5`).
    while t.tok(i) == "." || t.tok(i).as_bytes().first().is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    while t.tok(i) == ":" && t.tok(i + 1) == ":" {
        let end = t.name_end(i + 2)?;
        i = end;
    }
    (i == t.len()).then(|| t.text(from, i).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn djangos_four_step_not_null_is_recognised() {
        assert_eq!(
            set_default(r#"ALTER TABLE "shop_book" ALTER COLUMN "title" SET DEFAULT ''"#),
            Some(("shop_book".into(), "title".into(), "''".into()))
        );
        let f = fill_nulls(r#"UPDATE "shop_book" SET "title" = '' WHERE "title" IS NULL"#)
            .expect("recognised");
        assert_eq!(f.folded, "shop_book");
        assert_eq!(f.value, "''");
        let plan = f.plan();
        let b = plan.steps[0].backfill.as_ref().unwrap();
        assert_eq!(b.set, r#""title" = ''"#);
        assert_eq!(b.filter.as_deref(), Some(r#""title" IS NULL"#));
        assert_eq!(
            fill_nulls("UPDATE t SET n = -1.5::numeric WHERE n IS NULL").map(|f| f.value),
            Some("-1.5::numeric".into())
        );
        // Anything else runs as sent.
        for sql in [
            "UPDATE t SET n = now() WHERE n IS NULL",
            "UPDATE t SET n = 1 WHERE m IS NULL",
            "UPDATE t SET n = 1 WHERE n IS NULL AND id < 5",
            "UPDATE t SET n = 1",
            "UPDATE t SET n = 1, m = 2 WHERE n IS NULL",
            "UPDATE t SET n = n + 1 WHERE n IS NULL",
        ] {
            assert_eq!(fill_nulls(sql), None, "{sql}");
        }
        assert_eq!(
            set_default("ALTER TABLE t ALTER COLUMN n SET DEFAULT now()"),
            None
        );
    }
}
