//! The existing database as catalog facts, read from SQL: `pg_dump -s`
//! output or the earlier migrations, for `ddlgate lint --schema`. Tables
//! there are existing, populated tables; their columns (types, NOT NULL,
//! collations), the CHECK constraints and indexes that use each column,
//! constrained domains and DEFAULT partitions become the facts the rules
//! would otherwise look up on the server. Pure: text in, [`Catalog`] out.
//! Statements it does not understand are skipped.

use sqlparser::ast::{ColumnOption, Expr, ObjectName, Statement, TableConstraint, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::analyze::decode;
use super::lexer::{skip_trivia, split, Lexical};
use super::op::{fold_name, unquote};
use super::rules::{Catalog, ColumnFacts};
use super::types::SqlType;
use std::ops::ControlFlow;

/// Reads a schema. The result is `complete`: a relation it does not name
/// does not exist.
pub fn read_schema(sql: &[u8]) -> Catalog {
    let mut c = Catalog {
        complete: true,
        ..Catalog::default()
    };
    // pg_dump's psql meta-commands (`\restrict ...`) are not SQL.
    let sql: Vec<u8> = sql
        .split(|&b| b == b'\n')
        .filter(|l| !l.starts_with(b"\\"))
        .flat_map(|l| l.iter().copied().chain(std::iter::once(b'\n')))
        .collect();
    let mut indexes = Vec::new();
    // pg_dump sets standard_conforming_strings = on in its output.
    for range in split(&sql, Lexical::STANDARD) {
        let start = skip_trivia(&sql, range.start).min(range.end);
        let text = decode(&sql[start..range.end]);
        match Parser::parse_sql(&PostgreSqlDialect {}, &text) {
            Ok(stmts) => {
                for s in &stmts {
                    statement(s, &mut c, &mut indexes);
                }
            }
            Err(_) => tokens(&text, &mut c),
        }
    }
    // Indexes whose columns all turned out NOT NULL.
    for (index, table, cols) in indexes {
        let all = !cols.is_empty()
            && cols.iter().all(|col| {
                c.columns
                    .get(&(table.clone(), col.clone()))
                    .is_some_and(|f| f.not_null)
            });
        if all {
            c.not_null_indexes.insert(index);
        }
    }
    c
}

/// Indexes read so far: (index, table, columns), all folded.
type Indexes = Vec<(String, String, Vec<String>)>;

fn name(n: &ObjectName) -> String {
    fold_name(&n.to_string())
}

fn statement(s: &Statement, c: &mut Catalog, indexes: &mut Indexes) {
    match s {
        Statement::CreateTable(ct) => {
            let table = name(&ct.name);
            c.relations.insert(table.clone());
            if ct.partition_by.is_some() {
                c.default_partitions.entry(table.clone()).or_insert(None);
                // The key as pg_get_partkeydef writes it: `RANGE (k)`.
                let text = ct.to_string();
                if let Some(i) = text.to_ascii_uppercase().find("PARTITION BY ") {
                    let key = text[i + 13..].split(')').next().unwrap_or_default();
                    c.partition_keys.insert(table.clone(), format!("{key})"));
                }
            }
            if let (Some(parent), true) = (&ct.partition_of, is_default(&ct.to_string())) {
                c.default_partitions
                    .insert(name(parent), Some((table.clone(), false)));
            }
            c.access_methods.insert(table.clone(), "heap".into());
            for col in &ct.columns {
                let key = (table.clone(), fold_name(&col.name.to_string()));
                c.column_types
                    .insert(key.clone(), SqlType::parse(&col.data_type.to_string()));
                let facts = c.columns.entry(key).or_insert_with(|| ColumnFacts {
                    collation: "default".into(),
                    ..ColumnFacts::default()
                });
                for o in &col.options {
                    match &o.option {
                        ColumnOption::NotNull => facts.not_null = true,
                        ColumnOption::PrimaryKey(_) => {
                            facts.not_null = true;
                            facts.indexed = true;
                        }
                        ColumnOption::Unique(_) => facts.indexed = true,
                        ColumnOption::Check(_) => facts.has_check = true,
                        ColumnOption::Collation(n) => {
                            facts.collation = collation_name(n);
                        }
                        _ => {}
                    }
                }
            }
            for k in &ct.constraints {
                constraint(&table, k, c);
            }
        }
        Statement::CreateIndex(ci) => {
            let table = name(&ci.table_name);
            let mut cols = Vec::new();
            for col in &ci.columns {
                for column in columns_in(&col.column.expr) {
                    c.columns
                        .entry((table.clone(), column.clone()))
                        .or_default()
                        .indexed = true;
                    cols.push(column);
                }
            }
            if let Some(n) = &ci.name {
                let index = fold_name(&n.to_string());
                c.relations.insert(index.clone());
                // Settled once the whole schema is read (NOT NULL may come later).
                let schema = table.rsplit_once('.').map(|(s, _)| s.to_owned());
                let index = match schema {
                    Some(s) if !index.contains('.') => format!("{s}.{index}"),
                    _ => index,
                };
                indexes.push((index, table, cols));
            }
        }
        Statement::AlterTable(at) => {
            let table = name(&at.name);
            for op in &at.operations {
                if let sqlparser::ast::AlterTableOperation::AddConstraint {
                    constraint: k, ..
                } = op
                {
                    constraint(&table, k, c);
                }
            }
            let text = s.to_string().to_ascii_uppercase();
            if text.contains("ATTACH PARTITION") && text.ends_with(" DEFAULT") {
                tokens(&s.to_string(), c);
            }
        }
        Statement::CreateDomain(d)
            if !d.constraints.is_empty()
                || d.to_string().to_ascii_uppercase().contains("NOT NULL") =>
        {
            c.constrained_domains
                .insert(d.name.to_string().to_ascii_lowercase());
            // Columns name a domain without its schema as often as with.
            if let Some(last) = d.name.0.last() {
                c.constrained_domains
                    .insert(last.to_string().to_ascii_lowercase());
            }
        }
        Statement::CreateView(v) => {
            c.relations.insert(name(&v.name));
        }
        Statement::CreateSequence { name: n, .. } => {
            c.relations.insert(name(n));
        }
        _ => {}
    }
}

fn constraint(table: &str, k: &TableConstraint, c: &mut Catalog) {
    let mark = |cols: Vec<String>, f: &mut dyn FnMut(&mut ColumnFacts), c: &mut Catalog| {
        for col in cols {
            f(c.columns.entry((table.to_owned(), col)).or_default());
        }
    };
    match k {
        TableConstraint::Check(ck) => {
            mark(columns_in(&ck.expr), &mut |f| f.has_check = true, c);
        }
        TableConstraint::PrimaryKey(pk) => {
            let cols = pk
                .columns
                .iter()
                .flat_map(|i| columns_in(&i.column.expr))
                .collect();
            mark(
                cols,
                &mut |f| {
                    f.not_null = true;
                    f.indexed = true;
                },
                c,
            );
        }
        TableConstraint::Unique(u) => {
            let cols = u
                .columns
                .iter()
                .flat_map(|i| columns_in(&i.column.expr))
                .collect();
            mark(cols, &mut |f| f.indexed = true, c);
        }
        _ => {}
    }
}

/// The column names an expression references.
fn columns_in(e: &Expr) -> Vec<String> {
    struct Cols(Vec<String>);
    impl Visitor for Cols {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(i) => self.0.push(unquote(&i.to_string())),
                Expr::CompoundIdentifier(parts) => {
                    if let Some(last) = parts.last() {
                        self.0.push(unquote(&last.to_string()));
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = Cols(Vec::new());
    let _ = e.visit(&mut v);
    v.0
}

fn collation_name(n: &ObjectName) -> String {
    n.0.last()
        .map(|p| unquote(&p.to_string()))
        .unwrap_or_default()
}

fn is_default(text: &str) -> bool {
    text.trim_end().to_ascii_uppercase().ends_with(" DEFAULT")
}

/// What sqlparser does not read: `ALTER TABLE [ONLY] p ATTACH PARTITION d
/// DEFAULT` and `CREATE TABLE d PARTITION OF p DEFAULT`.
fn tokens(text: &str, c: &mut Catalog) {
    let words: Vec<&str> = text.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let at = |i: usize| upper.get(i).map(String::as_str).unwrap_or("");
    if !is_default(text) {
        return;
    }
    if at(0) == "ALTER" && at(1) == "TABLE" {
        let mut i = 2;
        if at(i) == "ONLY" {
            i += 1;
        }
        if let (true, Some(parent), Some(part)) = (
            at(i + 1) == "ATTACH" && at(i + 2) == "PARTITION",
            words.get(i),
            words.get(i + 3),
        ) {
            c.default_partitions
                .insert(fold_name(parent), Some((fold_name(part), false)));
        }
    } else if let (true, Some(part), Some(parent)) = (
        at(0) == "CREATE" && at(1) == "TABLE" && at(3) == "PARTITION" && at(4) == "OF",
        words.get(2),
        words.get(5),
    ) {
        let part = fold_name(part);
        c.relations.insert(part.clone());
        c.default_partitions
            .insert(fold_name(parent), Some((part, false)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_pg_dump_writes() {
        let c = read_schema(
            br#"
\restrict abc
SET default_table_access_method = heap;
CREATE DOMAIN public.posint AS integer CONSTRAINT posint_check CHECK ((VALUE > 0));
CREATE TABLE public.t (
    id integer NOT NULL,
    v character varying(10) COLLATE pg_catalog."C",
    c integer,
    CONSTRAINT t_c_check CHECK ((c > 0))
);
CREATE TABLE public.p (k integer) PARTITION BY RANGE (k);
CREATE TABLE public.pd (k integer);
--
-- Name: pd; Type: TABLE ATTACH
--
ALTER TABLE ONLY public.p ATTACH PARTITION public.pd DEFAULT;
CREATE TABLE public.q (k integer) PARTITION BY LIST (k);
ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);
CREATE INDEX t_v_idx ON public.t USING btree (lower((v)::text));
"#,
        );
        let f = |col: &str| c.column("t", col).cloned().unwrap_or_default();
        assert!(f("id").not_null && f("id").indexed);
        assert_eq!(f("v").collation, "C");
        assert!(f("v").indexed && !f("v").not_null);
        assert!(f("c").has_check);
        assert_eq!(c.column_type("t", "v"), Some(&SqlType::Varchar(Some(10))));
        assert!(c.constrained_domains.contains("posint"));
        assert_eq!(c.default_partitions["p"], Some(("pd".into(), false)));
        assert_eq!(c.default_partitions["q"], None);
        assert_eq!(c.partition_keys["q"].replace(' ', ""), "LIST(k)");
        assert!(c.relations.contains("t") && c.relations.contains("t_v_idx"));
        assert!(c.complete);
    }
}
