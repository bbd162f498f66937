//! A cursor over a statement's tokens (from sqlparser's PostgreSQL
//! tokenizer) with whitespace and comments removed.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

pub struct Cursor {
    toks: Vec<Token>,
    pos: usize,
}

impl Cursor {
    /// `None` when the text cannot be tokenized (e.g. an unterminated quote).
    pub fn new(sql: &str) -> Option<Cursor> {
        let toks = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .ok()?
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon | Token::EOF))
            .collect();
        Some(Cursor { toks, pos: 0 })
    }

    pub fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    pub fn peek_at(&self, n: usize) -> Option<&Token> {
        self.toks.get(self.pos + n)
    }

    pub fn next(&mut self) -> Option<&Token> {
        let t = self.toks.get(self.pos);
        self.pos += 1;
        t
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    /// Whether the next token is the unquoted keyword `kw` (upper case).
    pub fn is_kw(&self, kw: &str) -> bool {
        self.kw_at(0, kw)
    }

    pub fn kw_at(&self, n: usize, kw: &str) -> bool {
        matches!(self.peek_at(n), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
    }

    /// Consumes `kw` if it is next.
    pub fn eat(&mut self, kw: &str) -> bool {
        let hit = self.is_kw(kw);
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// Consumes the keywords `kws` if they are all next, in order.
    pub fn eat_all(&mut self, kws: &[&str]) -> bool {
        let hit = kws.iter().enumerate().all(|(i, k)| self.kw_at(i, k));
        if hit {
            self.pos += kws.len();
        }
        hit
    }

    /// Whether `kw` appears anywhere from here on at nesting depth 0.
    pub fn has_kw_ahead(&self, kw: &str) -> bool {
        self.top_level(&[kw]) < self.toks.len()
    }

    /// Index of the first token from here on that is one of the unquoted
    /// keywords `kws` outside parentheses (the end when there is none).
    fn top_level(&self, kws: &[&str]) -> usize {
        let mut depth = 0i32;
        let start = self.pos.min(self.toks.len());
        for (i, t) in self.toks[start..].iter().enumerate() {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::Word(w)
                    if depth == 0
                        && w.quote_style.is_none()
                        && kws.iter().any(|k| w.value.eq_ignore_ascii_case(k)) =>
                {
                    return start + i
                }
                _ => {}
            }
        }
        self.toks.len()
    }

    /// A possibly qualified name (`a`, `s."T"`), rendered as written.
    pub fn name(&mut self) -> Option<String> {
        let mut out = ident(self.peek()?)?;
        self.pos += 1;
        while matches!(self.peek(), Some(Token::Period)) {
            let Some(part) = self.peek_at(1).and_then(ident) else {
                break;
            };
            out.push('.');
            out.push_str(&part);
            self.pos += 2;
        }
        Some(out)
    }

    /// Names separated by commas (`a, b, s.c`), skipping `ONLY` and `*`.
    pub fn name_list(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            self.eat("ONLY");
            let Some(n) = self.name() else { break };
            out.push(n);
            if matches!(self.peek(), Some(Token::Mul)) {
                self.pos += 1;
            }
            if matches!(self.peek(), Some(Token::Comma)) {
                self.pos += 1;
            } else {
                break;
            }
        }
        out
    }

    /// Skips a parenthesised group if one is next; returns its tokens.
    pub fn group(&mut self) -> Option<Vec<Token>> {
        if !matches!(self.peek(), Some(Token::LParen)) {
            return None;
        }
        let start = self.pos + 1;
        let mut depth = 0;
        while let Some(t) = self.toks.get(self.pos) {
            self.pos += 1;
            match t {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(self.toks[start..self.pos - 1].to_vec());
                    }
                }
                _ => {}
            }
        }
        Some(self.toks[start..].to_vec())
    }

    /// The remaining tokens split at top-level commas.
    pub fn split_commas(self) -> Vec<Cursor> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        let mut depth = 0i32;
        for t in self.toks.into_iter().skip(self.pos) {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::Comma if depth == 0 => {
                    out.push(Cursor {
                        toks: std::mem::take(&mut cur),
                        pos: 0,
                    });
                    continue;
                }
                _ => {}
            }
            cur.push(t);
        }
        out.push(Cursor { toks: cur, pos: 0 });
        out
    }

    /// The rest of the tokens rendered back as SQL text.
    pub fn rest_text(&self) -> String {
        render(&self.toks[self.pos.min(self.toks.len())..])
    }

    /// Consumes tokens up to (not including) the first top-level keyword in
    /// `stop`, returning them as text.
    pub fn text_until(&mut self, stop: &[&str]) -> String {
        let start = self.pos.min(self.toks.len());
        self.pos = self.top_level(stop);
        render(&self.toks[start..self.pos])
    }
}

/// An identifier token as SQL text, or `None` for other tokens.
pub fn ident(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) => Some(match w.quote_style {
            Some(q) => format!("{q}{}{q}", w.value.replace(q, &format!("{q}{q}"))),
            None => w.value.clone(),
        }),
        _ => None,
    }
}

pub fn render(toks: &[Token]) -> String {
    let mut out = String::new();
    for t in toks {
        if !out.is_empty()
            && !matches!(
                t,
                Token::LParen | Token::RParen | Token::Comma | Token::Period
            )
            && !out.ends_with(['(', '.'])
        {
            out.push(' ');
        }
        out.push_str(&t.to_string());
    }
    out
}
