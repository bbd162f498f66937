//! Byte-level SQL lexing that is just enough to split a query string into
//! statements and to read leading keywords, following PostgreSQL's own
//! scanner (`scan.l`) on everything that decides where a token ends:
//! quoted strings in each form (`'...'`, `E'...'`, `B'...'`, `X'...'`,
//! `N'...'`, `U&'...'`, and a literal continued on a later line), quoted
//! identifiers (`"..."`, `U&"..."`), dollar quotes whose tags follow
//! identifier rules, identifiers holding `$`, parameters (`$1`), nested
//! `/* */` comments and `--` comments ending at `\n` or `\r`. An
//! unterminated quote or comment runs to the end (the server rejects it).
//!
//! How the session's settings make the server read bytes is a
//! [`Lexical`] (`ddl::lexical`), a copyable value every function that
//! finds token ends takes.

use std::ops::Range;

pub use super::lexical::{Encoding, Lexical, Strings};

/// The [`Lexical`] a session's SQL is read with, and whether it is sure:
/// not when a request still running may have changed it (the server
/// reports a change only when it is next idle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub lex: Lexical,
    pub sure: bool,
}

impl Reading {
    /// ddlgate's own SQL, a migration file: standard, and sure.
    pub const STANDARD: Reading = Reading {
        lex: Lexical::STANDARD,
        sure: true,
    };

    /// Whether the server may read `sql` otherwise than `self.lex` does:
    /// some reading the session could be in (and in whose encoding `sql`
    /// can be text) splits it into other tokens.
    pub fn ambiguous(self, sql: &[u8]) -> bool {
        !self.sure
            && !reads_alike(sql)
            && Lexical::ALL
                .iter()
                .any(|l| l.encoding.may_be_valid(sql) && !same_tokens(sql, self.lex, *l))
    }
}

/// Whether every [`Lexical`] reads `sql` the same: it holds no backslash
/// and no byte outside ASCII. A cheap test, true for most traffic.
#[inline]
pub fn reads_alike(sql: &[u8]) -> bool {
    !sql.iter().any(|&c| c == b'\\' || c >= 0x80)
}

/// Whether `a` and `b` split `sql` into the same tokens (so also the same
/// statements).
pub fn same_tokens(sql: &[u8], a: Lexical, b: Lexical) -> bool {
    if a == b {
        return true;
    }
    let mut pos = 0;
    while pos < sql.len() {
        let end = token_end(sql, pos, a);
        if token_end(sql, pos, b) != end {
            return false;
        }
        pos = end;
    }
    true
}

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
/// No [`Lexical`] changes where it is.
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

/// Splits a query string into statements at top-level semicolons, read as
/// `lex` says. Each range starts right after the previous semicolon (so it
/// keeps its leading comments) and excludes its own; pieces holding only
/// whitespace and comments are dropped.
pub fn split(sql: &[u8], lex: Lexical) -> Vec<Range<usize>> {
    statements(sql, lex).collect()
}

/// The statements of `sql` as [`split`] finds them, without allocating.
pub fn statements(sql: &[u8], lex: Lexical) -> Statements<'_> {
    Statements { sql, pos: 0, lex }
}

pub struct Statements<'a> {
    sql: &'a [u8],
    pos: usize,
    lex: Lexical,
}

