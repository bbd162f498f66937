//! The live sessions, for the admin console's SHOW CLIENTS / SHOW SERVERS:
//! who each is and which backend serves it. A session registers when it
//! starts relaying and is removed when its entry is dropped; nothing on the
//! relay's hot path touches the registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One live session as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    pub id: u64,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub client_addr: SocketAddr,
    /// The upstream backend's pid, once startup finished.
    pub backend_pid: Option<i32>,
    pub connected_at: SystemTime,
}

#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<BTreeMap<u64, SessionEntry>>,
}

/// A session's place in the registry; removed on drop.
pub struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Registry {
    pub fn register(self: &Arc<Self>, entry: SessionEntry) -> Registered {
        let id = entry.id;
        self.lock().insert(id, entry);
        Registered {
            registry: self.clone(),
            id,
        }
    }

    /// The live sessions, oldest first.
    pub fn sessions(&self) -> Vec<SessionEntry> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Registered {
    /// Records the upstream backend's pid.
    pub fn set_backend_pid(&self, pid: i32) {
        if let Some(e) = self.registry.lock().get_mut(&self.id) {
            e.backend_pid = Some(pid);
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_as_long_as_their_session() {
        let r = Arc::new(Registry::default());
        let entry = |id| SessionEntry {
            id,
            user: "u".into(),
            database: "d".into(),
            application_name: String::new(),
            client_addr: "127.0.0.1:1".parse().unwrap(),
            backend_pid: None,
            connected_at: SystemTime::now(),
        };
        let a = r.register(entry(1));
        let b = r.register(entry(2));
        a.set_backend_pid(42);
        assert_eq!(r.sessions()[0].backend_pid, Some(42));
        drop(a);
        assert_eq!(r.sessions().iter().map(|e| e.id).collect::<Vec<_>>(), [2]);
        drop(b);
        assert!(r.is_empty());
    }
}
