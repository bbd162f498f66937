//! Frontend (client) messages the proxy builds to run statements of its own
//! on a session's server connection, and the few fields it reads from the
//! client's extended-protocol messages.

use super::frame::{put_frame, take_cstr};

fn cstr(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(s);
    out.push(0);
}

/// Terminate: the session ends (sent by ddlgate when it closes an
/// upstream connection itself).
pub const TERMINATE: &[u8] = b"X\0\0\0\x04";

/// A simple-protocol Query. Bytes, not `str`: client SQL is in the
/// client's encoding and must reach the server exactly as sent.
pub fn query(sql: &[u8], out: &mut Vec<u8>) {
    let mut b = Vec::with_capacity(sql.len() + 1);
    cstr(sql, &mut b);
    put_frame(out, b'Q', &b);
}

/// A Parse with no declared parameter types.
pub fn parse(name: &[u8], sql: &[u8], out: &mut Vec<u8>) {
    let mut b = Vec::with_capacity(name.len() + sql.len() + 4);
    cstr(name, &mut b);
    cstr(sql, &mut b);
    b.extend_from_slice(&0u16.to_be_bytes());
    put_frame(out, b'P', &b);
}

/// A Bind of `statement` to `portal` with no parameters, text results.
pub fn bind(portal: &[u8], statement: &[u8], out: &mut Vec<u8>) {
    let mut b = Vec::new();
    cstr(portal, &mut b);
    cstr(statement, &mut b);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    put_frame(out, b'B', &b);
}

/// A Bind with text parameters, text results.
pub fn bind_params(portal: &[u8], statement: &[u8], params: &[&[u8]], out: &mut Vec<u8>) {
    let mut b = Vec::new();
    cstr(portal, &mut b);
    cstr(statement, &mut b);
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        b.extend_from_slice(&(p.len() as i32).to_be_bytes());
        b.extend_from_slice(p);
    }
    b.extend_from_slice(&0u16.to_be_bytes());
    put_frame(out, b'B', &b);
}

pub fn execute(portal: &[u8], out: &mut Vec<u8>) {
    let mut b = Vec::new();
    cstr(portal, &mut b);
    b.extend_from_slice(&0u32.to_be_bytes());
    put_frame(out, b'E', &b);
}

/// Close of a prepared statement.
pub fn close_statement(name: &[u8], out: &mut Vec<u8>) {
    close(b'S', name, out);
}

/// Close of a portal. Inside a transaction block a named portal outlives
/// its Sync (and its statement's Close) until the transaction ends.
pub fn close_portal(name: &[u8], out: &mut Vec<u8>) {
    close(b'P', name, out);
}

fn close(kind: u8, name: &[u8], out: &mut Vec<u8>) {
    let mut b = vec![kind];
    cstr(name, &mut b);
    put_frame(out, b'C', &b);
}

pub fn sync(out: &mut Vec<u8>) {
    put_frame(out, b'S', &[]);
}

/// Portal and statement names of a Bind body.
pub fn bind_names(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let (portal, rest) = take_cstr(body)?;
    let (statement, _) = take_cstr(rest)?;
    Some((portal, statement))
}

/// What a Close or Describe body names: `(b'S' | b'P', name)`.
pub fn target(body: &[u8]) -> Option<(u8, &[u8])> {
    let (&kind, rest) = body.split_first()?;
    Some((kind, take_cstr(rest)?.0))
}

/// The portal an Execute body names.
pub fn execute_portal(body: &[u8]) -> Option<&[u8]> {
    Some(take_cstr(body)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_reads_extended_messages() {
        let mut out = Vec::new();
        bind(b"p", b"s", &mut out);
        assert_eq!(&out[..5], b"B\0\0\0\x0e");
        assert_eq!(bind_names(&out[5..]), Some((&b"p"[..], &b"s"[..])));
        out.clear();
        close_statement(b"s1", &mut out);
        assert_eq!(target(&out[5..]), Some((b'S', &b"s1"[..])));
        out.clear();
        query(b"SELECT 1", &mut out);
        assert_eq!(out, b"Q\0\0\0\x0dSELECT 1\0");
        out.clear();
        sync(&mut out);
        assert_eq!(out, b"S\0\0\0\x04");
    }
}
