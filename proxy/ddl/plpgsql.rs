//! Reading a DO block's PL/pgSQL body for the SQL it will run, so that a
//! block that only computes, queries or raises notices is not taken for a
//! schema change, and one that does change the schema is judged by the
//! statements it contains.
//!
//! This is not a PL/pgSQL parser. It walks the body's tokens (strings,
//! dollar quotes and comments honoured by the lexer), knows where a
//! PL/pgSQL statement can begin (after `;`, BEGIN, THEN, ELSE, LOOP and a
//! `<<label>>`), and takes any statement there that starts with a DDL
//! keyword. `EXECUTE` of a constant string, or of `format()` with a constant
//! format, is read as the statement it runs; any other dynamic SQL is
//! reported as unknowable.

use super::fastpath::is_ddl_word;
use super::lexer::{first_word, Lexical};

/// A DO body is read as standard: the gate refuses a DO block holding a
/// backslash whenever `standard_conforming_strings` is (or may be) off, so
/// every body read here reads the same either way.
const LEX: Lexical = Lexical::STANDARD;

fn next_token(b: &[u8], pos: usize) -> Option<std::ops::Range<usize>> {
    super::lexer::next_token(b, pos, LEX)
}

fn statements(b: &[u8]) -> super::lexer::Statements<'_> {
    super::lexer::statements(b, LEX)
}

/// How deep DO blocks nested in EXECUTE strings are followed.
const MAX_DEPTH: usize = 4;

/// One statement a DO block may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Embedded {
    /// SQL text known before the block runs. `templated` when it came from
    /// a `format()` whose `%I`/`%L` arguments were filled in with stand-ins:
    /// its names are not the real ones, so no catalog fact may be applied.
    Sql { text: String, templated: bool },
    /// `EXECUTE` of a string computed at run time.
    Dynamic,
}

/// The statements of a DO block that can change the schema, in order; an
/// empty list when it has none. `None` when the block is not PL/pgSQL or
/// its body cannot be read (then nothing can be known about it).
pub fn embedded(sql: &str) -> Option<Vec<Embedded>> {
    let mut out = Vec::new();
    read_do(sql, 0, &mut out)?;
    Some(out)
}

fn read_do(sql: &str, depth: usize, out: &mut Vec<Embedded>) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    let b = sql.as_bytes();
    let first = next_token(b, 0)?;
    if !b[first.clone()].eq_ignore_ascii_case(b"DO") {
        return None;
    }
    let mut pos = first.end;
    let mut body = None;
    let mut language = None;
    while let Some(r) = next_token(b, pos) {
        pos = r.end;
        let tok = &sql[r.clone()];
        if tok.eq_ignore_ascii_case("LANGUAGE") {
            let lang = next_token(b, pos)?;
            pos = lang.end;
            language = Some(unquote_word(&sql[lang]));
        } else if body.is_none() {
            let (text, end) = literal_at(sql, r.start)?;
            body = Some(text);
            pos = end;
        } else {
            return None;
        }
    }
    if language.is_some_and(|l| l != "plpgsql") {
        return None;
    }
    scan_body(&body?, depth, out);
    Some(())
}

fn unquote_word(w: &str) -> String {
    for q in ['"', '\''] {
        if let Some(inner) = w.strip_prefix(q) {
            return inner.strip_suffix(q).unwrap_or(inner).to_owned();
        }
    }
    w.to_ascii_lowercase()
}

/// Walks a PL/pgSQL body, collecting the statements that can change the
/// schema.
fn scan_body(body: &str, depth: usize, out: &mut Vec<Embedded>) {
    let b = body.as_bytes();
    let mut pos = 0;
    let mut at_start = true;
    let mut in_declare = false;
    let mut prev = &b""[..];
    while let Some(r) = next_token(b, pos) {
        pos = r.end;
        let tok = &b[r.clone()];
        if tok.eq_ignore_ascii_case(b"EXECUTE") {
            out.extend(execute_target(body, pos, depth));
            pos = statement_end(b, r.start);
            at_start = true;
            prev = b";";
            continue;
        }
        if at_start && !in_declare && is_ddl_word(tok) && !is_assignment(b, pos) {
            let end = statement_end(b, r.start);
            push_sql(body[r.start..end].to_owned(), false, depth, out);
            pos = end;
            at_start = true;
            prev = b";";
            continue;
        }
        if tok.eq_ignore_ascii_case(b"DECLARE") {
            in_declare = true;
        } else if tok.eq_ignore_ascii_case(b"BEGIN") {
            in_declare = false;
        }
        at_start = tok == b";"
            || (tok == b">" && prev == b">")
            || [&b"BEGIN"[..], b"THEN", b"ELSE", b"LOOP", b"DECLARE"]
                .iter()
                .any(|k| tok.eq_ignore_ascii_case(k));
        prev = tok;
    }
}

