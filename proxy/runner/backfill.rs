//! The backfill engine: a plan's `UPDATE table SET … WHERE filter` over the
//! existing rows, as short batches, each its own transaction run as the
//! submitter, committed together with the position it reached.
//!
//! Batches walk a unique NOT NULL key (the primary key first) in keyset
//! order up to the largest key that existed when the backfill started, so
//! rows inserted meanwhile (which get their value from the default or the
//! trigger) cannot make it run forever. A table without such a key is
//! walked by page ranges (ctid), in passes until one changes nothing: a
//! row the application moved to a page already done is found by the next
//! pass. A crash resumes at the next batch; the filter makes a batch done
//! twice harmless. No statement takes a lock stronger than ROW EXCLUSIVE,
//! and no transaction outlives its batch.

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::sandbox::{self, Sandbox};
use super::RunnerError;
use crate::ddl::plan::Backfill;

/// How far a backfill got: stored with every batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The table's oid, resolved once as the submitter.
    pub oid: i64,
    pub walk: Walk,
    /// Rows changed so far.
    pub rows: i64,
    pub batches: i64,
    /// Rows the walk covers in all (an estimate for page walks).
    pub total: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Walk {
    /// Keyset order on a unique NOT NULL key: its columns (quoted) and
    /// types, the largest key at the start, the last key done (all as
    /// text). No `upper`: the table was empty.
    Key {
        columns: Vec<String>,
        types: Vec<String>,
        upper: Option<Vec<String>>,
        last: Option<Vec<String>>,
    },
    /// Page ranges: the pass's last page, the next page to do, and rows
    /// changed in this pass.
    Pages {
        last_page: i64,
        next: i64,
        pass: i32,
        pass_rows: i64,
    },
}

impl Position {
    /// For SHOW MIGRATION and the logs: how far, in rows.
    pub fn describe(&self) -> String {
        let pct = if self.total > 0 {
            format!(
                " ({:.0}%)",
                (self.covered() as f64 / self.total as f64 * 100.0).min(100.0)
            )
        } else {
            String::new()
        };
        match &self.walk {
            Walk::Key { .. } => format!("{} rows changed{pct}", self.rows),
            Walk::Pages {
                next,
                last_page,
                pass,
                ..
            } => format!(
                "{} rows changed, pass {pass}, page {next} of {last_page}{pct}",
                self.rows
            ),
        }
    }

    fn covered(&self) -> i64 {
        match &self.walk {
            Walk::Pages {
                next, last_page, ..
            } => {
                if *last_page <= 0 {
                    self.total
                } else {
                    self.total * next / (last_page + 1)
                }
            }
            Walk::Key { .. } => self.rows,
        }
    }
}

/// The first position: the key to walk (or pages), and where to stop.
/// Runs as the submitter: `table` is the OID its search_path (`path`)
/// resolved the table to; the table itself is read in the sandbox.
pub async fn start(
    sandbox: &Sandbox<'_>,
    table_oid: u32,
    b: &Backfill,
) -> Result<Position, RunnerError> {
    let db = sandbox.db;
    let table = &b.table;
    let row = db
        .query_one(
            "SELECT c.oid::pg_catalog.int8, c.relkind::pg_catalog.text, \
             GREATEST(c.reltuples, 0)::pg_catalog.int8 \
             FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.oid",
            &[&table_oid],
        )
        .await?;
    let (oid, relkind, estimate): (i64, String, i64) = (row.get(0), row.get(1), row.get(2));
    let key = db
        .query_opt(
            "SELECT (SELECT pg_catalog.array_agg(pg_catalog.quote_ident(a.attname::pg_catalog.text) ORDER BY k.n) \
                       FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY k(att, n) \
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.att \
                      WHERE k.n <= i.indnkeyatts), \
                    (SELECT pg_catalog.array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY k.n) \
                       FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY k(att, n) \
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.att \
                      WHERE k.n <= i.indnkeyatts) \
               FROM pg_catalog.pg_index i \
              WHERE i.indrelid = $1::pg_catalog.int8::pg_catalog.oid AND i.indisunique AND i.indisvalid \
                AND i.indpred IS NULL AND i.indexprs IS NULL \
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY k(att, n) \
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.att \
                      WHERE k.n <= i.indnkeyatts AND NOT a.attnotnull) \
              ORDER BY i.indisprimary DESC, i.indnkeyatts, i.indexrelid LIMIT 1",
            &[&oid],
        )
        .await?;
    if let Some(k) = key {
        let (columns, types): (Vec<String>, Vec<String>) = (k.get(0), k.get(1));
        // Aliased: an output column named like the key would make ORDER BY
        // sort the text.
        let texts: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c}::pg_catalog.text AS ddlgate_k{i}"))
            .collect();
        let desc: Vec<String> = columns.iter().map(|c| format!("{c} DESC")).collect();
        // Reads the table as the submitter: its policies, its key's
        // domain checks are its owner's code.
        let upper = sandbox
            .query(
                &format!(
                    "SELECT {} FROM {table} ORDER BY {} LIMIT 1",
                    texts.join(", "),
                    desc.join(", ")
                ),
                &key_columns(columns.len(), false),
            )
            .await?
            .into_iter()
            .next()
            .map(|r| (0..columns.len()).map(|i| r.get::<_, String>(i)).collect());
        return Ok(Position {
            oid,
            walk: Walk::Key {
                columns,
                types,
                upper,
                last: None,
            },
            rows: 0,
            batches: 0,
            total: estimate,
        });
    }
    if relkind != "r" && relkind != "m" {
        return Err(RunnerError::Server(super::model::Failure::new(
            "0A000",
            format!(
                "ddlgate: {table} has no primary key or unique NOT NULL key to backfill by, \
                 and a partitioned table cannot be walked by pages"
            ),
        )));
    }
    Ok(Position {
        oid,
        walk: Walk::Pages {
            last_page: page_count(db, oid).await?,
            next: 0,
            pass: 1,
            pass_rows: 0,
        },
        rows: 0,
        batches: 0,
        total: estimate,
    })
}

