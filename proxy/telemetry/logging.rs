//! Structured logs with `tracing`: text for people, JSON lines for machines.
//! The filter can be swapped at run time (SIGHUP).

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use crate::config::LogFormat;

/// Changes the log filter of the running process.
pub struct LogReload(reload::Handle<EnvFilter, Registry>);

impl LogReload {
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.0.reload(filter).map_err(|e| e.to_string())
    }
}

/// Installs the global subscriber, writing to stderr.
pub fn init(format: LogFormat, level: &str) -> LogReload {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    // Colour codes are for people at a terminal; a file or pipe gets text.
    let colour = std::io::stderr().is_terminal();
    match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(colour)
                    .with_target(false),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .init(),
    }
    LogReload(handle)
}
