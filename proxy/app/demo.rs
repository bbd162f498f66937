//! `ddlgate demo`: a throwaway PostgreSQL with ddlgate in front, for trying
//! the proxy with nothing but the server package installed.

use std::process::ExitCode;

use crate::config::{LogFormat, Settings};
use crate::pgcluster::{ClusterOptions, PgCluster};
use crate::process::Runtime;
use crate::server::Server;
use crate::telemetry::logging;
use crate::upstream::UpstreamTarget;

pub fn run(listen: &str) -> ExitCode {
    logging::init(LogFormat::Text, "info");
    let listen = match listen.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!(
                "ddlgate: config key 'listen': '{listen}' is not an address like 127.0.0.1:6432"
            );
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    eprintln!("starting a throwaway PostgreSQL cluster...");
    let mut cluster = match PgCluster::start(ClusterOptions::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ddlgate demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let upstream = UpstreamTarget::parse(&cluster.url()).expect("cluster URL parses");
    let mut settings = Settings::for_upstream(upstream);
    settings.listen = listen;
    settings.shutdown_timeout = std::time::Duration::from_secs(2);
    // The demo applies unsafe changes instead of refusing them.
    settings.runner = Some(crate::config::RunnerSettings::for_user("postgres"));
    settings.admin_roles = vec!["postgres".into()];
    let rt = super::runtime(1).expect("tokio runtime");
    let code = rt.block_on(async {
        let server = match Server::bind(Runtime::build(settings).expect("no TLS in demo")).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ddlgate demo: cannot listen on {listen}: {e} (choose another with --listen)");
                return ExitCode::FAILURE;
            }
        };
        let handle = server.handle();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else { return };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            handle.shutdown();
        });
        println!(
            "\nddlgate is relaying {listen} -> PostgreSQL on 127.0.0.1:{}\n\nconnect with:\n  psql \"postgres://postgres@{listen}/postgres\"\n\nthings to try:\n  an unsafe change, applied as a phased migration:\n    CREATE TABLE t AS SELECT g AS id, g AS a FROM generate_series(1, 1000000) g;\n    ALTER TABLE t ALTER COLUMN a SET NOT NULL;\n  the admin console:\n    psql \"postgres://postgres@{listen}/ddlgate\" -c 'SHOW MIGRATIONS'\n  the log lines: on this terminal (migration.* events)\n\nCtrl-C stops ddlgate and removes the cluster.\n",
            cluster.port
        );
        server.run().await;
        ExitCode::SUCCESS
    });
    cluster.stop();
    code
}
