//! PostgreSQL wire-protocol code with no I/O: framing, startup packets and the
//! few messages the proxy builds or reads itself. Everything here is a plain
//! function over byte slices or `bytes` buffers, so it is tested without sockets.

pub mod backend;
pub mod frame;
pub mod frontend;
pub mod reply;
pub mod sqlstate;
pub mod startup;

pub use frame::{Header, HEADER_LEN};
