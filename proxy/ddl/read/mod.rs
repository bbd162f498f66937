//! Reading one statement: which command it is, and what it changes.
//! sqlparser (PostgreSqlDialect) reads what it can; the token front end
//! reads the rest, so no schema change goes unread because sqlparser lacks a
//! PostgreSQL form.

mod cursor;
mod expr;
mod objects;
mod parsed;
mod tokens;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::op::Op;

pub use expr::volatility;

/// Which front end understood the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadBy {
    Parser,
    Tokens,
}

/// Reads a statement already known to start with a DDL keyword.
pub fn read(sql: &str) -> (Vec<Op>, ReadBy) {
    if let Ok(stmts) = Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        if let [stmt] = stmts.as_slice() {
            if let Some(ops) = parsed::read(stmt) {
                return (ops, ReadBy::Parser);
            }
        }
    }
    let ops = match cursor::Cursor::new(sql) {
        Some(c) => tokens::read(c),
        None => Vec::new(),
    };
    (ops, ReadBy::Tokens)
}
