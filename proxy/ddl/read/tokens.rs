//! The token front end: reads schema changes from their tokens. It covers
//! the PostgreSQL forms sqlparser does not parse (DROP INDEX CONCURRENTLY,
//! REINDEX, CLUSTER, DO, ATTACH/DETACH PARTITION, SET TABLESPACE, ...) and
//! any ALTER TABLE that sqlparser rejects as a whole.

use sqlparser::tokenizer::Token;

use super::cursor::Cursor;
use super::expr::volatility;
use super::objects::{alter_domain, alter_index, alter_other, alter_type, object_kind};
use crate::ddl::op::{AddColumn, ConstraintKind, Op};
use crate::ddl::rule::Lock;
use crate::ddl::types::SqlType;

/// Reads one statement. Statements that are not schema changes give no ops.
pub fn read(mut c: Cursor) -> Vec<Op> {
    let first = match c.next() {
        Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
        _ => return Vec::new(),
    };
    match first.as_str() {
        "ALTER" => alter(c),
        "CREATE" => create(c),
        "DROP" => drop(c),
        "TRUNCATE" => {
            c.eat("TABLE");
            vec![Op::Truncate {
                tables: c.name_list(),
            }]
        }
        "VACUUM" => vec![vacuum(c)],
        "CLUSTER" => {
            c.group();
            c.eat("VERBOSE");
            vec![Op::Cluster { table: c.name() }]
        }
        "LOCK" => vec![lock(c)],
        "REINDEX" => {
            c.group();
            let kind = c.next().cloned();
            let concurrently = c.eat("CONCURRENTLY");
            let target = c.name().unwrap_or_default();
            match kind {
                Some(Token::Word(w))
                    if w.value.eq_ignore_ascii_case("TABLE")
                        || w.value.eq_ignore_ascii_case("INDEX") =>
                {
                    vec![Op::Reindex {
                        target,
                        concurrently,
                    }]
                }
                // SCHEMA / DATABASE / SYSTEM: many tables at once.
                _ => vec![Op::Reindex {
                    target,
                    concurrently,
                }],
            }
        }
        "REFRESH" => {
            c.eat_all(&["MATERIALIZED", "VIEW"]);
            let concurrently = c.eat("CONCURRENTLY");
            vec![Op::RefreshMaterializedView {
                name: c.name().unwrap_or_default(),
                concurrently,
            }]
        }
        "DO" => vec![Op::Opaque],
        "COMMENT" | "GRANT" | "REVOKE" | "SECURITY" | "IMPORT" => vec![Op::Brief {
            table: None,
            lock: Lock::ShareUpdateExclusive,
        }],
        _ => Vec::new(),
    }
}

fn alter(mut c: Cursor) -> Vec<Op> {
    if c.eat("TYPE") {
        return vec![alter_type(c)];
    }
    if c.eat("DOMAIN") {
        return vec![alter_domain(c)];
    }
    if c.eat("INDEX") {
        return vec![alter_index(c)];
    }
    // TYPE and DOMAIN were read above.
    if let Some(kind) = object_kind(&mut c) {
        return vec![alter_other(kind, c)];
    }
    if !c.eat("TABLE") {
        return if is_known_object(&c) {
            vec![brief(None)]
        } else {
            vec![Op::Unrecognized {
                alter_table: false,
                table: None,
            }]
        };
    }
    if c.eat_all(&["ALL", "IN", "TABLESPACE"]) {
        return vec![Op::SetTablespace {
            table: format!("every table in tablespace {}", c.name().unwrap_or_default()),
        }];
    }
    c.eat_all(&["IF", "EXISTS"]);
    c.eat("ONLY");
    let Some(table) = c.name() else {
        return vec![unrecognized_alter(None)];
    };
    if matches!(c.peek(), Some(Token::Mul)) {
        c.next();
    }
    if c.eat("RENAME") {
        if c.eat("TO") {
            let to = c.name().unwrap_or_default();
            return vec![Op::RenameTable { table, to }];
        }
        if c.eat("CONSTRAINT") {
            let from = c.name().unwrap_or_default();
            c.eat("TO");
            return vec![Op::RenameObject {
                kind: "constraint".into(),
                name: format!("{from} on {table}"),
                to: c.name().unwrap_or_default(),
            }];
        }
        c.eat("COLUMN");
        let from = c.name().unwrap_or_default();
        c.eat("TO");
        let to = c.name().unwrap_or_default();
        return vec![Op::RenameColumn { table, from, to }];
    }
    if c.eat_all(&["SET", "SCHEMA"]) {
        let schema = c.name().unwrap_or_default();
        let bare = table.rsplit('.').next().unwrap_or(&table).to_owned();
        return vec![Op::RenameTable {
            to: format!("{schema}.{bare}"),
            table,
        }];
    }
    c.split_commas()
        .into_iter()
        .map(|sub| subcommand(&table, sub))
        .collect()
}

