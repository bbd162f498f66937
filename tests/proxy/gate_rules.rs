//! Every rule's example statements through a running ddlgate, over the
//! simple protocol (as psql and node-pg send them) and the extended one (as
//! tokio-postgres, psycopg 3, JDBC send them): each is blocked, sent back
//! for rewrite, or warned about as its rule's default decision says.

use ddlgate::ddl::Decision;

use crate::examples::{EXAMPLES, SETUP};
use crate::gate::connect_with_notices;
use crate::harness::{direct, proxy, sqlstate};

#[tokio::test]
async fn every_rule_through_the_proxy_over_both_protocols() {
    direct("postgres").await.batch_execute(SETUP).await.unwrap();
    let (c, notices) = connect_with_notices(proxy()).await;
    c.batch_execute("SET search_path = lt").await.unwrap();
    let mut failures = Vec::new();
    let admin = direct("postgres").await;
    for (rule, before, sql, table) in EXAMPLES {
        // An empty table is exempt from the rules whose harm grows with
        // size (the gate reads sizes from the catalog): p2 and e are empty.
        let sized = match *sql {
            s if s.contains("ATTACH PARTITION p2") => "p2",
            _ => table,
        };
        let empty: i64 = admin
            .query_one(&format!("SELECT pg_relation_size('lt.{sized}')"), &[])
            .await
            .unwrap()
            .get(0);
        for extended in [false, true] {
            c.batch_execute("BEGIN").await.unwrap();
            if !before.is_empty() {
                c.batch_execute(before).await.unwrap();
            }
            notices.lock().unwrap().clear();
            let result = if extended {
                c.execute(*sql, &[]).await.map(|_| ())
            } else {
                c.batch_execute(sql).await
            };
            let how = if extended { "extended" } else { "simple" };
            let expected = if empty == 0 && rule.size_bound() {
                Decision::Allow
            } else {
                rule.default_decision()
            };
            match (&result, expected) {
                (Err(e), Decision::Block | Decision::Rewrite) => {
                    let code = if expected == Decision::Block {
                        "ZD001"
                    } else {
                        "ZD002"
                    };
                    let named = e
                        .as_db_error()
                        .is_some_and(|d| d.message().contains(rule.id()));
                    if sqlstate(e) != code || !named {
                        failures.push(format!(
                            "{how} {sql}: expected {code} naming {rule}, got {e}"
                        ));
                    }
                    let hint = e.as_db_error().and_then(|d| d.hint()).unwrap_or("");
                    if let Some(line) = placeholder(hint) {
                        failures.push(format!("{how} {sql}: hint has a placeholder: {line}"));
                    }
                }
                (Ok(()), Decision::Warn) => {
                    let got = notices.lock().unwrap().clone();
                    if !got.iter().any(|n| n.contains(rule.id())) {
                        failures.push(format!("{how} {sql}: no warning naming {rule}: {got:?}"));
                    }
                }
                (Ok(()), Decision::Allow) => {}
                (r, d) => failures.push(format!("{how} {sql}: expected {d:?}, got {r:?}")),
            }
            c.batch_execute("ROLLBACK").await.unwrap();
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A line of a hint's SQL (not its comments) that holds a placeholder
/// (`<name>`, `(...)`): a hint must run as printed.
fn placeholder(hint: &str) -> Option<&str> {
    hint.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .find(|l| {
            l.contains("...")
                || l.match_indices('<').any(|(i, _)| {
                    let rest = &l[i + 1..];
                    rest.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && rest.find('>').is_some_and(|j| {
                            rest[..j]
                                .chars()
                                .all(|c| c.is_ascii_lowercase() || " '_".contains(c))
                        })
                })
        })
}
