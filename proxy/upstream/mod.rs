//! The upstream PostgreSQL server: where it is ([`UpstreamTarget`]) and how a
//! connection to it is opened (TCP or Unix socket, TLS per `sslmode`).

mod connect;
mod target;

pub use connect::{connect, send_cancel, UpstreamError, UpstreamStream};
pub use target::{Address, SslMode, UpstreamTarget};
