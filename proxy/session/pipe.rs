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

/// What the handler makes of a scanned message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Put these bytes before the message, then keep it.
    Before(Vec<u8>),
    /// Put these bytes in place of the message (whole messages only).
    Replace(Vec<u8>),
    /// Put these bytes before the message, and leave it and all after it
    /// unscanned for now.
    Hold(Vec<u8>),
}

/// A side's handler: which messages it holds whole, and what it makes of
/// each one.
pub trait Handler {
    type Error: From<FrameError>;
    /// Whether the message with this tag and length is held until complete.
    fn whole(&mut self, tag: u8, frame_len: usize) -> bool;
    /// A message held whole is incomplete and will be buffered to its
    /// `frame_len`: the handler may refuse it.
    fn buffering(&mut self, _frame_len: usize) -> Result<(), Self::Error> {
        Ok(())
    }
    fn seen(&mut self, seen: Seen<'_>) -> Result<Verdict, Self::Error>;
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

    /// A pipe's worth of bytes is read but not scanned (the scan is held).
    pub fn unscanned_full(&self) -> bool {
        self.buf.len() - self.ready > HIGH_WATER
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

    /// Puts proxy-made messages in front of everything not yet scanned; only
    /// valid between messages (not half-way through a streamed one).
    pub fn insert_ready(&mut self, bytes: &[u8]) {
        debug_assert_eq!(self.streaming, 0);
        self.splice(self.ready, 0, bytes);
        self.ready += bytes.len();
    }

    fn splice(&mut self, at: usize, remove: usize, insert: &[u8]) {
        let tail = self.buf.split_off(at + remove);
        self.buf.truncate(at);
        self.buf.extend_from_slice(insert);
        self.buf.unsplit(tail);
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

    /// Scans newly read bytes: `h.seen` is called once per message, in
    /// order, and its [`Verdict`] applied.
    pub fn scan<H: Handler>(&mut self, max_len: usize, h: &mut H) -> Result<(), H::Error> {
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
            let Some(hd) = parse_header(&self.buf[self.ready..], max_len)? else {
                return Ok(());
            };
            if h.whole(hd.tag, hd.frame_len()) {
                if unscanned < hd.frame_len() {
                    h.buffering(hd.frame_len())?;
                    self.buf.reserve(hd.frame_len() - unscanned);
                    return Ok(());
                }
                let body = &self.buf[self.ready + HEADER_LEN..self.ready + hd.frame_len()];
                match h.seen(Seen::Whole(hd.tag, body))? {
                    Verdict::Keep => self.ready += hd.frame_len(),
                    Verdict::Before(bytes) => {
                        self.splice(self.ready, 0, &bytes);
                        self.ready += bytes.len() + hd.frame_len();
                    }
                    Verdict::Replace(bytes) => {
                        self.splice(self.ready, hd.frame_len(), &bytes);
                        self.ready += bytes.len();
                    }
                    Verdict::Hold(bytes) => {
                        self.splice(self.ready, 0, &bytes);
                        self.ready += bytes.len();
                        return Ok(());
                    }
                }
            } else {
                match h.seen(Seen::Streamed(hd.tag))? {
                    Verdict::Keep | Verdict::Replace(_) => {}
                    Verdict::Before(bytes) => {
                        self.splice(self.ready, 0, &bytes);
                        self.ready += bytes.len();
                    }
                    Verdict::Hold(bytes) => {
                        self.splice(self.ready, 0, &bytes);
                        self.ready += bytes.len();
                        return Ok(());
                    }
                }
                self.ready += HEADER_LEN;
                self.streaming = hd.body_len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fns<W, S>(W, S);

    impl<W: FnMut(u8, usize) -> bool, S: FnMut(Seen<'_>) -> Result<Verdict, FrameError>> Handler
        for Fns<W, S>
    {
        type Error = FrameError;
        fn whole(&mut self, tag: u8, len: usize) -> bool {
            (self.0)(tag, len)
        }
        fn seen(&mut self, seen: Seen<'_>) -> Result<Verdict, FrameError> {
            (self.1)(seen)
        }
    }

    /// Builds a handler from closures (the bound makes them higher-ranked).
    fn fns<W, S>(w: W, s: S) -> Fns<W, S>
    where
        W: FnMut(u8, usize) -> bool,
        S: FnMut(Seen<'_>) -> Result<Verdict, FrameError>,
    {
        Fns(w, s)
    }

    fn collect(pipe: &mut Pipe) -> Vec<String> {
        let mut out = Vec::new();
        pipe.scan(
            1 << 20,
            &mut fns(
                |t, _| t == b'Q',
                |s| {
                    out.push(match s {
                        Seen::Whole(t, b) => {
                            format!("{}:{}", t as char, String::from_utf8_lossy(b))
                        }
                        Seen::Streamed(t) => format!("{}~", t as char),
                    });
                    Ok(Verdict::Keep)
                },
            ),
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
    fn verdicts_edit_the_stream_in_place() {
        let mut p = Pipe::new(BytesMut::from(&b"Q\0\0\0\x05aQ\0\0\0\x05bQ\0\0\0\x05c"[..]));
        p.scan(
            1024,
            &mut fns(
                |_, _| true,
                |s| {
                    Ok(match s {
                        Seen::Whole(_, b"a") => Verdict::Before(b"<".to_vec()),
                        Seen::Whole(_, b"b") => Verdict::Replace(b"B".to_vec()),
                        _ => Verdict::Hold(b"!".to_vec()),
                    })
                },
            ),
        )
        .unwrap();
        assert_eq!(p.ready(), b"<Q\0\0\0\x05aB!");
        assert_eq!(&p.buf[p.ready().len()..], b"Q\0\0\0\x05c");
        p.insert_ready(b"?");
        assert_eq!(p.ready(), b"<Q\0\0\0\x05aB!?");
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut p = Pipe::new(BytesMut::from(&b"Q\0\x10\0\0"[..]));
        let r = p.scan(1024, &mut fns(|_, _| true, |_| Ok(Verdict::Keep)));
        assert!(matches!(r, Err(FrameError::TooLarge { .. })));
    }
}
