//! Schema changes inside transactions, as migration tools send them (each
//! statement its own Query inside BEGIN … COMMIT, sometimes two in one):
//! deferred past COMMIT, they end in the schema and data the same sequence
//! gives directly, with a writer through ddlgate running all along.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{database, direct, psql_db, psql_script, runner_proxy, schema};
use crate::harness::{cluster, connect};

/// Runs `statements` in `db`, one Query each, directly and through ddlgate
/// (the latter in a second database with the same setup): the schemas and
/// `data` must come out equal, every migration ddlgate made must succeed,
/// and a writer inserting into `writer_table` through ddlgate meanwhile
/// never fails or waits long.
async fn same_as_direct(
    prefix: &str,
    setup: &str,
    statements: &[&str],
    (data, writer): (&str, &str),
    deferred: &[&str],
) {
    let direct_db = database(&format!("{prefix}d"), setup);
    let c = direct(&direct_db).await;
    for s in statements {
        c.batch_execute(s)
            .await
            .unwrap_or_else(|e| panic!("directly: {s}: {e}"));
    }
    let db = database(&format!("{prefix}v"), setup);
    let proxy = runner_proxy();
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        proxy.port()
    );
    // The application: one insert at a time through ddlgate.
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(AtomicU64::new(0));
    let app = {
        let (stop, worst) = (stop.clone(), worst.clone());
        let app = connect(&conninfo).await;
        let writer = writer.to_owned();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                app.batch_execute(&writer)
                    .await
                    .unwrap_or_else(|e| panic!("the application failed: {e}"));
                worst.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    let tool = connect(&conninfo).await;
    // How long the tool's own transaction held its locks: from BEGIN to
    // the moment COMMIT is sent (the server lets go at COMMIT; ddlgate
    // holds only COMMIT's answer while the deferred work runs).
    let (mut began, mut held) = (None, Duration::ZERO);
    for s in statements {
        match *s {
            "BEGIN" => began = Some(Instant::now()),
            "COMMIT" => held += began.take().map_or(Duration::ZERO, |b| b.elapsed()),
            _ => {}
        }
        tool.batch_execute(s)
            .await
            .unwrap_or_else(|e| panic!("through ddlgate: {s}: {:?}", e.as_db_error()));
    }
    stop.store(true, Ordering::Relaxed);
    let writes = app.await.unwrap();
    assert!(writes > 0);
    // The writer's rows differ between the two databases: compare without.
    let forget = format!("DELETE FROM {} WHERE note = 'app'", writer_table(writer));
    psql_db(&db, &forget);
    psql_db(&direct_db, &forget);
    assert_eq!(schema(&db).await, schema(&direct_db).await);
    let rows = |d: String| async move {
        direct(&d)
            .await
            .query_one(data, &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    assert_eq!(rows(db.clone()).await, rows(direct_db.clone()).await);
    let made = direct(&db)
        .await
        .query(
            "SELECT id, status FROM ddlgate.migrations WHERE status <> 'succeeded'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        made.is_empty(),
        "migrations not succeeded: {:?}",
        made.len()
    );
    let statements: Vec<String> = direct(&db)
        .await
        .query("SELECT statement FROM ddlgate.migrations ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statements, deferred, "the deferred migrations");
    let leftovers: i64 = direct(&db)
        .await
        .query_one(
            // Table columns: an index built on the shadow column keeps
            // the shadow's name for its own column (pg_get_indexdef and
            // the schema above show the table's).
            "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             WHERE c.relkind = 'r' AND a.attname LIKE '%ddlgate%' AND NOT a.attisdropped",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "ddlgate columns left behind");
    // The application's inserts waited for the tool's transaction at most
    // (its locks are held until COMMIT) or a step's lock_timeout, never
    // behind a rewrite or a backfill (1 s of slack for a noisy machine).
    let worst = Duration::from_millis(worst.load(Ordering::Relaxed));
    let bound = held.max(Duration::from_millis(500)) + Duration::from_secs(1);
    assert!(
        worst <= bound,
        "the application waited {worst:?}; the tool's transaction held its locks {held:?}"
    );
}

fn writer_table(insert: &str) -> &str {
    insert
        .split_whitespace()
        .nth(2)
        .expect("INSERT INTO table ...")
}

const BOOKS: &str = "CREATE TABLE app_author (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL);
    CREATE TABLE app_book (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, title text, pages int);
    CREATE TABLE app_log (at timestamptz DEFAULT now(), note text);
    CREATE TABLE django_migrations (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, app text, name text, applied timestamptz);
    INSERT INTO app_author (name) SELECT 'a' || g FROM generate_series(1, 200) g;
    INSERT INTO app_book (title, pages) SELECT CASE WHEN g % 3 = 0 THEN NULL ELSE 't' || g END, g FROM generate_series(1, 3000) g;";

/// Django's statements for one migration: a NOT NULL column with a default
/// dropped in the next statement, a foreign key column sent with SET
/// CONSTRAINTS in one Query, its index, a nullable column made NOT NULL in
/// four steps, and the bookkeeping row, in one transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn djangos_migration_statements_commit_with_the_direct_schema() {
    same_as_direct(
        "dj",
        BOOKS,
        &[
            "BEGIN",
            r#"ALTER TABLE "app_author" ADD COLUMN "age" integer DEFAULT 0 NOT NULL"#,
            r#"ALTER TABLE "app_author" ALTER COLUMN "age" DROP DEFAULT"#,
            r#"ALTER TABLE "app_book" ADD COLUMN "author_id" bigint NULL CONSTRAINT "app_book_author_id_fk_app_author_id" REFERENCES "app_author"("id") DEFERRABLE INITIALLY DEFERRED; SET CONSTRAINTS "app_book_author_id_fk_app_author_id" IMMEDIATE"#,
            r#"CREATE INDEX "app_book_author_id_idx" ON "app_book" ("author_id")"#,
            r#"ALTER TABLE "app_book" ALTER COLUMN "title" SET DEFAULT ''"#,
            r#"UPDATE "app_book" SET "title" = '' WHERE "title" IS NULL; SET CONSTRAINTS ALL IMMEDIATE"#,
            r#"ALTER TABLE "app_book" ALTER COLUMN "title" SET NOT NULL"#,
            r#"ALTER TABLE "app_book" ALTER COLUMN "title" DROP DEFAULT"#,
            r#"INSERT INTO "django_migrations" ("app", "name", "applied") VALUES ('app', '0002_book_author', now())"#,
            "COMMIT",
        ],
        (
            "SELECT string_agg(id || ':' || title || ':' || coalesce(author_id::text, '-'), ',' ORDER BY id) FROM app_book",
            "INSERT INTO app_log (note) VALUES ('app')",
        ),
        &[
            r#"CREATE INDEX "app_book_author_id_idx" ON "app_book" ("author_id")"#,
            r#"UPDATE "app_book" SET "title" = '' WHERE "title" IS NULL"#,
            r#"ALTER TABLE "app_book" ALTER COLUMN "title" SET NOT NULL"#,
        ],
    )
    .await;
}

/// Alembic and node-pg-migrate: every pending change in one transaction
/// (node-pg-migrate also holds a session advisory lock and dollar-quotes
/// defaults), a later statement on a column an earlier one retyped, and
/// several deferrals in one Query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_transaction_of_dependent_changes_commits_with_the_direct_schema() {
    same_as_direct(
        "pm",
        "CREATE TABLE orders (id serial PRIMARY KEY, amount int NOT NULL, note text);
         CREATE INDEX orders_amount ON orders (amount);
         INSERT INTO orders (amount, note) SELECT g, 'n' || g FROM generate_series(1, 4000) g;",
        &[
            "SELECT pg_advisory_lock(7212)",
            "BEGIN",
            r#"ALTER TABLE "orders" ALTER "amount" SET DATA TYPE bigint"#,
            r#"ALTER TABLE "orders" ADD CONSTRAINT "orders_amount_positive" CHECK ("amount" > 0)"#,
            r#"ALTER TABLE "orders" ADD COLUMN "status" text DEFAULT $pga$open$pga$"#,
            r#"CREATE INDEX "orders_status_index" ON "orders" ("status"); CREATE INDEX "orders_note_index" ON "orders" ("note")"#,
            "COMMIT",
            "SELECT pg_advisory_unlock(7212)",
        ],
        (
            "SELECT string_agg(id || ':' || amount || ':' || status, ',' ORDER BY id) FROM orders",
            "INSERT INTO orders (amount, note) VALUES (5, 'app')",
        ),
        &[
            r#"ALTER TABLE "orders" ALTER "amount" SET DATA TYPE bigint"#,
            r#"ALTER TABLE "orders" ADD CONSTRAINT "orders_amount_positive" CHECK ("amount" > 0)"#,
            r#"CREATE INDEX "orders_status_index" ON "orders" ("status")"#,
            r#"CREATE INDEX "orders_note_index" ON "orders" ("note")"#,
        ],
    )
    .await;
}

/// ROLLBACK, or a transaction that failed, leaves nothing: no shadow
/// column or trigger, no migration. A statement the shadow cannot serve
/// is refused, saying why.
#[tokio::test]
async fn rollback_leaves_nothing_behind() {
    let db = database(
        "rb",
        "CREATE TABLE r (id int PRIMARY KEY, v int); INSERT INTO r SELECT g, g FROM generate_series(1, 2000) g",
    );
    let before = schema(&db).await;
    let proxy = runner_proxy();
    let (ok, _, stderr) = psql_script(
        proxy,
        "postgres",
        &db,
        "BEGIN;\nALTER TABLE r ALTER COLUMN v TYPE bigint;\nROLLBACK;\n",
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("deferred as migration"), "{stderr}");
    // A failed transaction: the conflicting statement is refused.
    let (ok, _, stderr) = psql_script(
        proxy,
        "postgres",
        &db,
        "BEGIN;\nALTER TABLE r ALTER COLUMN v TYPE bigint;\nALTER TABLE r ALTER COLUMN v SET DEFAULT 1;\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("being changed by deferred migration"),
        "{stderr}"
    );
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = direct(&db)
            .await
            .query("SELECT id FROM ddlgate.migrations", &[])
            .await
            .unwrap()
            .len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "registrations left");
    assert_eq!(schema(&db).await, before);
    let triggers: i64 = direct(&db)
        .await
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0);
    let _ = cluster();
}

