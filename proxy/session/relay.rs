//! The relay: both directions of an authenticated session driven from one
//! `poll_fn`, so neither direction can stall the other, with no per-message
//! allocation. One read is followed by one write of everything it completed.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::protocol::frame::FrameError;
use crate::protocol::frontend::TERMINATE;
use crate::telemetry::metrics::Metrics;

use super::conn::ReadError;
use super::control::{Control, Signal};
use super::error::SessionError;
use super::gate::{Action, Gate};
use super::pipe::{Handler, Pipe, Seen, Verdict};
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
    /// A message to hold whole over the bounds (`max_held_message_size`,
    /// `max_held_total`).
    Held(SessionError),
}

impl From<ScanStop> for SessionError {
    fn from(s: ScanStop) -> Self {
        match s {
            ScanStop::Frame(e) => SessionError::ClientFrame(e),
            ScanStop::Held(e) => e,
        }
    }
}

impl From<FrameError> for ScanStop {
    fn from(e: FrameError) -> Self {
        ScanStop::Frame(e)
    }
}

pub struct Relay<'a, C, S> {
    pub client: &'a mut C,
    pub server: &'a mut S,
    pub c2s: Pipe,
    pub s2c: Pipe,
    pub state: SessionState,
    pub gate: Gate,
    pub control: Control,
    pub metrics: &'a Metrics,
    pub max_message_size: usize,
    pub held: Held,
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

            // While later client messages wait for a schema change, read no
            // more than a pipe's worth of them.
            let held_full = self.gate.holding_client() && self.c2s.unscanned_full();
            if self.c2s.wants_read() && !held_full {
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
                        if let Err(stop) = self.scan_client() {
                            *phase = Phase::Closing(self.close_with(stop.into()));
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
                        // Held client messages are scanned again as soon as
                        // a response lets them go.
                        let held = self.gate.holding_client();
                        if self.scan_server().is_err() {
                            *phase = Phase::Closing(self.close_server_gone());
                            continue;
                        }
                        if held && !self.gate.holding_client() {
                            if let Err(stop) = self.scan_client() {
                                *phase = Phase::Closing(self.close_with(stop.into()));
                                continue;
                            }
                        }
                    }
                    Poll::Pending => {}
                }
            }

            if progress {
                continue;
            }
            // A schema change's retry whose wait is over goes in front of
            // whatever the client sent meanwhile; a migration's progress
            // and answer go to the client.
            let client_ready = self.s2c.at_boundary();
            match self.gate.poll(cx, &mut self.state, client_ready) {
                Some(Action::ToServer(bytes)) => {
                    self.c2s.insert_ready(&bytes);
                    continue;
                }
                Some(Action::ToClient(bytes)) => {
                    self.s2c.inject(&bytes);
                    if let Err(stop) = self.scan_client() {
                        *phase = Phase::Closing(self.close_with(stop.into()));
                    }
                    continue;
                }
                Some(Action::Rescan) => {
                    if let Err(stop) = self.scan_client() {
                        *phase = Phase::Closing(self.close_with(stop.into()));
                    }
                    continue;
                }
                None => {}
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
        let mut side = ClientSide {
            state: &mut self.state,
            gate: &mut self.gate,
            metrics: self.metrics,
            held: &mut self.held,
        };
        self.c2s.scan(self.max_message_size, &mut side)
    }

    fn scan_server(&mut self) -> Result<(), FrameError> {
        let mut side = ServerSide {
            state: &mut self.state,
            gate: &mut self.gate,
        };
        self.s2c.scan(usize::MAX, &mut side)
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
        let expected = self.state.server_sent_fatal || self.state.client_terminated;
        if self.s2c.at_boundary() && !expected {
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
            if self.s2c.at_boundary() && !self.state.client_terminated {
                self.s2c.inject(&report.to_bytes());
            }
        }
        End::ClosedByProxy(reason)
    }
}

/// The client-to-server side: the gate sees SQL and keeps groups in order.
struct ClientSide<'a> {
    state: &'a mut SessionState,
    gate: &'a mut Gate,
    metrics: &'a Metrics,
    held: &'a mut Held,
}

/// This session's share of held-message memory: the bound on one message,
/// and its reservation from all sessions' budget while it buffers a large
/// one.
pub struct Held {
    pub max_one: usize,
    pub max_total: usize,
    pub budget: std::sync::Arc<crate::process::held::HeldBudget>,
    pub reserved: Option<crate::process::held::HeldGuard>,
}

impl Held {
    /// Whether a message of `len` bytes may be buffered whole now.
    fn admit(&mut self, len: usize) -> Result<(), SessionError> {
        if len > self.max_one {
            return Err(SessionError::HeldTooLarge {
                len,
                max: self.max_one,
            });
        }
        if len > crate::process::held::UNCOUNTED && self.reserved.is_none() {
            self.reserved = Some(
                self.budget
                    .try_reserve(len, self.max_total)
                    .ok_or(SessionError::HeldBusy(self.max_total))?,
            );
        }
        Ok(())
    }
}

impl Handler for ClientSide<'_> {
    type Error = ScanStop;

    fn whole(&mut self, tag: u8, _frame_len: usize) -> bool {
        self.gate.wants_client(tag)
    }

    fn buffering(&mut self, frame_len: usize) -> Result<(), ScanStop> {
        self.held.admit(frame_len).map_err(ScanStop::Held)
    }

    fn seen(&mut self, seen: Seen<'_>) -> Result<Verdict, ScanStop> {
        // Seen whole: what it reserved is given back (it is written next).
        self.held.reserved = None;
        if let Seen::Whole(b'X', _) | Seen::Streamed(b'X') = seen {
            self.state.client_terminated = true;
        }
        let (tag, verdict) = match seen {
            Seen::Whole(tag, body) => (tag, self.gate.on_client(tag, body, self.state)),
            Seen::Streamed(tag) => (tag, self.gate.on_client_streamed(tag, self.state)),
        };
        if !matches!(verdict, Verdict::Hold(_)) && matches!(tag, b'Q' | b'E') {
            self.metrics.queries.increment(1);
        }
        Ok(verdict)
    }
}

/// The server-to-client side: session state from ReadyForQuery,
/// ParameterStatus and errors; the gate for everything it must see.
struct ServerSide<'a> {
    state: &'a mut SessionState,
    gate: &'a mut Gate,
}

impl Handler for ServerSide<'_> {
    type Error = FrameError;

    fn whole(&mut self, tag: u8, frame_len: usize) -> bool {
        self.gate.wants_server(tag, frame_len)
    }

    fn seen(&mut self, seen: Seen<'_>) -> Result<Verdict, FrameError> {
        let Seen::Whole(tag, body) = seen else {
            return Ok(self.gate.on_server_streamed());
        };
        self.state.observe_server(tag, body);
        Ok(self.gate.on_server(tag, body, self.state))
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
