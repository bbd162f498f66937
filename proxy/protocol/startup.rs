//! The untagged packets a client may open a connection with: SSLRequest,
//! GSSENCRequest, CancelRequest and StartupMessage.

use bytes::Bytes;

use super::frame::take_cstr;

/// PostgreSQL's own bound on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;
const CANCEL_REQUEST: u32 = 80877102;

/// A decoded opening packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel(CancelKey),
    Startup(StartupMessage),
}

/// The key a client presents to cancel a running query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CancelKey {
    pub pid: i32,
    pub secret: Bytes,
}

impl CancelKey {
    /// The CancelRequest packet carrying this key.
    pub fn request_packet(&self) -> Vec<u8> {
        let len = 12 + self.secret.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
        out.extend_from_slice(&self.pid.to_be_bytes());
        out.extend_from_slice(&self.secret);
        out
    }
}

/// A StartupMessage: kept raw so it is forwarded byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    pub major: u16,
    pub minor: u16,
    /// The whole packet including its length word.
    pub raw: Bytes,
}

impl StartupMessage {
    /// The same startup with `key` set to `value` (added if absent): the
    /// admin console authenticates against a real database.
    pub fn with_param(&self, key: &str, value: &str) -> StartupMessage {
        let mut body = Vec::with_capacity(self.raw.len() + value.len());
        body.extend_from_slice(&self.raw[4..8]);
        let mut rest = &self.raw[8..];
        let mut seen = false;
        while let Some((name, after)) = take_cstr(rest) {
            if name.is_empty() {
                break;
            }
            let Some((v, after)) = take_cstr(after) else {
                break;
            };
            rest = after;
            body.extend_from_slice(name);
            body.push(0);
            if name == key.as_bytes() {
                seen = true;
                body.extend_from_slice(value.as_bytes());
            } else {
                body.extend_from_slice(v);
            }
            body.push(0);
        }
        if !seen {
            for part in [key, value] {
                body.extend_from_slice(part.as_bytes());
                body.push(0);
            }
        }
        body.push(0);
        let mut raw = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        raw.extend_from_slice(&body);
        StartupMessage {
            major: self.major,
            minor: self.minor,
            raw: Bytes::from(raw),
        }
    }

    /// The parameter name/value pairs, lossily decoded for logging and routing.
    pub fn params(&self) -> impl Iterator<Item = (String, String)> + '_ {
        let mut rest = &self.raw[8..];
        std::iter::from_fn(move || {
            let (name, after) = take_cstr(rest)?;
            if name.is_empty() {
                return None;
            }
            let (value, after) = take_cstr(after)?;
            rest = after;
            Some((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ))
        })
    }

    pub fn param(&self, key: &str) -> Option<String> {
        self.params().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("invalid length of startup packet: {0}")]
    InvalidLength(u32),
    #[error("unsupported frontend protocol {major}.{minor}: ddlgate supports protocol 3")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("invalid startup packet layout: expected terminator as last byte")]
    Malformed,
    /// PostgreSQL takes the last of a repeated key, a proxy reading the
    /// first would authorise one role while the server authenticates
    /// another: refused, never emulated.
    #[error("invalid startup packet: parameter \"{0}\" is given more than once")]
    DuplicateParameter(String),
}

/// Reads the length word of an opening packet, checking its bounds.
pub fn packet_len(first4: [u8; 4]) -> Result<usize, StartupError> {
    let len = u32::from_be_bytes(first4);
    if !(8..=MAX_STARTUP_LEN as u32).contains(&len) {
        return Err(StartupError::InvalidLength(len));
    }
    Ok(len as usize)
}

/// Decodes a whole opening packet (length word included).
pub fn decode(packet: Bytes) -> Result<StartupPacket, StartupError> {
    let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    match code {
        SSL_REQUEST if packet.len() == 8 => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST if packet.len() == 8 => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST if packet.len() >= 16 => Ok(StartupPacket::Cancel(CancelKey {
            pid: i32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
            secret: packet.slice(12..),
        })),
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST => {
            Err(StartupError::InvalidLength(packet.len() as u32))
        }
        _ => {
            let (major, minor) = ((code >> 16) as u16, code as u16);
            if major != 3 {
                return Err(StartupError::UnsupportedProtocol { major, minor });
            }
            check_params(&packet[8..])?;
            Ok(StartupPacket::Startup(StartupMessage {
                major,
                minor,
                raw: packet,
            }))
        }
    }
}

