//! The sqlparser front end: turns statements sqlparser parses into [`Op`]s.
//! `None` means "not confidently understood here"; the caller then reads the
//! statement from its tokens instead.

use sqlparser::ast::{
    AlterColumnOperation, AlterTable, AlterTableOperation, AlterTypeOperation, ColumnOption,
    GeneratedAs, GeneratedExpressionMode, LockTableMode, ObjectType, RenameTableNameKind,
    Statement, TableConstraint,
};

use super::expr::volatility;
use crate::ddl::op::{AddColumn, ConstraintKind, Op};
use crate::ddl::rule::Lock;
use crate::ddl::types::SqlType;

pub fn read(stmt: &Statement) -> Option<Vec<Op>> {
    Some(match stmt {
        Statement::AlterTable(at) => return alter_table(at),
        Statement::CreateIndex(ci) => vec![Op::CreateIndex {
            table: ci.table_name.to_string(),
            name: ci.name.as_ref().map(ToString::to_string),
            concurrently: ci.concurrently,
            unique: ci.unique,
            if_not_exists: ci.if_not_exists,
        }],
        Statement::CreateTable(ct) => {
            let mut ops = vec![Op::CreateTable {
                table: ct.name.to_string(),
                temporary: ct.temporary,
                if_not_exists: ct.if_not_exists,
                columns: ct
                    .columns
                    .iter()
                    .map(|c| (c.name.to_string(), SqlType::parse(&c.data_type.to_string())))
                    .collect(),
            }];
            if let Some(parent) = &ct.partition_of {
                ops.push(Op::CreatePartition {
                    table: ct.name.to_string(),
                    parent: parent.to_string(),
                });
            }
            ops
        }
        Statement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => vec![Op::DropTable {
            tables: names.iter().map(ToString::to_string).collect(),
        }],
        Statement::Drop {
            object_type: ObjectType::Index,
            names,
            ..
        } => vec![Op::DropIndex {
            names: names.iter().map(ToString::to_string).collect(),
            concurrently: false,
        }],
        Statement::Truncate(t) => vec![Op::Truncate {
            tables: t.table_names.iter().map(|t| t.name.to_string()).collect(),
        }],
        Statement::Lock(l) => vec![Op::LockTable {
            tables: l.tables.iter().map(|t| t.name.to_string()).collect(),
            mode: l
                .lock_mode
                .as_ref()
                .map_or(Lock::AccessExclusive, lock_mode),
        }],
        Statement::AlterType(at) => match &at.operation {
            AlterTypeOperation::AddValue(_) => vec![Op::EnumAddValue {
                type_name: at.name.to_string(),
            }],
            // Renames and the rest: the token front end.
            _ => return None,
        },
        _ => return None,
    })
}

fn lock_mode(m: &LockTableMode) -> Lock {
    match m {
        LockTableMode::AccessShare => Lock::AccessShare,
        LockTableMode::RowShare => Lock::RowShare,
        LockTableMode::RowExclusive => Lock::RowExclusive,
        LockTableMode::ShareUpdateExclusive => Lock::ShareUpdateExclusive,
        LockTableMode::Share => Lock::Share,
        LockTableMode::ShareRowExclusive => Lock::ShareRowExclusive,
        LockTableMode::Exclusive => Lock::Exclusive,
        LockTableMode::AccessExclusive => Lock::AccessExclusive,
    }
}

fn alter_table(at: &AlterTable) -> Option<Vec<Op>> {
    if at.table_type.is_some() {
        return None;
    }
    let table = at.name.to_string();
    at.operations
        .iter()
        .map(|op| operation(&table, op))
        .collect()
}

