//! Background jobs: long-lived work that belongs to the process, not to
//! the session that started it (a migration outlives its client). Each job
//! is tracked with its kind and name while it runs, is told to stop through
//! one shutdown token, and shutdown waits for all of them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A running job as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub id: u64,
    /// What sort of work (`migration`, `audit`, ...).
    pub kind: &'static str,
    /// Which one, for people (`migration 12 on public.orders`).
    pub name: String,
    pub started_at: SystemTime,
}

/// Cheap to clone: every clone tracks the same jobs.
#[derive(Debug, Default, Clone)]
pub struct Jobs {
    tracker: TaskTracker,
    shutdown: CancellationToken,
    next_id: Arc<AtomicU64>,
    running: Arc<Mutex<BTreeMap<u64, JobInfo>>>,
}

impl Jobs {
    /// Runs `job` on the current runtime. It is given the shutdown token,
    /// and should finish promptly (leaving its state resumable) once it
    /// is cancelled.
    pub fn spawn<F, Fut>(&self, kind: &'static str, name: String, job: F) -> u64
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let info = JobInfo {
            id,
            kind,
            name,
            started_at: SystemTime::now(),
        };
        lock(&self.running).insert(id, info);
        let running = self.running.clone();
        let fut = job(self.shutdown.child_token());
        self.tracker.spawn(async move {
            fut.await;
            lock(&running).remove(&id);
        });
        id
    }

    /// The jobs still running, oldest first.
    pub fn running(&self) -> Vec<JobInfo> {
        lock(&self.running).values().cloned().collect()
    }

    /// Tells every job to stop and waits up to `limit` for them to finish.
    /// Whether all did.
    pub async fn shutdown(&self, limit: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok()
    }
}

fn lock(m: &Mutex<BTreeMap<u64, JobInfo>>) -> std::sync::MutexGuard<'_, BTreeMap<u64, JobInfo>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_are_listed_while_they_run_and_stop_on_shutdown() {
        let jobs = Jobs::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        jobs.spawn("test", "quick".into(), |_| async move {
            let _ = rx.await;
        });
        jobs.spawn("test", "until shutdown".into(), |stop| async move {
            stop.cancelled().await;
        });
        let names: Vec<String> = jobs.running().into_iter().map(|j| j.name).collect();
        assert_eq!(names, ["quick", "until shutdown"]);
        tx.send(()).unwrap();
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert_eq!(jobs.running().len(), 1);
        assert!(jobs.shutdown(Duration::from_secs(5)).await);
        assert!(jobs.running().is_empty());
    }
}
