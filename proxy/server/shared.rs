//! State shared by all sessions of one server: the current (reloadable)
//! runtime configuration, cancel keys, metrics, shutdown signals and the
//! connection count.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use rustls::ClientConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::cancel::CancelRegistry;
use crate::config::Settings;
use crate::telemetry::audit::Audit;
use crate::telemetry::metrics::Metrics;
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

pub struct Shared {
    runtime: RwLock<Arc<Runtime>>,
    pub cancels: CancelRegistry,
    pub metrics: Metrics,
    /// Stop accepting; close sessions once idle.
    pub drain: CancellationToken,
    /// Close every session now.
    pub force: CancellationToken,
    active: AtomicUsize,
    next_id: AtomicU64,
}

/// Whether a new client is within `max_client_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    OverLimit(usize),
}

/// One counted client connection; uncounted on drop.
pub struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.active.decrement(1.0);
    }
}

impl Shared {
    pub fn new(runtime: Runtime) -> Self {
        Shared {
            runtime: RwLock::new(Arc::new(runtime)),
            cancels: CancelRegistry::default(),
            metrics: Metrics::new(),
            drain: CancellationToken::new(),
            force: CancellationToken::new(),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn admit(self: &Arc<Self>) -> (Slot, Admission) {
        let max = self.runtime().settings.max_client_connections;
        let n = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.connections.increment(1);
        self.metrics.active.increment(1.0);
        let admission = if n > max {
            Admission::OverLimit(max)
        } else {
            Admission::Admitted
        };
        (Slot(self.clone()), admission)
    }
}

/// Control of a running server from outside it (signals, tests).
#[derive(Clone)]
pub struct ServerHandle(pub(super) Arc<Shared>);

impl ServerHandle {
    /// Begins a graceful shutdown.
    pub fn shutdown(&self) {
        self.0.drain.cancel();
    }

    /// New sessions use `runtime`; running sessions keep theirs.
    pub fn reload(&self, runtime: Runtime) {
        *self.0.runtime.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(runtime);
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.0.runtime()
    }

    pub fn active_connections(&self) -> usize {
        self.0.active.load(Ordering::Relaxed)
    }
}
