//! Authentication with the client's own credentials, and TLS on either side.

use ddlgate::config::TlsFiles;
use ddlgate::upstream::UpstreamTarget;
use tokio::net::TcpStream;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::harness::*;
use crate::raw;

fn proxy_with(upstream_query: &str, client_tls: bool) -> Proxy {
    let mut s = settings();
    s.upstream = UpstreamTarget::parse(&format!(
        "postgres://127.0.0.1:{}/postgres?{upstream_query}",
        cluster().port
    ))
    .unwrap();
    if client_tls {
        s.tls = Some(TlsFiles {
            cert: certs().cert_path(),
            key: certs().key_path(),
        });
    }
    Proxy::start(s)
}

async fn login(
    p: &Proxy,
    user: &str,
    password: &str,
    tls: bool,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conninfo = format!(
        "{} password={password} sslmode={}",
        p.conninfo(user, "postgres"),
        if tls { "require" } else { "disable" }
    );
    let client = if tls {
        let (c, conn) =
            tokio_postgres::connect(&conninfo, MakeRustlsConnect::new(tls_client_config())).await?;
        tokio::spawn(conn);
        c
    } else {
        let (c, conn) = tokio_postgres::connect(&conninfo, NoTls).await?;
        tokio::spawn(conn);
        c
    };
    Ok(client)
}

async fn upstream_uses_tls(c: &tokio_postgres::Client) -> bool {
    c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn password_md5_and_scram_with_the_clients_own_credentials() {
    let p = proxy();
    for (user, password) in [
        ("md5_user", MD5_PASSWORD),
        ("scram_user", SCRAM_PASSWORD),
        ("plain_user", PLAIN_PASSWORD),
    ] {
        let c = login(p, user, password, false)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let who: String = c
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, user);
        let Err(e) = login(p, user, "wrong", false).await else {
            panic!("{user}: wrong password accepted")
        };
        assert_eq!(sqlstate(&e), "28P01", "{user}");
    }
}

#[tokio::test]
async fn tls_from_clients() {
    let p = proxy_with("sslmode=disable", true);
    for (user, password) in [("md5_user", MD5_PASSWORD), ("scram_user", SCRAM_PASSWORD)] {
        let c = login(&p, user, password, true)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert!(!upstream_uses_tls(&c).await);
    }
    // Plain clients are still served.
    login(&p, "scram_user", SCRAM_PASSWORD, false)
        .await
        .unwrap();
}

#[tokio::test]
async fn tls_to_the_upstream_verified() {
    let ca = certs().ca_path();
    let p = proxy_with(
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        false,
    );
    for (user, password) in [
        ("md5_user", MD5_PASSWORD),
        ("scram_user", SCRAM_PASSWORD),
        ("postgres", ""),
    ] {
        let c = login(&p, user, password, false)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert!(upstream_uses_tls(&c).await);
    }
}

#[tokio::test]
async fn tls_on_both_sides_with_every_password_method() {
    let ca = certs().ca_path();
    let p = proxy_with(
        &format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
        true,
    );
    for (user, password) in [
        ("md5_user", MD5_PASSWORD),
        ("scram_user", SCRAM_PASSWORD),
        ("plain_user", PLAIN_PASSWORD),
    ] {
        let c = login(&p, user, password, true)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert!(upstream_uses_tls(&c).await);
        let Err(e) = login(&p, user, "wrong", true).await else {
            panic!("{user}: wrong password accepted")
        };
        assert_eq!(sqlstate(&e), "28P01", "{user}");
    }
}

#[tokio::test]
async fn channel_binding_is_never_offered_through_the_proxy() {
    // Upstream over TLS: PostgreSQL offers SCRAM-SHA-256-PLUS to ddlgate...
    let p = proxy_with("sslmode=require", false);
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    raw::send(
        &mut s,
        &raw::startup_packet(&[("user", "scram_user"), ("database", "postgres")]),
    )
    .await;
    let (tag, body) = raw::read_message(&mut s).await.unwrap();
    assert_eq!(tag, b'R');
    assert_eq!(
        i32::from_be_bytes(body[..4].try_into().unwrap()),
        10,
        "AuthenticationSASL"
    );
    // ...but the client only sees the mechanism that survives a TLS-terminating proxy.
    assert_eq!(&body[4..], b"SCRAM-SHA-256\0\0");
}

#[tokio::test]
async fn upstream_certificate_that_fails_verification() {
    // The system roots do not know the test CA.
    let p = proxy_with("sslmode=verify-full", false);
    let Err(e) = login(&p, "postgres", "", false).await else {
        panic!("accepted an unverifiable upstream")
    };
    assert_eq!(sqlstate(&e), "08006");
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(
        msg.contains("TLS handshake with the upstream server failed"),
        "{msg}"
    );
    assert!(
        msg.to_lowercase().contains("certificate") || msg.contains("issuer"),
        "{msg}"
    );
}
