//! The `[runner]` section: the credentials and limits of the service that
//! applies `rewrite` decisions as phased migrations. Without the section
//! there is no runner, and `rewrite` falls back to blocking with the plan.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{bad, parse_duration, ConfigError};

/// The variable the runner's password may come from instead of a file.
pub const PASSWORD_ENV: &str = "DDLGATE_RUNNER_PASSWORD";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerSection {
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub mode: Option<String>,
    pub async_roles: Option<Vec<String>>,
    pub lock_timeout: Option<String>,
    pub lock_retries: Option<u32>,
    pub retry_backoff: Option<String>,
    pub retry_backoff_max: Option<String>,
    pub brief_statement_timeout: Option<String>,
    pub poll_interval: Option<String>,
    pub build_workers: Option<u32>,
    pub postpone_cutover: Option<bool>,
    pub contract_after: Option<String>,
    pub queued_wait_timeout: Option<String>,
}

/// How a client whose statement became a migration is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientWait {
    /// The statement returns when the migration has finished.
    Sync,
    /// The statement returns once the migration is recorded.
    Async,
}

impl ClientWait {
    pub fn parse(v: &str) -> Option<Self> {
        match v.to_ascii_lowercase().as_str() {
            "sync" => Some(ClientWait::Sync),
            "async" => Some(ClientWait::Async),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientWait::Sync => "sync",
            ClientWait::Async => "async",
        }
    }
}

/// Validated runner settings.
#[derive(Clone, PartialEq)]
pub struct RunnerSettings {
    pub user: String,
    /// Never printed: `Debug` leaves it out.
    pub password: Option<String>,
    pub mode: ClientWait,
    /// Roles answered asynchronously whatever `mode` says.
    pub async_roles: Vec<String>,
    /// Per attempt of each step that takes a lock the application could
    /// queue behind.
    pub lock_timeout: Duration,
    pub lock_retries: u32,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// statement_timeout of catalog-only steps; scans and CONCURRENTLY
    /// builds have none.
    pub brief_statement_timeout: Duration,
    /// How often the runner looks for migrations it should pick up
    /// (another instance's that died, RESUME/CANCEL given elsewhere).
    pub poll_interval: Duration,
    /// Parallel workers an index build of the runner may use
    /// (`max_parallel_maintenance_workers` on its connections).
    pub build_workers: u32,
    /// How backfills pace themselves (`[throttle]`).
    pub throttle: super::ThrottleSettings,
    /// A type change stops before its cut-over until an operator runs
    /// COMPLETE (a session may set `ddlgate.postpone_cutover` instead).
    pub postpone_cutover: bool,
    /// After a type change's cut-over, the old column is kept aside (and
    /// REVERT possible) this long before it is dropped; 0: at once.
    pub contract_after: Duration,
    /// How long a waiting client's migration may stay queued behind a lock
    /// someone else holds on its table before the client is answered with
    /// an error (the migration stays queued); 0: no bound.
    pub queued_wait_timeout: Duration,
}

impl std::fmt::Debug for RunnerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerSettings")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("mode", &self.mode)
            .field("async_roles", &self.async_roles)
            .field("lock_timeout", &self.lock_timeout)
            .field("lock_retries", &self.lock_retries)
            .finish_non_exhaustive()
    }
}

impl RunnerSettings {
    /// Settings for `user` with every other value at its default.
    pub fn for_user(user: &str) -> Self {
        RunnerSettings {
            user: user.to_owned(),
            password: None,
            mode: ClientWait::Sync,
            async_roles: Vec::new(),
            // Short: while a step waits for its lock, the application's
            // queries queue behind it. An autovacuum the step waits for is
            // cancelled only after deadlock_timeout (1s), so a step waiting
            // longer stalls the table that long.
            lock_timeout: Duration::from_millis(500),
            lock_retries: 30,
            retry_backoff: Duration::from_millis(200),
            retry_backoff_max: Duration::from_secs(10),
            brief_statement_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(5),
            build_workers: 0,
            throttle: super::ThrottleSettings::default(),
            postpone_cutover: false,
            contract_after: Duration::ZERO,
            queued_wait_timeout: Duration::from_secs(60),
        }
    }