async fn page_count(db: &Client, oid: i64) -> Result<i64, RunnerError> {
    let row = db
        .query_one(
            "SELECT pg_catalog.pg_relation_size($1::pg_catalog.int8::pg_catalog.oid) \
             / pg_catalog.current_setting('block_size')::pg_catalog.int8",
            &[&oid],
        )
        .await?;
    Ok(row.get::<_, i64>(0))
}

/// The column definition list of a query returning `n` key columns as
/// text (and, with `count`, a bigint after them).
fn key_columns(n: usize, count: bool) -> String {
    let mut cols: Vec<String> = (0..n)
        .map(|i| format!("ddlgate_k{i} pg_catalog.text"))
        .collect();
    if count {
        cols.push("ddlgate_n pg_catalog.int8".into());
    }
    cols.join(", ")
}

/// `(lit::text::type, ...)`: a key's values as literals of its types. The
/// batches run in the sandbox (`runner::sandbox`), which takes no
/// parameters; the text of a key value is quoted, never interpreted.
fn key_literal(values: &[String], types: &[String]) -> String {
    let cast: Vec<String> = values
        .iter()
        .zip(types)
        .map(|(v, t)| format!("{}::pg_catalog.text::{t}", sandbox::literal(v)))
        .collect();
    format!("({})", cast.join(", "))
}

/// One batch's SQL.
pub enum Batch {
    /// Find the batch's last key (and the rows up to it), then update the
    /// key range up to it: both statements are index range scans.
    Key {
        find: String,
        /// The UPDATE up to `<=`, and what follows the bound it finds.
        update_head: String,
        update_tail: String,
        types: Vec<String>,
    },
    Pages {
        update: String,
        pages: i64,
    },
}

