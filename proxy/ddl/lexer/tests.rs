//! The lexer's unit tests: token ends and splits in each reading.
use super::*;

fn pieces(sql: &str) -> Vec<&str> {
    pieces_in(sql, Lexical::STANDARD)
}

fn pieces_in(sql: &str, lex: Lexical) -> Vec<&str> {
    split(sql.as_bytes(), lex)
        .into_iter()
        .map(|r| sql[r].trim())
        .collect()
}

fn tokens(sql: &[u8], lex: Lexical) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(r) = next_token(sql, pos, lex) {
        pos = r.end;
        out.push(&sql[r]);
    }
    out
}

#[test]
fn backslashes_follow_standard_conforming_strings() {
    let sql = r"SELECT '\''; DROP TABLE t; --'";
    assert_eq!(pieces(sql), vec![sql]);
    assert_eq!(
        pieces_in(sql, Lexical::ESCAPE),
        vec![r"SELECT '\''", "DROP TABLE t", "--'"]
            .into_iter()
            .take(2)
            .collect::<Vec<_>>()
    );
    let sql = r"SELECT '\'; DROP TABLE t; --'";
    assert_eq!(pieces(sql), vec![r"SELECT '\'", "DROP TABLE t"]);
    assert_eq!(pieces_in(sql, Lexical::ESCAPE), vec![sql]);
    // E'' strings escape either way; N'' is a plain literal.
    let sql = r"SELECT E'\''; DROP TABLE t; --'";
    assert_eq!(pieces(sql), vec![r"SELECT E'\''", "DROP TABLE t"]);
    let sql = r"SELECT n'\''; DROP TABLE t; --'";
    assert_eq!(pieces(sql).len(), 1);
    assert_eq!(pieces_in(sql, Lexical::ESCAPE).len(), 2);
    // B'', X'' and U&'' take no backslash escapes.
    for p in ["B", "x", "U&"] {
        let sql = format!(r"SELECT {p}'\'; DROP TABLE t; --'");
        assert_eq!(pieces_in(&sql, Lexical::ESCAPE).len(), 2, "{sql}");
    }
    assert!(plain_literal_backslash(br"SELECT 'a\b'", Lexical::ESCAPE));
    assert!(!plain_literal_backslash(
        br"SELECT E'a\b', $$\$$",
        Lexical::ESCAPE
    ));
}

