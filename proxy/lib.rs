//! ddlgate: a PostgreSQL wire-protocol proxy that relays ordinary traffic
//! untouched and intercepts schema changes. See ARCHITECTURE.md for the map.

pub mod app;
pub mod config;
pub mod console;
pub mod ddl;
pub mod fuzz;
pub mod jobs;
pub mod pacing;
pub mod pgcluster;
pub mod process;
pub mod protocol;
pub mod retry;
pub mod runner;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod tls;
pub mod upstream;
