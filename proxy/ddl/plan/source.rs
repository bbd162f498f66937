//! The client's own text, sliced by tokens: a plan reuses it verbatim for
//! names, column lists, expressions and index definitions, and only adds
//! keywords of its own (CONCURRENTLY, NOT VALID, USING INDEX).

use std::ops::Range;

use crate::ddl::lexer::{next_token, Lexical};
use crate::ddl::op::unquote;

/// A statement's tokens (whitespace and comments skipped).
pub struct Toks<'a> {
    pub sql: &'a str,
    pub t: Vec<Range<usize>>,
}

impl<'a> Toks<'a> {
    pub fn new(sql: &'a str) -> Self {
        let mut t = Vec::new();
        let mut pos = 0;
        // A statement the gate plans reads the same as standard: one with a
        // backslash in a plain literal is refused when it may not.
        while let Some(r) = next_token(sql.as_bytes(), pos, Lexical::STANDARD) {
            pos = r.end;
            t.push(r);
        }
        // A trailing semicolon is not part of the statement.
        if t.last().is_some_and(|r| &sql[r.clone()] == ";") {
            t.pop();
        }
        Toks { sql, t }
    }

    pub fn len(&self) -> usize {
        self.t.len()
    }

    pub fn tok(&self, i: usize) -> &'a str {
        self.t.get(i).map_or("", |r| &self.sql[r.clone()])
    }

    pub fn is(&self, i: usize, kw: &str) -> bool {
        self.tok(i).eq_ignore_ascii_case(kw)
    }

    /// Whether the keywords follow from `i` on; the index after them.
    pub fn eat(&self, i: usize, kws: &[&str]) -> Option<usize> {
        kws.iter()
            .enumerate()
            .all(|(k, kw)| self.is(i + k, kw))
            .then_some(i + kws.len())
    }

    /// Text of tokens `from..to` as the client wrote it (with its spacing).
    pub fn text(&self, from: usize, to: usize) -> &'a str {
        if from >= to || from >= self.t.len() {
            return "";
        }
        let end = self.t[(to - 1).min(self.t.len() - 1)].end;
        &self.sql[self.t[from].start..end]
    }

    /// Byte offset just after token `i`.
    pub fn end_of(&self, i: usize) -> usize {
        self.t[i].end
    }

    /// A possibly qualified name starting at `i` (`a`, `"A"`, `s.t`): its
    /// end index.
    pub fn name_end(&self, i: usize) -> Option<usize> {
        if !is_ident(self.tok(i)) {
            return None;
        }
        let mut j = i + 1;
        while self.tok(j) == "." && is_ident(self.tok(j + 1)) {
            j += 2;
        }
        Some(j)
    }

    /// The index just past the parenthesis that closes the one at `i`.
    pub fn close_paren(&self, i: usize) -> Option<usize> {
        if self.tok(i) != "(" {
            return None;
        }
        let mut depth = 0;
        for j in i..self.t.len() {
            match self.tok(j) {
                "(" => depth += 1,
                ")" => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(j + 1);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Token ranges `from..to` split at top-level commas.
    pub fn split_commas(&self, from: usize, to: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let (mut depth, mut start) = (0i32, from);
        for j in from..to {
            match self.tok(j) {
                "(" | "[" => depth += 1,
                ")" | "]" => depth -= 1,
                "," if depth == 0 => {
                    out.push((start, j));
                    start = j + 1;
                }
                _ => {}
            }
        }
        out.push((start, to));
        out
    }
}

/// An identifier token: a word or a quoted identifier.
pub fn is_ident(tok: &str) -> bool {
    if tok.starts_with('"') {
        return true;
    }
    // A prefixed string (`E'...'`, `B'...'`, `U&'...'`) is one token.
    !tok.contains('\'')
        && tok
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The last part of a possibly qualified name, as stored: unquoted, folded,
/// and truncated to 63 bytes as PostgreSQL truncates identifiers.
pub fn bare(name: &str) -> String {
    let toks = Toks::new(name);
    let last = toks.t.len().saturating_sub(1);
    let mut n = unquote(toks.tok(last));
    let mut end = n.len().min(63);
    while !n.is_char_boundary(end) {
        end -= 1;
    }
    n.truncate(end);
    n
}