/// A deferred migration that fails after COMMIT: COMMIT succeeds (it did
/// commit) with a WARNING naming the migration; the console shows it
/// failed, and the schema is in its valid earlier state. In async mode
/// COMMIT returns at once.
#[tokio::test]
async fn a_deferred_failure_is_a_warning_on_commit_and_async_commit_returns_at_once() {
    let db = database(
        "fw",
        "CREATE TABLE f (id int, v int); INSERT INTO f SELECT g, g % 10 FROM generate_series(1, 2000) g",
    );
    let proxy = runner_proxy();
    let (ok, out, stderr) = psql_script(
        proxy,
        "postgres",
        &db,
        "BEGIN;\nCREATE UNIQUE INDEX f_v ON f (v);\nCOMMIT;\n",
    );
    assert!(ok, "{stderr}");
    assert!(out.contains("COMMIT"), "{out}");
    assert!(
        stderr.contains("WARNING:  ddlgate: deferred migration"),
        "{stderr}"
    );
    assert!(stderr.contains("failed after COMMIT"), "{stderr}");
    let status: String = direct(&db)
        .await
        .query_one("SELECT status FROM ddlgate.migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "failed");
    // Its failed build was undone: no invalid index left.
    let idx: i64 = direct(&db)
        .await
        .query_one(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'f'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(idx, 0);
    // Once the data allows it, RETRY from the console finishes it.
    psql_db(&db, "DELETE FROM f WHERE id > 10");
    let id: i64 = direct(&db)
        .await
        .query_one("SELECT id FROM ddlgate.migrations", &[])
        .await
        .unwrap()
        .get(0);
    let (ok, _, err) = super::psql_via(proxy, "postgres", "ddlgate", &format!("RETRY {db}/{id}"));
    assert!(ok, "{err}");
    super::wait_for_status(proxy, &db, &id.to_string(), "succeeded").await;

    let (ok, _, stderr) = psql_script(
        proxy,
        "postgres",
        &db,
        "SET ddlgate.mode = 'async';\nBEGIN;\nCREATE INDEX f_id ON f (id);\nCOMMIT;\n",
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("runs in the background"), "{stderr}");
    assert!(!stderr.contains("done ("), "{stderr}");
    for _ in 0..100 {
        let n: i64 = direct(&db)
            .await
            .query_one(
                "SELECT count(*) FROM pg_index WHERE indexrelid = 'f_id'::regclass AND indisvalid",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if n == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the async deferred index was never built");
}

/// A unique constraint and, later in the same transaction, a foreign key
/// that needs its index: the key waits for the index, after COMMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_on_a_unique_key_deferred_in_the_same_transaction_works() {
    same_as_direct(
        "fk",
        "CREATE TABLE parent (id int PRIMARY KEY, code text NOT NULL);
         INSERT INTO parent SELECT g, 'c' || g FROM generate_series(1, 3000) g;
         CREATE TABLE child (id int PRIMARY KEY, code text);
         INSERT INTO child SELECT g, 'c' || (g % 3000 + 1) FROM generate_series(1, 3000) g;
         CREATE TABLE app_log (note text);",
        &[
            "BEGIN",
            "ALTER TABLE parent ADD CONSTRAINT parent_code_key UNIQUE (code)",
            "ALTER TABLE child ADD CONSTRAINT child_code_fk FOREIGN KEY (code) REFERENCES parent (code)",
            "COMMIT",
        ],
        (
            "SELECT string_agg(id || ':' || code, ',' ORDER BY id) FROM child",
            "INSERT INTO app_log (note) VALUES ('app')",
        ),
        &[
            "ALTER TABLE parent ADD CONSTRAINT parent_code_key UNIQUE (code)",
            "ALTER TABLE child ADD CONSTRAINT child_code_fk FOREIGN KEY (code) REFERENCES parent (code)",
        ],
    )
    .await;
}

/// The extended protocol, as psycopg 3 and JDBC send a statement without
/// parameters (the unnamed statement, Parse/Bind/Describe/Execute/Sync):
/// deferred the same way. A named prepared statement is refused, saying why.
#[tokio::test]
async fn an_unnamed_extended_statement_is_deferred_too() {
    let setup = "CREATE TABLE e (id int PRIMARY KEY, v int);
                 INSERT INTO e SELECT g, g FROM generate_series(1, 3000) g;";
    let sql = [
        "ALTER TABLE e ALTER COLUMN v TYPE bigint",
        "CREATE INDEX e_v ON e (v)",
    ];
    let (want, db) = super::direct_and_via("ext", setup, &sql.join(";"));
    let c = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        runner_proxy().port()
    ))
    .await;
    c.batch_execute("BEGIN").await.unwrap();
    for s in sql {
        let rows = c
            .query_typed(s, &[])
            .await
            .unwrap_or_else(|e| panic!("{s}: {:?}", e.as_db_error()));
        assert!(rows.is_empty());
    }
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(schema(&db).await, schema(&want).await);
    let done: i64 = direct(&db)
        .await
        .query_one(
            "SELECT count(*) FROM ddlgate.migrations WHERE status = 'succeeded'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, 2);

    c.batch_execute("BEGIN").await.unwrap();
    let e = c
        .execute("CREATE INDEX e_id ON e (id)", &[])
        .await
        .unwrap_err();
    let detail = e.as_db_error().and_then(|d| d.detail()).unwrap_or_default();
    assert!(detail.contains("unnamed statement"), "{detail}");
    c.batch_execute("ROLLBACK").await.unwrap();
}

/// The client's UPDATE of the NULL rows after SET DEFAULT (Django's NOT
/// NULL sequence) answers `UPDATE 0` and runs in batches after COMMIT; a
/// later statement of the transaction that reads the table gets the
/// UPDATE as written first, so it sees what it would have seen.
#[tokio::test]
async fn a_client_backfill_is_deferred_unless_the_transaction_reads_its_rows() {
    let db = database(
        "cf",
        "CREATE TABLE m (id int PRIMARY KEY, c int); \
         INSERT INTO m SELECT g, CASE WHEN g % 2 = 0 THEN g END FROM generate_series(1, 2000) g",
    );
    let proxy = runner_proxy();
    let script = "BEGIN;\n\
        ALTER TABLE m ALTER COLUMN c SET DEFAULT 7;\n\
        UPDATE m SET c = 7 WHERE c IS NULL;\n\
        ALTER TABLE m ALTER COLUMN c SET NOT NULL;\n\
        ALTER TABLE m ALTER COLUMN c DROP DEFAULT;\n\
        COMMIT;\n";
    let (ok, out, stderr) = psql_script(proxy, "postgres", &db, script);
    assert!(ok, "{stderr}");
    assert!(out.contains("UPDATE 0"), "{out}");
    assert!(
        stderr.contains("no row changed in this transaction"),
        "{stderr}"
    );
    let c = direct(&db).await;
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE c = 7), (SELECT attnotnull FROM pg_attribute \
             WHERE attrelid = 'm'::regclass AND attname = 'c') FROM m",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, bool>(1)), (1000, true));
    let made: Vec<String> = c
        .query(
            "SELECT statement FROM ddlgate.migrations WHERE status = 'succeeded' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        made,
        [
            "UPDATE m SET c = 7 WHERE c IS NULL",
            "ALTER TABLE m ALTER COLUMN c SET NOT NULL"
        ]
    );

    // Read in the same transaction: the UPDATE runs there first.
    psql_db(
        &db,
        "ALTER TABLE m ALTER COLUMN c DROP NOT NULL; UPDATE m SET c = NULL WHERE id % 2 = 1",
    );
    let script = "BEGIN;\n\
        ALTER TABLE m ALTER COLUMN c SET DEFAULT 8;\n\
        UPDATE m SET c = 8 WHERE c IS NULL;\n\
        SELECT count(*) AS still_null FROM m WHERE c IS NULL;\n\
        COMMIT;\n";
    let (ok, out, stderr) = psql_script(proxy, "postgres", &db, script);
    assert!(ok, "{stderr}");
    assert!(out.contains("UPDATE 0"), "{out}");
    let still: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("still_null"))
        .collect();
    assert_eq!(still.get(2).map(|l| l.trim()), Some("0"), "{out}");
}

