//! Byte-level SQL lexing that is just enough to split a query string into
//! statements and to read leading keywords: quotes, escape strings, quoted
//! identifiers, dollar quotes and both comment forms are honoured.
//!
//! It works on bytes, not `str`, because a client's SQL arrives in its
//! `client_encoding`; every delimiter is ASCII, which all server-supported
//! encodings and UTF-8 keep unambiguous.

use std::ops::Range;

/// Position just past whitespace and comments starting at `pos`.
pub fn skip_trivia(sql: &[u8], mut pos: usize) -> usize {
    loop {
        match sql.get(pos..pos + 2) {
            Some(b"--") => pos = line_comment_end(sql, pos),
            Some(b"/*") => pos = block_comment_end(sql, pos),
            _ => match sql.get(pos) {
                Some(c) if c.is_ascii_whitespace() => pos += 1,
                _ => return pos,
            },
        }
    }
}

/// Like [`skip_trivia`], also stepping over opening parentheses, so that
/// `(SELECT ...)` shows its first keyword.
fn skip_trivia_and_parens(sql: &[u8], mut pos: usize) -> usize {
    loop {
        pos = skip_trivia(sql, pos);
        if sql.get(pos) == Some(&b'(') {
            pos += 1;
        } else {
            return pos;
        }
    }
}

/// The first word of a statement (letters and underscores), after comments,
/// whitespace and opening parentheses. Empty when it starts otherwise.
pub fn first_word(sql: &[u8]) -> &[u8] {
    let start = skip_trivia_and_parens(sql, 0);
    word_at(sql, start)
}

/// The word (letters, digits, underscores) starting at `pos`.
pub fn word_at(sql: &[u8], pos: usize) -> &[u8] {
    let rest = sql.get(pos..).unwrap_or_default();
    let len = rest
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .unwrap_or(rest.len());
    &rest[..len]
}

/// Splits a query string into statements at top-level semicolons. Each range
/// starts right after the previous semicolon (so it keeps its leading
/// comments) and excludes its own; pieces holding only whitespace and
/// comments are dropped.
pub fn split(sql: &[u8]) -> Vec<Range<usize>> {
    statements(sql).collect()
}

/// The statements of `sql` as [`split`] finds them, without allocating.
pub fn statements(sql: &[u8]) -> Statements<'_> {
    Statements { sql, pos: 0 }
}

pub struct Statements<'a> {
    sql: &'a [u8],
    pos: usize,
}

impl Iterator for Statements<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let sql = self.sql;
        while self.pos < sql.len() {
            let start = self.pos;
            let mut pos = start;
            while pos < sql.len() && sql[pos] != b';' {
                pos = token_end(sql, pos);
            }
            let end = pos.min(sql.len());
            self.pos = end + 1;
            if skip_trivia(&sql[..end], start) < end {
                return Some(start..end);
            }
        }
        None
    }
}

/// The next lexical element at or after `pos`, whitespace and comments
/// skipped: its range (a whole quoted string, dollar-quoted body or word;
/// one byte of anything else).
pub fn next_token(sql: &[u8], pos: usize) -> Option<Range<usize>> {
    let start = skip_trivia(sql, pos);
    (start < sql.len()).then(|| start..token_end(sql, start))
}

