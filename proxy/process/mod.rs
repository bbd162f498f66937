//! What one ddlgate process holds for all its sessions: the reloadable
//! `Runtime` (settings and what is built from them), and `Shared` (the
//! cancel keys, metrics, shutdown signals, admission, the session registry,
//! the background jobs). The listener (`server`) and the sessions
//! (`session`) depend on this module, and it on neither.

mod cancel;
pub mod held;
mod registry;
mod runtime;
mod shared;

pub use crate::jobs::{JobInfo, Jobs};
pub use cancel::{CancelRegistry, CancelTarget, Registration};
pub use registry::{Registered, Registry, SessionEntry};
pub use runtime::{Runtime, StartError};
pub use shared::{Admission, ServerHandle, Shared, Slot};