fn subcommand(table: &str, mut c: Cursor) -> Op {
    let table = table.to_owned();
    if c.eat("ADD") {
        if c.is_kw("CONSTRAINT")
            || ["CHECK", "UNIQUE", "PRIMARY", "FOREIGN", "EXCLUDE"]
                .iter()
                .any(|k| c.is_kw(k))
        {
            return add_constraint(table, c);
        }
        c.eat("COLUMN");
        c.eat_all(&["IF", "NOT", "EXISTS"]);
        return add_column(table, c);
    }
    if c.eat("ALTER") {
        if c.is_kw("CONSTRAINT") {
            return brief(Some(table));
        }
        c.eat("COLUMN");
        let column = c.name().unwrap_or_default();
        return alter_column(table, column, c);
    }
    if c.eat("DROP") {
        if c.eat("CONSTRAINT") {
            return brief(Some(table));
        }
        c.eat("COLUMN");
        c.eat_all(&["IF", "EXISTS"]);
        return Op::DropColumn {
            table,
            columns: c.name().into_iter().collect(),
        };
    }
    if c.eat_all(&["VALIDATE", "CONSTRAINT"]) {
        return Op::ValidateConstraint {
            name: c.name().unwrap_or_default(),
            table,
        };
    }
    if c.eat_all(&["ATTACH", "PARTITION"]) {
        return Op::AttachPartition {
            partition: c.name().unwrap_or_default(),
            table,
        };
    }
    if c.eat_all(&["DETACH", "PARTITION"]) {
        let partition = c.name().unwrap_or_default();
        return Op::DetachPartition {
            table,
            partition,
            concurrently: c.is_kw("CONCURRENTLY") || c.is_kw("FINALIZE"),
        };
    }
    if c.eat("SET") {
        if c.is_kw("TABLESPACE") {
            return Op::SetTablespace { table };
        }
        if c.is_kw("LOGGED") || c.is_kw("UNLOGGED") {
            return Op::SetLogged { table };
        }
        if c.eat_all(&["ACCESS", "METHOD"]) {
            return Op::SetAccessMethod {
                table,
                method: c.name().unwrap_or_default().to_ascii_lowercase(),
            };
        }
        // Storage parameters, WITHOUT CLUSTER, WITHOUT OIDS, SCHEMA: catalog.
        return brief(Some(table));
    }
    let brief_forms = [
        "ENABLE", "DISABLE", "FORCE", "NO", "INHERIT", "REPLICA", "OWNER", "CLUSTER", "RESET",
        "OF", "NOT",
    ];
    if brief_forms.iter().any(|k| c.is_kw(k)) {
        let lock = if c.is_kw("ENABLE") || c.is_kw("DISABLE") {
            Lock::ShareRowExclusive
        } else {
            Lock::AccessExclusive
        };
        return Op::Brief {
            table: Some(table),
            lock,
        };
    }
    unrecognized_alter(Some(table))
}