/// The next batch from `p`, `None` when the walk is over.
pub fn next_batch(b: &Backfill, p: &Position, rows: u64, rows_per_page: f64) -> Option<Batch> {
    let filter = b
        .filter
        .as_deref()
        .map(|f| format!(" AND ({f})"))
        .unwrap_or_default();
    match &p.walk {
        Walk::Key {
            columns,
            types,
            upper,
            last,
        } => {
            let upper = upper.as_ref()?;
            if last.as_ref() == Some(upper) {
                return None;
            }
            let cols = format!("({})", columns.join(", "));
            let n = columns.len();
            let from_cond = match last {
                Some(last) => format!("{cols} > {} AND ", key_literal(last, types)),
                None => String::new(),
            };
            let aliased: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c} AS ddlgate_k{i}"))
                .collect();
            let texts: Vec<String> = (0..n)
                .map(|i| format!("ddlgate_k{i}::pg_catalog.text"))
                .collect();
            let desc: Vec<String> = (0..n).map(|i| format!("ddlgate_k{i} DESC")).collect();
            let find = format!(
                "SELECT {texts}, pg_catalog.count(*) OVER () FROM (\
                   SELECT {aliased} FROM {table} WHERE {from_cond}{cols} <= {bound} \
                   ORDER BY {order} LIMIT {rows}) ddlgate_keys \
                 ORDER BY {desc} LIMIT 1",
                texts = texts.join(", "),
                aliased = aliased.join(", "),
                table = b.table,
                bound = key_literal(upper, types),
                order = columns.join(", "),
                desc = desc.join(", "),
            );
            Some(Batch::Key {
                find,
                update_head: format!(
                    "UPDATE {table} SET {set} WHERE {from_cond}{cols} <= ",
                    table = b.table,
                    set = b.set,
                ),
                update_tail: filter,
                types: types.clone(),
            })
        }
        Walk::Pages {
            last_page, next, ..
        } => {
            if next > last_page {
                return None;
            }
            let pages = ((rows as f64 / rows_per_page.max(1.0)).ceil() as i64).max(1);
            let update = format!(
                "UPDATE {table} SET {set} \
                 WHERE ctid >= '({next},0)'::pg_catalog.tid AND ctid < '({end},0)'::pg_catalog.tid{filter}",
                table = b.table,
                set = b.set,
                end = next + pages,
            );
            Some(Batch::Pages { update, pages })
        }
    }
}

/// What a batch did: rows changed, rows covered, and the last key.
pub struct BatchResult {
    pub changed: i64,
    pub covered: i64,
    pub last: Option<Vec<String>>,
}

/// Runs `batch` on `db` (inside the caller's transaction, as the
/// submitter, in its sandbox).
pub async fn run_batch(sandbox: &Sandbox<'_>, batch: &Batch) -> Result<BatchResult, RunnerError> {
    match batch {
        Batch::Key {
            find,
            update_head,
            update_tail,
            types,
        } => {
            let n = types.len();
            let rows = sandbox.query(find, &key_columns(n, true)).await?;
            let Some(row) = rows.into_iter().next() else {
                return Ok(BatchResult {
                    changed: 0,
                    covered: 0,
                    last: None,
                });
            };
            let hi: Vec<String> = (0..n).map(|i| row.get::<_, String>(i)).collect();
            let covered: i64 = row.get(n);
            let update = format!("{update_head}{}{update_tail}", key_literal(&hi, types));
            let changed = sandbox.exec(&update).await? as i64;
            Ok(BatchResult {
                changed,
                covered,
                last: Some(hi),
            })
        }
        Batch::Pages { update, .. } => {
            let changed = sandbox.exec(update).await? as i64;
            Ok(BatchResult {
                changed,
                covered: changed,
                last: None,
            })
        }
    }
}

/// The position after `batch` did `r`.
pub fn advance(p: &mut Position, batch: &Batch, r: &BatchResult) {
    p.rows += r.changed;
    p.batches += 1;
    match &mut p.walk {
        Walk::Key { last, upper, .. } => {
            // An empty batch means nothing is left below the bound.
            *last = if r.covered == 0 {
                upper.clone()
            } else {
                r.last.clone()
            };
        }
        Walk::Pages {
            next, pass_rows, ..
        } => {
            if let Batch::Pages { pages, .. } = batch {
                *next += pages;
            }
            *pass_rows += r.changed;
        }
    }
}

/// A page walk at its end: another pass if the last one changed anything
/// (bounded: a table rewritten faster than it is walked ends the step
/// with an error rather than running forever).
pub async fn next_pass(db: &Client, b: &Backfill, p: &mut Position) -> Result<bool, RunnerError> {
    const MAX_PASSES: i32 = 20;
    let Walk::Pages {
        last_page,
        next,
        pass,
        pass_rows,
    } = &mut p.walk
    else {
        return Ok(false);
    };
    if *next <= *last_page || *pass_rows == 0 {
        return Ok(false);
    }
    if *pass >= MAX_PASSES {
        return Err(RunnerError::Server(super::model::Failure::new(
            "55000",
            format!(
                "ddlgate: {} still had rows to backfill after {MAX_PASSES} passes",
                b.table
            ),
        )));
    }
    *last_page = page_count(db, p.oid).await?;
    *next = 0;
    *pass += 1;
    *pass_rows = 0;
    Ok(true)
}

/// Rows per page, for sizing page batches from the throttle's rows.
pub fn rows_per_page(p: &Position) -> f64 {
    match &p.walk {
        Walk::Pages { last_page, .. } if *last_page > 0 => {
            (p.total as f64 / (*last_page + 1) as f64).max(1.0)
        }
        _ => 100.0,
    }
}
