//! The listener: accepts clients, admits them up to the connection limit,
//! spawns one session task each, and on shutdown drains them, then stops the
//! background jobs.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::ddl::GateMode;
use crate::process::{Runtime, ServerHandle, Shared};
use crate::session;

pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl Server {
    /// Binds the listen address of `runtime`'s settings.
    pub async fn bind(runtime: Runtime) -> io::Result<Self> {
        let listener = TcpListener::bind(runtime.settings.listen).await?;
        Ok(Server {
            shared: Arc::new(Shared::new(runtime)),
            listener,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle(self.shared.clone())
    }

    /// Serves until shutdown is requested, then drains: sessions close as soon
    /// as they are idle, and all are closed once `shutdown_timeout` has passed.
    pub async fn run(self) {
        let tracker = TaskTracker::new();
        let shared = self.shared;
        let runtime = shared.runtime();
        info!(listen = %self.listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
              upstream = %runtime.settings.upstream,
              ddl_gate = if runtime.settings.ddl.enabled { runtime.settings.ddl.mode.as_str() } else { "off" },
              "ddlgate accepting connections");
        match &runtime.settings.runner {
            Some(r) => info!(
                runner_user = %r.user,
                client_wait = r.mode.as_str(),
                instance = shared.runner.as_ref().map(|r| r.instance()).unwrap_or_default(),
                "migration runner on: rewrite decisions are applied as phased migrations"
            ),
            None => info!(
                "migration runner off (no [runner] section): rewrite decisions are blocked with their plan"
            ),
        }
        if runtime.settings.ddl.enabled && runtime.settings.ddl.mode == GateMode::Observe {
            warn!("DDL gate in observe mode: decisions are logged and audited, nothing is blocked");
        }
        drop(runtime);
        loop {
            let accepted = tokio::select! {
                biased;
                _ = shared.drain.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let (socket, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let (slot, admission) = shared.admit();
            tracker.spawn(session::serve(
                socket,
                peer,
                shared.clone(),
                slot,
                admission,
            ));
        }
        drop(self.listener);
        tracker.close();
        let timeout = shared.runtime().settings.shutdown_timeout;
        info!(
            sessions = tracker.len(),
            timeout_secs = timeout.as_secs_f64(),
            "draining sessions"
        );
        if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
            warn!(
                sessions = tracker.len(),
                "shutdown timeout reached, closing remaining sessions"
            );
            shared.force.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
        }
        // Background work outlives sessions, not the process: told to stop
        // (leaving its state resumable), and waited for.
        if !shared.jobs.shutdown(timeout).await {
            warn!(
                jobs = shared.jobs.running().len(),
                "background jobs still running at exit"
            );
        }
        info!("ddlgate stopped");
    }
}
