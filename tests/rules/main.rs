//! The DDL rules: snapshot tables of findings per rule family, and the test
//! that holds each rule's claims against a real PostgreSQL.

mod examples;
mod findings;
mod fuzz;
mod lint;
mod locks;
mod plans;
mod robust;
mod server;