#[test]
fn prefixes_start_tokens_only() {
    // `a$e` is one identifier: its `'...'` is a plain literal.
    let sql = r"SELECT a$e'\'; DROP TABLE t; --'";
    assert_eq!(pieces(sql).len(), 2);
    assert_eq!(
        tokens(br#"x E'a' ue&'b' u&'c' U&"d" b'1'"#, Lexical::STANDARD),
        vec![
            &b"x"[..],
            b"E'a'",
            b"ue",
            b"&",
            b"'b'",
            b"u&'c'",
            br#"U&"d""#,
            b"b'1'"
        ]
    );
}

#[test]
fn identifiers_hold_dollars_and_tags_follow_identifier_rules() {
    assert_eq!(
        tokens(b"a$b$c x$1 $1$ $_a1$ q $_a1$ $1 $$ ; $$", Lexical::STANDARD),
        vec![
            &b"a$b$c"[..],
            b"x$1",
            b"$1",
            b"$",
            b"$_a1$ q $_a1$",
            b"$1",
            b"$$ ; $$"
        ]
    );
    // `$1$` is a parameter and a `$`: the `;` after it splits.
    assert_eq!(pieces("SELECT $1$; DROP TABLE t; $1$").len(), 3);
    assert_eq!(pieces("SELECT $a$; DROP TABLE t; $a$").len(), 1);
    // Numbers never take a `$`.
    assert_eq!(
        tokens(b"1$a$;$a$", Lexical::STANDARD),
        vec![&b"1"[..], b"$a$;$a$"]
    );
    // A tag of multibyte letters.
    assert_eq!(pieces("SELECT $é$ ; $é$; SELECT 1").len(), 2);
}

#[test]
fn comments_nest_and_end_at_either_newline() {
    assert_eq!(
        pieces("SELECT 1 -- x\r DROP TABLE t"),
        vec!["SELECT 1 -- x\r DROP TABLE t"]
    );
    assert_eq!(pieces("SELECT 1 -- x;\r; DROP TABLE t").len(), 2);
    assert_eq!(pieces("/* /* ; */ ; */ SELECT 1; SELECT 2").len(), 2);
    assert_eq!(pieces("/* /* ; */ SELECT 1; SELECT 2").len(), 0);
}

#[test]
fn a_literal_continued_after_a_newline_reads_as_it_started() {
    // The continuation is E'' too: `\'` escapes.
    let sql = "SELECT E'a'\n'\\'; DROP TABLE t; --'";
    assert_eq!(pieces(sql).len(), 1);
    // Only with a newline (a comment may come before it).
    let sql = "SELECT E'a' -- c\n  '\\'; DROP TABLE t; --'";
    assert_eq!(pieces(sql).len(), 1);
    let sql = "SELECT E'a' '\\'; DROP TABLE t; --'";
    assert_eq!(pieces(sql).len(), 2);
    // B'' continued stays without escapes when plain ones take them.
    let sql = "SELECT B'1'\n'\\'; DROP TABLE t; --'";
    assert_eq!(pieces_in(sql, Lexical::ESCAPE).len(), 2);
}

#[test]
fn client_only_encodings_step_over_whole_characters() {
    // SJIS "ソ" is 0x83 0x5C: its second byte is not a backslash.
    let sql = b"SELECT E'\x83\x5c'; DROP TABLE t; --'";
    let sjis = Lexical {
        strings: Strings::Standard,
        encoding: Encoding::Sjis,
    };
    assert_eq!(split(sql, Lexical::STANDARD).len(), 1);
    assert_eq!(split(sql, sjis).len(), 2);
    let tag = b"SELECT $\x83\x5c$ ' $\x83\x5c$; DROP TABLE t; --'";
    assert_eq!(split(tag, sjis).len(), 2);
    assert!(Encoding::Sjis.may_be_valid(b"a\x83\x5cb\xb1"));
    assert!(!Encoding::Sjis.may_be_valid(b"\xc4\x81'"));
    assert_eq!(Encoding::of_client_encoding(b"GB18030"), Encoding::Gb18030);
    let r = Reading {
        lex: Lexical::STANDARD,
        sure: false,
    };
    assert!(r.ambiguous(br"SELECT '\''; DROP TABLE t"));
    assert!(!r.ambiguous(b"SELECT 'a\\b'; SELECT '\xc3\xa9'"));
    assert!(!Reading { sure: true, ..r }.ambiguous(br"SELECT '\''"));
}

#[test]
fn splits_on_top_level_semicolons_only() {
    assert_eq!(
        pieces("SELECT ';'; SELECT \";\"; SELECT E'\\';'; -- c;\n SELECT 1 /* ; /* ; */ ; */;"),
        vec![
            "SELECT ';'",
            "SELECT \";\"",
            "SELECT E'\\';'",
            "-- c;\n SELECT 1 /* ; /* ; */ ; */"
        ]
    );
}

#[test]
fn dollar_quotes_hide_semicolons() {
    let sql = "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $x$ ; $body$ LANGUAGE sql; DO $$ BEGIN PERFORM 1; END $$;";
    assert_eq!(pieces(sql).len(), 2);
    assert_eq!(pieces("SELECT $1; SELECT a$b; SELECT 2").len(), 3);
}

#[test]
fn drops_empty_pieces() {
    assert_eq!(pieces(";; -- nothing\n ; /* x */"), Vec::<&str>::new());
    assert_eq!(pieces("SELECT 1;;"), vec!["SELECT 1"]);
}

#[test]
fn unterminated_elements_run_to_the_end() {
    assert_eq!(
        pieces("SELECT 'abc; DROP TABLE t"),
        vec!["SELECT 'abc; DROP TABLE t"]
    );
    assert_eq!(pieces("SELECT $q$ ; "), vec!["SELECT $q$ ;"]);
    assert_eq!(pieces("/* ; "), Vec::<&str>::new());
    assert_eq!(pieces("SELECT \"a; b"), vec!["SELECT \"a; b"]);
    assert_eq!(pieces("SELECT E'\\"), vec!["SELECT E'\\"]);
}

#[test]
fn first_word_skips_comments_and_parens() {
    assert_eq!(
        first_word(b"  -- x\n /* y /* z */ */ ((select 1))"),
        b"select"
    );
    assert_eq!(first_word(b"ALTER TABLE t"), b"ALTER");
    assert_eq!(first_word(b"; x"), b"");
}

#[test]
fn redaction_hides_literals_only() {
    assert_eq!(
        redact(b"ALTER TABLE t2 ADD COLUMN c text DEFAULT 'secret' CHECK (n > 10.5)"),
        "ALTER TABLE t2 ADD COLUMN c text DEFAULT ? CHECK (n > ?)"
    );
    assert_eq!(
        redact(b"ALTER ROLE a PASSWORD E'x\\'y'; DO $f$ s $f$; SELECT $1, a$b"),
        "ALTER ROLE a PASSWORD ?; DO ?; SELECT $1, a$b"
    );
}

#[test]
fn leading_comments_are_collected() {
    let c = leading_comments(b"/* ddlgate:allow x */ -- two\nALTER");
    assert_eq!(c, vec![&b" ddlgate:allow x "[..], &b" two\n"[..]]);
    assert_eq!(line_of(b"a\nb\nc", 4), 3);
}
