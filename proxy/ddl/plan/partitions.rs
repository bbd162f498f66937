//! ATTACH PARTITION without its scan: a CHECK that states the partition's
//! bound is added NOT VALID and validated (SHARE UPDATE EXCLUSIVE on the
//! partition), so PostgreSQL proves the bound from it instead of reading
//! the partition under ACCESS EXCLUSIVE; the CHECK is dropped after. Single
//! key columns, RANGE and LIST bounds; the parent's key comes from the
//! catalog, and a parent with a DEFAULT partition gets no plan (that
//! partition would still be scanned).

use super::alter::Alter;
use super::build::step;
use super::names::object_name;
use super::source::{bare, is_ident, Toks};
use super::{Step, StepKind};
use crate::ddl::op::{fold_name, quote_ident};
use crate::ddl::rule::Lock;
use crate::ddl::Catalog;

/// `ATTACH PARTITION part FOR VALUES ...`, from the partition's name at
/// token `i` to `b`.
pub(super) fn attach(
    t: &Toks<'_>,
    alter: &Alter<'_>,
    i: usize,
    b: usize,
    catalog: &Catalog,
) -> Option<Vec<Step>> {
    let parent = fold_name(alter.table);
    if catalog.default_partitions.get(&parent) != Some(&None) {
        return None;
    }
    let key = single_key(catalog.partition_keys.get(&parent)?)?;
    let name_end = t.name_end(i)?;
    let part = t.text(i, name_end);
    let bound = t.eat(name_end, &["FOR", "VALUES"])?;
    let check = bound_check(t, &key, bound, b)?;
    let name = quote_ident(&object_name(&bare(part), Some("bound"), "check"));
    Some(vec![
        step(
            StepKind::Brief,
            format!("ALTER TABLE {part} ADD CONSTRAINT {name} CHECK ({check}) NOT VALID"),
            Lock::AccessExclusive,
            Some(name.clone()),
            "state the partition's bound as a check, for new rows only (brief lock)",
        ),
        step(
            StepKind::Validate,
            format!("ALTER TABLE {part} VALIDATE CONSTRAINT {name}"),
            Lock::ShareUpdateExclusive,
            Some(name.clone()),
            "prove the existing rows fit the bound without blocking reads or writes",
        ),
        step(
            StepKind::Brief,
            format!("{} {}", alter.head, t.text(i - 2, b)),
            Lock::ShareUpdateExclusive,
            None,
            "attach: the validated check proves the bound, so the partition is not scanned",
        ),
        step(
            StepKind::Brief,
            format!("ALTER TABLE {part} DROP CONSTRAINT {name}"),
            Lock::AccessExclusive,
            Some(name),
            "drop the check, now redundant",
        ),
    ])
}

/// The one column of a `RANGE (k)` or `LIST (k)` key, quoted for SQL;
/// `None` for hash keys, expressions and several columns.
fn single_key(keydef: &str) -> Option<String> {
    let t = Toks::new(keydef);
    if !(t.is(0, "RANGE") || t.is(0, "LIST")) || t.tok(1) != "(" || t.tok(3) != ")" || t.len() != 4
    {
        return None;
    }
    let col = t.tok(2);
    is_ident(col).then(|| col.to_owned())
}

/// The CHECK expression a bound (tokens `i..b`, after FOR VALUES) states.
fn bound_check(t: &Toks<'_>, key: &str, i: usize, b: usize) -> Option<String> {
    if t.eat(i, &["FROM"]).is_some() {
        let from_end = t.close_paren(i + 1)?;
        if !t.is(from_end, "TO") {
            return None;
        }
        let to_end = t.close_paren(from_end + 1)?;
        if to_end != b {
            return None;
        }
        let lower = single(t, i + 1, from_end)?;
        let upper = single(t, from_end + 1, to_end)?;
        let mut parts = vec![format!("{key} IS NOT NULL")];
        if !lower.eq_ignore_ascii_case("MINVALUE") {
            parts.push(format!("{key} >= {lower}"));
        }
        if !upper.eq_ignore_ascii_case("MAXVALUE") {
            parts.push(format!("{key} < {upper}"));
        }
        return Some(parts.join(" AND "));
    }
    if t.is(i, "IN") {
        let end = t.close_paren(i + 1)?;
        if end != b {
            return None;
        }
        let values: Vec<&str> = t
            .split_commas(i + 2, end - 1)
            .into_iter()
            .map(|(a, z)| t.text(a, z))
            .collect();
        let (nulls, others): (Vec<&str>, Vec<&str>) = values
            .into_iter()
            .partition(|v| v.eq_ignore_ascii_case("NULL"));
        let list = format!("{key} IN ({})", others.join(", "));
        return Some(match (nulls.is_empty(), others.is_empty()) {
            (true, _) => format!("{key} IS NOT NULL AND {list}"),
            (false, true) => format!("{key} IS NULL"),
            (false, false) => format!("({key} IS NULL OR {list})"),
        });
    }
    None
}

/// The one value of a parenthesized bound `(v)` spanning tokens `a..z`.
fn single(t: &Toks<'_>, a: usize, z: usize) -> Option<String> {
    let parts = t.split_commas(a + 1, z - 1);
    match parts.as_slice() {
        [(x, y)] => Some(t.text(*x, *y).to_owned()),
        _ => None,
    }
}
