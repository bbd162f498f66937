//! psql, pgbench and the ddlgate binary itself, as child processes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use crate::harness::*;

fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn psql_scripts_copy_and_large_objects() {
    let p = proxy();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("blob.bin");
    let back = dir.path().join("back.bin");
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&src, &blob).unwrap();
    // \lo_import and \lo_export use the FunctionCall (fast-path) protocol.
    let script = format!(
        "CREATE TEMP TABLE p(a int);\n\\copy p from stdin\n1\n2\n\\.\nSELECT sum(a) AS total FROM p \\gset\n\\echo total=:total\n\
         \\lo_import {}\n\\set oid :LASTOID\n\\lo_export :oid {}\n\\lo_unlink :oid\n",
        src.display(),
        back.display()
    );
    let mut child = psql(p)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("total=3"));
    assert_eq!(std::fs::read(&back).unwrap(), blob);
}

#[test]
fn non_utf8_client_encoding_is_byte_exact() {
    let p = proxy();
    let info = cluster();
    // é and ÿ as single LATIN1 bytes, sent and returned unchanged.
    let query = b"SELECT 'caf\xe9 \xff'::text AS v, convert_to('caf\xe9 \xff', 'LATIN1') = '\\x636166e920ff'::bytea AS same";
    let query = unsafe { String::from_utf8_unchecked(query.to_vec()) };
    let through = run_ok(
        psql(p)
            .env("PGCLIENTENCODING", "LATIN1")
            .args(["-d", "latin1db", "-A", "-t", "-c"])
            .arg(&query),
    );
    let direct = run_ok(
        Command::new(info.bin_dir.join("psql"))
            .env("PGCLIENTENCODING", "LATIN1")
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "latin1db",
                "-p",
            ])
            .arg(info.port.to_string())
            .arg("-c")
            .arg(&query),
    );
    assert_eq!(through, b"caf\xe9 \xff|t\n");
    assert_eq!(through, direct);
}

#[test]
fn pgbench_in_every_query_mode() {
    let p = proxy();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", p.port());
    let pgbench = cluster().bin_dir.join("pgbench");
    // pgbench -i drops tables and adds primary keys, which the gate's
    // default policy stops; initialise directly, benchmark through ddlgate.
    let direct_url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster().port);
    run_ok(Command::new(&pgbench).args(["-i", "-q", "-s", "1", &direct_url]));
    for mode in ["simple", "extended", "prepared"] {
        let out =
            run_ok(Command::new(&pgbench).args(["-n", "-c", "4", "-t", "200", "-M", mode, &url]));
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.contains("number of transactions actually processed: 800/800"),
            "{mode}: {out}"
        );
        assert!(
            out.contains("number of failed transactions: 0"),
            "{mode}: {out}"
        );
    }
}

/// The ddlgate binary as a child process; killed on drop.
struct Binary {
    child: Child,
    port: u16,
}

impl Binary {
    fn start(extra: &[&str]) -> Binary {
        let port = ddlgate::pgcluster::free_port();
        let upstream = format!(
            "postgres://127.0.0.1:{}/postgres?sslmode=disable",
            cluster().port
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_ddlgate"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--upstream",
                &upstream,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first log line says it is accepting.
        let mut line = String::new();
        BufReader::new(child.stderr.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("accepting connections"), "{line}");
        Binary { child, port }
    }

    fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ddlgate did not exit in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn help_and_config_errors() {
    let bin = env!("CARGO_BIN_EXE_ddlgate");
    let help = run_ok(Command::new(bin).arg("--help"));
    let help = String::from_utf8_lossy(&help);
    for flag in [
        "--listen",
        "--upstream",
        "--config",
        "demo",
        "DDLGATE_UPSTREAM",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "upstream = \"postgres://x\"\nmax_message_size = \"12XB\"\n",
            "'max_message_size'",
        ),
        (
            "upstream = \"postgres://x\"\nworkers = \"two\"\n",
            "'workers'",
        ),
        ("upstream = \"postgres://x\"\nbogus = 1\n", "'bogus'"),
        ("upstream = \"mysql://x\"\n", "'upstream'"),
        ("listen = \"127.0.0.1:1\"\n", "'upstream'"),
    ];
    for (text, key) in cases {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(bin)
            .arg("--config")
            .arg(&path)
            .env_remove("DDLGATE_UPSTREAM")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(key), "{err} should name {key}");
    }
    // Environment variables stand in for flags.
    let out = Command::new(bin)
        .env("DDLGATE_UPSTREAM", "postgres://x")
        .env("DDLGATE_IDLE_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'idle_timeout'"));
}

