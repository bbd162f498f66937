//! The interception point: every client message that carries SQL (Query and
//! Parse) passes through [`Interceptor::inspect`] before it is forwarded.
//!
//! Today every statement is forwarded. The DDL gate plugs in here: an
//! [`Action`] other than `Forward` will let the proxy answer a statement
//! itself, run statements of its own on the session's server connection, or
//! hold work until the client's COMMIT, using [`SessionState`] to know where
//! the session stands.

use crate::protocol::frame::take_cstr;

use super::state::SessionState;

/// A client message that carries SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlMessage<'a> {
    /// Simple query: one string, possibly several statements.
    Query { sql: &'a [u8] },
    /// Extended protocol: a statement prepared under `name` ("" is unnamed).
    Parse { name: &'a [u8], sql: &'a [u8] },
}

impl<'a> SqlMessage<'a> {
    /// Reads the SQL out of a Query (`Q`) or Parse (`P`) body.
    pub fn decode(tag: u8, body: &'a [u8]) -> Option<Self> {
        match tag {
            b'Q' => Some(SqlMessage::Query {
                sql: take_cstr(body)?.0,
            }),
            b'P' => {
                let (name, rest) = take_cstr(body)?;
                let (sql, _) = take_cstr(rest)?;
                Some(SqlMessage::Parse { name, sql })
            }
            _ => None,
        }
    }
}

/// What the relay does with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send it on unchanged.
    Forward,
}

/// Per-session interception state.
#[derive(Debug, Default)]
pub struct Interceptor;

impl Interceptor {
    /// Whether a client message with `tag` must be read whole before forwarding.
    #[inline]
    pub fn wants(tag: u8) -> bool {
        tag == b'Q' || tag == b'P'
    }

    pub fn inspect(&mut self, _msg: SqlMessage<'_>, _state: &SessionState) -> Action {
        Action::Forward
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_and_parse() {
        assert_eq!(
            SqlMessage::decode(b'Q', b"SELECT 1\0"),
            Some(SqlMessage::Query { sql: b"SELECT 1" })
        );
        assert_eq!(
            SqlMessage::decode(b'P', b"s1\0SELECT $1\0\0\0"),
            Some(SqlMessage::Parse {
                name: b"s1",
                sql: b"SELECT $1"
            })
        );
        assert_eq!(SqlMessage::decode(b'P', b"s1\0SELECT"), None);
        assert_eq!(SqlMessage::decode(b'B', b""), None);
    }
}
