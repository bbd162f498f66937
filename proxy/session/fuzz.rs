//! Entry points for the fuzz targets (`crate::fuzz`) into the session
//! layer's private parts: the relay with its pipes and gate, the
//! authentication relay (SCRAM bridge included), and the pipe's framing.
//! Each runs one input over in-memory streams; none does real I/O.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::conn::Conn;
use super::control::Control;
use super::gate::{Gate, SessionInfo};
use super::pipe::{Handler, Pipe, Seen, Verdict};
use super::relay::Relay;
use super::state::SessionState;
use crate::process::Runtime;
use crate::protocol::frame::FrameError;
use crate::telemetry::metrics::Metrics;

/// A peer that sends `data` in chunks of the sizes `chunks` gives (cycled),
/// then closes; what it is sent is dropped.
struct Scripted<'a> {
    data: &'a [u8],
    chunks: &'a [u8],
    turn: usize,
}

impl<'a> Scripted<'a> {
    fn new(data: &'a [u8], chunks: &'a [u8]) -> Self {
        Scripted {
            data,
            chunks,
            turn: 0,
        }
    }
}

impl AsyncRead for Scripted<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let chunk = match self.chunks {
            [] => self.data.len(),
            c => usize::from(c[self.turn % c.len()]).max(1) * 7,
        };
        self.turn += 1;
        let n = chunk.min(self.data.len()).min(buf.remaining());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The relay between a scripted client and server, on `rt`: the gate sees
/// every message either side sends, in the order the relay scans them.
pub fn relay(
    rt: &tokio::runtime::Runtime,
    runtime: &Arc<Runtime>,
    client: &[u8],
    server: &[u8],
    chunks: &[u8],
) {
    let who = SessionInfo {
        user: "fuzz".into(),
        database: "fuzz".into(),
        application_name: String::new(),
        client_addr: "127.0.0.1:1".parse().expect("literal address"),
    };
    let metrics = Metrics::new();
    let state = SessionState {
        server_version: "15.4".into(),
        ..SessionState::default()
    };
    let (mut c, mut s) = (Scripted::new(client, chunks), Scripted::new(server, chunks));
    rt.block_on(async {
        let mut relay = Relay {
            client: &mut c,
            server: &mut s,
            c2s: Pipe::new(BytesMut::new()),
            s2c: Pipe::new(BytesMut::new()),
            state,
            gate: Gate::new(
                runtime.clone(),
                None,
                None,
                who,
                Arc::new(tokio::sync::Notify::new()),
            ),
            control: Control::new(None, CancellationToken::new(), CancellationToken::new()),
            metrics: &metrics,
            max_message_size: 1 << 20,
            held: super::relay::Held {
                max_one: 1 << 19,
                max_total: 1 << 20,
                budget: crate::process::held::HeldBudget::new(),
                reserved: None,
            },
        };
        relay.run().await;
    });
}

/// Authentication and the rest of startup with scripted peers, the SCRAM
/// bridge on or off.
pub fn auth(rt: &tokio::runtime::Runtime, client: &[u8], server: &[u8], bridge: bool) {
    rt.block_on(async {
        let mut c = Conn::new(Scripted::new(client, &[]));
        let mut s = Conn::new(Scripted::new(server, &[]));
        if super::auth::authenticate(&mut c, &mut s, bridge)
            .await
            .is_ok()
        {
            let mut state = SessionState::default();
            let _ = super::auth::finish_startup(&mut c, &mut s, &mut state, |k| k).await;
        }
    });
}

/// The pipe's framing and splicing: each message's verdict is read off
/// `verdicts`, as a side's handler would decide it.
pub fn pipe(data: &[u8], verdicts: &[u8], max_len: usize) {
    struct Pick<'a> {
        verdicts: &'a [u8],
        i: usize,
    }
    impl Pick<'_> {
        fn next(&mut self) -> u8 {
            let v = self
                .verdicts
                .get(self.i % self.verdicts.len().max(1))
                .copied();
            self.i += 1;
            v.unwrap_or(0)
        }
    }
    impl Handler for Pick<'_> {
        type Error = FrameError;
        fn whole(&mut self, _tag: u8, _len: usize) -> bool {
            self.next() % 2 == 0
        }
        fn seen(&mut self, seen: Seen<'_>) -> Result<Verdict, FrameError> {
            let whole = matches!(seen, Seen::Whole(..));
            Ok(match self.next() % 5 {
                0 => Verdict::Keep,
                1 => Verdict::Before(vec![b'x'; 3]),
                2 if whole => Verdict::Replace(b"Z\0\0\0\x05I".to_vec()),
                3 if self.i > 50 => Verdict::Hold(Vec::new()),
                _ => Verdict::Keep,
            })
        }
    }
    let mut p = Pipe::new(BytesMut::new());
    let mut h = Pick { verdicts, i: 0 };
    // Fed in pieces, as reads deliver it, with writes in between.
    for piece in data.chunks(97) {
        p.buf.extend_from_slice(piece);
        if p.scan(max_len, &mut h).is_err() {
            return;
        }
        let n = p.ready().len() / 2;
        p.consume(n);
    }
}
