//! Message framing: a regular message is a one-byte tag, a big-endian `i32`
//! length that counts itself but not the tag, and a body.

/// Tag byte plus length word.
pub const HEADER_LEN: usize = 5;

/// The decoded header of a regular (tagged) message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// Length of the body, excluding tag and length word.
    pub body_len: usize,
}

impl Header {
    /// Full length on the wire: tag, length word and body.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len
    }
}

/// Why a header cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid message length {0}")]
    InvalidLength(i64),
    #[error("message of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

/// Reads a header from the start of `buf`, or `None` when fewer than
/// [`HEADER_LEN`] bytes are there. `max_len` bounds the whole frame.
#[inline]
pub fn parse_header(buf: &[u8], max_len: usize) -> Result<Option<Header>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::InvalidLength(len as i64));
    }
    let body_len = len as usize - 4;
    if body_len + HEADER_LEN > max_len {
        return Err(FrameError::TooLarge {
            len: body_len + HEADER_LEN,
            max: max_len,
        });
    }
    Ok(Some(Header {
        tag: buf[0],
        body_len,
    }))
}

/// Appends a frame with `tag` and `body` to `out`.
pub fn put_frame(out: &mut impl bytes::BufMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_i32((body.len() + 4) as i32);
    out.put_slice(body);
}

/// Splits a NUL-terminated string off the front of `buf`.
pub fn take_cstr(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = buf.iter().position(|&b| b == 0)?;
    Some((&buf[..nul], &buf[nul + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_needs_five_bytes() {
        assert_eq!(parse_header(b"Q\0\0\0", 100), Ok(None));
    }

    #[test]
    fn header_decodes_tag_and_body_length() {
        let h = parse_header(b"Q\0\0\0\x0dSELECT 1;\0", 100)
            .unwrap()
            .unwrap();
        assert_eq!(
            h,
            Header {
                tag: b'Q',
                body_len: 9
            }
        );
        assert_eq!(h.frame_len(), 14);
    }

    #[test]
    fn header_rejects_short_and_negative_lengths() {
        assert_eq!(
            parse_header(b"Q\0\0\0\x03", 100),
            Err(FrameError::InvalidLength(3))
        );
        assert_eq!(
            parse_header(b"Q\xff\xff\xff\xff", 100),
            Err(FrameError::InvalidLength(-1))
        );
    }

    #[test]
    fn header_rejects_frames_over_the_maximum() {
        assert_eq!(
            parse_header(b"d\0\0\x01\0", 100),
            Err(FrameError::TooLarge { len: 257, max: 100 })
        );
    }

    #[test]
    fn put_frame_round_trips() {
        let mut out = bytes::BytesMut::new();
        put_frame(&mut out, b'X', b"");
        assert_eq!(&out[..], b"X\0\0\0\x04");
    }

    #[test]
    fn take_cstr_splits_at_nul() {
        assert_eq!(take_cstr(b"ab\0cd"), Some((&b"ab"[..], &b"cd"[..])));
        assert_eq!(take_cstr(b"ab"), None);
    }
}
