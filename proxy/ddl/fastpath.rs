//! The check every Query and Parse pays: can this SQL be a schema change at
//! all? It reads only leading keywords (after comments, whitespace and
//! parentheses), and splits the string only when it holds a semicolon,
//! reading quotes as the session does ([`Lexical`], a copied value).

use super::lexer::{first_word, statements, Lexical};

/// Leading keywords of statements that the gate classifies.
const DDL_WORDS: &[&[u8]] = &[
    b"ALTER",
    b"CREATE",
    b"DROP",
    b"TRUNCATE",
    b"VACUUM",
    b"CLUSTER",
    b"LOCK",
    b"REINDEX",
    b"REFRESH",
    b"DO",
];

#[inline]
pub fn is_ddl_word(word: &[u8]) -> bool {
    (2..=8).contains(&word.len()) && DDL_WORDS.iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// [`may_contain_ddl`] when the session's reading is not known for sure
/// (a request still running may change it): true when any reading a
/// session could be in finds a DDL keyword. Text every reading splits
/// alike is split once.
pub fn may_contain_ddl_unsure(sql: &[u8], last_known: Lexical) -> bool {
    if super::lexer::reads_alike(sql) {
        return may_contain_ddl(sql, last_known);
    }
    Lexical::ALL.iter().any(|lex| may_contain_ddl(sql, *lex))
}

/// Whether any statement in `sql`, split as `lex` reads it, starts with a
/// DDL keyword.
#[inline]
pub fn may_contain_ddl(sql: &[u8], lex: Lexical) -> bool {
    if is_ddl_word(first_word(sql)) {
        return true;
    }
    // A trailing semicolon (as psql and many drivers send) ends the only
    // statement; only an inner one can start another.
    let end = sql
        .iter()
        .rposition(|c| !(c.is_ascii_whitespace() || *c == b';'))
        .map_or(0, |i| i + 1);
    if memchr::memchr(b';', &sql[..end]).is_none() {
        return false;
    }
    statements(sql, lex).any(|r| is_ddl_word(first_word(&sql[r])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn may_contain_ddl(sql: &[u8]) -> bool {
        super::may_contain_ddl(sql, Lexical::STANDARD)
    }

    #[test]
    fn follows_standard_conforming_strings() {
        let sql = br"SELECT '\'; DROP TABLE t; --'";
        assert!(may_contain_ddl(sql));
        assert!(!super::may_contain_ddl(sql, Lexical::ESCAPE));
        // The server with standard_conforming_strings off reads `'\''` as
        // a quote: the DROP after it is a statement.
        let hidden = br"SELECT '\''; DROP TABLE t; --'";
        assert!(!may_contain_ddl(hidden));
        assert!(super::may_contain_ddl(hidden, Lexical::ESCAPE));
        assert!(may_contain_ddl_unsure(hidden, Lexical::STANDARD));
        assert!(!may_contain_ddl_unsure(
            b"SELECT 1; SELECT 2",
            Lexical::STANDARD
        ));
    }

    #[test]
    fn recognises_ddl_anywhere_in_the_string() {
        assert!(may_contain_ddl(b"alter table t add column c int"));
        assert!(may_contain_ddl(b"/* hi */ -- x\n  CREATE INDEX i ON t (a)"));
        assert!(may_contain_ddl(b"SELECT 1; DROP TABLE t"));
        assert!(may_contain_ddl(b"do $$ begin end $$"));
        assert!(!may_contain_ddl(b"SELECT 'x; DROP TABLE t'"));
        assert!(!may_contain_ddl(b"SELECT * FROM alter_log"));
        assert!(!may_contain_ddl(b"(SELECT 1) UNION (SELECT 2)"));
        assert!(!may_contain_ddl(b"INSERT INTO t VALUES ('create')"));
        assert!(!may_contain_ddl(b"  "));
        assert!(!may_contain_ddl(b"DOCUMENT"));
    }
}
