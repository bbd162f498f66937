//! The process's configuration as built once per load: settings plus the
//! TLS configs and audit file made from them. Swapped whole on SIGHUP, so a
//! session sees one consistent version from start to end.

use std::sync::Arc;

use rustls::ClientConfig;
use tokio_rustls::TlsAcceptor;

use crate::config::Settings;
use crate::telemetry::audit::Audit;
use crate::tls::{self, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("config key 'tls': TLS for clients: {0}")]
    ClientTls(TlsError),
    #[error("config key 'upstream': TLS to the upstream: {0}")]
    UpstreamTls(TlsError),
    #[error("config key 'ddl.audit_log': cannot open {path}: {source}")]
    Audit {
        path: String,
        source: std::io::Error,
    },
}

/// Settings plus what is built from them; swapped whole on reload, so a
/// session sees one consistent version from start to end.
pub struct Runtime {
    pub settings: Settings,
    pub tls_acceptor: Option<TlsAcceptor>,
    pub upstream_tls: Option<Arc<ClientConfig>>,
    /// The DDL audit file, opened anew on each reload (log rotation).
    pub audit: Option<Arc<Audit>>,
}

impl Runtime {
    pub fn build(settings: Settings) -> Result<Self, StartError> {
        let tls_acceptor = match &settings.tls {
            Some(files) => Some(TlsAcceptor::from(
                tls::server_config(files).map_err(StartError::ClientTls)?,
            )),
            None => None,
        };
        let upstream_tls = tls::client_config(
            settings.upstream.sslmode,
            settings.upstream.root_cert.as_deref(),
        )
        .map_err(StartError::UpstreamTls)?;
        let audit = match &settings.ddl.audit_log {
            Some(path) => Some(Arc::new(Audit::open(path).map_err(|source| {
                StartError::Audit {
                    path: path.display().to_string(),
                    source,
                }
            })?)),
            None => None,
        };
        Ok(Runtime {
            settings,
            tls_acceptor,
            upstream_tls,
            audit,
        })
    }
}
