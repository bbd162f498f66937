//! What the proxy knows about a session once it is relaying: the transaction
//! status from ReadyForQuery, the server's version, how it reads SQL text
//! (`standard_conforming_strings`, `client_encoding`), and how many requests
//! still await their ReadyForQuery. The DDL gate decides with these.

use crate::ddl::lexer::{Encoding, Lexical, Strings};
use crate::protocol::backend::TxStatus;

#[derive(Debug, Clone)]
pub struct SessionState {
    pub tx: TxStatus,
    /// `server_version` as the upstream reported it, e.g. "15.4 (Debian ...)".
    pub server_version: String,
    /// ReadyForQuery messages still expected: for the client's Query, Sync
    /// and FunctionCall messages and for ddlgate's own (kept by the gate),
    /// plus one while a schema change waits to be retried.
    pub outstanding: u32,
    /// The last ErrorResponse from the server was FATAL or PANIC.
    pub server_sent_fatal: bool,
    /// The client's encoding can carry any text ddlgate writes (UTF8);
    /// otherwise ddlgate's own messages are kept to ASCII.
    pub client_utf8: bool,
    /// The session's `TimeZone`, from ParameterStatus: whether timestamp
    /// and timestamptz convert in place depends on it.
    pub time_zone: Option<String>,
    /// How the server reads the session's SQL, from ParameterStatus
    /// (`standard_conforming_strings`, reported at startup and whenever it
    /// changes; `client_encoding`): the gate splits statements with it.
    pub lexical: Lexical,
    /// The client sent Terminate: it expects nothing more, so ddlgate says
    /// nothing more to it (the upstream's close that follows is expected).
    pub client_terminated: bool,
}

impl Default for SessionState {
    fn default() -> Self {
        SessionState {
            tx: TxStatus::Idle,
            server_version: String::new(),
            outstanding: 0,
            server_sent_fatal: false,
            client_utf8: true,
            client_terminated: false,
            time_zone: None,
            lexical: Lexical::STANDARD,
        }
    }
}

impl SessionState {
    /// Takes in what a whole server message says about the session, before
    /// the gate sees it.
    pub fn observe_server(&mut self, tag: u8, body: &[u8]) {
        match tag {
            b'Z' => self.tx = crate::protocol::backend::tx_status_after(body),
            b'S' => self.parameter_status(body),
            b'E' => self.server_sent_fatal = crate::protocol::backend::error_is_fatal(body),
            _ => {}
        }
    }

    /// Takes in a ParameterStatus body (server_version, client_encoding,
    /// TimeZone, standard_conforming_strings).
    pub fn parameter_status(&mut self, body: &[u8]) {
        match crate::protocol::backend::parameter_status(body) {
            Some((b"server_version", v)) => {
                self.server_version = String::from_utf8_lossy(v).into_owned();
            }
            Some((b"client_encoding", v)) => {
                self.client_utf8 = v.eq_ignore_ascii_case(b"UTF8")
                    || v.eq_ignore_ascii_case(b"UTF-8")
                    || v.eq_ignore_ascii_case(b"SQL_ASCII");
                self.lexical.encoding = Encoding::of_client_encoding(v);
            }
            Some((b"standard_conforming_strings", v)) => {
                // "on" or "off"; anything else is read the cautious way
                // (backslashes escape, so quoted strings end earlier).
                self.lexical.strings = if v.eq_ignore_ascii_case(b"on") {
                    Strings::Standard
                } else {
                    Strings::Escape
                };
            }
            Some((b"TimeZone", v)) => {
                self.time_zone = Some(String::from_utf8_lossy(v).into_owned());
            }
            _ => {}
        }
    }

    /// The server's major version (e.g. 15), once known.
    pub fn server_major(&self) -> Option<u32> {
        Self::major_of(&self.server_version)
    }

    /// The major version in a `server_version` string ("15.4 (Debian)").
    pub fn major_of(server_version: &str) -> Option<u32> {
        let digits: String = server_version
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    }

    /// Outside a transaction with no request in flight.
    pub fn is_idle(&self) -> bool {
        self.tx == TxStatus::Idle && self.outstanding == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, value: &str) -> Vec<u8> {
        [name.as_bytes(), b"\0", value.as_bytes(), b"\0"].concat()
    }

    #[test]
    fn lexical_follows_parameter_status() {
        let mut s = SessionState::default();
        assert_eq!(s.lexical, Lexical::STANDARD);
        s.parameter_status(&status("standard_conforming_strings", "off"));
        assert_eq!(s.lexical, Lexical::ESCAPE);
        s.parameter_status(&status("client_encoding", "SJIS"));
        assert_eq!(s.lexical.encoding, Encoding::Sjis);
        s.parameter_status(&status("standard_conforming_strings", "on"));
        s.parameter_status(&status("client_encoding", "UTF8"));
        assert_eq!(s.lexical, Lexical::STANDARD);
    }

    #[test]
    fn server_major_reads_leading_digits() {
        let mut s = SessionState {
            server_version: "15.18 (Debian 15.18-0+deb12u1)".into(),
            ..Default::default()
        };
        assert_eq!(s.server_major(), Some(15));
        s.server_version = "9.6.24".into();
        assert_eq!(s.server_major(), Some(9));
        s.server_version.clear();
        assert_eq!(s.server_major(), None);
    }
}
