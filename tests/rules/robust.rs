//! The classifier never panics, whatever bytes arrive: random splices of
//! SQL fragments, quotes, comments and raw bytes go through everything the
//! proxy runs on client SQL.

use ddlgate::ddl::fastpath::may_contain_ddl;
use ddlgate::ddl::lexer::{leading_comments, redact, split, Lexical};
use ddlgate::ddl::policy::override_rules;
use ddlgate::ddl::{Analyzer, Catalog, Mode, Policy, Who};
use rand::{Rng, SeedableRng};

const PIECES: &[&[u8]] = &[
    b"ALTER TABLE ",
    b"t ",
    b"\"T\" ",
    b"ADD COLUMN ",
    b"c ",
    b"int ",
    b"varchar(",
    b"10",
    b")",
    b"DEFAULT ",
    b"random()",
    b"now()",
    b"NOT NULL ",
    b"CHECK (",
    b"a > 0",
    b"NOT VALID",
    b"CONSTRAINT ",
    b"FOREIGN KEY (",
    b"REFERENCES u",
    b"UNIQUE ",
    b"PRIMARY KEY ",
    b"USING INDEX ",
    b"CREATE ",
    b"INDEX ",
    b"CONCURRENTLY ",
    b"ON ",
    b"ONLY ",
    b"DROP ",
    b"TYPE ",
    b"SET ",
    b"RENAME ",
    b"TO ",
    b"VALIDATE ",
    b"DETACH PARTITION ",
    b"ATTACH PARTITION ",
    b"FOR VALUES ",
    b"TRUNCATE ",
    b"VACUUM ",
    b"(FULL",
    b"CLUSTER ",
    b"LOCK ",
    b"IN ",
    b"MODE",
    b"REINDEX ",
    b"DO ",
    b"$$",
    b"$x$",
    b"$1",
    b"'",
    b"''",
    b"E'\\'",
    b"\"",
    b"--",
    b"\n",
    b"/*",
    b"*/",
    b";",
    b",",
    b".",
    b"(",
    b")",
    b"BEGIN;",
    b"COMMIT;",
    b"ROLLBACK TO s;",
    b"::",
    b"\xff\xfe",
    b"\xc3\xa9",
    b"\0",
    b"ddlgate:allow ",
    b"drop-table",
    b" ",
];

#[test]
fn random_input_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let policy = Policy::default();
    let who = Who {
        user: "u",
        database: "d",
    };
    let mut analyzer = Analyzer::default();
    let mut findings = 0;
    for round in 0..20_000 {
        let mut sql = Vec::new();
        for _ in 0..rng.random_range(0..24) {
            if rng.random_bool(0.1) {
                sql.push(rng.random());
            } else {
                sql.extend_from_slice(PIECES[rng.random_range(0..PIECES.len())]);
            }
        }
        let lex = Lexical::ALL[round as usize % Lexical::ALL.len()];
        let _ = may_contain_ddl(&sql, lex);
        let _ = ddlgate::ddl::lexer::redact_in(&sql, lex);
        let _ = redact(&sql);
        let _ = leading_comments(&sql);
        let _ = override_rules(&sql);
        let _ = split(&sql, Lexical::STANDARD);
        let _ = split(&sql, Lexical::ESCAPE);
        let mode = if round % 2 == 0 {
            Mode::QueryString
        } else {
            Mode::Script
        };
        for a in analyzer.analyze(
            &sql,
            mode,
            round % 3 == 0,
            9 + round % 9,
            &Catalog::default(),
        ) {
            findings += a.findings.len();
            let text = &sql[a.range.clone()];
            let _ = policy.judge(text, &a.findings, who).decision();
        }
        if round % 7 == 0 {
            analyzer.end_transaction();
        }
    }
    // The inputs reach the rules, not just the lexer.
    assert!(findings > 1000, "only {findings} findings");
}
