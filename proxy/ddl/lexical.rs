//! The session facts that decide how the server splits SQL into tokens.
//! How `'...'` reads depends on the session (`standard_conforming_strings`:
//! with it off, a backslash escapes the next character), and so does the
//! client's encoding: the server lexes the text converted from it, while
//! ddlgate lexes the bytes the client sent. In UTF-8 and every encoding a
//! server can use, each byte of a multibyte character has its high bit set;
//! in the client-only encodings (SJIS, BIG5, GBK, UHC, GB18030) a trailing
//! byte can be an ASCII one such as `\`, so characters are stepped over
//! whole. Both facts are a [`Lexical`], a copyable value every function
//! of `ddl::lexer` that finds token ends takes.

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
    pub(super) fn char_len(self, sql: &[u8], pos: usize) -> usize {
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
    pub(super) fn plain_escapes(self) -> bool {
        self.strings == Strings::Escape
    }
}
