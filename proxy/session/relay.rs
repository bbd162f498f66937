//! The relay: both directions of an authenticated session driven from one
//! `poll_fn`, so neither direction can stall the other, with no per-message
//! allocation. One read is followed by one write of everything it completed.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::protocol::backend::{self, TxStatus};
use crate::protocol::frame::FrameError;
use crate::telemetry::metrics::Metrics;

use super::conn::ReadError;
use super::control::{Control, Signal};
use super::error::SessionError;
use super::intercept::{Action, Interceptor, SqlMessage};
use super::pipe::{Pipe, Seen};
use super::state::SessionState;

/// How a relay ended.
#[derive(Debug)]
pub enum End {
    /// The client closed its connection (after Terminate or not).
    ClientClosed,
    /// The upstream closed its connection.
    ServerClosed,
    /// The proxy ended the session (bad client message, idle timeout,
    /// shutdown) and told the client why.
    ClosedByProxy(SessionError),
}

/// Scanning a client message failed.
enum ScanStop {
    Frame(FrameError),
}

impl From<FrameError> for ScanStop {
    fn from(e: FrameError) -> Self {
        ScanStop::Frame(e)
    }
}

const TERMINATE: &[u8] = b"X\0\0\0\x04";

pub struct Relay<'a, C, S> {
    pub client: &'a mut C,
    pub server: &'a mut S,
    pub c2s: Pipe,
    pub s2c: Pipe,
    pub state: SessionState,
    pub intercept: Interceptor,
    pub control: Control,
    pub metrics: &'a Metrics,
    pub max_message_size: usize,
}

/// State of the loop: relaying, or flushing what is left before returning.
enum Phase {
    Relaying,
    Closing(End),
}