fn add_column(table: String, mut c: Cursor) -> Op {
    let column = c.name().unwrap_or_default();
    let stops = [
        "DEFAULT",
        "NOT",
        "NULL",
        "CONSTRAINT",
        "PRIMARY",
        "UNIQUE",
        "CHECK",
        "REFERENCES",
        "GENERATED",
        "COLLATE",
    ];
    let ty = SqlType::parse(&c.text_until(&stops));
    let mut a = AddColumn {
        table,
        column,
        ty,
        default: None,
        not_null: false,
        identity: false,
        generated_stored: false,
        constraints: Vec::new(),
    };
    while !c.at_end() {
        if c.eat("DEFAULT") {
            a.default = Some(volatility(&c.text_until(&stops)));
        } else if c.eat_all(&["NOT", "NULL"]) {
            a.not_null = true;
        } else if c.eat("GENERATED") {
            let rest = c.text_until(&stops[..9]);
            if rest.to_ascii_uppercase().contains("IDENTITY") {
                a.identity = true;
            } else if rest.to_ascii_uppercase().contains("STORED") {
                a.generated_stored = true;
            }
        } else if c.eat("PRIMARY") {
            a.constraints
                .push(ConstraintKind::PrimaryKey { using_index: false });
        } else if c.eat("UNIQUE") {
            a.constraints
                .push(ConstraintKind::Unique { using_index: false });
        } else if c.eat("CHECK") {
            a.constraints.push(ConstraintKind::Check);
        } else if c.eat("REFERENCES") {
            a.constraints.push(ConstraintKind::ForeignKey {
                references: c.name().unwrap_or_default(),
            });
        } else {
            c.next();
        }
    }
    Op::AddColumn(a)
}

fn add_constraint(table: String, mut c: Cursor) -> Op {
    let name = if c.eat("CONSTRAINT") { c.name() } else { None };
    let not_valid = c.has_kw_ahead("VALID") && {
        let text = c.rest_text().to_ascii_uppercase();
        text.contains("NOT VALID")
    };
    let using_index = c.rest_text().to_ascii_uppercase().contains("USING INDEX");
    let kind = if c.eat("CHECK") {
        ConstraintKind::Check
    } else if c.eat("UNIQUE") {
        ConstraintKind::Unique { using_index }
    } else if c.eat_all(&["PRIMARY", "KEY"]) {
        if c.eat_all(&["USING", "INDEX"]) {
            ConstraintKind::PrimaryKeyOfIndex {
                index: c.name().unwrap_or_default(),
            }
        } else {
            ConstraintKind::PrimaryKey { using_index }
        }
    } else if c.eat_all(&["FOREIGN", "KEY"]) {
        c.group();
        c.eat("REFERENCES");
        ConstraintKind::ForeignKey {
            references: c.name().unwrap_or_default(),
        }
    } else if c.eat("EXCLUDE") {
        ConstraintKind::Exclude
    } else if c.eat_all(&["NOT", "NULL"]) {
        ConstraintKind::NotNull
    } else {
        return unrecognized_alter(Some(table));
    };
    Op::AddConstraint {
        table,
        name,
        kind,
        not_valid,
    }
}

fn alter_column(table: String, column: String, mut c: Cursor) -> Op {
    if c.eat_all(&["SET", "NOT", "NULL"]) {
        return Op::SetNotNull { table, column };
    }
    if c.eat_all(&["SET", "DATA", "TYPE"]) || c.eat("TYPE") {
        let to = SqlType::parse(&c.text_until(&["COLLATE", "USING"]));
        let collate = if c.eat("COLLATE") { c.name() } else { None };
        let using = c.has_kw_ahead("USING");
        return Op::AlterType {
            table,
            column,
            to,
            using,
            collate,
        };
    }
    if c.eat_all(&["DROP", "DEFAULT"]) {
        return Op::DropDefault { table, column };
    }
    if c.eat_all(&["DROP", "IDENTITY"]) {
        return Op::DropIdentity { table, column };
    }
    if c.eat_all(&["ADD", "GENERATED", "ALWAYS"]) || c.eat_all(&["SET", "GENERATED", "ALWAYS"]) {
        return Op::IdentityAlways { table, column };
    }
    if c.eat_all(&["DROP", "EXPRESSION"]) {
        // The stored values stay: the column just stops being computed.
        return brief(Some(table));
    }
    if c.eat_all(&["SET", "STATISTICS"]) {
        return Op::Brief {
            table: Some(table),
            lock: Lock::ShareUpdateExclusive,
        };
    }
    let known = [
        ["DROP", "NOT"],
        ["SET", "DEFAULT"],
        ["DROP", "DEFAULT"],
        ["SET", "STORAGE"],
        ["SET", "COMPRESSION"],
        ["DROP", "IDENTITY"],
        ["ADD", "GENERATED"],
        ["RESET", "("],
        ["SET", "("],
        ["SET", "GENERATED"],
        ["RESTART", ""],
        // An identity's sequence options.
        ["SET", "INCREMENT"],
        ["SET", "START"],
        ["SET", "CYCLE"],
        ["SET", "NO"],
        ["SET", "MINVALUE"],
        ["SET", "MAXVALUE"],
        ["SET", "CACHE"],
    ];
    if known.iter().any(|[a, b]| {
        c.is_kw(a)
            && (b.is_empty()
                || c.kw_at(1, b)
                || (*b == "(" && matches!(c.peek_at(1), Some(Token::LParen))))
    }) {
        return brief(Some(table));
    }
    unrecognized_alter(Some(table))
}

