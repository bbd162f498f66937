//! Ordinary traffic through ddlgate: every protocol flow a driver uses.

use futures_util::future::join_all;
use futures_util::{stream, SinkExt, StreamExt, TryStreamExt};
use tokio_postgres::{AsyncMessage, NoTls, SimpleQueryMessage};

use crate::harness::{backend_pid, connect, direct, proxy, sqlstate};

#[tokio::test]
async fn simple_multi_statement_and_extended_queries() {
    let c = proxy().connect("postgres").await;
    let msgs = c
        .simple_query("CREATE TEMP TABLE s(a int, b text); INSERT INTO s VALUES (1, 'x'), (2, NULL); SELECT * FROM s ORDER BY a")
        .await
        .unwrap();
    let rows: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((r.get(0).map(str::to_owned), r.get(1).map(str::to_owned)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (Some("1".into()), Some("x".into())),
            (Some("2".into()), None)
        ]
    );

    let stmt = c
        .prepare("SELECT $1::int + a FROM s WHERE a = $2")
        .await
        .unwrap();
    let row = c.query_one(&stmt, &[&40i32, &2i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    // The named statement is reused: Bind/Execute only.
    for i in 0..20 {
        let row = c.query_one(&stmt, &[&i, &1i32]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
    }
}

#[tokio::test]
async fn pipelined_queries_with_an_error_in_the_middle() {
    let c = proxy().connect("postgres").await;
    let futures = (0..60).map(|i| {
        let c = &c;
        async move {
            if i == 30 {
                c.query_one("SELECT 1 / $1::int", &[&0i32])
                    .await
                    .map(|_| -1)
            } else {
                c.query_one("SELECT $1::int * 2", &[&i])
                    .await
                    .map(|r| r.get::<_, i32>(0))
            }
        }
    });
    let results = join_all(futures).await;
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, i as i32 * 2),
            Err(e) => {
                assert_eq!(i, 30);
                assert_eq!(sqlstate(e), "22012");
            }
        }
    }
    assert!(results[30].is_err());
    assert_eq!(
        c.query_one("SELECT 7", &[]).await.unwrap().get::<_, i32>(0),
        7
    );
}

#[tokio::test]
async fn transactions_and_errors_inside_them() {
    let mut c = proxy().connect("postgres").await;
    let tx = c.transaction().await.unwrap();
    tx.batch_execute("CREATE TEMP TABLE tx_t(a int)")
        .await
        .unwrap();
    let e = tx
        .batch_execute("SELECT nosuchcolumn FROM tx_t")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42703");
    let e = tx.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(
        sqlstate(&e),
        "25P02",
        "the transaction is aborted, as PostgreSQL does"
    );
    tx.rollback().await.unwrap();
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn copy_in_and_out_are_byte_exact() {
    let c = proxy().connect("postgres").await;
    c.batch_execute("CREATE TABLE copy_t(id int, payload bytea, note text)")
        .await
        .unwrap();
    let mut data = Vec::new();
    for i in 0..20_000 {
        data.extend_from_slice(format!("{i}\t\\\\x{:08x}\tnote ü {i}\n", i * 7919).as_bytes());
    }
    let sink = c.copy_in("COPY copy_t FROM STDIN").await.unwrap();
    let chunks: Vec<Result<bytes::Bytes, tokio_postgres::Error>> = data
        .chunks(7_000)
        .map(|ch| Ok(bytes::Bytes::copy_from_slice(ch)))
        .collect();
    let mut sink = Box::pin(sink);
    sink.send_all(&mut stream::iter(chunks)).await.unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 20_000);

    let read = |client: tokio_postgres::Client| async move {
        let out = client
            .copy_out("COPY copy_t TO STDOUT (FORMAT binary)")
            .await
            .unwrap();
        let parts: Vec<bytes::Bytes> = out.try_collect().await.unwrap();
        parts.concat()
    };
    let through = read(proxy().connect("postgres").await).await;
    let straight = read(direct("postgres").await).await;
    assert!(through.len() > 400_000);
    assert_eq!(through, straight);
    // Dropping a shared table is the gate's business (tests/ddl); here it
    // is cleanup.
    direct("postgres")
        .await
        .batch_execute("DROP TABLE copy_t")
        .await
        .unwrap();
}