#[tokio::test]
async fn metrics_endpoint_and_json_logs() {
    let metrics_port = ddlgate::pgcluster::free_port();
    let bin = Binary::start(&[
        "--metrics-listen",
        &format!("127.0.0.1:{metrics_port}"),
        "--log-format",
        "json",
    ]);
    let mut bin = bin;
    let c = connect(&bin.conninfo()).await;
    for _ in 0..5 {
        c.query_one("SELECT 1", &[]).await.unwrap();
    }
    direct("postgres")
        .await
        .batch_execute("CREATE TABLE IF NOT EXISTS metrics_kept (a int)")
        .await
        .unwrap();
    let e = c.batch_execute("TRUNCATE metrics_kept").await.unwrap_err();
    assert_eq!(sqlstate(&e), "ZD001");
    let body = http_get(metrics_port).await;
    for name in [
        "ddlgate_queries_total",
        "ddlgate_bytes_total",
        "ddlgate_client_connections_active",
        "ddlgate_upstream_connect_seconds",
    ] {
        assert!(body.contains(name), "metrics lack {name}:\n{body}");
    }
    assert!(
        body.lines()
            .any(|l| l.starts_with("ddlgate_ddl_decisions_total")
                && l.contains("rule=\"truncate\"")
                && l.contains("decision=\"block\"")),
        "{body}"
    );
    // The decision is one JSON log event with the fields operators need.
    let stderr = bin.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ddl.blocked") {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a ddl.blocked log line");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let f = &v["fields"];
    assert_eq!(f["event"], "ddl.blocked", "{line}");
    assert_eq!(f["rules"], "truncate", "{line}");
    assert_eq!(f["user"], "postgres", "{line}");
    assert_eq!(f["table"], "metrics_kept", "{line}");
    for key in [
        "id",
        "fingerprint",
        "statement",
        "client_addr",
        "server_version",
        "lock",
    ] {
        assert!(f.get(key).is_some(), "{key} missing: {line}");
    }
}

async fn http_get(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn sigterm_lets_transactions_finish_then_exits() {
    let mut bin = Binary::start(&["--shutdown-timeout", "20s"]);
    let mut busy = connect(&bin.conninfo()).await;
    let (idle, idle_conn) = tokio_postgres::connect(&bin.conninfo(), NoTls)
        .await
        .unwrap();
    let idle_conn = tokio::spawn(idle_conn);
    idle.query_one("SELECT 1", &[]).await.unwrap();
    let tx = busy.transaction().await.unwrap();
    tx.query_one("SELECT 1", &[]).await.unwrap();

    bin.signal(libc::SIGTERM);
    // The idle session is closed at once, with the reason.
    let e = tokio::time::timeout(Duration::from_secs(5), idle_conn)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(sqlstate(&e), "57P01");
    // New connections are refused; the open transaction carries on.
    assert!(tokio_postgres::connect(&bin.conninfo(), NoTls)
        .await
        .is_err());
    assert_eq!(
        tx.query_one("SELECT 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    tx.commit().await.unwrap();
    let status = bin.wait_exit(Duration::from_secs(10));
    assert!(status.success());
}

#[tokio::test]
async fn sighup_reloads_limits_for_new_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ddlgate.toml");
    std::fs::write(&path, "max_client_connections = 100\n").unwrap();
    let bin = Binary::start(&["--config", path.to_str().unwrap()]);
    let first = connect(&bin.conninfo()).await;
    std::fs::write(&path, "max_client_connections = 1\n").unwrap();
    bin.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_postgres::connect(&bin.conninfo(), NoTls).await {
            Err(e) if sqlstate(&e) == "53300" => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => panic!("the reloaded limit never applied"),
        }
    }
    first.query_one("SELECT 1", &[]).await.unwrap();
}

/// `tests/node` with its packages installed (`.ci/run` installs them).
fn node_tests_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        dir.join("node_modules/pg").is_dir(),
        "node-pg is not installed: run `npm ci --prefix tests/node` (Node.js from `apt-get install -y nodejs npm`)"
    );
    dir
}

#[test]
fn node_pg_pool_end_is_quiet() {
    // pool.end() sends Terminate on every connection; a word from the
    // proxy after it crashes the application.
    let p = proxy();
    let dir = node_tests_dir();
    let out = run_ok(
        Command::new("node")
            .arg(dir.join("pool_end.js"))
            .arg(p.port().to_string())
            .arg("25"),
    );
    assert!(
        String::from_utf8_lossy(&out).contains("errors=0"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

/// `ddlgate demo` as a new user runs it: it seeds its table, applies an
/// unsafe change through its runner while its application runs, answers
/// the console, and stops cleanly on SIGTERM.
#[test]
fn demo_applies_an_unsafe_change_while_its_application_runs() {
    cluster(); // fails with install instructions when PostgreSQL is missing
    let port = ddlgate::pgcluster::free_port();
    let listen = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .args(["demo", "--listen", &listen])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&out_path)
        .unwrap_or_default()
        .contains("things to try")
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "demo exited: {}",
            std::fs::read_to_string(dir.path().join("err")).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "demo did not start in 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let psql = |db: &str, sql: &str| {
        Command::new(cluster().bin_dir.join("psql"))
            .args(["-X", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("postgres://postgres@{listen}/{db}"))
            .args(["-c", sql])
            .output()
            .unwrap()
    };
    let out = psql(
        "postgres",
        "CREATE INDEX orders_customer_idx ON orders (customer)",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "CREATE INDEX");
    assert!(err.contains("migration 1: step 1 of 1"), "{err}");
    let out = psql("ddlgate", "SHOW MIGRATIONS");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("succeeded") && list.contains("orders"),
        "{list}"
    );
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "demo exit: {status:?}");
    let log = std::fs::read_to_string(dir.path().join("err")).unwrap();
    assert!(log.contains("migration.succeeded"), "{log}");
    assert!(!log.contains("a transaction failed"), "{log}");
}
