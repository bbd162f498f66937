//! One PostgreSQL for this test binary, started on first use and stopped at
//! exit.

use std::sync::{Mutex, OnceLock};

use ddlgate::pgcluster::{ClusterOptions, PgCluster};
use tokio_postgres::{Client, NoTls};

static CLUSTER: OnceLock<Mutex<PgCluster>> = OnceLock::new();

extern "C" fn stop_cluster() {
    if let Some(c) = CLUSTER.get() {
        if let Ok(mut c) = c.lock() {
            c.stop();
        }
    }
}

pub fn port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let cluster = PgCluster::start(ClusterOptions::default())
            .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL: {e}"));
        let port = cluster.port;
        CLUSTER.set(Mutex::new(cluster)).ok().expect("set once");
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_cluster) };
        port
    })
}

pub async fn connect() -> Client {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            port()
        ),
        NoTls,
    )
    .await
    .expect("connect to the test PostgreSQL");
    tokio::spawn(conn);
    client
}
