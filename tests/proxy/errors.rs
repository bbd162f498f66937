//! Bad input and failures: each gives the client a FATAL ErrorResponse with a
//! real SQLSTATE, and the proxy keeps serving everyone else.

use std::time::Duration;

use ddlgate::upstream::UpstreamTarget;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::NoTls;

use crate::harness::*;
use crate::raw;

/// Reads the next message and checks it is a FATAL error with `code`.
async fn expect_fatal(s: &mut TcpStream, code: &str) -> String {
    let (tag, body) = tokio::time::timeout(Duration::from_secs(10), raw::read_message(s))
        .await
        .expect("an answer within 10s")
        .expect("an ErrorResponse before the close");
    assert_eq!(tag, b'E', "expected ErrorResponse");
    assert_eq!(raw::field(&body, b'S'), "FATAL");
    assert_eq!(raw::error_code(&body), code, "{}", raw::field(&body, b'M'));
    raw::field(&body, b'M')
}

async fn still_serving(p: &Proxy) {
    let c = p.connect("postgres").await;
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn upstream_unreachable() {
    let mut s = settings();
    let closed_port = ddlgate::pgcluster::free_port();
    s.upstream = UpstreamTarget::parse(&format!(
        "postgres://127.0.0.1:{closed_port}?sslmode=disable"
    ))
    .unwrap();
    let p = Proxy::start(s);
    let e = tokio_postgres::connect(&p.conninfo("postgres", "postgres"), NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "08006");
    let msg = e.as_db_error().unwrap().message();
    assert!(
        msg.contains("could not connect to the upstream server: connection refused"),
        "{msg}"
    );
}

#[tokio::test]
async fn upstream_terminates_the_backend() {
    let p = proxy();
    let c = p.connect("postgres").await;
    let pid = backend_pid(&c).await;
    direct("postgres")
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let e = c.query_one("SELECT 1", &[]).await.unwrap_err();
    // The server's own FATAL reaches the client; no second error is added.
    assert!(e.is_closed() || sqlstate(&e) == "57P01", "{e}");
    still_serving(p).await;
}

/// An upstream that completes startup, then drops the connection on the first query.
async fn vanishing_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut len = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut len)
            .await
            .unwrap();
        let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut rest)
            .await
            .unwrap();
        let mut out = Vec::new();
        out.extend_from_slice(b"R\0\0\0\x08\0\0\0\0");
        out.extend_from_slice(b"S\0\0\0\x18server_version\x0015.0\0");
        out.extend_from_slice(b"K\0\0\0\x0c\0\0\x30\x39\x01\x02\x03\x04");
        out.extend_from_slice(b"Z\0\0\0\x05I");
        s.write_all(&out).await.unwrap();
        let _ = raw::read_message(&mut s).await;
        drop(s);
    });
    port
}

#[tokio::test]
async fn upstream_closes_mid_session() {
    let mut s = settings();
    let port = vanishing_upstream().await;
    s.upstream =
        UpstreamTarget::parse(&format!("postgres://127.0.0.1:{port}?sslmode=disable")).unwrap();
    let p = Proxy::start(s);
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    raw::send(&mut c, &raw::startup_packet(&[("user", "u")])).await;
    for expected in [b'R', b'S', b'K', b'Z'] {
        assert_eq!(raw::read_message(&mut c).await.unwrap().0, expected);
    }
    raw::send(&mut c, b"Q\0\0\0\x0dSELECT 1;\0").await;
    let msg = expect_fatal(&mut c, "08006").await;
    assert!(
        msg.contains("upstream server closed the connection"),
        "{msg}"
    );
    assert!(
        raw::read_message(&mut c).await.is_none(),
        "then the connection closes"
    );
}

#[tokio::test]
async fn bad_startup_packets() {
    let p = proxy();
    // Length below the minimum.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    raw::send(&mut s, &[0, 0, 0, 3, 0, 0, 0, 0]).await;
    expect_fatal(&mut s, "08P01").await;
    // Protocol 2.0.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    raw::send(&mut s, &[0, 0, 0, 9, 0, 2, 0, 0, 0]).await;
    let msg = expect_fatal(&mut s, "08P01").await;
    assert!(msg.contains("unsupported frontend protocol 2.0"), "{msg}");
    // Parameters not terminated.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    raw::send(&mut s, &[0, 0, 0, 12, 0, 3, 0, 0, b'u', b's', b'e', b'r']).await;
    expect_fatal(&mut s, "08P01").await;
    still_serving(p).await;
}

