//! Backend messages ddlgate answers with itself, rather than relaying the
//! server's: result sets (the admin console's tables, as psql prints them),
//! CommandComplete and ReadyForQuery (for a statement a migration ran on
//! the client's behalf), ParameterStatus. Encoders over pgwire's message
//! types; every column is text.

use bytes::{BufMut, BytesMut};
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription, FORMAT_CODE_TEXT};
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::Message;

use super::backend::TxStatus;

/// The `text` type's OID, and its size (variable).
const TEXT_OID: u32 = 25;
const VARIABLE: i16 = -1;

// Encoding into a BytesMut cannot fail for these messages.
fn put(m: impl Message, out: &mut BytesMut) {
    let _ = m.encode(out);
}

/// CommandComplete with `tag` (`CREATE INDEX`, `SELECT 3`, ...).
pub fn command_complete(tag: &str, out: &mut BytesMut) {
    put(CommandComplete::new(tag.to_owned()), out);
}

pub fn ready_for_query(status: TxStatus, out: &mut BytesMut) {
    let status = match status {
        TxStatus::Idle => TransactionStatus::Idle,
        TxStatus::InTransaction => TransactionStatus::Transaction,
        TxStatus::Failed => TransactionStatus::Error,
    };
    put(ReadyForQuery::new(status), out);
}

pub fn empty_query(out: &mut BytesMut) {
    put(EmptyQueryResponse::new(), out);
}

pub fn parameter_status(name: &str, value: &str, out: &mut BytesMut) {
    put(ParameterStatus::new(name.to_owned(), value.to_owned()), out);
}

/// RowDescription of text columns named `columns`.
pub fn row_description(columns: &[&str], out: &mut BytesMut) {
    let fields = columns
        .iter()
        .map(|c| {
            FieldDescription::new(
                (*c).to_owned(),
                0,
                0,
                TEXT_OID,
                VARIABLE,
                -1,
                FORMAT_CODE_TEXT,
            )
        })
        .collect();
    put(RowDescription::new(fields), out);
}

/// One DataRow of text values; `None` is SQL NULL.
pub fn data_row(values: &[Option<&str>], out: &mut BytesMut) {
    let mut data = BytesMut::new();
    for v in values {
        match v {
            Some(v) => {
                data.put_i32(v.len() as i32);
                data.put_slice(v.as_bytes());
            }
            None => data.put_i32(-1),
        }
    }
    put(DataRow::new(data, values.len() as i16), out);
}

/// A whole result set: RowDescription, a DataRow per row, and
/// CommandComplete `SELECT n`, as a server answers a query.
pub fn result_set(columns: &[&str], rows: &[Vec<Option<String>>], out: &mut BytesMut) {
    row_description(columns, out);
    for row in rows {
        let values: Vec<Option<&str>> = row.iter().map(Option::as_deref).collect();
        data_row(&values, out);
    }
    command_complete(&format!("SELECT {}", rows.len()), out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::backend::{
        data_row as read_row, parameter_status as read_ps, tx_status_after,
    };
    use crate::protocol::frame::parse_header;

    /// The frames in `buf`: (tag, body).
    fn frames(buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Ok(Some(h)) = parse_header(&buf[at..], usize::MAX) {
            out.push((h.tag, buf[at + 5..at + h.frame_len()].to_vec()));
            at += h.frame_len();
        }
        assert_eq!(at, buf.len(), "trailing bytes");
        out
    }

    #[test]
    fn a_result_set_reads_back_as_sent() {
        let mut out = BytesMut::new();
        result_set(
            &["id", "status"],
            &[
                vec![Some("1".into()), Some("running".into())],
                vec![Some("2".into()), None],
            ],
            &mut out,
        );
        ready_for_query(TxStatus::InTransaction, &mut out);
        let f = frames(&out);
        let tags: Vec<u8> = f.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, b"TDDCZ");
        assert_eq!(read_row(&f[2].1).unwrap(), vec![Some(&b"2"[..]), None]);
        assert_eq!(f[3].1, b"SELECT 2\0");
        assert_eq!(tx_status_after(&f[4].1), TxStatus::InTransaction);
        // Two text columns, named.
        assert_eq!(&f[0].1[..2], &2i16.to_be_bytes());
        assert!(f[0].1.windows(7).any(|w| w == b"status\0"));
    }

    #[test]
    fn small_messages() {
        let mut out = BytesMut::new();
        command_complete("CREATE INDEX", &mut out);
        empty_query(&mut out);
        parameter_status("TimeZone", "UTC", &mut out);
        let f = frames(&out);
        assert_eq!(f[0], (b'C', b"CREATE INDEX\0".to_vec()));
        assert_eq!(f[1], (b'I', Vec::new()));
        assert_eq!(read_ps(&f[2].1), Some((&b"TimeZone"[..], &b"UTC"[..])));
    }
}