/// A migration file sent whole as one Query, with its own BEGIN and COMMIT
/// (golang-migrate style): split at them, its changes deferred inside, and
/// the rest of the string goes on once COMMIT's migrations have finished.
#[tokio::test]
async fn a_whole_migration_file_in_one_query_is_split_at_its_begin_and_commit() {
    let setup = "CREATE TABLE s (id int PRIMARY KEY, v int);
                 INSERT INTO s SELECT g, g FROM generate_series(1, 3000) g;";
    let file = "SELECT 1; BEGIN; ALTER TABLE s ALTER COLUMN v TYPE bigint; \
                CREATE INDEX s_v ON s (v); COMMIT; SELECT count(*) AS n FROM s";
    let (want, db) = super::direct_and_via("mf", setup, file);
    let (ok, out, stderr) = super::psql_via(runner_proxy(), "postgres", &db, file);
    assert!(ok, "{stderr}");
    assert!(out.contains("3000"), "{out}");
    assert_eq!(
        stderr.matches("deferred as migration").count(),
        2,
        "{stderr}"
    );
    assert!(stderr.contains("done"), "{stderr}");
    assert_eq!(schema(&db).await, schema(&want).await);
    let states: Vec<String> = direct(&db)
        .await
        .query("SELECT status FROM ddlgate.migrations ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(states, ["succeeded", "succeeded"]);
    // The other way round the type change was planned without the index
    // (it runs after COMMIT): refused, saying why.
    let (ok, _, stderr) = super::psql_via(
        runner_proxy(),
        "postgres",
        &db,
        "BEGIN; CREATE INDEX s_v2 ON s (v); ALTER TABLE s ALTER COLUMN v TYPE int; COMMIT",
    );
    assert!(!ok);
    assert!(stderr.contains("cannot carry that change over"), "{stderr}");
    assert_eq!(schema(&db).await, schema(&want).await);
}

/// Several statements in one Query outside a block are one implicit
/// transaction in PostgreSQL: ddlgate opens a block around them, defers
/// inside it, and closes it, so the string still commits or fails whole.
#[tokio::test]
async fn an_implicit_transaction_string_is_deferred_as_one_block() {
    let setup = "CREATE TABLE it (id int PRIMARY KEY, v int);
                 INSERT INTO it SELECT g, g FROM generate_series(1, 3000) g;";
    let sql = "ALTER TABLE it ALTER COLUMN v TYPE bigint; CREATE INDEX it_v ON it (v); SELECT 42 AS answer";
    let (want, db) = super::direct_and_via("im", setup, sql);
    let c = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        runner_proxy().port()
    ))
    .await;
    let answer = c.simple_query(sql).await.unwrap();
    let rows: Vec<_> = answer
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(rows, ["42"]);
    assert_eq!(schema(&db).await, schema(&want).await);
    // Failing whole: nothing stays, and the session is idle again, also
    // for a query the client pipelined right behind it.
    let (failed, next) = tokio::join!(
        c.batch_execute("CREATE INDEX it_id ON it (id); SELECT 1 / 0"),
        c.batch_execute("SELECT 1")
    );
    let e = failed.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("22012"), "{e:?}");
    next.unwrap();
    assert_eq!(schema(&db).await, schema(&want).await);
    // The rolled-back string's registration is removed (soon after).
    let mut states = Vec::new();
    for _ in 0..50 {
        states = direct(&db)
            .await
            .query("SELECT status FROM ddlgate.migrations ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        if states.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(states, ["succeeded", "succeeded"]);
}

/// A deferral undone by ROLLBACK TO SAVEPOINT is not run after COMMIT (and
/// is removed); a client that cancels while COMMIT waits for its migration
/// gets COMMIT's success at once, and the migration goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_rollback_discards_and_a_cancel_stops_only_the_wait() {
    let db = database(
        "sv",
        "CREATE TABLE sp (id int PRIMARY KEY, v int); INSERT INTO sp SELECT g, g FROM generate_series(1, 2000) g",
    );
    let c = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        runner_proxy().port()
    ))
    .await;
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("SAVEPOINT a").await.unwrap();
    c.batch_execute("CREATE INDEX sp_v ON sp (v)")
        .await
        .unwrap();
    c.batch_execute("ROLLBACK TO SAVEPOINT a").await.unwrap();
    c.batch_execute("COMMIT").await.unwrap();
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = direct(&db)
            .await
            .query("SELECT id FROM ddlgate.migrations", &[])
            .await
            .unwrap()
            .len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0);
    assert!(!schema(&db).await.contains("sp_v"));

    // CREATE INDEX CONCURRENTLY waits for this transaction to end.
    let blocker = direct(&db).await;
    blocker
        .batch_execute("BEGIN; INSERT INTO sp VALUES (0, 0)")
        .await
        .unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("CREATE INDEX sp_v ON sp (v)")
        .await
        .unwrap();
    let token = c.cancel_token();
    let committing = tokio::spawn(async move {
        let r = c.batch_execute("COMMIT").await;
        (r, c)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !committing.is_finished(),
        "COMMIT did not wait for its migration"
    );
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (r, c) = committing.await.unwrap();
    r.expect("a cancelled wait still answers COMMIT's success");
    c.batch_execute("SELECT 1").await.unwrap();
    blocker.batch_execute("COMMIT").await.unwrap();
    let id: i64 = direct(&db)
        .await
        .query_one("SELECT id FROM ddlgate.migrations", &[])
        .await
        .unwrap()
        .get(0);
    super::wait_for_status(runner_proxy(), &db, &id.to_string(), "succeeded").await;
    assert!(schema(&db).await.contains("sp_v"));
}

