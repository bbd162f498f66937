//! Statement splitting against PostgreSQL's own scanner: the attack that
//! hid a DROP TABLE behind `standard_conforming_strings = off`, through a
//! running ddlgate; and a differential test over generated query strings,
//! where ddlgate's lexer must split exactly where the server does, under
//! both settings.
//!
//! The differential run's size: `DDLGATE_LEXER_DIFF` strings per setting
//! (default 300; `bench/fuzz.sh lexer` runs many more), seed
//! `DDLGATE_LEXER_SEED` (default 1).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::{Client, SimpleQueryMessage};

use ddlgate::ddl::lexer::{first_word, next_token, split, Lexical};

use crate::harness::{connect, direct, proxy, sqlstate};

/// A table with rows, made directly (not through the gate).
async fn victim(name: &str) {
    direct("postgres")
        .await
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int, note text); \
             INSERT INTO {name} SELECT g, 'x' FROM generate_series(1, 20) g;"
        ))
        .await
        .unwrap();
}

async fn exists(name: &str) -> bool {
    direct("postgres")
        .await
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// The DROP hidden in `sql` is judged: blocked with ZD001, the table kept.
async fn blocked(c: &Client, sql: &str, table: &str) {
    let e = c
        .batch_execute(sql)
        .await
        .expect_err(&format!("{sql} must be refused"));
    assert_eq!(sqlstate(&e), "ZD001", "{sql}: {e:?}");
    assert!(exists(table).await, "{sql} dropped {table}");
}

#[tokio::test]
async fn a_drop_hidden_by_standard_conforming_strings_off_is_judged() {
    victim("lx_victim_set").await;
    let c = proxy().connect("postgres").await;
    c.batch_execute("SET standard_conforming_strings = off")
        .await
        .unwrap();
    // With the setting off, `\'` is a quote inside the literal and `''`
    // closes it: the DROP is a statement.
    blocked(
        &c,
        r"SELECT '\''; DROP TABLE lx_victim_set; --'",
        "lx_victim_set",
    )
    .await;
    // The same text read with the setting off is one literal: ordinary.
    let rows = c
        .simple_query(r"SELECT '\'; DROP TABLE lx_victim_set; --'")
        .await
        .unwrap();
    assert!(matches!(
        rows.last(),
        Some(SimpleQueryMessage::CommandComplete(1))
    ));
    // Ordinary statements with backslashes pass in this mode.
    c.batch_execute(r"INSERT INTO lx_victim_set VALUES (100, 'C:\\dir\'s'); SELECT 'a\b'")
        .await
        .unwrap();
    let note: String = c
        .query_one("SELECT note FROM lx_victim_set WHERE id = 100", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, r"C:\dir's");
    // Back on, the first text is one literal and the second hides nothing.
    c.batch_execute("SET standard_conforming_strings = on")
        .await
        .unwrap();
    c.batch_execute(r"SELECT '\''; DROP TABLE lx_victim_set; --'")
        .await
        .unwrap();
    blocked(
        &c,
        r"SELECT '\'; DROP TABLE lx_victim_set; --'",
        "lx_victim_set",
    )
    .await;
}

#[tokio::test]
async fn a_drop_after_an_escape_string_is_judged() {
    victim("lx_victim_e").await;
    let c = proxy().connect("postgres").await;
    blocked(
        &c,
        r"SELECT E'\''; DROP TABLE lx_victim_e; --'",
        "lx_victim_e",
    )
    .await;
    // `a$e` is one identifier (a type here): what follows is a plain literal.
    direct("postgres")
        .await
        .batch_execute(r"DROP TYPE IF EXISTS a$e; CREATE TYPE a$e AS ENUM ('\')")
        .await
        .unwrap();
    blocked(
        &c,
        r"SELECT a$e'\'; DROP TABLE lx_victim_e; --'",
        "lx_victim_e",
    )
    .await;
    // A `--` comment ends at a carriage return.
    blocked(
        &c,
        "SELECT 1 -- note\r; DROP TABLE lx_victim_e",
        "lx_victim_e",
    )
    .await;
}

#[tokio::test]
async fn the_setting_from_the_startup_packet_is_followed() {
    victim("lx_victim_opt").await;
    let conninfo = format!(
        "{} options='-c standard_conforming_strings=off'",
        proxy().conninfo("postgres", "postgres")
    );
    let c = connect(&conninfo).await;
    let scs = c
        .simple_query("SHOW standard_conforming_strings")
        .await
        .unwrap();
    assert!(
        scs.iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("off"))),
        "{scs:?}"
    );
    blocked(
        &c,
        r"SELECT '\''; DROP TABLE lx_victim_opt; --'",
        "lx_victim_opt",
    )
    .await;
}