    /// How `role` is answered.
    pub fn wait_for(&self, role: &str) -> ClientWait {
        if self.async_roles.iter().any(|r| r == role) {
            ClientWait::Async
        } else {
            self.mode
        }
    }
}

impl RunnerSection {
    /// `None` when the section names no user: no runner.
    pub fn resolve(
        self,
        env_password: Option<String>,
    ) -> Result<Option<RunnerSettings>, ConfigError> {
        let Some(user) = self.user else {
            if self.password_file.is_some() {
                return Err(bad(
                    "runner.user",
                    "is required when runner.password_file is set",
                ));
            }
            return Ok(None);
        };
        if user.is_empty() {
            return Err(bad("runner.user", "must not be empty"));
        }
        let mut s = RunnerSettings::for_user(&user);
        s.password = match (&self.password_file, env_password) {
            (Some(path), _) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        bad(
                            "runner.password_file",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            (None, Some(p)) if !p.is_empty() => Some(p),
            _ => None,
        };
        if let Some(v) = &self.mode {
            s.mode = ClientWait::parse(v)
                .ok_or_else(|| bad("runner.mode", format!("'{v}' is not sync or async")))?;
        }
        if let Some(v) = self.async_roles {
            s.async_roles = v;
        }
        let duration = |key: &str, v: &Option<String>, into: &mut Duration| {
            if let Some(v) = v {
                *into = parse_duration(key, v)?;
            }
            Ok::<_, ConfigError>(())
        };
        duration(
            "runner.lock_timeout",
            &self.lock_timeout,
            &mut s.lock_timeout,
        )?;
        duration(
            "runner.retry_backoff",
            &self.retry_backoff,
            &mut s.retry_backoff,
        )?;
        duration(
            "runner.retry_backoff_max",
            &self.retry_backoff_max,
            &mut s.retry_backoff_max,
        )?;
        duration(
            "runner.brief_statement_timeout",
            &self.brief_statement_timeout,
            &mut s.brief_statement_timeout,
        )?;
        duration(
            "runner.poll_interval",
            &self.poll_interval,
            &mut s.poll_interval,
        )?;
        duration(
            "runner.contract_after",
            &self.contract_after,
            &mut s.contract_after,
        )?;
        duration(
            "runner.queued_wait_timeout",
            &self.queued_wait_timeout,
            &mut s.queued_wait_timeout,
        )?;
        if s.lock_timeout.is_zero() {
            return Err(bad(
                "runner.lock_timeout",
                "must be above 0: without it a step could queue the table's queries",
            ));
        }
        if s.poll_interval.is_zero() {
            return Err(bad("runner.poll_interval", "must be above 0"));
        }
        if let Some(v) = self.lock_retries {
            s.lock_retries = v;
        }
        if let Some(v) = self.postpone_cutover {
            s.postpone_cutover = v;
        }
        if let Some(v) = self.build_workers {
            if v > 1024 {
                return Err(bad("runner.build_workers", format!("{v} is above 1024")));
            }
            s.build_workers = v;
        }
        Ok(Some(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_comes_from_the_file_first_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        std::fs::write(&file, "s3cret\n").unwrap();
        let s = RunnerSection {
            user: Some("runner".into()),
            password_file: Some(file),
            ..RunnerSection::default()
        }
        .resolve(Some("from-env".into()))
        .unwrap()
        .unwrap();
        assert_eq!(s.password.as_deref(), Some("s3cret"));
        assert!(!format!("{s:?}").contains("s3cret"));
        let s = RunnerSection {
            user: Some("runner".into()),
            ..RunnerSection::default()
        }
        .resolve(Some("from-env".into()))
        .unwrap()
        .unwrap();
        assert_eq!(s.password.as_deref(), Some("from-env"));
        assert!(RunnerSection::default().resolve(None).unwrap().is_none());
        let e = RunnerSection {
            user: Some("r".into()),
            mode: Some("later".into()),
            ..RunnerSection::default()
        }
        .resolve(None)
        .unwrap_err();
        assert_eq!(e.key, "runner.mode");
    }
}
