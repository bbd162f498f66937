//! Ordinary traffic is untouched: a psql script full of it (DO blocks that
//! raise notices, DROP IF EXISTS of nothing, a session's scratch tables,
//! errors, COPY, LISTEN/NOTIFY) prints the same bytes through ddlgate as
//! directly.

use std::process::Command;

use crate::harness::*;

/// Runs the script in a fresh database `db`, through `port`, with psql's
/// stdout and stderr in one stream (so notices keep their place).
fn run_script(port: u16, db: &str) -> String {
    let info = cluster();
    psql_admin(info, &format!("DROP DATABASE IF EXISTS {db}"));
    psql_admin(info, &format!("CREATE DATABASE {db}"));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/proxy/fixtures/ordinary.sql"
    );
    let psql = info.bin_dir.join("psql");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' -X -a -h 127.0.0.1 -p {port} -U postgres -d {db} -f '{script}' 2>&1",
            psql.display()
        ))
        .output()
        .expect("running psql");
    psql_admin(info, &format!("DROP DATABASE IF EXISTS {db}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Backend pids differ from run to run; nothing else may.
    text.lines()
        .map(|l| match l.find("server process with PID ") {
            Some(i) => format!("{}server process with PID <pid>.", &l[..i]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_psql_script_of_ordinary_traffic_prints_the_same_bytes() {
    let direct = run_script(cluster().port, "ordinary_direct");
    let through = run_script(proxy().port(), "ordinary_proxy");
    // The script really ran: its last statement and its errors are there.
    assert!(direct.contains("the_end"), "{direct}");
    assert!(direct.contains("hello from a DO block"), "{direct}");
    assert!(direct.contains("division by zero"), "{direct}");
    assert!(direct.contains("payload \"payload\""), "{direct}");
    if direct != through {
        let first = direct
            .lines()
            .zip(through.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "output differs from line {}:\n--- direct\n{}\n--- through ddlgate\n{}",
            first + 1,
            direct
                .lines()
                .skip(first)
                .take(8)
                .collect::<Vec<_>>()
                .join("\n"),
            through
                .lines()
                .skip(first)
                .take(8)
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
}