#[tokio::test]
async fn schema_changes_with_backslashes_and_multibyte_text_pass_in_the_standard_reading() {
    direct("postgres")
        .await
        .batch_execute("DROP TABLE IF EXISTS lx_ok1, lx_ok2")
        .await
        .unwrap();
    let c = proxy().connect("postgres").await;
    // Extended protocol (Parse at the start of a batch) and simple.
    c.execute(
        r"CREATE TABLE lx_ok1 (a text DEFAULT 'C:\dir' CHECK (a <> 'ā'))",
        &[],
    )
    .await
    .unwrap();
    c.batch_execute(r"CREATE TABLE lx_ok2 (a text DEFAULT 'ソ'); SELECT 'é'")
        .await
        .unwrap();
    let d: String = direct("postgres")
        .await
        .query_one(
            "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'lx_ok1'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(d, r"'C:\dir'::text");
}

#[tokio::test]
async fn a_string_pipelined_behind_a_change_of_the_setting_is_refused() {
    victim("lx_victim_pipe").await;
    direct("postgres")
        .await
        .batch_execute("DROP TABLE IF EXISTS lx_new")
        .await
        .unwrap();
    let c = proxy().connect("postgres").await;
    // Sent without waiting: when the second arrives, the server has not
    // yet said the setting changed.
    let (set, attack) = tokio::join!(
        c.batch_execute("SET standard_conforming_strings = off"),
        c.batch_execute(r"SELECT '\''; DROP TABLE lx_victim_pipe; --'"),
    );
    set.unwrap();
    let e = attack.unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001", "{e:?}");
    assert!(exists("lx_victim_pipe").await);
    // A schema change with a backslash in a plain literal cannot be read
    // exactly with the setting off: refused, whatever the rule says.
    let e = c
        .batch_execute(r"CREATE TABLE lx_new (a text DEFAULT 'a\'b')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001", "{e:?}");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("standard_conforming_strings"),
        "{e:?}"
    );
    c.batch_execute(r"CREATE TABLE lx_new (a text DEFAULT E'a\'b')")
        .await
        .unwrap();
    direct("postgres")
        .await
        .batch_execute("DROP TABLE lx_new")
        .await
        .unwrap();
}

/// One generated query string: statements `SELECT <k> AS n, <items>`.
struct Generated {
    sql: String,
}

const TEXT: &[&str] = &[
    "a", ";", " ", "''", "\\", "\\'", "\\\\", "\"", "$", "$$", "$a$", "--", "/*", "*/", "é", "ソ",
    "\n", "\r", "\t", "E'", "x$1", "0041",
];

fn text(rng: &mut StdRng, n: usize) -> String {
    (0..rng.random_range(0..n))
        .map(|_| TEXT[rng.random_range(0..TEXT.len())])
        .collect()
}

