//! One direction of the relay: a read buffer whose front part has been scanned
//! into whole or streamed frames and is ready to be written out unchanged.
//!
//! Only messages the proxy must read are held until complete; all others are
//! forwarded as their bytes arrive, so a 100 MB DataRow or a COPY stream never
//! sits in memory whole.

use bytes::{Buf, BytesMut};

use crate::protocol::frame::{parse_header, FrameError, HEADER_LEN};

use super::conn::BUF_SIZE;

/// Stop reading from the source while this much is waiting to be written.
const HIGH_WATER: usize = 256 * 1024;
/// Buffers grown past this by one large message are given back once empty.
const SHRINK_ABOVE: usize = 1024 * 1024;

pub struct Pipe {
    pub buf: BytesMut,
    /// `buf[..ready]` has been scanned and may be written.
    ready: usize,
    /// Body bytes of the current streamed message not yet seen.
    streaming: usize,
}

/// How a scanned message is presented to the side's handler.
pub enum Seen<'a> {
    /// A message held whole: tag and body.
    Whole(u8, &'a [u8]),
    /// The header of a message that streams through.
    Streamed(u8),
}

impl Pipe {
    pub fn new(buf: BytesMut) -> Self {
        Pipe {
            buf,
            ready: 0,
            streaming: 0,
        }
    }

    pub fn ready(&self) -> &[u8] {
        &self.buf[..self.ready]
    }

    pub fn has_ready(&self) -> bool {
        self.ready > 0
    }

    /// Nothing buffered, nothing half-way: a message may be inserted here.
    pub fn at_boundary(&self) -> bool {
        self.streaming == 0 && self.ready == self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn wants_read(&self) -> bool {
        self.ready < HIGH_WATER
    }

    /// Makes room for the next read.
    pub fn reserve_for_read(&mut self) {
        if self.buf.capacity() - self.buf.len() < BUF_SIZE / 2 {
            self.buf.reserve(BUF_SIZE);
        }
    }

    /// Drops `n` written bytes from the front.
    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.ready -= n;
        if self.buf.is_empty() && self.buf.capacity() > SHRINK_ABOVE {
            self.buf = BytesMut::with_capacity(BUF_SIZE);
        }
    }

    /// Appends a message made by the proxy; only valid [`Pipe::at_boundary`].
    pub fn inject(&mut self, bytes: &[u8]) {
        debug_assert!(self.at_boundary());
        self.buf.extend_from_slice(bytes);
        self.ready = self.buf.len();
    }

    /// Drops everything, written or not (the destination is gone).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ready = 0;
        self.streaming = 0;
    }

    /// Drops everything not yet cleared for writing (a bad message's bytes).
    pub fn discard_unscanned(&mut self) {
        self.buf.truncate(self.ready);
        self.streaming = 0;
    }

    /// Scans newly read bytes. `whole` says which tags are held until complete;
    /// `seen` is called once per message, in order.
    pub fn scan<E: From<FrameError>>(
        &mut self,
        max_len: usize,
        whole: impl Fn(u8) -> bool,
        mut seen: impl FnMut(Seen<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            let unscanned = self.buf.len() - self.ready;
            if self.streaming > 0 {
                let take = self.streaming.min(unscanned);
                self.ready += take;
                self.streaming -= take;
                if self.streaming > 0 {
                    return Ok(());
                }
                continue;
            }
            let Some(h) = parse_header(&self.buf[self.ready..], max_len)? else {
                return Ok(());
            };
            if whole(h.tag) {
                if unscanned < h.frame_len() {
                    self.buf.reserve(h.frame_len() - unscanned);
                    return Ok(());
                }
                let body = &self.buf[self.ready + HEADER_LEN..self.ready + h.frame_len()];
                seen(Seen::Whole(h.tag, body))?;
                self.ready += h.frame_len();
            } else {
                seen(Seen::Streamed(h.tag))?;
                self.ready += HEADER_LEN;
                self.streaming = h.body_len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(pipe: &mut Pipe) -> Vec<String> {
        let mut out = Vec::new();
        pipe.scan::<FrameError>(
            1 << 20,
            |t| t == b'Q',
            |s| {
                out.push(match s {
                    Seen::Whole(t, b) => format!("{}:{}", t as char, String::from_utf8_lossy(b)),
                    Seen::Streamed(t) => format!("{}~", t as char),
                });
                Ok(())
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn whole_messages_wait_for_their_last_byte() {
        let mut p = Pipe::new(BytesMut::from(&b"Q\0\0\0\x0bSELE"[..]));
        assert!(collect(&mut p).is_empty());
        assert_eq!(p.ready().len(), 0);
        p.buf.extend_from_slice(b"CT\0d\0\0\0\x06ab");
        assert_eq!(collect(&mut p), vec!["Q:SELECT\0", "d~"]);
        assert_eq!(p.ready().len(), 19);
        assert!(p.at_boundary());
    }

    #[test]
    fn streamed_messages_are_released_as_they_arrive() {
        let mut p = Pipe::new(BytesMut::from(&b"D\0\0\0\x0cabc"[..]));
        assert_eq!(collect(&mut p), vec!["D~"]);
        assert_eq!(p.ready().len(), 8);
        assert!(!p.at_boundary());
        p.consume(8);
        p.buf.extend_from_slice(b"defgh");
        assert!(collect(&mut p).is_empty());
        assert_eq!(p.ready(), b"defgh");
        assert!(p.at_boundary());
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut p = Pipe::new(BytesMut::from(&b"Q\0\x10\0\0"[..]));
        let r = p.scan::<FrameError>(1024, |_| true, |_| Ok(()));
        assert!(matches!(r, Err(FrameError::TooLarge { .. })));
    }
}