impl Iterator for Statements<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let sql = self.sql;
        while self.pos < sql.len() {
            let start = self.pos;
            let mut pos = start;
            while pos < sql.len() && sql[pos] != b';' {
                pos = token_end(sql, pos, self.lex);
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
/// skipped: its range (a whole quoted string with its prefix, a
/// dollar-quoted body, a word, a number or a parameter; one byte of
/// anything else). `pos` must be where a token may start.
pub fn next_token(sql: &[u8], pos: usize, lex: Lexical) -> Option<Range<usize>> {
    let start = skip_trivia(sql, pos);
    (start < sql.len()).then(|| start..token_end(sql, start, lex))
}

/// End of the lexical element starting at `pos`, as PostgreSQL's scanner
/// reads it. Unterminated elements run to the end, as the server would
/// reject them anyway.
fn token_end(sql: &[u8], pos: usize, lex: Lexical) -> usize {
    let c = sql[pos];
    let at = |k: usize| sql.get(pos + k).copied();
    match c {
        b'\'' => string_end(sql, pos + 1, lex.plain_escapes(), lex),
        b'"' => ident_quote_end(sql, pos + 1, lex),
        b'-' if at(1) == Some(b'-') => line_comment_end(sql, pos),
        b'/' if at(1) == Some(b'*') => block_comment_end(sql, pos),
        b'$' => dollar_end(sql, pos, lex),
        b'0'..=b'9' => {
            // A number, with any junk letters after it (an error since
            // PostgreSQL 15); never a `$` or a quote.
            let mut end = pos + 1;
            while end < sql.len() && (sql[end].is_ascii_alphanumeric() || b"_.".contains(&sql[end]))
            {
                end += 1;
            }
            end
        }
        b'e' | b'E' if at(1) == Some(b'\'') => string_end(sql, pos + 2, true, lex),
        b'b' | b'B' | b'x' | b'X' if at(1) == Some(b'\'') => string_end(sql, pos + 2, false, lex),
        // N'...' is the keyword NCHAR before an ordinary literal.
        b'n' | b'N' if at(1) == Some(b'\'') => string_end(sql, pos + 2, lex.plain_escapes(), lex),
        // U&'...' takes no backslash escapes while lexing (the server
        // refuses it when standard_conforming_strings is off).
        b'u' | b'U' if at(1) == Some(b'&') && at(2) == Some(b'\'') => {
            string_end(sql, pos + 3, false, lex)
        }
        b'u' | b'U' if at(1) == Some(b'&') && at(2) == Some(b'"') => {
            ident_quote_end(sql, pos + 3, lex)
        }
        _ if is_ident_start(c) => ident_end(sql, pos, lex),
        _ => pos + 1,
    }
}

/// `[A-Za-z\200-\377_]`: what an identifier or a dollar-quote tag starts
/// with.
#[inline]
fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

/// End of an identifier or keyword starting at `pos`: letters, digits,
/// `_`, `$` and whole multibyte characters.
fn ident_end(sql: &[u8], pos: usize, lex: Lexical) -> usize {
    let mut end = pos;
    while end < sql.len() {
        let c = sql[end];
        if c >= 0x80 {
            end += lex.encoding.char_len(sql, end);
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' {
            end += 1;
        } else {
            break;
        }
    }
    end
}

/// End of a quoted string whose body starts at `i`. `escapes`: a backslash
/// takes the next character with it. A literal continued after a newline
/// (`'a'` newline `'b'`) is one token, read as it started.
fn string_end(sql: &[u8], mut i: usize, escapes: bool, lex: Lexical) -> usize {
    loop {
        loop {
            let Some(&c) = sql.get(i) else {
                return sql.len();
            };
            if c == b'\'' {
                if sql.get(i + 1) == Some(&b'\'') {
                    i += 2;
                } else {
                    i += 1;
                    break;
                }
            } else if escapes && c == b'\\' {
                i += 1;
                if i < sql.len() {
                    i += lex.encoding.char_len(sql, i);
                }
            } else {
                i += lex.encoding.char_len(sql, i);
            }
        }
        match continuation(sql, i) {
            Some(quote) => i = quote + 1,
            None => return i,
        }
    }
}

/// After a closing quote at `i - 1`: the position of the quote that
/// continues the literal (`{whitespace_with_newline}{quote}` in scan.l:
/// spaces, tabs, form feeds and `--` comments, a newline, then any
/// whitespace and comments each ending in a newline).
fn continuation(sql: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match sql.get(i) {
            Some(b' ' | b'\t' | 0x0C) => i += 1,
            Some(b'-') if sql.get(i + 1) == Some(&b'-') => i = comment_stop(sql, i),
            _ => break,
        }
    }
    if !matches!(sql.get(i), Some(b'\n' | b'\r')) {
        return None;
    }
    i += 1;
    loop {
        match sql.get(i) {
            Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0C) => i += 1,
            Some(b'-') if sql.get(i + 1) == Some(&b'-') => {
                i = comment_stop(sql, i);
                if !matches!(sql.get(i), Some(b'\n' | b'\r')) {
                    return None;
                }
                i += 1;
            }
            Some(b'\'') => return Some(i),
            _ => return None,
        }
    }
}