impl<C, S> Relay<'_, C, S>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub async fn run(&mut self) -> End {
        let mut phase = Phase::Relaying;
        let mut flush = Flush::default();
        poll_fn(|cx| self.poll(cx, &mut phase, &mut flush)).await
    }

    fn poll(&mut self, cx: &mut Context<'_>, phase: &mut Phase, flush: &mut Flush) -> Poll<End> {
        loop {
            let mut progress = false;

            match write_out(cx, self.server, &mut self.c2s, &mut flush.server) {
                Ok(p) => progress |= p,
                Err(()) if matches!(phase, Phase::Relaying) => {
                    // What could not be sent is lost with the connection; the
                    // client still hears why.
                    self.c2s.clear();
                    flush.server = false;
                    *phase = Phase::Closing(self.close_server_gone());
                    continue;
                }
                Err(()) => return Poll::Ready(End::ServerClosed),
            }
            match write_out(cx, self.client, &mut self.s2c, &mut flush.client) {
                Ok(p) => progress |= p,
                // Nobody is left to tell.
                Err(()) => return Poll::Ready(End::ClientClosed),
            }

            if let Phase::Closing(_) = phase {
                if self.c2s.has_ready() || self.s2c.has_ready() || flush.server || flush.client {
                    if progress {
                        continue;
                    }
                    return Poll::Pending;
                }
                let Phase::Closing(end) = std::mem::replace(phase, Phase::Relaying) else {
                    unreachable!()
                };
                return Poll::Ready(end);
            }

            if self.c2s.wants_read() {
                self.c2s.reserve_for_read();
                match tokio_util::io::poll_read_buf(
                    Pin::new(&mut *self.client),
                    cx,
                    &mut self.c2s.buf,
                ) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        *phase = Phase::Closing(self.close_client_gone());
                        continue;
                    }
                    Poll::Ready(Ok(n)) => {
                        progress = true;
                        self.control.activity();
                        self.metrics.client_bytes.increment(n as u64);
                        if let Err(ScanStop::Frame(e)) = self.scan_client() {
                            *phase = Phase::Closing(self.close_with(SessionError::ClientFrame(e)));
                            continue;
                        }
                    }
                    Poll::Pending => {}
                }
            }
            if self.s2c.wants_read() {
                self.s2c.reserve_for_read();
                match tokio_util::io::poll_read_buf(
                    Pin::new(&mut *self.server),
                    cx,
                    &mut self.s2c.buf,
                ) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        *phase = Phase::Closing(self.close_server_gone());
                        continue;
                    }
                    Poll::Ready(Ok(n)) => {
                        progress = true;
                        self.control.activity();
                        self.metrics.server_bytes.increment(n as u64);
                        if self.scan_server().is_err() {
                            *phase = Phase::Closing(self.close_server_gone());
                            continue;
                        }
                    }
                    Poll::Pending => {}
                }
            }

            if progress {
                continue;
            }
            // About to wait: only now check what ends a session from outside
            // its traffic, so busy iterations never pay for it.
            if let Some(signal) = self.control.poll(cx, &self.state, self.quiet()) {
                let reason = match signal {
                    Signal::IdleTimeout => SessionError::IdleTimeout,
                    Signal::Shutdown => SessionError::Shutdown,
                };
                *phase = Phase::Closing(self.close_with(reason));
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Nothing buffered either way and no request in flight.
    fn quiet(&self) -> bool {
        self.state.is_idle() && self.c2s.is_empty() && self.s2c.is_empty()
    }

    fn scan_client(&mut self) -> Result<(), ScanStop> {
        let (state, intercept, metrics) = (&mut self.state, &mut self.intercept, self.metrics);
        self.c2s
            .scan(self.max_message_size, Interceptor::wants, |seen| {
                match seen {
                    Seen::Whole(tag, body) => {
                        if tag == b'Q' {
                            state.outstanding += 1;
                            metrics.queries.increment(1);
                        }
                        if let Some(msg) = SqlMessage::decode(tag, body) {
                            match intercept.inspect(msg, state) {
                                Action::Forward => {}
                            }
                        }
                    }
                    Seen::Streamed(b'S') | Seen::Streamed(b'F') => state.outstanding += 1,
                    Seen::Streamed(b'E') => metrics.queries.increment(1),
                    Seen::Streamed(_) => {}
                }
                Ok(())
            })
    }

    fn scan_server(&mut self) -> Result<(), FrameError> {
        let state = &mut self.state;
        self.s2c.scan(
            usize::MAX,
            |tag| matches!(tag, b'Z' | b'S' | b'E'),
            |seen| {
                if let Seen::Whole(tag, body) = seen {
                    match tag {
                        b'Z' => {
                            state.tx =
                                backend::ready_for_query_status(body).unwrap_or(TxStatus::Idle);
                            state.outstanding = state.outstanding.saturating_sub(1);
                        }
                        b'S' => {
                            if let Some((b"server_version", v)) = backend::parameter_status(body) {
                                state.server_version = String::from_utf8_lossy(v).into_owned();
                            }
                        }
                        _ => state.server_sent_fatal = backend::error_is_fatal(body),
                    }
                }
                Ok(())
            },
        )
    }

    fn close_client_gone(&mut self) -> End {
        self.c2s.discard_unscanned();
        if self.c2s.at_boundary() {
            self.c2s.inject(TERMINATE);
        }
        End::ClientClosed
    }

    fn close_server_gone(&mut self) -> End {
        // Whatever the server completed still reaches the client; then, unless
        // the server said goodbye itself, the client learns what happened.
        let _ = self.scan_server();
        if self.s2c.at_boundary() && !self.state.server_sent_fatal {
            if let Some(report) = SessionError::UpstreamLost(ReadError::Closed).report() {
                self.s2c.inject(&report.to_bytes());
            }
        }
        self.c2s.discard_unscanned();
        End::ServerClosed
    }

    fn close_with(&mut self, reason: SessionError) -> End {
        self.c2s.discard_unscanned();
        if self.c2s.at_boundary() {
            self.c2s.inject(TERMINATE);
        }
        if let Some(report) = reason.report() {
            if self.s2c.at_boundary() {
                self.s2c.inject(&report.to_bytes());
            }
        }
        End::ClosedByProxy(reason)
    }
}

/// Which sides have written data that may sit in a TLS buffer.
#[derive(Default)]
struct Flush {
    client: bool,
    server: bool,
}

/// Writes what `pipe` has ready into `dst`, then flushes. `Err` means the
/// destination is gone.
fn write_out<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    dst: &mut W,
    pipe: &mut Pipe,
    needs_flush: &mut bool,
) -> Result<bool, ()> {
    let mut progress = false;
    while pipe.has_ready() {
        match Pin::new(&mut *dst).poll_write(cx, pipe.ready()) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(()),
            Poll::Ready(Ok(n)) => {
                pipe.consume(n);
                *needs_flush = true;
                progress = true;
            }
            Poll::Pending => return Ok(progress),
        }
    }
    if *needs_flush {
        match Pin::new(&mut *dst).poll_flush(cx) {
            Poll::Ready(Ok(())) => *needs_flush = false,
            Poll::Ready(Err(_)) => return Err(()),
            Poll::Pending => {}
        }
    }
    Ok(progress)
}
