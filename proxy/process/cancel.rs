//! Cancel keys. Each session shows its client the upstream's backend pid (so
//! NOTIFY self-filtering by pid keeps working) with a secret of ddlgate's own;
//! a CancelRequest is honoured only for a key ddlgate handed out, and is sent
//! to the upstream that session is connected to with the upstream's secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand::RngCore;

use super::Runtime;
use crate::protocol::startup::CancelKey;

/// Where a cancel for one session goes.
#[derive(Clone)]
pub struct CancelTarget {
    pub upstream_key: CancelKey,
    pub runtime: Arc<Runtime>,
    /// Wakes the session itself: a cancel also stops work ddlgate is doing
    /// on the session's behalf (waiting to retry a schema change).
    pub interrupt: Arc<tokio::sync::Notify>,
}

#[derive(Clone, Default)]
pub struct CancelRegistry {
    map: Arc<Mutex<HashMap<CancelKey, CancelTarget>>>,
}

/// Keeps a key registered for as long as its session lives.
pub struct Registration {
    registry: CancelRegistry,
    key: CancelKey,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key);
    }
}

impl CancelRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CancelKey, CancelTarget>> {
        // A panic elsewhere cannot leave the map inconsistent: recover it.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues the client-facing key for an upstream key.
    pub fn register(&self, target: CancelTarget) -> (CancelKey, Registration) {
        let mut map = self.lock();
        loop {
            let mut secret = vec![0u8; target.upstream_key.secret.len().max(4)];
            rand::rng().fill_bytes(&mut secret);
            let key = CancelKey {
                pid: target.upstream_key.pid,
                secret: Bytes::from(secret),
            };
            if !map.contains_key(&key) {
                map.insert(key.clone(), target);
                let reg = Registration {
                    registry: self.clone(),
                    key: key.clone(),
                };
                return (key, reg);
            }
        }
    }

    pub fn lookup(&self, key: &CancelKey) -> Option<CancelTarget> {
        self.lock().get(key).cloned()
    }
}