/// A literal, identifier or comment of the kinds the scanner treats apart.
fn item(rng: &mut StdRng) -> String {
    match rng.random_range(0..14) {
        // Plain literal: `\` is ordinary or an escape depending on scs.
        0 | 1 => format!("'{}'", text(rng, 6).replace('\'', "''")),
        // Possibly broken quoting inside a plain literal.
        2 => format!("'{}'", text(rng, 5)),
        3 => format!(
            "{}'{}'",
            if rng.random() { "E" } else { "e" },
            text(rng, 6).replace('\'', "\\'")
        ),
        4 => {
            let body = text(rng, 4).replace(['\'', '\\'], "");
            if rng.random() {
                format!("U&'\\0041{body}!0042' UESCAPE '!'").replace("\\0041", "!0041")
            } else {
                format!("U&'d\\0061t{body}'")
            }
        }
        5 => format!("B'{}'", ["0", "1", "01"][rng.random_range(0..3)]),
        6 => format!("X'{}'", ["1F", "a", ""][rng.random_range(0..3)]),
        7 => format!("N'{}'", text(rng, 4).replace('\'', "''")),
        8 => {
            let tag = ["", "a", "_x1", "é", "a$b"][rng.random_range(0..5)];
            format!("${tag}${}${tag}$", text(rng, 6))
        }
        9 => format!(
            "/* {} /* {} */ {} */ 1",
            text(rng, 3),
            text(rng, 3),
            text(rng, 3)
        ),
        10 => format!("-- {}\n 2", text(rng, 4).replace(['\n', '\r'], "")),
        11 => format!(
            "3 AS {}",
            ["a$b$c", "x$1", "\"a;\"\"b\"", "U&\"d\\0061t\"", "é$"][rng.random_range(0..5)]
        ),
        12 => format!(
            "'a'{}'b'",
            ["\n", " -- c\n ", " ", "\r\n"][rng.random_range(0..4)]
        ),
        _ => format!("E'x'\n'{}'", text(rng, 4).replace('\'', "\\'")),
    }
}

fn generate(rng: &mut StdRng) -> Generated {
    let n = rng.random_range(1..5);
    let mut sql = String::new();
    for k in 0..n {
        sql.push_str(&format!("SELECT {k} AS n"));
        for _ in 0..rng.random_range(0..4) {
            sql.push_str(", ");
            sql.push_str(&item(rng));
        }
        sql.push_str(if rng.random_bool(0.2) { " ;; " } else { ";" });
    }
    Generated { sql }
}

/// The statements the server ran: the `n` of each, in order; `None` when
/// it refused the string (it then runs none).
async fn server_split(c: &Client, sql: &str) -> Option<Vec<String>> {
    let msgs = c.simple_query(sql).await.ok()?;
    Some(
        msgs.iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect(),
    )
}

/// What ddlgate's lexer finds: the `n` each statement starts with.
fn lexer_split(sql: &str, lex: Lexical) -> Vec<String> {
    let b = sql.as_bytes();
    split(b, lex)
        .into_iter()
        .map(|r| {
            let s = &b[r];
            let mut out = String::from_utf8_lossy(first_word(s)).into_owned();
            let start = ddlgate::ddl::lexer::skip_trivia(s, 0);
            if let Some(k) = next_token(s, start, lex).and_then(|w| next_token(s, w.end, lex)) {
                out = String::from_utf8_lossy(&s[k]).into_owned();
            }
            out
        })
        .collect()
}

#[tokio::test]
async fn the_lexer_splits_where_the_server_does() {
    let count: usize = std::env::var("DDLGATE_LEXER_DIFF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("DDLGATE_LEXER_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let server = direct("postgres").await;
    // The same strings through ddlgate: none of these SELECTs is refused.
    let through = proxy().connect("postgres").await;
    let mut accepted = [0usize; 2];
    for (m, (lex, setting)) in [(Lexical::STANDARD, "on"), (Lexical::ESCAPE, "off")]
        .into_iter()
        .enumerate()
    {
        for c in [&server, &through] {
            c.batch_execute(&format!(
                "SET standard_conforming_strings = {setting}; SET escape_string_warning = off"
            ))
            .await
            .unwrap();
        }
        let mut rng = StdRng::seed_from_u64(seed);
        for i in 0..count {
            let g = generate(&mut rng);
            let ours = lexer_split(&g.sql, lex);
            let Some(theirs) = server_split(&server, &g.sql).await else {
                // The server refused it: it runs nothing, and ddlgate
                // passes it on the same (or refuses it).
                continue;
            };
            accepted[m] += 1;
            assert_eq!(
                ours, theirs,
                "scs={setting}, string {i} (seed {seed}): ddlgate splits {:?} otherwise than \
                 the server",
                g.sql
            );
            let via = server_split(&through, &g.sql).await;
            assert_eq!(
                via.as_ref(),
                Some(&theirs),
                "through ddlgate, scs={setting}: {:?}",
                g.sql
            );
        }
    }
    // Most strings are valid SQL: the comparison is not vacuous.
    assert!(
        accepted.iter().all(|a| *a > count / 3),
        "accepted {accepted:?} of {count}"
    );
}