#[tokio::test]
async fn copy_errors_keep_the_session_usable() {
    let c = proxy().connect("postgres").await;
    c.batch_execute("CREATE TEMP TABLE ce(a int)")
        .await
        .unwrap();
    let sink = c.copy_in("COPY ce FROM STDIN").await.unwrap();
    let mut sink = Box::pin(sink);
    sink.send(bytes::Bytes::from_static(b"1\nnot-a-number\n"))
        .await
        .unwrap();
    let e = sink.as_mut().finish().await.unwrap_err();
    assert_eq!(sqlstate(&e), "22P02");
    assert_eq!(
        c.query_one("SELECT count(*) FROM ce", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
}

/// Connects and forwards asynchronous messages (notices, notifications).
async fn connect_with_messages(
    conninfo: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<AsyncMessage>,
) {
    let (client, mut conn) = tokio_postgres::connect(conninfo, NoTls).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            let _ = tx.send(m);
        }
    });
    (client, rx)
}

#[tokio::test]
async fn listen_notify_and_notices() {
    let p = proxy();
    let (listener, mut rx) = connect_with_messages(&p.conninfo("postgres", "postgres")).await;
    listener.batch_execute("LISTEN ddlgate_chan").await.unwrap();
    let notifier = p.connect("postgres").await;
    let pid = backend_pid(&notifier).await;
    notifier
        .batch_execute("NOTIFY ddlgate_chan, 'hello'")
        .await
        .unwrap();
    let msg = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("notification within 10s")
        .unwrap();
    match msg {
        AsyncMessage::Notification(n) => {
            assert_eq!(n.channel(), "ddlgate_chan");
            assert_eq!(n.payload(), "hello");
            // Clients filter their own notifications by backend pid: it must be the real one.
            assert_eq!(n.process_id(), pid);
        }
        other => panic!("expected a notification, got {other:?}"),
    }

    listener
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'careful: %', 42; END $$")
        .await
        .unwrap();
    let msg = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    match msg {
        AsyncMessage::Notice(n) => assert_eq!(n.message(), "careful: 42"),
        other => panic!("expected a notice, got {other:?}"),
    }
}

#[tokio::test]
async fn hundred_megabyte_fields_both_ways() {
    const SIZE: usize = 100 * 1024 * 1024;
    let c = proxy().connect("postgres").await;
    let row = c
        .query_one("SELECT repeat('x', $1::int)", &[&(SIZE as i32)])
        .await
        .unwrap();
    let s: &str = row.get(0);
    assert_eq!(s.len(), SIZE);
    assert!(s.bytes().all(|b| b == b'x'));

    let big = "y".repeat(SIZE);
    let row = c
        .query_one("SELECT length($1::text)", &[&big])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), SIZE as i32);
}

#[tokio::test]
async fn cancel_reaches_the_right_backend() {
    let c = proxy().connect("postgres").await;
    let token = c.cancel_token();
    let bystander = proxy().connect("postgres").await;
    let sleeper = tokio::spawn(async move { c.batch_execute("SELECT pg_sleep(30)").await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    token.cancel_query(NoTls).await.unwrap();
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), sleeper)
        .await
        .expect("cancel took effect")
        .unwrap()
        .unwrap_err();
    assert_eq!(sqlstate(&e), "57014");
    assert_eq!(
        bystander
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn many_concurrent_sessions() {
    let p = proxy();
    let tasks = (0..40).map(|i| async move {
        let c = p.connect("postgres").await;
        for j in 0..25 {
            let v: i64 = c
                .query_one("SELECT $1::bigint", &[&(i * 100 + j)])
                .await
                .unwrap()
                .get(0);
            assert_eq!(v, i * 100 + j);
        }
    });
    join_all(tasks).await;
    let _ = connect(&p.conninfo("postgres", "postgres")).await;
}

#[tokio::test]
async fn the_registry_lists_live_sessions_with_their_backends() {
    let p = crate::harness::Proxy::start(crate::harness::settings());
    let a = p.connect("postgres").await;
    let b = p.connect("postgres").await;
    let pids = [backend_pid(&a).await, backend_pid(&b).await];
    let listed = p.handle.sessions();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (entry, pid) in listed.iter().zip(pids) {
        assert_eq!(entry.backend_pid, Some(pid));
        assert_eq!(entry.user, "postgres");
        assert_eq!(entry.database, "postgres");
    }
    drop(a);
    // The session ends when the proxy sees the close.
    for _ in 0..100 {
        if p.handle.sessions().len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(p.handle.sessions().len(), 1);
    assert!(p.handle.jobs().is_empty());
}
