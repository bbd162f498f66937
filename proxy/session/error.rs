//! Errors of one client session, and the one place that decides what a client
//! is told about them.

use crate::protocol::backend::Report;
use crate::protocol::frame::FrameError;
use crate::protocol::sqlstate;
use crate::protocol::startup::StartupError;
use crate::upstream::UpstreamError;

use super::conn::ReadError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client connection: {0}")]
    Client(ReadError),
    #[error("client sent a bad startup packet: {0}")]
    Startup(#[from] StartupError),
    #[error("client message: {0}")]
    ClientFrame(FrameError),
    #[error("client protocol violation: {0}")]
    ClientProtocol(&'static str),
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
    #[error("upstream connection lost: {0}")]
    UpstreamLost(ReadError),
    #[error("upstream protocol violation: {0}")]
    UpstreamProtocol(String),
    #[error("upstream SCRAM exchange failed: {0}")]
    Scram(std::io::Error),
    #[error("TLS handshake with client failed: {0}")]
    ClientTls(std::io::Error),
    #[error("handshake not completed within the timeout")]
    HandshakeTimeout,
    #[error("client connection limit reached")]
    TooManyClients(usize),
    #[error("upstream ended the session with an error")]
    UpstreamRejected,
    #[error("connection arrived while shutting down")]
    ShuttingDown,
    #[error("idle_timeout reached")]
    IdleTimeout,
    #[error("closed by shutdown")]
    Shutdown,
    #[error("role {0} is not in admin_roles")]
    NotAdmin(String),
    #[error("client message of {len} bytes is over max_held_message_size ({max})")]
    HeldTooLarge { len: usize, max: usize },
    #[error("held client messages would exceed max_held_total ({0})")]
    HeldBusy(usize),
}

impl SessionError {
    /// What the client is told, if anything; only text written here is sent.
    pub fn report(&self) -> Option<Report> {
        use SessionError::*;
        Some(match self {
            // The client is gone, or already has the server's own error.
            Client(_) | UpstreamRejected | ClientTls(_) => return None,
            Startup(e) => Report::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()),
            ClientFrame(e) => Report::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("invalid client message: {e}"),
            )
            .with_hint("max_message_size in ddlgate's configuration bounds client messages"),
            ClientProtocol(what) => Report::fatal(sqlstate::PROTOCOL_VIOLATION, *what),
            Upstream(e) => Report::fatal(sqlstate::CONNECTION_FAILURE, e.to_string()),
            UpstreamLost(_) => Report::fatal(
                sqlstate::CONNECTION_FAILURE,
                "the upstream server closed the connection unexpectedly",
            )
            .with_detail("The server may have been restarted or terminated this backend."),
            HeldTooLarge { len, max } => Report::fatal(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "ddlgate reads a Query or Parse whole to judge its SQL, and this one \
                     ({len} bytes) is over its max_held_message_size ({max} bytes)"
                ),
            )
            .with_hint("Send large data as Bind parameters or COPY, which stream through, or raise max_held_message_size."),
            HeldBusy(max) => Report::fatal(
                sqlstate::OUT_OF_MEMORY,
                format!(
                    "ddlgate is already holding its max_held_total ({max} bytes) of large messages \
                     from other sessions"
                ),
            )
            .with_hint("Try again later, or raise max_held_total."),
            NotAdmin(role) => Report::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!("role \"{role}\" may not use ddlgate's admin console"),
            )
            .with_hint("List the role in admin_roles in ddlgate's configuration."),
            IdleTimeout => Report::fatal(
                sqlstate::IDLE_SESSION_TIMEOUT,
                "terminating connection due to ddlgate's idle_timeout",
            ),
            Shutdown => Report::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection because ddlgate is shutting down",
            ),
            UpstreamProtocol(_) => Report::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "the upstream server sent an unexpected message",
            ),
            Scram(_) => Report::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "SCRAM authentication with the upstream server failed",
            ),
            HandshakeTimeout => Report::fatal(
                sqlstate::CONNECTION_FAILURE,
                "startup and authentication did not complete within ddlgate's handshake_timeout",
            ),
            ShuttingDown => Report::fatal(
                sqlstate::CANNOT_CONNECT_NOW,
                "ddlgate is shutting down and accepts no new sessions",
            ),
            TooManyClients(max) => Report::fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                format!(
                    "sorry, too many clients already (ddlgate max_client_connections is {max})"
                ),
            ),
        })
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        use SessionError::*;
        match self {
            Client(_) => "client_io",
            Startup(_) | ClientFrame(_) | ClientProtocol(_) => "client_protocol",
            Upstream(_) => "upstream_connect",
            UpstreamLost(_) => "upstream_lost",
            UpstreamProtocol(_) => "upstream_protocol",
            Scram(_) => "auth",
            ClientTls(_) => "client_tls",
            HandshakeTimeout => "handshake_timeout",
            TooManyClients(_) => "too_many_clients",
            ShuttingDown => "shutting_down",
            IdleTimeout => "idle_timeout",
            Shutdown => "shutdown",
            UpstreamRejected => "upstream_rejected",
            NotAdmin(_) => "not_admin",
            HeldTooLarge { .. } => "held_too_large",
            HeldBusy(_) => "held_busy",
        }
    }
}
