//! State shared by all sessions of one process: the current (reloadable)
//! runtime configuration, cancel keys, metrics, shutdown signals, the
//! connection count, the registry of live sessions and the background jobs.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

use super::{CancelRegistry, Jobs, Registry, Runtime};
use crate::runner::{Connector, Runner};
use crate::telemetry::latency::LatencyBook;
use crate::telemetry::metrics::Metrics;

pub struct Shared {
    runtime: RwLock<Arc<Runtime>>,
    pub cancels: CancelRegistry,
    pub metrics: Metrics,
    /// Stop accepting; close sessions once idle.
    pub drain: CancellationToken,
    /// Close every session now.
    pub force: CancellationToken,
    /// The live sessions.
    pub sessions: Arc<Registry>,
    /// Work that outlives the session that started it.
    pub jobs: Jobs,
    /// Applies `rewrite` decisions; `None` without a `[runner]` section.
    pub runner: Option<Arc<Runner>>,
    /// The application's request latency through ddlgate, per database.
    pub latency: Arc<LatencyBook>,
    /// The slots and budgets of backfill traffic, per database.
    pub pacers: crate::pacing::Pacers,
    /// RELOAD from the admin console: the process reloads as on SIGHUP.
    pub reload: tokio::sync::Notify,
    /// What large held client messages take, all sessions together.
    pub held: Arc<super::held::HeldBudget>,
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
    /// Must be called inside the tokio runtime (the runner starts here).
    pub fn new(runtime: Runtime) -> Self {
        let jobs = Jobs::default();
        let latency = Arc::new(LatencyBook::default());
        let runner = runtime.settings.runner.as_ref().map(|r| {
            let s = &runtime.settings;
            let connector = Connector::new(
                &s.upstream,
                runtime.upstream_tls.clone(),
                s.connect_timeout,
                r,
            );
            Runner::start(r.clone(), connector, jobs.clone(), latency.clone())
        });
        Shared {
            runtime: RwLock::new(Arc::new(runtime)),
            cancels: CancelRegistry::default(),
            metrics: Metrics::new(),
            drain: CancellationToken::new(),
            force: CancellationToken::new(),
            sessions: Arc::default(),
            jobs,
            runner,
            pacers: crate::pacing::Pacers::new(latency.clone()),
            latency,
            reload: tokio::sync::Notify::new(),
            held: super::held::HeldBudget::new(),
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

    /// The id the next session will get.
    pub fn next_id_peek(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
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
pub struct ServerHandle(pub(crate) Arc<Shared>);

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

    /// The sessions relaying now.
    pub fn sessions(&self) -> Vec<super::SessionEntry> {
        self.0.sessions.sessions()
    }

    /// Resolves when the admin console asks for a reload.
    pub async fn reload_requested(&self) {
        self.0.reload.notified().await
    }

    /// The background jobs running now.
    pub fn jobs(&self) -> Vec<super::JobInfo> {
        self.0.jobs.running()
    }
}
