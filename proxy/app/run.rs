//! `ddlgate [flags]`: load settings, start logging, metrics and the server,
//! and react to signals (SIGTERM/SIGINT drain, SIGHUP reload).

use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::config::cli::ProxyArgs;
use crate::config::Settings;
use crate::process::{Runtime, ServerHandle};
use crate::server::Server;
use crate::telemetry::logging::{self, LogReload};
use crate::telemetry::metrics;

use super::EXIT_CONFIG;

pub fn run(args: ProxyArgs) -> ExitCode {
    let settings = match Settings::load(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ddlgate: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let log = logging::init(settings.log_format, &settings.log_level);
    let rt = match super::runtime(settings.workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ddlgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        if let Some(addr) = settings.metrics_listen {
            if let Err(e) = metrics::install_exporter(addr) {
                eprintln!(
                    "ddlgate: config key 'metrics.listen': cannot serve metrics on {addr}: {e}"
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        }
        let listen = settings.listen;
        if let Some(why) = settings.upstream.unprotected() {
            tracing::warn!(
                event = "upstream.unprotected",
                upstream = %settings.upstream,
                "{why}: passwords (the runner's included) and queries cross it readable; use sslmode=verify-full"
            );
        }
        let runtime = match Runtime::build(settings) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ddlgate: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let server = match Server::bind(runtime).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ddlgate: config key 'listen': cannot listen on {listen}: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let handle = server.handle();
        tokio::spawn(signals(server.handle(), args, log));
        server.run().await;
        if let Some(audit) = &handle.runtime().audit {
            audit.drain(std::time::Duration::from_secs(5)).await;
        }
        ExitCode::SUCCESS
    })
}

async fn signals(handle: ServerHandle, args: ProxyArgs, log: LogReload) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM received, shutting down"); handle.shutdown(); }
            _ = int.recv() => { info!("SIGINT received, shutting down"); handle.shutdown(); }
            _ = hup.recv() => reload(&handle, &args, &log),
            _ = handle.reload_requested() => {
                info!("reload requested from the admin console");
                reload(&handle, &args, &log);
            }
        }
    }
}

/// Re-reads the configuration. New sessions get the new settings; listen
/// addresses, worker count and log format need a restart.
fn reload(handle: &ServerHandle, args: &ProxyArgs, log: &LogReload) {
    let new = match Settings::load(args) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "SIGHUP: configuration not reloaded");
            return;
        }
    };
    let old = handle.runtime();
    let old = &old.settings;
    for (key, changed) in [
        ("listen", old.listen != new.listen),
        ("metrics.listen", old.metrics_listen != new.metrics_listen),
        ("workers", old.workers != new.workers),
        ("log.format", old.log_format != new.log_format),
    ] {
        if changed {
            warn!(key, "SIGHUP: this setting changes only on restart");
        }
    }
    if let Err(e) = log.set_level(&new.log_level) {
        warn!(error = %e, "SIGHUP: log level not changed");
    }
    match Runtime::build(new) {
        Ok(rt) => {
            handle.reload(rt);
            info!("SIGHUP: configuration reloaded for new sessions");
        }
        Err(e) => error!(error = %e, "SIGHUP: configuration not reloaded"),
    }
}
