//! Backend messages the proxy builds (errors, notices) or reads (ReadyForQuery,
//! ParameterStatus, BackendKeyData, authentication requests).

use bytes::BytesMut;
use pgwire::messages::response::{ErrorResponse, NoticeResponse};
use pgwire::messages::Message;

use super::frame::{put_frame, take_cstr};

/// Severity of a message the proxy reports itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Notice,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "FATAL",
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
        }
    }
}

/// An error or notice from ddlgate itself. Only text built by ddlgate goes in
/// here: internal error chains are logged, never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub severity: Severity,
    /// SQLSTATE: ddlgate's own, or the server's (a migration step's).
    pub code: std::borrow::Cow<'static, str>,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl Report {
    pub fn new(
        severity: Severity,
        code: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Report {
            severity,
            code: code.into(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, code, message)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn fields(&self) -> Vec<(u8, String)> {
        let sev = self.severity.as_str().to_owned();
        let mut f = vec![
            (b'S', sev.clone()),
            (b'V', sev),
            (b'C', self.code.to_string()),
            (b'M', self.message.clone()),
        ];
        if let Some(d) = &self.detail {
            f.push((b'D', d.clone()));
        }
        if let Some(h) = &self.hint {
            f.push((b'H', h.clone()));
        }
        f
    }

    /// Appends the message: ErrorResponse for FATAL/ERROR, NoticeResponse else.
    pub fn encode(&self, out: &mut BytesMut) {
        // Encoding into a BytesMut cannot fail for these types.
        let _ = match self.severity {
            Severity::Fatal | Severity::Error => ErrorResponse::new(self.fields()).encode(out),
            Severity::Warning | Severity::Notice => NoticeResponse::new(self.fields()).encode(out),
        };
    }

    pub fn to_bytes(&self) -> BytesMut {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out
    }
}

/// Transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InTransaction,
    Failed,
}

/// Reads the status byte of a ReadyForQuery body.
pub fn ready_for_query_status(body: &[u8]) -> Option<TxStatus> {
    match body.first()? {
        b'I' => Some(TxStatus::Idle),
        b'T' => Some(TxStatus::InTransaction),
        b'E' => Some(TxStatus::Failed),
        _ => None,
    }
}

/// The session's transaction status after a ReadyForQuery. A status byte
/// ddlgate cannot read is taken as `Failed`, never as `Idle`: idle is what
/// allows a schema change to be replayed or the catalog to be read, so an
/// unknown state must not grant it.
pub fn tx_status_after(body: &[u8]) -> TxStatus {
    ready_for_query_status(body).unwrap_or(TxStatus::Failed)
}

/// Name and value of a ParameterStatus body.
pub fn parameter_status(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let (name, rest) = take_cstr(body)?;
    let (value, _) = take_cstr(rest)?;
    Some((name, value))
}

/// The value of field `code` (e.g. `b'C'` for SQLSTATE, `b'M'` for the
/// message) in an ErrorResponse or NoticeResponse body.
pub fn error_field(body: &[u8], code: u8) -> Option<&[u8]> {
    let mut rest = body;
    while let Some((&c, after)) = rest.split_first() {
        if c == 0 {
            break;
        }
        let (value, after) = take_cstr(after)?;
        if c == code {
            return Some(value);
        }
        rest = after;
    }
    None
}

/// An ErrorResponse or NoticeResponse body without the fields whose codes
/// are in `drop` (e.g. a position in a statement the client never sent).
pub fn without_fields(body: &[u8], drop: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some((&c, after)) = rest.split_first() {
        if c == 0 {
            break;
        }
        let Some((value, after)) = take_cstr(after) else {
            break;
        };
        if !drop.contains(&c) {
            out.push(c);
            out.extend_from_slice(value);
            out.push(0);
        }
        rest = after;
    }
    out.push(0);
    out
}

/// The columns of a DataRow body (`None` for NULL).
pub fn data_row(body: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let n = u16::from_be_bytes(body.get(..2)?.try_into().ok()?) as usize;
    let mut rest = &body[2..];
    let mut cols = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = &rest[4..];
        if len < 0 {
            cols.push(None);
        } else {
            let len = len as usize;
            cols.push(Some(rest.get(..len)?));
            rest = &rest[len..];
        }
    }
    Some(cols)
}