fn create(mut c: Cursor) -> Vec<Op> {
    let or_replace = c.eat_all(&["OR", "REPLACE"]);
    let unique = c.eat("UNIQUE");
    if c.eat("INDEX") {
        let concurrently = c.eat("CONCURRENTLY");
        let if_not_exists = c.eat_all(&["IF", "NOT", "EXISTS"]);
        let name = if c.is_kw("ON") { None } else { c.name() };
        c.eat("ON");
        c.eat("ONLY");
        return vec![Op::CreateIndex {
            table: c.name().unwrap_or_default(),
            name,
            concurrently,
            unique,
            if_not_exists,
        }];
    }
    let mut temporary = false;
    for k in ["GLOBAL", "LOCAL", "TEMPORARY", "TEMP", "UNLOGGED"] {
        temporary |= c.eat(k) && k.starts_with("TEMP");
    }
    if c.eat("TABLE") {
        let if_not_exists = c.eat_all(&["IF", "NOT", "EXISTS"]);
        let table = c.name().unwrap_or_default();
        let mut ops = vec![Op::CreateTable {
            table: table.clone(),
            temporary,
            if_not_exists,
            columns: Vec::new(),
        }];
        if c.eat_all(&["PARTITION", "OF"]) {
            ops.push(Op::CreatePartition {
                table,
                parent: c.name().unwrap_or_default(),
            });
        }
        return ops;
    }
    if let Some(kind) = created_kind(&mut c) {
        let may_exist = c.eat_all(&["IF", "NOT", "EXISTS"]) || or_replace;
        return vec![Op::CreateObject {
            kind: kind.to_owned(),
            name: c.name().unwrap_or_default(),
            temporary,
            may_exist,
        }];
    }
    if c.eat("TRIGGER") || c.eat_all(&["CONSTRAINT", "TRIGGER"]) {
        c.text_until(&["ON"]);
        c.eat("ON");
        return vec![Op::Brief {
            table: c.name(),
            lock: Lock::ShareRowExclusive,
        }];
    }
    if is_known_object(&c) {
        return vec![brief(None)];
    }
    vec![Op::Unrecognized {
        alter_table: false,
        table: None,
    }]
}

fn drop(mut c: Cursor) -> Vec<Op> {
    if c.eat("TABLE") {
        c.eat_all(&["IF", "EXISTS"]);
        return vec![Op::DropTable {
            tables: c.name_list(),
        }];
    }
    if c.eat("INDEX") {
        let concurrently = c.eat("CONCURRENTLY");
        c.eat_all(&["IF", "EXISTS"]);
        return vec![Op::DropIndex {
            names: c.name_list(),
            concurrently,
        }];
    }
    if let Some(kind) = object_kind(&mut c).map(str::to_owned) {
        c.eat_all(&["IF", "EXISTS"]);
        let mut names = Vec::new();
        while let Some(n) = c.name() {
            names.push(n);
            // A function's argument list.
            c.group();
            if !matches!(c.peek(), Some(Token::Comma)) {
                break;
            }
            c.next();
        }
        let cascade = c.has_kw_ahead("CASCADE");
        return vec![Op::DropObject {
            kind,
            names,
            cascade,
        }];
    }
    if is_known_object(&c) {
        return vec![brief(None)];
    }
    vec![Op::Unrecognized {
        alter_table: false,
        table: None,
    }]
}

