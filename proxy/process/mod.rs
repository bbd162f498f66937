//! What one ddlgate process holds for all its sessions: the reloadable
//! `Runtime` (settings and what is built from them), and `Shared` (cancel
//! keys, metrics, shutdown signals, admission, the session registry, the
//! background jobs). The listener (`server`), the sessions (`session`) and
//! the cancel registry all depend on this module, and it on none of them.

mod jobs;
mod registry;
mod runtime;
mod shared;

pub use jobs::{JobInfo, Jobs};
pub use registry::{Registered, Registry, SessionEntry};
pub use runtime::{Runtime, StartError};
pub use shared::{Admission, ServerHandle, Shared, Slot};