fn operation(table: &str, op: &AlterTableOperation) -> Option<Op> {
    let table = table.to_owned();
    let brief = |lock| Op::Brief {
        table: Some(table.clone()),
        lock,
    };
    Some(match op {
        AlterTableOperation::AddColumn { column_def, .. } => {
            let mut a = AddColumn {
                table: table.clone(),
                column: column_def.name.to_string(),
                ty: SqlType::parse(&column_def.data_type.to_string()),
                default: None,
                not_null: false,
                identity: false,
                generated_stored: false,
                constraints: Vec::new(),
            };
            for o in &column_def.options {
                match &o.option {
                    ColumnOption::Default(e) => a.default = Some(volatility(&e.to_string())),
                    ColumnOption::NotNull => a.not_null = true,
                    ColumnOption::Null => {}
                    ColumnOption::Generated {
                        generated_as,
                        generation_expr,
                        generation_expr_mode,
                        ..
                    } => match (generation_expr, generation_expr_mode, generated_as) {
                        (Some(_), Some(GeneratedExpressionMode::Stored), _)
                        | (Some(_), _, GeneratedAs::ExpStored) => a.generated_stored = true,
                        (Some(_), _, _) => {}
                        (None, _, _) => a.identity = true,
                    },
                    ColumnOption::Identity(_) => a.identity = true,
                    ColumnOption::PrimaryKey(_) => a
                        .constraints
                        .push(ConstraintKind::PrimaryKey { using_index: false }),
                    ColumnOption::Unique(_) => a
                        .constraints
                        .push(ConstraintKind::Unique { using_index: false }),
                    ColumnOption::Check(_) => a.constraints.push(ConstraintKind::Check),
                    ColumnOption::ForeignKey(fk) => {
                        a.constraints.push(ConstraintKind::ForeignKey {
                            references: fk.foreign_table.to_string(),
                        })
                    }
                    ColumnOption::Collation(_) | ColumnOption::Comment(_) => {}
                    _ => return None,
                }
            }
            Op::AddColumn(a)
        }
        AlterTableOperation::AddConstraint {
            constraint,
            not_valid,
        } => {
            let (name, kind) = match constraint {
                TableConstraint::Check(c) => (c.name.as_ref(), ConstraintKind::Check),
                TableConstraint::ForeignKey(c) => (
                    c.name.as_ref(),
                    ConstraintKind::ForeignKey {
                        references: c.foreign_table.to_string(),
                    },
                ),
                TableConstraint::Unique(c) => (
                    c.name.as_ref(),
                    ConstraintKind::Unique { using_index: false },
                ),
                TableConstraint::PrimaryKey(c) => (
                    c.name.as_ref(),
                    ConstraintKind::PrimaryKey { using_index: false },
                ),
                TableConstraint::UniqueUsingIndex(c) => (
                    c.name.as_ref(),
                    ConstraintKind::Unique { using_index: true },
                ),
                TableConstraint::PrimaryKeyUsingIndex(c) => (
                    c.name.as_ref(),
                    ConstraintKind::PrimaryKeyOfIndex {
                        index: c.index_name.to_string(),
                    },
                ),
                TableConstraint::Exclude(c) => (c.name.as_ref(), ConstraintKind::Exclude),
                _ => return None,
            };
            Op::AddConstraint {
                table,
                name: name.map(ToString::to_string),
                kind,
                not_valid: *not_valid,
            }
        }
        AlterTableOperation::ValidateConstraint { name } => Op::ValidateConstraint {
            table,
            name: name.to_string(),
        },
        AlterTableOperation::AlterColumn { column_name, op } => {
            let column = column_name.to_string();
            match op {
                AlterColumnOperation::SetNotNull => Op::SetNotNull { table, column },
                AlterColumnOperation::DropDefault => Op::DropDefault { table, column },
                AlterColumnOperation::DropNotNull | AlterColumnOperation::SetDefault { .. } => {
                    brief(Lock::AccessExclusive)
                }
                // Types with COLLATE and USING, identities: the token front
                // end reads them as written.
                AlterColumnOperation::SetDataType { .. }
                | AlterColumnOperation::AddGenerated { .. } => return None,
            }
        }
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => Op::RenameColumn {
            table,
            from: old_column_name.to_string(),
            to: new_column_name.to_string(),
        },
        AlterTableOperation::RenameTable { table_name } => Op::RenameTable {
            table,
            to: match table_name {
                RenameTableNameKind::As(n) | RenameTableNameKind::To(n) => n.to_string(),
            },
        },
        AlterTableOperation::DropColumn { column_names, .. } => Op::DropColumn {
            table,
            columns: column_names.iter().map(ToString::to_string).collect(),
        },
        AlterTableOperation::RenameConstraint { old_name, new_name } => Op::RenameObject {
            kind: "constraint".into(),
            name: format!("{old_name} on {table}"),
            to: new_name.to_string(),
        },
        AlterTableOperation::DropConstraint { .. }
        | AlterTableOperation::OwnerTo { .. }
        | AlterTableOperation::ReplicaIdentity { .. }
        | AlterTableOperation::EnableRowLevelSecurity
        | AlterTableOperation::DisableRowLevelSecurity
        | AlterTableOperation::ForceRowLevelSecurity
        | AlterTableOperation::NoForceRowLevelSecurity
        | AlterTableOperation::SetOptionsParens { .. } => brief(Lock::AccessExclusive),
        AlterTableOperation::EnableTrigger { .. }
        | AlterTableOperation::DisableTrigger { .. }
        | AlterTableOperation::EnableAlwaysTrigger { .. }
        | AlterTableOperation::EnableReplicaTrigger { .. } => brief(Lock::ShareRowExclusive),
        AlterTableOperation::SetLogged | AlterTableOperation::SetUnlogged => {
            Op::SetLogged { table }
        }
        _ => return None,
    })
}
