//! Integration tests: ddlgate in front of a real PostgreSQL, driven by real
//! clients (tokio-postgres, psql, pgbench). PostgreSQL's server binaries must
//! be installed; the harness says how when they are not.

#[path = "../rules/examples.rs"]
mod examples;
mod harness;
mod raw;

mod auth;
mod errors;
mod gate;
mod gate_input;
mod gate_locks;
mod gate_lookup;
mod gate_own;
mod gate_quiet;
mod gate_rules;
mod gate_syntax;
mod lexing;
mod pacing;
mod relay;
mod runner;
mod tools;
mod transparency;
mod trust;
