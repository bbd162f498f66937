//! The audit trail: one JSON object per line for every DDL decision,
//! appended to the configured file.
//!
//! Sessions never touch the file: a record is serialized and handed to a
//! bounded queue that a writer thread drains, so a slow or failing disk
//! cannot stall the relay. A full queue or a failed write drops the record,
//! counts it in `ddlgate_audit_dropped_total{reason}` and is logged (at the
//! 1st, 2nd, 4th, 8th, ... drop, so a dead disk cannot flood the log). Each
//! line is one `write` on a file opened in append mode, so lines from two
//! writers (the old and new file across a SIGHUP reopen) never interleave.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use metrics::counter;
use serde::Serialize;

/// Records waiting for the writer, at most.
pub const QUEUE_CAPACITY: usize = 8192;

pub struct Audit {
    queue: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    /// Records queued and not yet written.
    pending: Arc<AtomicU64>,
}

impl Audit {
    /// Opens (creates) the file and starts its writer thread, which ends
    /// once this `Audit` is dropped and the queue is drained.
    pub fn open(path: &Path) -> std::io::Result<Audit> {
        Self::with_capacity(path, QUEUE_CAPACITY)
    }

    pub fn with_capacity(path: &Path, capacity: usize) -> std::io::Result<Audit> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (queue, rx) = sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let pending = Arc::new(AtomicU64::new(0));
        let (d, p) = (dropped.clone(), pending.clone());
        std::thread::Builder::new()
            .name("ddlgate-audit".into())
            .spawn(move || write_all(file, rx, &d, &p))?;
        Ok(Audit {
            queue,
            dropped,
            pending,
        })
    }

    /// Queues one record; never blocks. A record that cannot be queued is
    /// dropped, counted and logged here.
    pub fn record<T: Serialize>(&self, record: &T) {
        let mut line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => return drop_record(&self.dropped, "serialize", &e.to_string()),
        };
        line.push(b'\n');
        // Counted before sending, so the writer never decrements first.
        self.pending.fetch_add(1, Ordering::Relaxed);
        let sent = self.queue.try_send(line);
        if sent.is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                drop_record(&self.dropped, "queue_full", "the writer is behind")
            }
            Err(TrySendError::Disconnected(_)) => {
                drop_record(&self.dropped, "writer_gone", "the writer thread ended")
            }
        }
    }

    /// Records dropped so far by this file's queue and writer.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (at most `limit`) until every queued record is written: at
    /// shutdown, so the last decisions are not lost with the process.
    pub async fn drain(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pending.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

fn write_all(mut file: File, rx: Receiver<Vec<u8>>, dropped: &AtomicU64, pending: &AtomicU64) {
    for line in rx {
        if let Err(e) = file.write_all(&line) {
            drop_record(dropped, "write", &e.to_string());
        }
        pending.fetch_sub(1, Ordering::Relaxed);
    }
}

fn drop_record(dropped: &AtomicU64, reason: &'static str, error: &str) {
    counter!("ddlgate_audit_dropped_total", "reason" => reason).increment(1);
    let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(reason, error, dropped = n, "DDL audit record dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_reach_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let audit = Audit::open(&path).unwrap();
        for i in 0..100 {
            audit.record(&serde_json::json!({ "n": i }));
        }
        drop(audit);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 100 {
                let n: Vec<u64> = text
                    .lines()
                    .map(|l| {
                        serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                            .as_u64()
                            .unwrap()
                    })
                    .collect();
                assert_eq!(n, (0..100).collect::<Vec<_>>());
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "records missing: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_stuck_writer_drops_records_instead_of_blocking() {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO nobody reads: the writer blocks once the pipe is full,
        // as on a hung disk. Recording must still return at once.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stuck");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Holds the read end open without reading.
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let audit = Audit::with_capacity(&path, 16).unwrap();
        let big = "x".repeat(8 * 1024);
        for _ in 0..200 {
            audit.record(&serde_json::json!({ "pad": big }));
        }
        assert!(audit.dropped() > 0, "nothing dropped");
    }

    #[test]
    fn a_failing_disk_drops_records() {
        let audit = Audit::with_capacity(Path::new("/dev/full"), 16).unwrap();
        audit.record(&serde_json::json!({ "a": 1 }));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while audit.dropped() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "write error not counted"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
