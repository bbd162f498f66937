//! The opening of a client connection: SSLRequest (TLS when configured, else
//! `N`), GSSENCRequest (always `N`), then a CancelRequest or StartupMessage.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

use crate::protocol::startup::{self, CancelKey, StartupMessage, StartupPacket};

use super::conn::{Conn, ReadError};
use super::error::SessionError;

/// The client's stream once negotiation is over: plain or TLS.
pub type ClientStream<C> = Either<C, tokio_rustls::server::TlsStream<C>>;

pub enum Opening<C> {
    Cancel(CancelKey),
    Startup {
        conn: Box<Conn<ClientStream<C>>>,
        msg: StartupMessage,
    },
}

/// Runs negotiation. On a client error the client has been told already.
/// Every step must finish by `deadline` (the handshake timeout).
pub async fn negotiate<C>(
    io: C,
    tls: Option<&TlsAcceptor>,
    deadline: Instant,
) -> Result<Opening<C>, SessionError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut io: ClientStream<C> = Either::Left(io);
    let mut ssl_answered = false;
    loop {
        let packet = match timeout_at(deadline, read_packet(&mut io)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(report(&mut io, e).await),
            Err(_) => return Err(report(&mut io, SessionError::HandshakeTimeout).await),
        };
        let packet = match startup::decode(packet.freeze()) {
            Ok(p) => p,
            Err(e) => return Err(report(&mut io, e.into()).await),
        };
        match packet {
            StartupPacket::SslRequest if !ssl_answered => {
                ssl_answered = true;
                match (tls, io) {
                    (Some(acceptor), Either::Left(mut plain)) => {
                        plain.write_all(b"S").await.map_err(io_err)?;
                        let stream = acceptor
                            .accept(plain)
                            .await
                            .map_err(SessionError::ClientTls)?;
                        io = Either::Right(stream);
                    }
                    (_, other) => {
                        io = other;
                        io.write_all(b"N").await.map_err(io_err)?;
                    }
                }
            }
            StartupPacket::SslRequest => {
                return Err(report(
                    &mut io,
                    SessionError::ClientProtocol("SSLRequest sent twice"),
                )
                .await)
            }
            StartupPacket::GssEncRequest => {
                io.write_all(b"N").await.map_err(io_err)?;
            }
            StartupPacket::Cancel(key) => return Ok(Opening::Cancel(key)),
            StartupPacket::Startup(msg) => {
                return Ok(Opening::Startup {
                    conn: Box::new(Conn::new(io)),
                    msg,
                })
            }
        }
    }
}

fn io_err(e: std::io::Error) -> SessionError {
    SessionError::Client(ReadError::Io(e))
}

/// Reads one length-prefixed opening packet, exactly: bytes after it belong
/// to whatever comes next (for SSLRequest, the TLS handshake).
async fn read_packet<S: AsyncRead + Unpin>(io: &mut S) -> Result<BytesMut, SessionError> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await.map_err(closed)?;
    let len = startup::packet_len(len)?;
    let mut packet = BytesMut::zeroed(len);
    packet[..4].copy_from_slice(&(len as u32).to_be_bytes());
    io.read_exact(&mut packet[4..]).await.map_err(closed)?;
    Ok(packet)
}

fn closed(e: std::io::Error) -> SessionError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        SessionError::Client(ReadError::Closed)
    } else {
        SessionError::Client(ReadError::Io(e))
    }
}

/// Sends the client the report for `err`, if it has one, and returns `err`.
pub async fn report<S: AsyncWrite + Unpin>(io: &mut S, err: SessionError) -> SessionError {
    if let Some(r) = err.report() {
        let _ = io.write_all(&r.to_bytes()).await;
        let _ = io.flush().await;
    }
    err
}