/// End of the lexical element starting at `pos` (a quoted string, comment,
/// dollar-quoted body, or a single byte otherwise). Unterminated elements run
/// to the end, as the server would reject them anyway.
fn token_end(sql: &[u8], pos: usize) -> usize {
    let c = sql[pos];
    match c {
        b'\'' => {
            let escapes = pos > 0
                && matches!(sql[pos - 1], b'e' | b'E')
                && !(pos > 1 && is_ident_byte(sql[pos - 2]));
            quoted_end(sql, pos, b'\'', escapes)
        }
        b'"' => quoted_end(sql, pos, b'"', false),
        b'-' if sql.get(pos + 1) == Some(&b'-') => line_comment_end(sql, pos),
        b'/' if sql.get(pos + 1) == Some(&b'*') => block_comment_end(sql, pos),
        b'$' if pos == 0 || !is_ident_byte(sql[pos - 1]) => dollar_end(sql, pos),
        _ if is_ident_byte(c) => {
            // Identifiers may hold `$` (`a$b`), which must not open a quote.
            let mut end = pos + 1;
            while end < sql.len() && (is_ident_byte(sql[end]) || sql[end] == b'$') {
                end += 1;
            }
            end
        }
        _ => pos + 1,
    }
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn quoted_end(sql: &[u8], pos: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = pos + 1;
    while i < sql.len() {
        let c = sql[i];
        if backslash_escapes && c == b'\\' {
            i += 2;
        } else if c == quote {
            if sql.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    sql.len()
}

fn line_comment_end(sql: &[u8], pos: usize) -> usize {
    memchr::memchr(b'\n', &sql[pos..]).map_or(sql.len(), |n| pos + n + 1)
}

fn block_comment_end(sql: &[u8], pos: usize) -> usize {
    // PostgreSQL block comments nest.
    let mut depth = 0usize;
    let mut i = pos;
    while i + 1 < sql.len() {
        match &sql[i..i + 2] {
            b"/*" => {
                depth += 1;
                i += 2;
            }
            b"*/" => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    sql.len()
}

/// `$tag$ ... $tag$`; a `$` not followed by a valid tag (e.g. `$1`) is a
/// single byte.
fn dollar_end(sql: &[u8], pos: usize) -> usize {
    let tag_len = sql[pos + 1..]
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c >= 0x80))
        .unwrap_or(sql.len() - pos - 1);
    let close = pos + 1 + tag_len;
    if sql.get(close) != Some(&b'$') || sql.get(pos + 1).is_some_and(u8::is_ascii_digit) {
        return pos + 1;
    }
    let tag = &sql[pos..=close];
    let body = close + 1;
    match memchr::memmem::find(&sql[body..], tag) {
        Some(n) => body + n + tag.len(),
        None => sql.len(),
    }
}

/// The statement with every literal (quoted strings, dollar-quoted bodies,
/// numbers) replaced by `?`, for logs that must not carry data or secrets.
pub fn redact(sql: &[u8]) -> String {
    let mut out = Vec::with_capacity(sql.len());
    let mut pos = 0;
    while pos < sql.len() {
        let end = token_end(sql, pos);
        let c = sql[pos];
        let literal = c == b'\''
            || (c == b'$' && end > pos + 1)
            || (c.is_ascii_digit() && !(pos > 0 && sql[pos - 1] == b'$'))
            || (matches!(c, b'e' | b'E' | b'b' | b'B' | b'x' | b'X' | b'n' | b'N')
                && end == pos + 1
                && sql.get(end) == Some(&b'\''));
        if literal {
            // A prefixed string (E'...') is its prefix plus the quote.
            let end = if c.is_ascii_digit() {
                number_end(sql, pos)
            } else if c != b'\'' && sql.get(end) == Some(&b'\'') {
                token_end(sql, end)
            } else {
                end
            };
            out.push(b'?');
            pos = end;
        } else {
            out.extend_from_slice(&sql[pos..end]);
            pos = end;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn number_end(sql: &[u8], mut pos: usize) -> usize {
    while pos < sql.len() {
        match sql[pos] {
            b'0'..=b'9' | b'.' | b'_' => pos += 1,
            b'e' | b'E'
                if sql
                    .get(pos + 1)
                    .is_some_and(|c| c.is_ascii_digit() || *c == b'-' || *c == b'+') =>
            {
                pos += 2
            }
            c if c.is_ascii_alphanumeric() => pos += 1,
            _ => break,
        }
    }
    pos
}

/// 1-based line number of byte `pos`.
pub fn line_of(sql: &[u8], pos: usize) -> usize {
    memchr::memchr_iter(b'\n', &sql[..pos.min(sql.len())]).count() + 1
}

/// The text of the comments before the first token of `sql`, in order.
pub fn leading_comments(sql: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        while sql.get(pos).is_some_and(u8::is_ascii_whitespace) {
            pos += 1;
        }
        match sql.get(pos..pos + 2) {
            Some(b"--") => {
                let end = line_comment_end(sql, pos);
                out.push(&sql[pos + 2..end]);
                pos = end;
            }
            Some(b"/*") => {
                let end = block_comment_end(sql, pos);
                out.push(&sql[pos + 2..end.saturating_sub(2).max(pos + 2)]);
                pos = end;
            }
            _ => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(sql: &str) -> Vec<&str> {
        split(sql.as_bytes())
            .into_iter()
            .map(|r| sql[r].trim())
            .collect()
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
}