/// `lock := ...` or `drop = ...`: a variable named like a keyword.
fn is_assignment(b: &[u8], pos: usize) -> bool {
    match next_token(b, pos) {
        Some(r) if b[r.clone()] == *b":" => b.get(r.end) == Some(&b'='),
        Some(r) => b[r] == *b"=",
        None => false,
    }
}

/// Where the statement starting at `start` ends: its top-level `;`.
fn statement_end(b: &[u8], start: usize) -> usize {
    statements(&b[start..])
        .next()
        .map_or(b.len(), |r| start + r.end)
}

fn push_sql(text: String, templated: bool, depth: usize, out: &mut Vec<Embedded>) {
    if first_word(text.as_bytes()).eq_ignore_ascii_case(b"DO") {
        let mut nested = Vec::new();
        match read_do(&text, depth + 1, &mut nested) {
            Some(()) => out.extend(nested),
            None => out.push(Embedded::Dynamic),
        }
    } else if is_ddl_word(first_word(text.as_bytes())) {
        out.push(Embedded::Sql { text, templated });
    }
}

/// What `EXECUTE <expr>` runs, the expression starting at `pos`: nothing
/// when it is known not to change the schema.
fn execute_target(body: &str, pos: usize, depth: usize) -> Vec<Embedded> {
    let dynamic = || vec![Embedded::Dynamic];
    let b = body.as_bytes();
    let Some(r) = next_token(b, pos) else {
        return dynamic();
    };
    let (text, templated, end) = if b[r.clone()].eq_ignore_ascii_case(b"format") {
        match format_call(body, r.end) {
            Some((text, end)) => (text, true, end),
            None => return dynamic(),
        }
    } else {
        match literal_at(body, r.start) {
            Some((text, end)) => (text, false, end),
            None => return dynamic(),
        }
    };
    // The string must be the whole expression: `'...' || x` is dynamic.
    let ends = match next_token(b, end) {
        None => true,
        Some(r) => {
            let t = &b[r];
            t == b";"
                || [&b"USING"[..], b"INTO", b"LOOP"]
                    .iter()
                    .any(|k| t.eq_ignore_ascii_case(k))
        }
    };
    if !ends {
        return dynamic();
    }
    // The string may hold several statements.
    let mut out = Vec::new();
    for r in statements(text.as_bytes()) {
        push_sql(text[r].trim().to_owned(), templated, depth, &mut out);
    }
    out
}

/// `format('constant', args...)` after the word `format`: the statement
/// with `%I` as a stand-in identifier and `%L` as a stand-in literal, and
/// where the call ends. `None` for a format that is not a constant or that
/// uses `%s` (raw text that could be anything).
fn format_call(body: &str, pos: usize) -> Option<(String, usize)> {
    let b = body.as_bytes();
    let open = next_token(b, pos)?;
    if b[open.clone()] != *b"(" {
        return None;
    }
    let lit = next_token(b, open.end)?;
    let (fmt, mut end) = literal_at(body, lit.start)?;
    // Skip to the closing parenthesis of the call.
    let mut depth = 1;
    while depth > 0 {
        let r = next_token(b, end)?;
        end = r.end;
        match &b[r] {
            b"(" => depth += 1,
            b")" => depth -= 1,
            _ => {}
        }
    }
    Some((fill_format(&fmt)?, end))
}

fn fill_format(fmt: &str) -> Option<String> {
    let mut out = String::with_capacity(fmt.len());
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // %[position$][flags][width]type
        let mut spec = String::new();
        while let Some(&n) = chars.peek() {
            chars.next();
            if n.is_ascii_alphabetic() || n == '%' {
                spec.push(n);
                break;
            }
            spec.push(n);
        }
        match spec.chars().last() {
            Some('%') if spec.len() == 1 => out.push('%'),
            Some('I') => out.push_str("\"%I\""),
            Some('L') => out.push_str("'%L'"),
            _ => return None,
        }
    }
    Some(out)
}

/// The string literal starting at `pos` (`'...'`, `E'...'`, `$tag$...$tag$`),
/// decoded, and where it ends. A literal continued on another line is not
/// read.
fn literal_at(sql: &str, pos: usize) -> Option<(String, usize)> {
    let b = sql.as_bytes();
    let r = next_token(b, pos)?;
    let tok = &sql[r.clone()];
    if tok.starts_with('$') && tok.len() > 1 {
        let tag_len = tok[1..].find('$')? + 2;
        let tag = &tok[..tag_len];
        // An unterminated body runs to the end of the text: not readable.
        let inner = tok.strip_prefix(tag)?.strip_suffix(tag)?;
        return Some((inner.to_owned(), r.end));
    }
    if tok.starts_with('\'') {
        return Some((unquote_standard(tok)?, r.end));
    }
    if tok.starts_with(['e', 'E']) && tok[1..].starts_with('\'') {
        return Some((unquote_escape(&tok[1..])?, r.end));
    }
    None
}

