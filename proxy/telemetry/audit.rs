//! The audit trail: one JSON object per line for every DDL decision,
//! appended to the configured file. Each record is written with a single
//! `write` on a file opened in append mode, so concurrent sessions and
//! external log rotation (reopened on SIGHUP) never interleave lines.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

pub struct Audit {
    file: Mutex<File>,
}

impl Audit {
    pub fn open(path: &Path) -> std::io::Result<Audit> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Audit {
            file: Mutex::new(file),
        })
    }

    /// Appends one record. A failed write is reported to the caller, which
    /// logs it; the statement's fate does not depend on it.
    pub fn record<T: Serialize>(&self, record: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(&line)
    }
}