/// Whether an ErrorResponse body ends the session (FATAL or PANIC).
pub fn error_is_fatal(body: &[u8]) -> bool {
    let mut rest = body;
    while let Some((&code, after)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let Some((value, after)) = take_cstr(after) else {
            break;
        };
        if code == b'V' || code == b'S' {
            return value == b"FATAL" || value == b"PANIC";
        }
        rest = after;
    }
    false
}

/// Authentication request codes (the `i32` after tag `R`).
pub mod auth {
    pub const OK: i32 = 0;
    pub const CLEARTEXT: i32 = 3;
    pub const MD5: i32 = 5;
    pub const GSS: i32 = 7;
    pub const GSS_CONTINUE: i32 = 8;
    pub const SSPI: i32 = 9;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;

    /// Whether the client must answer this request with a message of its own.
    pub fn expects_response(code: i32) -> bool {
        matches!(
            code,
            CLEARTEXT | MD5 | GSS | GSS_CONTINUE | SSPI | SASL | SASL_CONTINUE
        )
    }
}

/// Reads the request code of an Authentication body.
pub fn auth_code(body: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(body.get(..4)?.try_into().ok()?))
}

/// The mechanisms listed in an AuthenticationSASL body.
pub fn sasl_mechanisms(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = body.get(4..).unwrap_or_default();
    while let Some((name, after)) = take_cstr(rest) {
        if name.is_empty() {
            break;
        }
        out.push(name);
        rest = after;
    }
    out
}

/// Appends an AuthenticationSASL message offering `mechanisms`.
pub fn put_auth_sasl(out: &mut BytesMut, mechanisms: &[&[u8]]) {
    let mut body = auth::SASL.to_be_bytes().to_vec();
    for m in mechanisms {
        body.extend_from_slice(m);
        body.push(0);
    }
    body.push(0);
    put_frame(out, b'R', &body);
}

/// Appends an Authentication message with `code` and `data`.
pub fn put_auth(out: &mut BytesMut, code: i32, data: &[u8]) {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    put_frame(out, b'R', &body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_dropped_from_an_error() {
        let body = b"SERROR\0C42601\0Mbad\0P7\0\0";
        assert_eq!(
            without_fields(body, b"P"),
            b"SERROR\0C42601\0Mbad\0\0".to_vec()
        );
    }

    #[test]
    fn report_encodes_error_fields() {
        let bytes = Report::fatal("08006", "upstream gone")
            .with_hint("check it")
            .to_bytes();
        assert_eq!(bytes[0], b'E');
        let body = &bytes[5..];
        assert!(error_is_fatal(body));
        let text = String::from_utf8_lossy(body);
        assert!(text.contains("C08006\0"));
        assert!(text.contains("Mupstream gone\0"));
        assert!(text.contains("Hcheck it\0"));
    }

    #[test]
    fn notice_uses_notice_response() {
        let r = Report::new(Severity::Notice, "01000", "hi").to_bytes();
        assert_eq!(r[0], b'N');
        assert!(!error_is_fatal(&r[5..]));
    }

    #[test]
    fn reads_ready_for_query_and_parameter_status() {
        assert_eq!(ready_for_query_status(b"T"), Some(TxStatus::InTransaction));
        assert_eq!(ready_for_query_status(b"?"), None);
        assert_eq!(tx_status_after(b""), TxStatus::Failed);
        assert_eq!(tx_status_after(b"x"), TxStatus::Failed);
        assert_eq!(tx_status_after(b"I"), TxStatus::Idle);
        assert_eq!(
            parameter_status(b"server_version\x0015.4\0"),
            Some((&b"server_version"[..], &b"15.4"[..]))
        );
    }

    #[test]
    fn sasl_mechanisms_round_trip() {
        let mut out = BytesMut::new();
        put_auth_sasl(&mut out, &[b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-256"]);
        assert_eq!(auth_code(&out[5..]), Some(auth::SASL));
        assert_eq!(
            sasl_mechanisms(&out[5..]),
            vec![&b"SCRAM-SHA-256-PLUS"[..], &b"SCRAM-SHA-256"[..]]
        );
    }
}
