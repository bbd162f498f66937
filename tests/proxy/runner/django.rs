//! A real migration tool end to end: Django's `migrate` (tests/django, a
//! project whose migrations add a NOT NULL column, a foreign key with its
//! index, make a column NOT NULL in four steps, retype a column and index
//! it, each migration in one transaction) runs through ddlgate against a
//! populated database, with an application writing meanwhile, and ends in
//! the schema and data the same migrations give directly.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{database, direct, psql_db, runner_proxy, schema};
use crate::harness::{cluster, connect};

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/django")
}

/// The project's Python, with Django installed (by `.ci/run`).
fn python() -> PathBuf {
    let python = project().join(".venv/bin/python");
    assert!(
        python.exists(),
        "Django is not installed for the tests: run \
         `python3 -m venv tests/django/.venv && tests/django/.venv/bin/pip install -r tests/django/requirements.txt` \
         (.ci/run does; python3-venv is the Debian package)"
    );
    python
}

/// `manage.py migrate shop [target]` against `db` on `port`.
fn migrate(port: u16, db: &str, target: Option<&str>) -> (bool, String) {
    migrate_with(port, db, target, false)
}

/// The same; `fill`: the initial migration fills the tables it creates.
fn migrate_with(port: u16, db: &str, target: Option<&str>, fill: bool) -> (bool, String) {
    let mut c = Command::new(python());
    if fill {
        c.env("SHOP_FILL", "1");
    }
    c.current_dir(project())
        .args(["manage.py", "migrate", "--no-input", "shop"])
        .args(target)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGDATABASE", db)
        .env("PGUSER", "postgres");
    let out = c.output().expect("running manage.py");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const SEED: &str = "INSERT INTO shop_author (name) SELECT 'a' || g FROM generate_series(1, 500) g;
    INSERT INTO shop_book (title, pages) SELECT CASE WHEN g % 4 = 0 THEN NULL ELSE 't' || g END, g
      FROM generate_series(1, 5000) g;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_migrate_through_ddlgate_ends_in_the_direct_schema() {
    let port = cluster().port;
    let (want, db) = (database("djd", ""), database("djv", ""));
    for d in [&want, &db] {
        let (ok, out) = migrate(port, d, Some("0001"));
        assert!(ok, "{out}");
        psql_db(d, SEED);
    }
    let (ok, out) = migrate(port, &want, None);
    assert!(ok, "directly: {out}");

    let proxy = runner_proxy();
    let stop = Arc::new(AtomicBool::new(false));
    let app = {
        let stop = stop.clone();
        let c = connect(&format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            proxy.port()
        ))
        .await;
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                c.batch_execute("SELECT count(*) FROM shop_book WHERE id < 100")
                    .await
                    .unwrap_or_else(|e| panic!("the application failed: {e}"));
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    let (ok, out) = migrate(proxy.port(), &db, None);
    stop.store(true, Ordering::Relaxed);
    assert!(ok, "through ddlgate: {out}");
    assert!(
        out.contains("Applying shop.0003_book_title_pages... OK"),
        "{out}"
    );
    assert!(app.await.unwrap() > 0);

    assert_eq!(schema(&db).await, schema(&want).await);
    let rows =
        "SELECT string_agg(id || ':' || title || ':' || pages, ',' ORDER BY id) FROM shop_book";
    let read = |d: String| async move {
        direct(&d)
            .await
            .query_one(rows, &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    assert_eq!(read(db.clone()).await, read(want.clone()).await);
    let c = direct(&db).await;
    let applied: i64 = c
        .query_one(
            "SELECT count(*) FROM django_migrations WHERE app = 'shop'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied, 3);
    let made: Vec<(String, String)> = c
        .query(
            "SELECT statement, status FROM ddlgate.migrations ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let deferred: Vec<&str> = made.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        deferred,
        [
            r#"CREATE INDEX "shop_book_author_id_82b8ab51" ON "shop_book" ("author_id")"#,
            r#"UPDATE "shop_book" SET "title" = '' WHERE "title" IS NULL"#,
            r#"ALTER TABLE "shop_book" ALTER COLUMN "title" SET NOT NULL"#,
            r#"ALTER TABLE "shop_book" ALTER COLUMN "pages" TYPE bigint USING "pages"::bigint"#,
            r#"CREATE INDEX "shop_book_pages_idx" ON "shop_book" ("pages")"#,
        ]
    );
    assert!(made.iter().all(|(_, s)| s == "succeeded"), "{made:?}");
}

/// One `migrate` that creates the tables, fills them (in the initial
/// migration's transaction) and then, in later transactions, indexes,
/// retypes and constrains them: the session made them, but they hold data,
/// so no blocking form runs on them as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_creating_filling_and_altering_in_one_run() {
    let port = cluster().port;
    let (want, db) = (database("djfd", ""), database("djfv", ""));
    let (ok, out) = migrate_with(port, &want, None, true);
    assert!(ok, "directly: {out}");
    let proxy = runner_proxy();
    let (ok, out) = migrate_with(proxy.port(), &db, None, true);
    assert!(ok, "through ddlgate: {out}");
    assert_eq!(schema(&db).await, schema(&want).await);
    let rows = "SELECT count(*)::text || ':' || count(title)::text || ':' || sum(pages)::text \
                FROM shop_book";
    let read = |d: String| async move {
        direct(&d)
            .await
            .query_one(rows, &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    assert_eq!(read(db.clone()).await, "5000:5000:12502500");
    assert_eq!(read(db.clone()).await, read(want.clone()).await);
    let made: Vec<String> = direct(&db)
        .await
        .query("SELECT statement FROM ddlgate.migrations ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The blocking forms went to the runner, not to the populated tables.
    assert_eq!(
        made,
        [
            r#"CREATE INDEX "shop_book_author_id_82b8ab51" ON "shop_book" ("author_id")"#,
            r#"UPDATE "shop_book" SET "title" = '' WHERE "title" IS NULL"#,
            r#"ALTER TABLE "shop_book" ALTER COLUMN "title" SET NOT NULL"#,
            r#"ALTER TABLE "shop_book" ALTER COLUMN "pages" TYPE bigint USING "pages"::bigint"#,
            r#"CREATE INDEX "shop_book_pages_idx" ON "shop_book" ("pages")"#,
        ]
    );
}
