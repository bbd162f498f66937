//! The DDL gate's pure half: from SQL text and the server's major version to
//! findings and decisions, with no I/O. The session layer calls it for each
//! Query and Parse that passes the fast path; `ddlgate lint` calls it for
//! migration files.
//!
//! - `lexer`, `fastpath`: byte-level splitting and the cheap keyword check.
//! - `read/`: sqlparser and token front ends, both producing `op::Op`.
//! - `rules/`: one file per rule family, `Op` + `Context` to `Finding`s.
//! - `analyze`: statement sequences and their transaction.
//! - `policy`: findings to decisions.
//! - `plan/`: a statement's safe phased form, from its text and `dependents`.

pub mod analyze;
pub mod dependents;
pub mod fastpath;
pub mod lexer;
pub mod lexical;
pub mod op;
pub mod plan;
pub mod plpgsql;
pub mod policy;
pub mod read;
pub mod rule;
pub mod rules;
pub mod schema;
pub mod types;

pub use analyze::{Analyzed, Analyzer, Created, Kind, Mode, Unreadable};
pub use policy::{Judgement, Policy, Who};
pub use rule::{Decision, Finding, Lock, Rule};
pub use rules::Catalog;