/// Checks a StartupMessage's parameters as PostgreSQL's
/// `ProcessStartupPacket` reads them: NUL-terminated name/value pairs, the
/// list closed by an empty name that is the packet's last byte. Every name
/// must be unique, so that whatever ddlgate reads is what the server uses.
fn check_params(body: &[u8]) -> Result<(), StartupError> {
    let mut rest = body;
    let mut seen: Vec<&[u8]> = Vec::new();
    loop {
        let Some((name, after)) = take_cstr(rest) else {
            return Err(StartupError::Malformed);
        };
        if name.is_empty() {
            // The terminator must be the last byte.
            return if after.is_empty() {
                Ok(())
            } else {
                Err(StartupError::Malformed)
            };
        }
        let Some((_, after)) = take_cstr(after) else {
            return Err(StartupError::Malformed);
        };
        if seen.contains(&name) {
            return Err(StartupError::DuplicateParameter(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        seen.push(name);
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u32, body: &[u8]) -> Bytes {
        let mut v = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(body);
        Bytes::from(v)
    }

    #[test]
    fn decodes_ssl_and_gss_requests() {
        assert_eq!(
            decode(packet(SSL_REQUEST, b"")),
            Ok(StartupPacket::SslRequest)
        );
        assert_eq!(
            decode(packet(GSSENC_REQUEST, b"")),
            Ok(StartupPacket::GssEncRequest)
        );
    }

    #[test]
    fn decodes_cancel_and_round_trips() {
        let p = packet(CANCEL_REQUEST, &[0, 0, 0, 42, 1, 2, 3, 4]);
        let StartupPacket::Cancel(key) = decode(p.clone()).unwrap() else {
            panic!("not a cancel")
        };
        assert_eq!(key.pid, 42);
        assert_eq!(&key.secret[..], &[1, 2, 3, 4]);
        assert_eq!(key.request_packet(), p.to_vec());
    }

    #[test]
    fn decodes_startup_parameters() {
        let p = packet(196608, b"user\0alice\0database\0db\0\0");
        let StartupPacket::Startup(m) = decode(p).unwrap() else {
            panic!("not a startup")
        };
        assert_eq!((m.major, m.minor), (3, 0));
        assert_eq!(m.param("user").as_deref(), Some("alice"));
        assert_eq!(m.param("database").as_deref(), Some("db"));
        assert_eq!(m.param("options"), None);
    }

    #[test]
    fn refuses_repeated_parameters() {
        for body in [
            &b"user\0postgres\0user\0attacker\0database\0ddlgate\0\0"[..],
            b"user\0a\0database\0x\0database\0y\0\0",
            b"user\0a\0options\0\0application_name\0p\0options\0-c x=1\0\0",
        ] {
            assert!(matches!(
                decode(packet(196608, body)),
                Err(StartupError::DuplicateParameter(_))
            ));
        }
    }

    #[test]
    fn rejects_other_protocols_and_bad_lengths() {
        assert_eq!(
            decode(packet(2 << 16, b"\0")),
            Err(StartupError::UnsupportedProtocol { major: 2, minor: 0 })
        );
        assert_eq!(
            decode(packet(196608, b"user\0x")),
            Err(StartupError::Malformed)
        );
        // Anything after the terminator, as PostgreSQL refuses it.
        assert_eq!(
            decode(packet(196608, b"user\0a\0\0database\0b\0\0")),
            Err(StartupError::Malformed)
        );
        assert!(packet_len([0, 0, 0, 4]).is_err());
        assert!(packet_len([0, 1, 0, 0]).is_err());
        assert_eq!(packet_len([0, 0, 0, 8]), Ok(8));
    }
}