/// End of a quoted identifier whose body starts at `i` (`""` is a quote).
fn ident_quote_end(sql: &[u8], mut i: usize, lex: Lexical) -> usize {
    while let Some(&c) = sql.get(i) {
        if c == b'"' {
            if sql.get(i + 1) == Some(&b'"') {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += lex.encoding.char_len(sql, i);
        }
    }
    sql.len()
}

/// Where the `--` comment at `pos` stops: at its `\n` or `\r`.
fn comment_stop(sql: &[u8], pos: usize) -> usize {
    sql[pos..]
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .map_or(sql.len(), |n| pos + n)
}

/// Just past the `--` comment at `pos` and the newline ending it.
fn line_comment_end(sql: &[u8], pos: usize) -> usize {
    (comment_stop(sql, pos) + 1).min(sql.len())
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

/// At a `$` that starts a token: a parameter (`$1`), a dollar quote
/// (`$tag$ ... $tag$`, the tag empty or an identifier without `$`), or a
/// lone `$`.
fn dollar_end(sql: &[u8], pos: usize, lex: Lexical) -> usize {
    let mut i = pos + 1;
    match sql.get(i) {
        Some(c) if c.is_ascii_digit() => {
            while sql.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            return i;
        }
        Some(b'$') => {}
        Some(&c) if is_ident_start(c) => {
            while let Some(&c) = sql.get(i) {
                if c >= 0x80 {
                    i += lex.encoding.char_len(sql, i);
                } else if c.is_ascii_alphanumeric() || c == b'_' {
                    i += 1;
                } else {
                    break;
                }
            }
            if sql.get(i) != Some(&b'$') {
                return pos + 1;
            }
        }
        _ => return pos + 1,
    }
    let tag = &sql[pos..=i];
    let body = i + 1;
    // A `$` is never inside a character in any encoding, so the first
    // occurrence of the tag ends the body, as the scanner finds it.
    match memchr::memmem::find(&sql[body..], tag) {
        Some(n) => body + n + tag.len(),
        None => sql.len(),
    }
}

/// Whether a plain `'...'` literal (or `N'...'`) of `sql`, read as `lex`
/// says, holds a backslash: text the server reads differently under the
/// two settings of `standard_conforming_strings` (and that ddlgate's SQL
/// parser reads as standard).
pub fn plain_literal_backslash(sql: &[u8], lex: Lexical) -> bool {
    let mut pos = 0;
    while pos < sql.len() {
        let end = token_end(sql, pos, lex);
        let c = sql[pos];
        let plain = c == b'\'' || (matches!(c, b'n' | b'N') && sql.get(pos + 1) == Some(&b'\''));
        if plain && memchr::memchr(b'\\', &sql[pos..end]).is_some() {
            return true;
        }
        pos = end;
    }
    false
}

/// The statement with every literal (quoted strings, dollar-quoted bodies,
/// numbers) replaced by `?`, for logs that must not carry data or secrets.
/// Read as a fresh session would; see [`redact_in`].
pub fn redact(sql: &[u8]) -> String {
    redact_in(sql, Lexical::STANDARD)
}

/// [`redact`], the literals read as `lex` says.
pub fn redact_in(sql: &[u8], lex: Lexical) -> String {
    let mut out = Vec::with_capacity(sql.len());
    let mut pos = 0;
    while pos < sql.len() {
        let end = token_end(sql, pos, lex);
        let c = sql[pos];
        let at = |k: usize| sql.get(pos + k).copied();
        let literal = c == b'\''
            || (c == b'$' && end > pos + 1 && !at(1).is_some_and(|d| d.is_ascii_digit()))
            || c.is_ascii_digit()
            || (matches!(c, b'e' | b'E' | b'b' | b'B' | b'x' | b'X' | b'n' | b'N')
                && at(1) == Some(b'\''))
            || (matches!(c, b'u' | b'U') && at(1) == Some(b'&') && at(2) == Some(b'\''));
        if literal {
            out.push(b'?');
            pos = if c.is_ascii_digit() {
                number_end(sql, pos).max(end)
            } else {
                end
            };
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
                if sql.get(pos + 1).is_some_and(|c| *c == b'-' || *c == b'+')
                    && sql.get(pos + 2).is_some_and(u8::is_ascii_digit) =>
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
mod tests;
