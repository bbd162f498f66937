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
    let direct = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        cluster.port
    );
    eprintln!(
        "creating table orders with {} rows...",
        super::demo_load::ORDERS
    );
    if let Err(e) = rt.block_on(super::demo_load::seed(&direct)) {
        let why = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned());
        eprintln!("ddlgate demo: cannot create the demo table: {why}");
        cluster.stop();
        return ExitCode::FAILURE;
    }
    let code = rt.block_on(async {
        let server = match Server::bind(Runtime::build(settings).expect("no TLS in demo")).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ddlgate demo: cannot listen on {listen}: {e} (choose another with --listen)");
                return ExitCode::FAILURE;
            }
        };
        let handle = server.handle();
        let app_stop = tokio_util::sync::CancellationToken::new();
        let app = tokio::spawn(super::demo_load::application(
            format!(
                "host={} port={} user=postgres dbname=postgres",
                listen.ip(),
                listen.port()
            ),
            app_stop.clone(),
        ));
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else { return };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            // The application goes first: its connection closing is not
            // one of its transactions failing.
            app_stop.cancel();
            let _ = app.await;
            handle.shutdown();
        });
        println!(
            "\nddlgate is relaying {listen} -> PostgreSQL on 127.0.0.1:{port}\n\
             A demo application updates and reads table orders ({rows} rows) through ddlgate,\n\
             about 20 transactions a second; it logs any transaction that waits over 100 ms.\n\n\
             connect with:\n  psql \"postgres://postgres@{listen}/postgres\"\n\n\
             things to try:\n\
             1. unsafe changes, applied as phased migrations while the application runs:\n\
             \x20   CREATE INDEX orders_customer_idx ON orders (customer);\n\
             \x20   ALTER TABLE orders ALTER COLUMN note SET NOT NULL;\n\
             \x20  the same sent directly (psql -p {port}) make the application wait: watch its log lines.\n\
             2. the admin console:\n\
             \x20   psql \"postgres://postgres@{listen}/ddlgate\" -c 'SHOW MIGRATIONS'   (then SHOW HELP)\n\
             3. the log lines: on this terminal (ddl.* decisions, migration.* steps, demo.app)\n\n\
             Ctrl-C stops ddlgate and removes the cluster.\n",
            port = cluster.port,
            rows = super::demo_load::ORDERS,
        );
        server.run().await;
        ExitCode::SUCCESS
    });
    cluster.stop();
    code
}