fn unquote_standard(tok: &str) -> Option<String> {
    let inner = tok.strip_prefix('\'')?.strip_suffix('\'')?;
    // Quotes inside come in pairs, unless the literal was continued.
    if inner.replace("''", "").contains('\'') {
        return None;
    }
    Some(inner.replace("''", "'"))
}

fn unquote_escape(tok: &str) -> Option<String> {
    let inner = tok.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                // Octal and hex escapes: not worth decoding for keywords.
                c if c.is_ascii_digit() || c == 'x' || c == 'u' || c == 'U' => return None,
                other => out.push(other),
            },
            // A lone quote: the literal was continued on another line.
            '\'' => {
                if chars.next()? != '\'' {
                    return None;
                }
                out.push('\'');
            }
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(text: &str) -> Embedded {
        Embedded::Sql {
            text: text.into(),
            templated: false,
        }
    }

    #[test]
    fn blocks_without_schema_changes_have_none() {
        for body in [
            "DO $$ BEGIN RAISE NOTICE 'drop table t; alter it'; END $$",
            "DO 'BEGIN PERFORM pg_sleep(0); END'",
            "DO $x$ DECLARE lock boolean := true; n int; BEGIN lock := false; \
             IF n > 1 THEN RAISE NOTICE '%', n; ELSE n := 2; END IF; \
             FOR i IN 1..3 LOOP INSERT INTO log VALUES (i); END LOOP; \
             SELECT drop INTO n FROM t; END $x$ LANGUAGE plpgsql",
            "do language plpgsql $$ begin update t set a = 1; -- create table x\n end $$",
        ] {
            assert_eq!(embedded(body), Some(vec![]), "{body}");
        }
    }

    #[test]
    fn static_and_constant_dynamic_statements_are_read() {
        let got = embedded(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1) THEN ALTER TABLE t ADD COLUMN c int; END IF; \
             <<l>> CREATE INDEX i ON t (c); EXECUTE 'DROP TABLE ''x'''; \
             EXECUTE format('ALTER TABLE %I ADD COLUMN %I text DEFAULT %L', 't', 'd', 'v'); \
             EXECUTE 'select 1' INTO n; EXCEPTION WHEN others THEN TRUNCATE u; END $$",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                sql("ALTER TABLE t ADD COLUMN c int"),
                sql("CREATE INDEX i ON t (c)"),
                sql("DROP TABLE 'x'"),
                Embedded::Sql {
                    text: "ALTER TABLE \"%I\" ADD COLUMN \"%I\" text DEFAULT '%L'".into(),
                    templated: true
                },
                sql("TRUNCATE u"),
            ]
        );
    }

    #[test]
    fn unknowable_sql_is_dynamic_and_other_languages_unreadable() {
        assert_eq!(
            embedded("DO $$ BEGIN EXECUTE 'ALTER TABLE ' || t || ' ADD c int'; END $$"),
            Some(vec![Embedded::Dynamic])
        );
        assert_eq!(
            embedded("DO $$ BEGIN EXECUTE format('ALTER TABLE t %s', x); END $$"),
            Some(vec![Embedded::Dynamic])
        );
        assert_eq!(
            embedded("DO $$ BEGIN EXECUTE q; END $$"),
            Some(vec![Embedded::Dynamic])
        );
        assert_eq!(embedded("DO LANGUAGE plpython3u $$ x $$"), None);
        // Found by the fuzzer: unterminated bodies and names.
        assert_eq!(embedded("DO $$ BEGIN  \u{e9}"), None);
        assert_eq!(embedded("DO LANGUAGE \" $$ x $$"), None);
        assert_eq!(
            embedded("DO $a$ BEGIN EXECUTE 'DO $b$ BEGIN DROP TABLE t; END $b$'; END $a$"),
            Some(vec![sql("DROP TABLE t")])
        );
        assert_eq!(
            embedded("DO E'BEGIN EXECUTE \\'DROP TABLE t\\'; END'"),
            Some(vec![sql("DROP TABLE t")])
        );
        assert_eq!(
            embedded("DO $$ BEGIN EXECUTE 'SELECT 1; DROP TABLE t'; END $$"),
            Some(vec![sql("DROP TABLE t")])
        );
    }
}
