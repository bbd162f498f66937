//! Authentication with the client's own credentials, relayed to the upstream,
//! and the rest of startup (ParameterStatus, BackendKeyData) up to the first
//! ReadyForQuery.
//!
//! Relaying works for trust, password, md5 and SCRAM-SHA-256 as long as the
//! client does not bind SCRAM to a TLS channel: a TLS-terminating proxy cannot
//! carry channel binding, so `SCRAM-SHA-256-PLUS` is never offered. One case
//! cannot be relayed: when the client reached ddlgate over TLS and the
//! upstream link is TLS too, libpq-style clients announce "I support channel
//! binding but the server does not" (gs2 flag `y`), which a TLS server rejects
//! as a downgrade. There, ddlgate asks the client for its password over the
//! encrypted link and runs SCRAM with the upstream itself.

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::protocol::backend::{self, auth, put_auth, put_auth_sasl};
use crate::protocol::frame::{put_frame, take_cstr};
use crate::protocol::startup::CancelKey;

use super::conn::{Conn, Message, ReadError};
use super::error::SessionError;
use super::state::SessionState;

/// Bound on client messages during authentication (PostgreSQL allows 64 kB tokens).
const AUTH_MESSAGE_MAX: usize = 64 * 1024 + 5;
/// Bound on server messages during startup.
const SERVER_MESSAGE_MAX: usize = 1 << 30;

async fn from_server<S: AsyncRead + AsyncWrite + Unpin>(
    server: &mut Conn<S>,
) -> Result<Message, SessionError> {
    server
        .read_message(SERVER_MESSAGE_MAX)
        .await
        .map_err(SessionError::UpstreamLost)
}

async fn from_client<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Conn<C>,
) -> Result<Message, SessionError> {
    client
        .flush()
        .await
        .map_err(|e| SessionError::Client(ReadError::Io(e)))?;
    let msg = client
        .read_message(AUTH_MESSAGE_MAX)
        .await
        .map_err(|e| match e {
            ReadError::Frame(f) => SessionError::ClientFrame(f),
            other => SessionError::Client(other),
        })?;
    if msg.tag != b'p' {
        return Err(SessionError::ClientProtocol(
            "expected a password or SASL response message",
        ));
    }
    Ok(msg)
}

async fn to_server<S: AsyncRead + AsyncWrite + Unpin>(
    server: &mut Conn<S>,
    bytes: &[u8],
) -> Result<(), SessionError> {
    server.send(bytes);
    server
        .flush()
        .await
        .map_err(|e| SessionError::UpstreamLost(ReadError::Io(e)))
}

fn unexpected(tag: u8, during: &str) -> SessionError {
    SessionError::UpstreamProtocol(format!(
        "unexpected message '{}' during {during}",
        tag as char
    ))
}

/// Relays authentication until the server accepts or rejects the client.
/// `bridge_scram`: both links are TLS, so SCRAM is run by the proxy.
pub async fn authenticate<C, S>(
    client: &mut Conn<C>,
    server: &mut Conn<S>,
    bridge_scram: bool,
) -> Result<(), SessionError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let msg = from_server(server).await?;
        match msg.tag {
            b'R' => {
                let code = backend::auth_code(msg.body()).ok_or_else(|| {
                    SessionError::UpstreamProtocol("short authentication message".into())
                })?;
                match code {
                    auth::OK => {
                        client.send(&msg.frame);
                        return Ok(());
                    }
                    auth::SASL => {
                        let offered: Vec<&[u8]> = backend::sasl_mechanisms(msg.body())
                            .into_iter()
                            .filter(|m| *m != b"SCRAM-SHA-256-PLUS")
                            .collect();
                        if bridge_scram && offered.contains(&SCRAM_SHA_256.as_bytes()) {
                            scram_for_client(client, server).await?;
                            continue;
                        }
                        put_auth_sasl(&mut client.wbuf, &offered);
                    }
                    _ => client.send(&msg.frame),
                }
                if auth::expects_response(code) {
                    let response = from_client(client).await?;
                    to_server(server, &response.frame).await?;
                }
            }
            b'E' => {
                client.send(&msg.frame);
                return Err(SessionError::UpstreamRejected);
            }
            b'v' | b'N' => client.send(&msg.frame),
            other => return Err(unexpected(other, "authentication")),
        }
    }
}

/// Takes the client's password over its TLS link and authenticates to the
/// upstream with SCRAM-SHA-256. The password is never logged.
async fn scram_for_client<C, S>(
    client: &mut Conn<C>,
    server: &mut Conn<S>,
) -> Result<(), SessionError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    put_auth(&mut client.wbuf, auth::CLEARTEXT, &[]);
    let response = from_client(client).await?;
    let password = take_cstr(response.body())
        .ok_or(SessionError::ClientProtocol(
            "password message is not a string",
        ))?
        .0;
    let mut scram = ScramSha256::new(password, ChannelBinding::unsupported());
    let mut out = BytesMut::new();
    frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut out)
        .map_err(SessionError::Scram)?;
    to_server(server, &out).await?;

    for step in [auth::SASL_CONTINUE, auth::SASL_FINAL] {
        let msg = from_server(server).await?;
        match (msg.tag, backend::auth_code(msg.body())) {
            (b'R', Some(code)) if code == step => {
                let data = &msg.body()[4..];
                if step == auth::SASL_CONTINUE {
                    scram.update(data).map_err(SessionError::Scram)?;
                    out.clear();
                    frontend::sasl_response(scram.message(), &mut out)
                        .map_err(SessionError::Scram)?;
                    to_server(server, &out).await?;
                } else {
                    scram.finish(data).map_err(SessionError::Scram)?;
                }
            }
            (b'E', _) => {
                client.send(&msg.frame);
                return Err(SessionError::UpstreamRejected);
            }
            (tag, _) => return Err(unexpected(tag, "SCRAM authentication")),
        }
    }
    Ok(())
}

/// Relays ParameterStatus and the rest of startup up to ReadyForQuery. The
/// upstream's cancel key is handed to `rekey`, and the key it returns is what
/// the client sees.
pub async fn finish_startup<C, S>(
    client: &mut Conn<C>,
    server: &mut Conn<S>,
    state: &mut SessionState,
    mut rekey: impl FnMut(CancelKey) -> CancelKey,
) -> Result<(), SessionError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let msg = from_server(server).await?;
        let body = msg.body();
        match msg.tag {
            b'S' => {
                state.parameter_status(body);
                client.send(&msg.frame);
            }
            b'K' if body.len() >= 8 => {
                let upstream = CancelKey {
                    pid: i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                    secret: msg.frame.slice(9..),
                };
                let ours = rekey(upstream);
                let mut key_body = ours.pid.to_be_bytes().to_vec();
                key_body.extend_from_slice(&ours.secret);
                put_frame(&mut client.wbuf, b'K', &key_body);
            }
            b'Z' => {
                state.tx = backend::tx_status_after(body);
                client.send(&msg.frame);
                return client
                    .flush()
                    .await
                    .map_err(|e| SessionError::Client(ReadError::Io(e)));
            }
            b'E' => {
                client.send(&msg.frame);
                if backend::error_is_fatal(body) {
                    return Err(SessionError::UpstreamRejected);
                }
            }
            b'N' => client.send(&msg.frame),
            other => return Err(unexpected(other, "startup")),
        }
    }
}
