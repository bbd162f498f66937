//! Opening a connection to the upstream, including libpq-style TLS negotiation
//! (SSLRequest, then a handshake when the server answers `S`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use super::target::{Address, SslMode, UpstreamTarget};
use crate::protocol::startup::CancelKey;

/// A connection to the upstream: plain TCP, Unix socket, or TLS over TCP.
pub type UpstreamStream = Either<Either<TcpStream, UnixStream>, TlsStream<TcpStream>>;

/// Why the upstream could not be reached. The `Display` text is written for
/// clients: it names the cause without internal detail.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to the upstream server: {}", describe(.0))]
    Connect(#[source] io::Error),
    #[error("timed out connecting to the upstream server")]
    Timeout,
    #[error("the upstream server does not support TLS, and sslmode requires it")]
    TlsRefused,
    #[error("TLS handshake with the upstream server failed: {}", describe(.0))]
    Handshake(#[source] io::Error),
    #[error("the upstream server sent an invalid response to SSL negotiation")]
    BadSslResponse,
}

/// An I/O error's kind and OS message, without paths or other internals.
fn describe(e: &io::Error) -> String {
    match e.get_ref() {
        // rustls errors (certificate problems) are the useful part here.
        Some(inner) if e.kind() == io::ErrorKind::InvalidData => inner.to_string(),
        _ => e.kind().to_string(),
    }
}

/// Connects to `target`, negotiating TLS as its `sslmode` asks.
/// `tls` is the config built for that mode (`None` when TLS is disabled).
pub async fn connect(
    target: &UpstreamTarget,
    tls: Option<&Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<UpstreamStream, UpstreamError> {
    tokio::time::timeout(timeout, connect_inner(target, tls))
        .await
        .map_err(|_| UpstreamError::Timeout)?
}

async fn connect_inner(
    target: &UpstreamTarget,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<UpstreamStream, UpstreamError> {
    let (host, port) = match &target.address {
        Address::Unix { dir, port } => {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            let s = UnixStream::connect(path)
                .await
                .map_err(UpstreamError::Connect)?;
            return Ok(Either::Left(Either::Right(s)));
        }
        Address::Tcp { host, port } => (host, *port),
    };
    let mut tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(UpstreamError::Connect)?;
    tcp.set_nodelay(true).map_err(UpstreamError::Connect)?;
    let Some(config) = tls else {
        return Ok(Either::Left(Either::Left(tcp)));
    };

    // SSLRequest: length 8, code 80877103.
    tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47])
        .await
        .map_err(UpstreamError::Connect)?;
    let answer = tcp.read_u8().await.map_err(UpstreamError::Connect)?;
    match answer {
        b'S' => {}
        b'N' if target.sslmode == SslMode::Prefer => return Ok(Either::Left(Either::Left(tcp))),
        b'N' => return Err(UpstreamError::TlsRefused),
        _ => return Err(UpstreamError::BadSslResponse),
    }
    let name = ServerName::try_from(host.clone())
        .map_err(|e| UpstreamError::Handshake(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let stream = TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(UpstreamError::Handshake)?;
    Ok(Either::Right(stream))
}

/// Delivers a CancelRequest for `key` to the upstream.
pub async fn send_cancel(
    target: &UpstreamTarget,
    tls: Option<&Arc<ClientConfig>>,
    timeout: Duration,
    key: &CancelKey,
) -> Result<(), UpstreamError> {
    let mut stream = connect(target, tls, timeout).await?;
    let send = async {
        stream.write_all(&key.request_packet()).await?;
        stream.flush().await?;
        // The server closes the connection once it has read the request.
        let mut sink = [0u8; 1];
        let _ = stream.read(&mut sink).await;
        Ok::<_, io::Error>(())
    };
    tokio::time::timeout(timeout, send)
        .await
        .map_err(|_| UpstreamError::Timeout)?
        .map_err(UpstreamError::Connect)
}