#[tokio::test]
async fn messages_over_the_configured_maximum() {
    let mut s = settings();
    s.max_message_size = 64 * 1024;
    let p = Proxy::start(s);
    let c = p.connect("postgres").await;
    let big = "z".repeat(100 * 1024);
    let e = c
        .query_one("SELECT length($1::text)", &[&big])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "08P01");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("exceeds the maximum of 65536 bytes"),
        "{e}"
    );
    // A garbage length word from a raw client gets the same treatment.
    let mut raw_client = TcpStream::connect(p.addr).await.unwrap();
    raw::send(
        &mut raw_client,
        &raw::startup_packet(&[("user", "postgres"), ("database", "postgres")]),
    )
    .await;
    while raw::read_message(&mut raw_client).await.unwrap().0 != b'Z' {}
    raw::send(&mut raw_client, b"Q\xff\xff\xff\xff").await;
    expect_fatal(&mut raw_client, "08P01").await;
    still_serving(&p).await;
}

#[tokio::test]
async fn handshake_timeout() {
    let mut s = settings();
    s.handshake_timeout = Duration::from_millis(500);
    let p = Proxy::start(s);
    let mut silent = TcpStream::connect(p.addr).await.unwrap();
    let msg = expect_fatal(&mut silent, "08006").await;
    assert!(msg.contains("handshake_timeout"), "{msg}");
    still_serving(&p).await;
}

#[tokio::test]
async fn idle_timeout_closes_idle_sessions_only() {
    let mut s = settings();
    s.idle_timeout = Some(Duration::from_millis(700));
    let p = Proxy::start(s);
    let (idle, conn) = tokio_postgres::connect(&p.conninfo("postgres", "postgres"), NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let mut busy = p.connect("postgres").await;
    let tx = busy.transaction().await.unwrap();
    idle.query_one("SELECT 1", &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let e = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(sqlstate(&e), "57P05");
    // In a transaction, the session is left alone.
    assert_eq!(
        tx.query_one("SELECT 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn too_many_clients() {
    let mut s = settings();
    s.max_client_connections = 2;
    let p = Proxy::start(s);
    let a = p.connect("postgres").await;
    let _b = p.connect("postgres").await;
    let e = tokio_postgres::connect(&p.conninfo("postgres", "postgres"), NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "53300");
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("max_client_connections is 2"));
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    still_serving(&p).await;
}

#[tokio::test]
async fn unknown_cancel_keys_are_ignored() {
    let p = proxy();
    let c = p.connect("postgres").await;
    let pid = backend_pid(&c).await;
    // The query must be running when the guesses arrive, or a key that
    // worked would have nothing to cancel.
    let slow = tokio::spawn(async move {
        let r = c.query_one("SELECT pg_sleep(1.5)::text", &[]).await;
        (c, r)
    });
    let watcher = direct("postgres").await;
    loop {
        let active: bool = watcher
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 \
                 AND state = 'active' AND query LIKE '%pg_sleep(1.5)%')",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The real pid with guessed secrets, of the length ddlgate issues.
    for secret in [[9u8, 9, 9, 9], [0, 0, 0, 0]] {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let mut packet = vec![0, 0, 0, 16, 4, 210, 22, 46];
        packet.extend_from_slice(&pid.to_be_bytes());
        packet.extend_from_slice(&secret);
        raw::send(&mut s, &packet).await;
        assert!(raw::read_message(&mut s).await.is_none());
    }
    let (_c, r) = slow.await.unwrap();
    assert!(r.is_ok(), "a guessed key must not cancel anything: {r:?}");
}

/// Everything the proxy sends until it closes the connection.
async fn read_to_close(s: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), raw::read_message(s)).await {
            Ok(Some(m)) => got.push(m),
            Ok(None) => return got,
            Err(_) => panic!("the proxy did not close the connection after Terminate"),
        }
    }
}

#[tokio::test]
async fn terminate_gets_a_quiet_close() {
    // PostgreSQL says nothing after a client's Terminate; neither may the
    // proxy, whichever of its two sides notices the close first (node-pg
    // treats a late FATAL on an idle client as an unhandled error).
    let p = proxy();
    for round in 0..40 {
        let mut s = raw::ready(p.addr, &[("user", "postgres"), ("database", "postgres")]).await;
        let mut bytes = Vec::new();
        if round % 2 == 0 {
            // A query pipelined with the Terminate: its answers still come.
            bytes.extend(raw::message(b'Q', b"SELECT 1\0"));
        }
        bytes.extend(raw::message(b'X', b""));
        raw::send(&mut s, &bytes).await;
        let got = read_to_close(&mut s).await;
        let tags: Vec<u8> = got.iter().map(|(t, _)| *t).collect();
        if round % 2 == 0 {
            assert_eq!(
                tags,
                b"TDCZ",
                "round {round}: {:?}",
                String::from_utf8_lossy(&tags)
            );
        } else {
            assert!(tags.is_empty(), "round {round}: {:?}", got);
        }
    }
    still_serving(p).await;
}
