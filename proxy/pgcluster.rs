//! A throwaway PostgreSQL cluster started from the installed server binaries:
//! initdb into a temporary directory, a free port, a Unix socket inside that
//! directory, torn down on drop. Used by `ddlgate demo` and the test suite.
//! When run as root, the server runs as the unprivileged `postgres` account
//! (PostgreSQL refuses to run as root).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, postgres) were not found. \
Install them (Debian/Ubuntu: apt-get install -y postgresql; Fedora: dnf install postgresql-server; \
macOS: brew install postgresql@16) or set DDLGATE_PG_BINDIR to the directory holding initdb.";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{INSTALL_HINT}")]
    NotInstalled,
    #[error("running as root, but no unprivileged 'postgres' user exists to run the server (create one, e.g. useradd postgres)")]
    NoUser,
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
}

fn step(step: &'static str) -> impl Fn(io::Error) -> ClusterError {
    move |e| ClusterError::Step {
        step,
        detail: e.to_string(),
    }
}

/// What to configure beyond a trust-everything default.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Lines appended to postgresql.conf.
    pub conf: Vec<String>,
    /// Replaces pg_hba.conf when set.
    pub hba: Option<String>,
    /// PEM certificate and key: the server accepts TLS with them.
    pub tls: Option<(String, String)>,
}

pub struct PgCluster {
    dir: Option<tempfile::TempDir>,
    pub port: u16,
    pub bin_dir: PathBuf,
    owner: Option<(u32, u32)>,
    pid: u32,
    waiter: Option<JoinHandle<()>>,
}

/// Finds the directory with `initdb` and `postgres`.
pub fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(d) = std::env::var_os("DDLGATE_PG_BINDIR") {
        let d = PathBuf::from(d);
        return if has(&d) {
            Ok(d)
        } else {
            Err(ClusterError::NotInstalled)
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).find(|d| has(d)))
        .and_then(|d| d)
        .ok_or(ClusterError::NotInstalled)
}

/// The uid/gid to run the server as: `postgres` when we are root.
fn server_owner() -> Result<Option<(u32, u32)>, ClusterError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").map_err(step("reading /etc/passwd"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == "postgres")
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .map(Some)
        .ok_or(ClusterError::NoUser)
}

/// A port free at the moment of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port on 127.0.0.1")
}

impl PgCluster {
    pub fn start(opts: ClusterOptions) -> Result<Self, ClusterError> {
        let bin_dir = find_bin_dir()?;
        let owner = server_owner()?;
        let dir = tempfile::Builder::new()
            .prefix("ddlgate-pg-")
            .tempdir()
            .map_err(step("creating a temporary directory"))?;
        let mut cluster = PgCluster {
            dir: Some(dir),
            port: free_port(),
            bin_dir,
            owner,
            pid: 0,
            waiter: None,
        };
        cluster.chown(cluster.root())?;
        fs::create_dir(cluster.socket_dir()).map_err(step("creating the socket directory"))?;
        cluster.chown(&cluster.socket_dir())?;

        let out = cluster
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
                "-D",
            ])
            .arg(cluster.data_dir())
            .output()
            .map_err(step("running initdb"))?;
        if !out.status.success() {
            return Err(ClusterError::Step {
                step: "initdb",
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }

        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_connections = 600\nshared_buffers = 64MB\n",
            cluster.port,
            cluster.socket_dir().display()
        );
        for line in &opts.conf {
            conf.push_str(line);
            conf.push('\n');
        }
        if let Some((cert, key)) = &opts.tls {
            cluster.write_data_file("server.crt", cert, 0o600)?;
            cluster.write_data_file("server.key", key, 0o600)?;
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        let conf_path = cluster.data_dir().join("postgresql.conf");
        let mut base = fs::read_to_string(&conf_path).map_err(step("reading postgresql.conf"))?;
        base.push_str(&conf);
        fs::write(&conf_path, base).map_err(step("writing postgresql.conf"))?;
        if let Some(hba) = &opts.hba {
            cluster.write_data_file("pg_hba.conf", hba, 0o600)?;
        }
        cluster.launch()?;
        Ok(cluster)
    }

    fn root(&self) -> &Path {
        self.dir.as_ref().expect("cluster directory").path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.root().join("sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root().join("postgres.log")
    }

    /// A URL for ddlgate's `--upstream` over TCP.
    pub fn url(&self) -> String {
        format!("postgres://127.0.0.1:{}/postgres", self.port)
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    fn chown(&self, path: &Path) -> Result<(), ClusterError> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(step("chown to postgres"))?;
        }
        Ok(())
    }

    fn write_data_file(&self, name: &str, contents: &str, mode: u32) -> Result<(), ClusterError> {
        let path = self.data_dir().join(name);
        fs::write(&path, contents).map_err(step("writing a data directory file"))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(step("chmod"))?;
        self.chown(&path)
    }

    fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(self.bin(bin));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.env_remove("PGDATA").current_dir(self.root());
        cmd
    }

    /// Starts the postmaster from a thread that lives as long as it does, so
    /// the parent-death signal fires only when this process really ends.
    fn launch(&mut self) -> Result<(), ClusterError> {
        let log = fs::File::create(self.log_path()).map_err(step("creating the server log"))?;
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(step("server log"))?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        self.waiter = Some(std::thread::spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }));
        self.pid = rx
            .recv()
            .map_err(|_| ClusterError::Step {
                step: "starting postgres",
                detail: "launcher thread died".into(),
            })?
            .map_err(step("starting postgres"))?;
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ok = Command::new(self.bin("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(self.socket_dir())
                .arg("-p")
                .arg(self.port.to_string())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if self.waiter.as_ref().is_some_and(|w| w.is_finished()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(ClusterError::Step {
            step: "starting postgres",
            detail: fs::read_to_string(self.log_path()).unwrap_or_default(),
        })
    }

    /// Stops the server (fast shutdown) and removes its directory.
    pub fn stop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while !waiter.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !waiter.is_finished() {
                unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
            }
            let _ = waiter.join();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