/// A step that fails inside the client's transaction (here the shadow
/// column's name is taken) fails the client's statement with the server's
/// error, by either protocol; the transaction is aborted as it would be.
#[tokio::test]
async fn a_failing_in_transaction_step_is_the_statements_error() {
    let db = database(
        "fs",
        "CREATE TABLE fs (id int PRIMARY KEY, v int, v_ddlgate int); \
         INSERT INTO fs SELECT g, g, g FROM generate_series(1, 2000) g",
    );
    let c = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        runner_proxy().port()
    ))
    .await;
    let sql = "ALTER TABLE fs ALTER COLUMN v TYPE bigint";
    c.batch_execute("BEGIN").await.unwrap();
    let e = c.batch_execute(sql).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42701"), "{e:?}");
    let e = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("25P02"));
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    let e = c.query_typed(sql, &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42701"), "{e:?}");
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute("SELECT 1").await.unwrap();
    for _ in 0..50 {
        let left = direct(&db)
            .await
            .query("SELECT id FROM ddlgate.migrations", &[])
            .await
            .unwrap()
            .len();
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("registrations left behind");
}

/// pgjdbc's shape: the transaction's BEGIN and its first statement in one
/// extended batch (Parse/Bind/Execute of BEGIN, then Parse/Bind/Describe/
/// Execute of the statement, one Sync). The client gets exactly the answers
/// of its messages, one ReadyForQuery, and the statement is deferred.
#[tokio::test]
async fn a_begin_in_the_same_batch_as_the_statement_is_deferred_too() {
    use crate::raw;
    use ddlgate::protocol::frontend;
    let setup = "CREATE TABLE jb (id int PRIMARY KEY, v int);
                 INSERT INTO jb SELECT g, g FROM generate_series(1, 2000) g;";
    let sql = "CREATE INDEX jb_v ON jb (v)";
    let (want, db) = super::direct_and_via("jb", setup, sql);
    let addr = format!("127.0.0.1:{}", runner_proxy().port())
        .parse()
        .unwrap();
    let mut s = raw::ready(addr, &[("user", "postgres"), ("database", &db)]).await;
    let mut out = Vec::new();
    for text in ["BEGIN", sql] {
        frontend::parse(b"", text.as_bytes(), &mut out);
        frontend::bind(b"", b"", &mut out);
        if text == sql {
            out.extend_from_slice(&raw::message(b'D', b"P\0"));
        }
        frontend::execute(b"", &mut out);
    }
    frontend::sync(&mut out);
    raw::send(&mut s, &out).await;
    let mut tags = Vec::new();
    loop {
        let (tag, body) = raw::read_message(&mut s).await.expect("an answer");
        match tag {
            b'N' => continue,
            b'C' => tags.push(format!(
                "C:{}",
                String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body))
            )),
            b'Z' => {
                tags.push(format!("Z:{}", body[0] as char));
                break;
            }
            b'E' => panic!("{}", raw::field(&body, b'M')),
            t => tags.push((t as char).to_string()),
        }
    }
    assert_eq!(
        tags,
        ["1", "2", "C:BEGIN", "1", "2", "n", "C:CREATE INDEX", "Z:T"]
    );
    let mut commit = Vec::new();
    frontend::query(b"COMMIT", &mut commit);
    raw::send(&mut s, &commit).await;
    while let Some((tag, body)) = raw::read_message(&mut s).await {
        if tag == b'Z' {
            assert_eq!(body, b"I");
            break;
        }
        assert_ne!(tag, b'E', "{}", raw::field(&body, b'M'));
    }
    assert_eq!(schema(&db).await, schema(&want).await);
    let made: Vec<(String, String)> = direct(&db)
        .await
        .query("SELECT statement, status FROM ddlgate.migrations", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(made, [(sql.to_owned(), "succeeded".to_owned())]);
}
