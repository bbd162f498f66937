//! The TOML configuration file, as written by people: strings for sizes and
//! durations, every key optional. Validation happens in `super::resolve`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub workers: Option<usize>,
    pub max_client_connections: Option<usize>,
    pub max_message_size: Option<String>,
    pub max_held_message_size: Option<String>,
    pub max_held_total: Option<String>,
    pub handshake_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub admin_roles: Option<Vec<String>>,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub ddl: super::ddl::DdlSection,
    #[serde(default)]
    pub runner: super::runner::RunnerSection,
    #[serde(default)]
    pub throttle: super::throttle::ThrottleSection,
    #[serde(default)]
    pub backfill_traffic: super::pacing::PacingSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: "config".into(),
            problem: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // toml's own rendering spans several lines; keep one line that
            // names where the problem is and what it is.
            let (line, key) = match e.span() {
                Some(span) => {
                    let line_no = text[..span.start].matches('\n').count() + 1;
                    let line = text.lines().nth(line_no - 1).unwrap_or("");
                    let key = line.split('=').next().unwrap_or("").trim();
                    (line_no, key.trim_matches(['[', ']']).to_owned())
                }
                None => (0, String::new()),
            };
            ConfigError {
                key: if key.is_empty() { "config".into() } else { key },
                problem: format!("{} (in {} line {line})", e.message().trim(), path.display()),
            }
        })
    }
}
