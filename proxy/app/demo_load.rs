//! The demo's data and application: a table big enough that a direct
//! CREATE INDEX or SET NOT NULL is felt, and a light workload through
//! ddlgate that says when one of its transactions had to wait.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

/// Rows in the demo's `orders` table.
pub const ORDERS: i64 = 1_000_000;

/// A transaction slower than this is reported at once.
const SLOW: Duration = Duration::from_millis(100);
/// How often the workload sums up.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Creates and fills `orders` straight on the cluster (not through
/// ddlgate: the demo's setup is not a migration).
pub async fn seed(conninfo: &str) -> Result<(), tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, \
               amount numeric NOT NULL, note text);
             INSERT INTO orders SELECT g, g % 5000, (g % 977) * 1.25, 'order ' || g \
               FROM generate_series(1, {ORDERS}) g;"
        ))
        .await?;
    // On its own: VACUUM cannot run inside the string's implicit transaction.
    client.batch_execute("VACUUM ANALYZE orders").await
}

/// About 20 transactions a second through ddlgate (an UPDATE and a SELECT
/// of one order), until `stop`. Logs each slow transaction and, every
/// 30 s, how many ran, the slowest and the errors.
pub async fn application(conninfo: String, stop: CancellationToken) {
    let client = loop {
        match tokio_postgres::connect(&conninfo, NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                break client;
            }
            Err(e) => {
                tracing::warn!(event = "demo.app", error = %e, "demo application cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut count, mut errors, mut slowest) = (0u64, 0u64, Duration::ZERO);
    let mut since = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let id: i64 = rand::rng().random_range(1..=ORDERS);
        let started = Instant::now();
        let result = async {
            client
                .execute(
                    "UPDATE orders SET amount = amount + 1 WHERE id = $1",
                    &[&id],
                )
                .await?;
            client
                .query_one("SELECT amount::text FROM orders WHERE id = $1", &[&id])
                .await
        }
        .await;
        let took = started.elapsed();
        count += 1;
        slowest = slowest.max(took);
        if let Err(e) = result {
            errors += 1;
            tracing::warn!(event = "demo.app", error = %e, "demo application: a transaction failed");
        } else if took > SLOW {
            tracing::warn!(
                event = "demo.app",
                waited_ms = took.as_millis() as u64,
                "demo application: a transaction waited for a lock"
            );
        }
        if since.elapsed() >= REPORT_EVERY {
            tracing::info!(
                event = "demo.app",
                transactions = count,
                slowest_ms = slowest.as_millis() as u64,
                errors,
                "demo application through ddlgate"
            );
            (count, errors, slowest) = (0, 0, Duration::ZERO);
            since = Instant::now();
        }
    }
}
