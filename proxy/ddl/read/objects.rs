//! The token front end for objects other than tables: ALTER TYPE, DOMAIN,
//! INDEX, VIEW, SEQUENCE, FUNCTION, SCHEMA ... and the kinds of DROP and
//! RENAME that break the clients naming them.

use super::cursor::Cursor;
use super::tokens::brief;
use crate::ddl::op::Op;
use crate::ddl::rule::Lock;

/// Objects other than tables and indexes that clients name, by the
/// keywords that introduce them: dropping one breaks the clients that use it
/// (or loses data), and renaming or moving it breaks those that name it.
const KINDS: &[(&[&str], &str)] = &[
    (&["MATERIALIZED", "VIEW"], "materialized view"),
    (&["FOREIGN", "TABLE"], "foreign table"),
    (&["VIEW"], "view"),
    (&["SEQUENCE"], "sequence"),
    (&["FUNCTION"], "function"),
    (&["PROCEDURE"], "procedure"),
    (&["ROUTINE"], "routine"),
    (&["AGGREGATE"], "aggregate"),
    (&["TYPE"], "type"),
    (&["DOMAIN"], "domain"),
    (&["SCHEMA"], "schema"),
    (&["EXTENSION"], "extension"),
    (&["OWNED", "BY"], "objects owned by"),
];

/// The kind of object next, if it is one of [`KINDS`].
pub(super) fn object_kind(c: &mut Cursor) -> Option<&'static str> {
    KINDS.iter().find(|(kw, _)| c.eat_all(kw)).map(|(_, k)| *k)
}

/// ALTER VIEW / SEQUENCE / FUNCTION / SCHEMA ...: renames and moves break
/// clients; the rest is brief.
pub(super) fn alter_other(kind: &str, mut c: Cursor) -> Op {
    c.eat_all(&["IF", "EXISTS"]);
    let name = c.name().unwrap_or_default();
    c.group();
    if c.eat("RENAME") {
        if c.eat("COLUMN") || (!c.is_kw("TO") && kind.ends_with("view")) {
            let from = c.name().unwrap_or_default();
            c.eat("TO");
            return Op::RenameObject {
                kind: format!("{kind} column"),
                name: format!("{name}.{from}"),
                to: c.name().unwrap_or_default(),
            };
        }
        c.eat("TO");
        return Op::RenameObject {
            kind: kind.into(),
            name,
            to: c.name().unwrap_or_default(),
        };
    }
    if c.is_kw("SET") && c.kw_at(1, "SCHEMA") {
        return rename_or_move(kind, name, &mut c).unwrap_or_else(|| brief(None));
    }
    if kind == "materialized view" && c.eat_all(&["SET", "TABLESPACE"]) {
        return Op::SetTablespace { table: name };
    }
    brief(None)
}

/// ALTER TYPE: enum values added or renamed, renames and moves.
pub(super) fn alter_type(mut c: Cursor) -> Op {
    let type_name = c.name().unwrap_or_default();
    if c.eat_all(&["ADD", "VALUE"]) {
        return Op::EnumAddValue { type_name };
    }
    if c.eat_all(&["RENAME", "VALUE"]) {
        let from = c.rest_text();
        return Op::RenameObject {
            kind: "enum value".into(),
            name: format!("{type_name} {from}"),
            to: String::new(),
        };
    }
    if c.eat_all(&["RENAME", "ATTRIBUTE"]) {
        let from = c.name().unwrap_or_default();
        c.eat("TO");
        return Op::RenameObject {
            kind: "type attribute".into(),
            name: format!("{type_name}.{from}"),
            to: c.name().unwrap_or_default(),
        };
    }
    rename_or_move("type", type_name, &mut c).unwrap_or_else(|| brief(None))
}

/// ALTER DOMAIN: constraints checked against every column of the domain,
/// renames and moves.
pub(super) fn alter_domain(mut c: Cursor) -> Op {
    let domain = c.name().unwrap_or_default();
    if c.is_kw("ADD") {
        let rest = c.rest_text().to_ascii_uppercase();
        if !rest.contains("NOT VALID") {
            return Op::DomainCheck {
                domain,
                what: "adding a constraint".into(),
            };
        }
        return brief(None);
    }
    if c.eat_all(&["SET", "NOT", "NULL"]) {
        return Op::DomainCheck {
            domain,
            what: "SET NOT NULL".into(),
        };
    }
    if c.eat_all(&["VALIDATE", "CONSTRAINT"]) {
        return Op::DomainCheck {
            domain,
            what: format!("validating {}", c.name().unwrap_or_default()),
        };
    }
    rename_or_move("domain", domain, &mut c).unwrap_or_else(|| brief(None))
}

/// `RENAME TO new` or `SET SCHEMA s` of a named object, if that is next.
fn rename_or_move(kind: &str, name: String, c: &mut Cursor) -> Option<Op> {
    let to = if c.eat_all(&["RENAME", "TO"]) {
        c.name().unwrap_or_default()
    } else if c.eat_all(&["SET", "SCHEMA"]) {
        format!("schema {}", c.name().unwrap_or_default())
    } else {
        return None;
    };
    Some(Op::RenameObject {
        kind: kind.into(),
        name,
        to,
    })
}

/// ALTER INDEX: a new tablespace copies the index under ACCESS EXCLUSIVE;
/// the rest (rename, storage parameters, statistics, attach) is brief.
pub(super) fn alter_index(mut c: Cursor) -> Op {
    if c.eat_all(&["ALL", "IN", "TABLESPACE"]) {
        return Op::SetTablespace {
            table: format!("every index in tablespace {}", c.name().unwrap_or_default()),
        };
    }
    c.eat_all(&["IF", "EXISTS"]);
    let index = c.name().unwrap_or_default();
    if c.eat_all(&["SET", "TABLESPACE"]) {
        return Op::SetTablespace { table: index };
    }
    Op::Brief {
        table: None,
        lock: Lock::ShareUpdateExclusive,
    }
}
