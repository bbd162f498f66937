//! Backfill traffic from clients through a live ddlgate: sessions marked
//! by application_name or role wait for their budget and for a slot before
//! each request, and are never refused; the application's sessions are
//! not paced.

use std::time::{Duration, Instant};

use ddlgate::config::PacingSettings;

use crate::harness::{connect, settings, Proxy};

fn paced_proxy() -> Proxy {
    let mut s = settings();
    s.backfill_traffic = Some(PacingSettings {
        roles: vec!["pg_etl_never".into()],
        application_names: vec!["backfill-*".into()],
        max_concurrent: 1,
        max_per_sec: 5.0,
        app_p99_factor: 1.5,
        latency_window: Duration::from_secs(3),
    });
    Proxy::start(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_traffic_waits_for_its_budget_and_its_slot() {
    let proxy = paced_proxy();
    let info = proxy.conninfo("postgres", "postgres");
    let job = connect(&format!("{info} application_name=backfill-orders")).await;
    // The bucket holds a second's worth (5), then 5 a second: 15 requests
    // take at least two seconds, and every one of them succeeds.
    let t0 = Instant::now();
    for i in 0..15 {
        let n: i32 = job
            .query_one(&format!("SELECT {i}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, i);
    }
    let paced = t0.elapsed();
    assert!(paced >= Duration::from_millis(1900), "{paced:?}");
    // The application is not paced (a generous bound: no budget waits).
    let app = connect(&format!("{info} application_name=web")).await;
    let t0 = Instant::now();
    for _ in 0..15 {
        app.simple_query("SELECT 1").await.unwrap();
    }
    assert!(t0.elapsed() < paced, "the application was paced too");
    // One slot: a second job's request waits for the first one's answer.
    let other = connect(&format!("{info} application_name=backfill-lines")).await;
    let t0 = Instant::now();
    let (a, b) = tokio::join!(
        job.simple_query("SELECT pg_sleep(0.5)"),
        other.simple_query("SELECT pg_sleep(0.5)")
    );
    a.unwrap();
    b.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t0.elapsed()
    );
    // A transaction runs under the admissions of its requests, and a
    // pipelined extended batch under one.
    job.batch_execute(
        "BEGIN; CREATE TEMP TABLE paced (n int); INSERT INTO paced VALUES (1); COMMIT",
    )
    .await
    .unwrap();
    let stmt = job.prepare("SELECT $1::int + 1").await.unwrap();
    let (x, y) = tokio::join!(
        job.query_one(&stmt, &[&1i32]),
        job.query_one(&stmt, &[&2i32])
    );
    assert_eq!(x.unwrap().get::<_, i32>(0) + y.unwrap().get::<_, i32>(0), 5);
}
