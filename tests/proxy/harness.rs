//! Shared test fixtures: one real PostgreSQL cluster per test binary (started
//! on first use, stopped at exit), ddlgate instances in-process on their own
//! threads, throwaway TLS certificates, and client helpers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ddlgate::config::Settings;
use ddlgate::pgcluster::{ClusterOptions, PgCluster};
use ddlgate::process::{Runtime, ServerHandle};
use ddlgate::server::Server;
use ddlgate::upstream::UpstreamTarget;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_postgres::{Client, NoTls};

pub const MD5_PASSWORD: &str = "md5-secret";
pub const SCRAM_PASSWORD: &str = "scram-secret";
pub const PLAIN_PASSWORD: &str = "plain-secret";
/// Every role the tests make logs in over TCP with SCRAM and this password
/// (but the harness's superuser, `postgres`, and the roles above, each
/// with its own method).
pub const ROLE_PASSWORD: &str = "role-secret";

/// A CA and a server certificate for localhost/127.0.0.1 signed by it.
pub struct Certs {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub dir: tempfile::TempDir,
}

impl Certs {
    fn generate() -> Certs {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            dir,
        };
        std::fs::write(certs.ca_path(), &certs.ca_pem).unwrap();
        std::fs::write(certs.cert_path(), &certs.cert_pem).unwrap();
        std::fs::write(certs.key_path(), &certs.key_pem).unwrap();
        certs
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

pub fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(Certs::generate)
}

static CLUSTER: OnceLock<Mutex<PgCluster>> = OnceLock::new();

extern "C" fn stop_cluster() {
    if let Some(c) = CLUSTER.get() {
        if let Ok(mut c) = c.lock() {
            c.stop();
        }
    }
}

/// Port and binaries of the shared cluster, which accepts TLS and has users
/// for each password method; every other role but `postgres` logs in over
/// TCP with SCRAM (`ROLE_PASSWORD` unless its test says otherwise).
pub struct ClusterInfo {
    pub port: u16,
    pub bin_dir: PathBuf,
    pub socket_dir: PathBuf,
}

pub fn cluster() -> &'static ClusterInfo {
    static INFO: OnceLock<ClusterInfo> = OnceLock::new();
    INFO.get_or_init(|| {
        let certs = certs();
        let hba = "local all all trust\n\
                   host all md5_user 127.0.0.1/32 md5\n\
                   host all scram_user 127.0.0.1/32 scram-sha-256\n\
                   host all plain_user 127.0.0.1/32 password\n\
                   host all postgres 127.0.0.1/32 trust\n\
                   host all all 127.0.0.1/32 scram-sha-256\n";
        let cluster = PgCluster::start(ClusterOptions {
            conf: vec![],
            hba: Some(hba.into()),
            tls: Some((certs.cert_pem.clone(), certs.key_pem.clone())),
        })
        .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL: {e}"));
        let info = ClusterInfo {
            port: cluster.port,
            bin_dir: cluster.bin_dir.clone(),
            socket_dir: cluster.socket_dir(),
        };
        CLUSTER.set(Mutex::new(cluster)).ok().expect("cluster set once");
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_cluster) };
        psql_admin(
            &info,
            &format!(
                "SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD '{MD5_PASSWORD}';
                 SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN PASSWORD '{SCRAM_PASSWORD}';
                 CREATE ROLE plain_user LOGIN PASSWORD '{PLAIN_PASSWORD}';
                 CREATE ROLE scram_group NOLOGIN;"
            ),
        );
        psql_admin(
            &info,
            "CREATE DATABASE latin1db ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
        );
        info
    })
}

/// Runs SQL as the superuser over the Unix socket, bypassing ddlgate.
pub fn psql_admin(info: &ClusterInfo, sql: &str) {
    psql_in(info, "postgres", sql);
}

/// Runs SQL as the superuser in database `db`, bypassing ddlgate.
pub fn psql_in(info: &ClusterInfo, db: &str, sql: &str) {
    let out = Command::new(info.bin_dir.join("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            db,
            "-h",
        ])
        .arg(&info.socket_dir)
        .args(["-p", &info.port.to_string(), "-c", sql])
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Settings for a proxy in front of the shared cluster on a free port.
pub fn settings() -> Settings {
    let info = cluster();
    let upstream = UpstreamTarget::parse(&format!(
        "postgres://127.0.0.1:{}/postgres?sslmode=disable",
        info.port
    ))
    .unwrap();
    let mut s = Settings::for_upstream(upstream);
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.shutdown_timeout = Duration::from_secs(5);
    s
}

/// A ddlgate running in this process on a thread of its own.
pub struct Proxy {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
}

impl Proxy {
    pub fn start(settings: Settings) -> Proxy {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let server = Server::bind(Runtime::build(settings).unwrap())
                    .await
                    .unwrap();
                tx.send((server.local_addr().unwrap(), server.handle()))
                    .unwrap();
                server.run().await;
            });
        });
        let (addr, handle) = rx.recv().expect("proxy started");
        Proxy { addr, handle }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A libpq-style connection string through this proxy.
    pub fn conninfo(&self, user: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={db} password={ROLE_PASSWORD}",
            self.port()
        )
    }

    pub async fn connect(&self, user: &str) -> Client {
        connect(&self.conninfo(user, "postgres")).await
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// The default proxy, shared by tests that need no special settings.
pub fn proxy() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| Proxy::start(settings()))
}

pub async fn connect(conninfo: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {conninfo}: {e}"));
    tokio::spawn(conn);
    client
}

/// The upstream backend pid serving `client`.
pub async fn backend_pid(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// A direct connection to the cluster, not through ddlgate.
pub async fn direct(user: &str) -> Client {
    connect(&format!(
        "host=127.0.0.1 port={} user={user} dbname=postgres password={ROLE_PASSWORD}",
        cluster().port
    ))
    .await
}

/// rustls client config trusting the test CA.
pub fn tls_client_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut certs().ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// The SQLSTATE of a tokio-postgres error, for assertions.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_owned())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

pub fn psql(proxy: &Proxy) -> Command {
    let mut cmd = Command::new(cluster().bin_dir.join("psql"));
    cmd.args([
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-p",
        &proxy.port().to_string(),
        "-U",
        "postgres",
        "-d",
        "postgres",
    ]);
    cmd
}

/// The audit file's records once it holds `n` of them (it is written in the
/// background, shortly after each decision).
pub fn audit_records(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