fn vacuum(mut c: Cursor) -> Op {
    let mut full = false;
    if let Some(opts) = c.group() {
        // `(FULL)`, `(FULL true)`, `(FULL, ANALYZE)`; `FULL false` is off.
        let mut it = opts.iter().peekable();
        while let Some(t) = it.next() {
            if matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case("FULL")) {
                full = !matches!(it.peek(), Some(Token::Word(w)) if ["false", "off", "0"].iter().any(|f| w.value.eq_ignore_ascii_case(f)))
                    && !matches!(it.peek(), Some(Token::Number(n, _)) if n == "0");
            }
        }
    } else {
        full = c.eat("FULL");
        for k in ["FREEZE", "VERBOSE", "ANALYZE", "ANALYSE"] {
            c.eat(k);
        }
    }
    Op::Vacuum {
        full,
        tables: c.name_list(),
    }
}

fn lock(mut c: Cursor) -> Op {
    c.eat("TABLE");
    let tables = c.name_list();
    let mut mode = Lock::AccessExclusive;
    if c.eat("IN") {
        let words = c.text_until(&["MODE"]).to_ascii_uppercase();
        if let Some(m) = Lock::ALL.iter().find(|m| m.sql_name() == words.trim()) {
            mode = *m;
        }
    }
    Op::LockTable { tables, mode }
}

pub(super) fn brief(table: Option<String>) -> Op {
    Op::Brief {
        table,
        lock: Lock::AccessExclusive,
    }
}

fn unrecognized_alter(table: Option<String>) -> Op {
    Op::Unrecognized {
        alter_table: true,
        table,
    }
}

/// Object kinds after CREATE/ALTER/DROP that are not tables: schema
/// changes that hold no lock an application's queries wait for.
/// The objects a session may create and later change as its own, by the
/// keywords after CREATE [TEMP].
fn created_kind(c: &mut Cursor) -> Option<&'static str> {
    const KINDS: &[(&[&str], &str)] = &[
        (&["MATERIALIZED", "VIEW"], "materialized view"),
        (&["RECURSIVE", "VIEW"], "view"),
        (&["VIEW"], "view"),
        (&["SEQUENCE"], "sequence"),
        (&["TYPE"], "type"),
        (&["DOMAIN"], "domain"),
    ];
    KINDS.iter().find(|(kw, _)| c.eat_all(kw)).map(|(_, k)| *k)
}

fn is_known_object(c: &Cursor) -> bool {
    const KINDS: &[&str] = &[
        "FUNCTION",
        "PROCEDURE",
        "ROUTINE",
        "VIEW",
        "MATERIALIZED",
        "RECURSIVE",
        "SEQUENCE",
        "SCHEMA",
        "EXTENSION",
        "TYPE",
        "DOMAIN",
        "ROLE",
        "USER",
        "GROUP",
        "POLICY",
        "TRIGGER",
        "RULE",
        "AGGREGATE",
        "OPERATOR",
        "COLLATION",
        "CONVERSION",
        "TEXT",
        "PUBLICATION",
        "SUBSCRIPTION",
        "STATISTICS",
        "SERVER",
        "FOREIGN",
        "DATABASE",
        "TABLESPACE",
        "EVENT",
        "LANGUAGE",
        "TRUSTED",
        "PROCEDURAL",
        "CAST",
        "ACCESS",
        "TRANSFORM",
        "DEFAULT",
        "INDEX",
        "SYSTEM",
        "LARGE",
        "OWNED",
        "TEMP",
        "TEMPORARY",
        "DEFAULT",
    ];
    KINDS.iter().any(|k| c.is_kw(k))
}
