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
//! How `'...'` reads depends on the session (`standard_conforming_strings`:
//! with it off, a backslash escapes the next character), and so does the
//! client's encoding: the server lexes the text converted from it, while
//! ddlgate lexes the bytes the client sent. In UTF-8 and every encoding a
//! server can use, each byte of a multibyte character has its high bit set;
//! in the client-only encodings (SJIS, BIG5, GBK, UHC, GB18030) a trailing
//! byte can be an ASCII one such as `\`, so characters are stepped over
//! whole. Both facts are a [`Lexical`], a copyable value every function
//! that finds token ends takes.

use std::ops::Range;

/// How the server reads a plain `'...'` literal: the session's
/// `standard_conforming_strings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strings {
    /// `on` (the default since PostgreSQL 9.1): a backslash is an ordinary
    /// character; only `''` stands for a quote.
    #[default]
    Standard,
    /// `off`: a backslash escapes the next character, as in `E'...'`.
    Escape,
}

/// How characters of the client's encoding are laid out in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Every byte of a multibyte character has its high bit set (UTF-8,
    /// SQL_ASCII, the LATIN and other server encodings, EUC_*).
    #[default]
    AsciiSafe,
    /// SJIS, SHIFT_JIS_2004: 0xA1..=0xDF is one byte, other high bytes lead
    /// two-byte characters.
    Sjis,
    /// BIG5, GBK, UHC: a high byte leads a two-byte character.
    Big5,
    /// GB18030: two bytes, or four when the second is a digit.
    Gb18030,
}

impl Encoding {
    /// The layout of a `client_encoding` as the server reports it.
    pub fn of_client_encoding(name: &[u8]) -> Encoding {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("SJIS") || is("SHIFT_JIS_2004") || is("WIN932") || is("MSKANJI") || is("SHIFTJIS") {
            Encoding::Sjis
        } else if is("BIG5")
            || is("GBK")
            || is("UHC")
            || is("WIN950")
            || is("WIN936")
            || is("WIN949")
        {
            Encoding::Big5
        } else if is("GB18030") {
            Encoding::Gb18030
        } else {
            Encoding::AsciiSafe
        }
    }

    /// A client-only encoding whose characters can hold ASCII bytes.
    pub fn is_client_only(self) -> bool {
        self != Encoding::AsciiSafe
    }

    /// Bytes in the character whose first byte is `sql[pos]`, at least one
    /// and never past the end.
    #[inline]
    fn char_len(self, sql: &[u8], pos: usize) -> usize {
        let c = sql[pos];
        let len = if c < 0x80 {
            1
        } else {
            match self {
                Encoding::AsciiSafe => 1,
                Encoding::Sjis if (0xA1..=0xDF).contains(&c) => 1,
                Encoding::Sjis | Encoding::Big5 => 2,
                Encoding::Gb18030 => {
                    if sql.get(pos + 1).is_some_and(u8::is_ascii_digit) {
                        4
                    } else {
                        2
                    }
                }
            }
        };
        len.min(sql.len() - pos)
    }

    /// Whether `sql` can be text in this encoding at all: the server
    /// converts a client-only encoding to its own first and rejects a
    /// message that is not. This checks the trailing bytes' ranges only
    /// (a necessary condition).
    pub fn may_be_valid(self, sql: &[u8]) -> bool {
        if self == Encoding::AsciiSafe {
            return true;
        }
        let mut i = 0;
        while i < sql.len() {
            let c = sql[i];
            if c < 0x80 {
                i += 1;
                continue;
            }
            let trail = |k: usize| sql.get(i + k).copied();
            let ok = match self {
                Encoding::AsciiSafe => true,
                Encoding::Sjis if (0xA1..=0xDF).contains(&c) => true,
                Encoding::Sjis => {
                    matches!(c, 0x81..=0x9F | 0xE0..=0xFC)
                        && trail(1).is_some_and(|t| matches!(t, 0x40..=0x7E | 0x80..=0xFC))
                }
                Encoding::Big5 => c != 0xFF && trail(1).is_some_and(|t| (0x40..=0xFE).contains(&t)),
                Encoding::Gb18030 => {
                    (0x81..=0xFE).contains(&c)
                        && match trail(1) {
                            Some(0x30..=0x39) => {
                                trail(2).is_some_and(|t| (0x81..=0xFE).contains(&t))
                                    && trail(3).is_some_and(|t| t.is_ascii_digit())
                            }
                            Some(t) => matches!(t, 0x40..=0x7E | 0x80..=0xFE),
                            None => false,
                        }
                }
            };
            if !ok {
                return false;
            }
            i += self.char_len(sql, i);
        }
        true
    }
}

/// What decides how the server splits a session's SQL into tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lexical {
    pub strings: Strings,
    pub encoding: Encoding,
}

impl Lexical {
    /// A fresh session's: `standard_conforming_strings = on`, UTF-8. Also
    /// the reading of ddlgate's own SQL, migration files and plans.
    pub const STANDARD: Lexical = Lexical {
        strings: Strings::Standard,
        encoding: Encoding::AsciiSafe,
    };

    /// `standard_conforming_strings = off`, UTF-8.
    pub const ESCAPE: Lexical = Lexical {
        strings: Strings::Escape,
        encoding: Encoding::AsciiSafe,
    };

    /// Every reading a session could be in.
    pub const ALL: [Lexical; 8] = {
        const fn l(strings: Strings, encoding: Encoding) -> Lexical {
            Lexical { strings, encoding }
        }
        use Encoding::*;
        use Strings::*;
        [
            l(Standard, AsciiSafe),
            l(Escape, AsciiSafe),
            l(Standard, Sjis),
            l(Escape, Sjis),
            l(Standard, Big5),
            l(Escape, Big5),
            l(Standard, Gb18030),
            l(Escape, Gb18030),
        ]
    };

    /// Whether plain `'...'` literals take backslash escapes.
    #[inline]
    fn plain_escapes(self) -> bool {
        self.strings == Strings::Escape
    }
}

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
mod tests {
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
}
