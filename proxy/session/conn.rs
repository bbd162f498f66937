//! A stream with its read buffer and pending output, used while the session
//! is set up (startup, authentication). Its buffers carry over into the relay,
//! so nothing read ahead is lost.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::protocol::frame::{parse_header, FrameError};

/// One whole message read off a stream.
pub struct Message {
    pub tag: u8,
    /// The whole frame: tag, length and body.
    pub frame: Bytes,
}

impl Message {
    pub fn body(&self) -> &[u8] {
        &self.frame[5..]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

pub struct Conn<S> {
    pub io: S,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
}

pub const BUF_SIZE: usize = 8 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(io: S) -> Self {
        Conn {
            io,
            rbuf: BytesMut::with_capacity(BUF_SIZE),
            wbuf: BytesMut::new(),
        }
    }

    /// Reads one whole message of at most `max_len` bytes.
    pub async fn read_message(&mut self, max_len: usize) -> Result<Message, ReadError> {
        loop {
            if let Some(h) = parse_header(&self.rbuf, max_len)? {
                if self.rbuf.len() >= h.frame_len() {
                    let frame = self.rbuf.split_to(h.frame_len()).freeze();
                    return Ok(Message { tag: h.tag, frame });
                }
                self.rbuf.reserve(h.frame_len() - self.rbuf.len());
            } else {
                self.rbuf.reserve(BUF_SIZE);
            }
            if tokio_util::io::read_buf(&mut self.io, &mut self.rbuf).await? == 0 {
                return Err(ReadError::Closed);
            }
        }
    }

    /// Queues bytes to be written by the next [`Conn::flush`].
    pub fn send(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        self.io.flush().await
    }
}
