//! The `[backfill_traffic]` section: client sessions that do bulk work
//! (an ETL job, a one-off backfill script) and should yield to the
//! application. ddlgate delays their requests, never rejects them: each
//! waits for one of `max_concurrent` slots on its database and for a rate
//! budget that shrinks while the application's own latency is up.

use std::time::Duration;

use serde::Deserialize;

use super::{bad, parse_duration, ConfigError};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacingSection {
    pub roles: Option<Vec<String>>,
    pub application_names: Option<Vec<String>>,
    pub max_concurrent: Option<u32>,
    pub max_per_sec: Option<f64>,
    pub app_p99_factor: Option<f64>,
    pub latency_window: Option<String>,
}

/// Validated settings; `None` in `Settings` when nothing is marked.
#[derive(Debug, Clone, PartialEq)]
pub struct PacingSettings {
    /// Sessions of these roles (the startup user) are backfill traffic.
    pub roles: Vec<String>,
    /// And sessions whose application_name matches one of these (`*`
    /// matches any run of characters).
    pub application_names: Vec<String>,
    /// Requests of backfill traffic in flight at once, per database.
    pub max_concurrent: u32,
    /// Requests per second per database while the application is at its
    /// usual latency.
    pub max_per_sec: f64,
    /// The budget shrinks as the application's p99 rises above its usual
    /// value, down to a tenth at this many times it.
    pub app_p99_factor: f64,
    /// The application's recent p99 is read over this window.
    pub latency_window: Duration,
}

impl PacingSettings {
    pub fn marks(&self, role: &str, application_name: &str) -> bool {
        self.roles.iter().any(|r| r == role)
            || self
                .application_names
                .iter()
                .any(|p| glob(p.as_bytes(), application_name.as_bytes()))
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

impl PacingSection {
    pub fn resolve(self) -> Result<Option<PacingSettings>, ConfigError> {
        let roles = self.roles.unwrap_or_default();
        let application_names = self.application_names.unwrap_or_default();
        let mut s = PacingSettings {
            roles,
            application_names,
            max_concurrent: 2,
            max_per_sec: 50.0,
            app_p99_factor: 1.5,
            latency_window: Duration::from_secs(3),
        };
        if let Some(v) = self.max_concurrent {
            if v == 0 {
                return Err(bad("backfill_traffic.max_concurrent", "must be at least 1"));
            }
            s.max_concurrent = v;
        }
        if let Some(v) = self.max_per_sec {
            if !(v > 0.0 && v.is_finite()) {
                return Err(bad("backfill_traffic.max_per_sec", "must be above 0"));
            }
            s.max_per_sec = v;
        }
        if let Some(v) = self.app_p99_factor {
            if v <= 1.0 {
                return Err(bad("backfill_traffic.app_p99_factor", "must be above 1"));
            }
            s.app_p99_factor = v;
        }
        if let Some(v) = &self.latency_window {
            s.latency_window = parse_duration("backfill_traffic.latency_window", v)?;
            if s.latency_window < Duration::from_secs(1) {
                return Err(bad(
                    "backfill_traffic.latency_window",
                    "must be at least 1s",
                ));
            }
        }
        Ok((!s.roles.is_empty() || !s.application_names.is_empty()).then_some(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_marked_by_role_or_application_name_pattern() {
        let s = PacingSection {
            roles: Some(vec!["etl".into()]),
            application_names: Some(vec!["backfill-*".into(), "*rake*".into()]),
            ..PacingSection::default()
        }
        .resolve()
        .unwrap()
        .unwrap();
        assert!(s.marks("etl", "psql"));
        assert!(s.marks("app", "backfill-orders"));
        assert!(s.marks("app", "bin/rake db"));
        assert!(!s.marks("app", "backfill"));
        assert!(!s.marks("app", "psql"));
        assert!(PacingSection::default().resolve().unwrap().is_none());
        let e = PacingSection {
            roles: Some(vec!["etl".into()]),
            max_concurrent: Some(0),
            ..PacingSection::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(e.key, "backfill_traffic.max_concurrent");
    }
}
