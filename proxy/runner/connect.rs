//! The runner's own upstream connections: ddlgate's upstream transport
//! (TCP, Unix socket, TLS per sslmode) under tokio-postgres, as the
//! `[runner]` user, to the database a migration belongs to.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio_postgres::{Client, NoTls};

use crate::config::RunnerSettings;
use crate::upstream::{self, UpstreamTarget};

use super::RunnerError;

/// Where and as whom the runner connects.
#[derive(Clone)]
pub struct Connector {
    pub target: UpstreamTarget,
    pub tls: Option<Arc<ClientConfig>>,
    pub timeout: Duration,
    pub user: String,
    pub password: Option<String>,
    /// `max_parallel_maintenance_workers` of every connection.
    pub build_workers: u32,
}

impl Connector {
    pub fn new(
        target: &UpstreamTarget,
        tls: Option<Arc<ClientConfig>>,
        timeout: Duration,
        settings: &RunnerSettings,
    ) -> Self {
        Connector {
            target: target.clone(),
            tls,
            timeout,
            user: settings.user.clone(),
            password: settings.password.clone(),
            build_workers: settings.build_workers,
        }
    }

    /// A connection to `database` whose unqualified names resolve to
    /// `pg_catalog` only (`pg_temp` placed last, so not even a temporary
    /// type comes first): the runner's own SQL can be hijacked by no type,
    /// function or operator a submitter creates. Its index builds use
    /// `build_workers` parallel workers: by default none, so a build takes
    /// one core and leaves the others to the application.
    pub async fn connect(&self, database: &str, purpose: &str) -> Result<Client, RunnerError> {
        let stream = upstream::connect(&self.target, self.tls.as_ref(), self.timeout)
            .await
            .map_err(|e| RunnerError::Connect(e.to_string()))?;
        let mut config = tokio_postgres::Config::new();
        config
            .user(&self.user)
            .dbname(database)
            .application_name(format!("ddlgate runner: {purpose}"))
            .options(format!(
                "-c search_path=pg_catalog,pg_temp -c max_parallel_maintenance_workers={}",
                self.build_workers
            ));
        if let Some(p) = &self.password {
            config.password(p);
        }
        let (client, conn) = tokio::time::timeout(self.timeout, config.connect_raw(stream, NoTls))
            .await
            .map_err(|_| RunnerError::Connect("timed out during startup".into()))?
            .map_err(RunnerError::from_db)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "runner connection ended");
            }
        });
        Ok(client)
    }

    /// Sends a cancel for `client`'s running statement.
    pub async fn cancel(&self, client: &Client) {
        let token = client.cancel_token();
        match upstream::connect(&self.target, self.tls.as_ref(), self.timeout).await {
            Ok(stream) => {
                if let Err(e) = token.cancel_query_raw(stream, NoTls).await {
                    tracing::warn!(error = %e, "runner could not cancel its statement");
                }
            }
            Err(e) => tracing::warn!(error = %e, "runner could not cancel its statement"),
        }
    }
}
