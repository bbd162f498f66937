//! Every plan runs as printed and reaches the schema the original statement
//! reaches: each case is set up twice on the real server, the statement
//! runs directly in one schema and the rendered plan runs through psql in
//! the other, and their catalogs are compared (columns, types, nullability,
//! defaults, constraints and their validity, indexes and their validity).
//! Names and literals are hostile on purpose.

use std::process::Command;

use ddlgate::ddl::{Analyzer, Catalog, Mode};
use tokio_postgres::Client;

use crate::server::{connect, port};

/// (setup, statement). Setup runs in a fresh schema on the search_path.
const CASES: &[(&str, &str)] = &[
    (
        "CREATE TABLE \"Weird \"\"Name\"\"\" (\"Col A\" int, \"select\" text); \
         INSERT INTO \"Weird \"\"Name\"\"\" SELECT g, 'x' FROM generate_series(1, 200) g",
        "CREATE INDEX ON \"Weird \"\"Name\"\"\" (\"Col A\") INCLUDE (\"select\")",
    ),
    (
        "CREATE TABLE t (id int, a int, v text); INSERT INTO t SELECT g, g, 'v' || g FROM generate_series(1, 200) g",
        "CREATE UNIQUE INDEX ON t (lower(v)) WHERE v <> '''' AND v <> E'it\\'s'",
    ),
    (
        "CREATE TABLE t (id int, a int, v text); INSERT INTO t SELECT g, g, 'v' || g FROM generate_series(1, 200) g",
        "ALTER TABLE t ADD CHECK (v <> E'it''s' AND v <> $q$x;y$q$ AND v <> 'é')",
    ),
    (
        "CREATE TABLE u (id int PRIMARY KEY); INSERT INTO u SELECT generate_series(1, 200); \
         CREATE TABLE t (id int, ref int); INSERT INTO t SELECT g, g FROM generate_series(1, 200) g",
        "ALTER TABLE t ADD CONSTRAINT \"ünïcødé fk\" FOREIGN KEY (ref) REFERENCES u (id) ON DELETE CASCADE",
    ),
    (
        "CREATE TABLE u (id int PRIMARY KEY); INSERT INTO u SELECT generate_series(1, 200); \
         CREATE TABLE t (id int, ref int); INSERT INTO t SELECT g, g FROM generate_series(1, 200) g",
        "ALTER TABLE t ADD FOREIGN KEY (ref) REFERENCES u",
    ),
    (
        "CREATE TABLE t (id int, a int, v text); INSERT INTO t SELECT g, g, 'v' || g FROM generate_series(1, 200) g",
        "ALTER TABLE t ADD UNIQUE (a) INCLUDE (v) WITH (fillfactor = 80)",
    ),
    (
        "CREATE TABLE t (id int, a int, v text); INSERT INTO t SELECT g, g, 'v' || g FROM generate_series(1, 200) g",
        "ALTER TABLE t ADD PRIMARY KEY (id)",
    ),
    (
        "CREATE TABLE t (id int, a int, v text); INSERT INTO t SELECT g, g, 'v' || g FROM generate_series(1, 200) g",
        "ALTER TABLE t ADD CONSTRAINT t_ident UNIQUE (id, a) DEFERRABLE INITIALLY DEFERRED",
    ),
    (
        "CREATE TABLE \"select\" (\"from\" int, \"Ä\" int); INSERT INTO \"select\" SELECT g, g FROM generate_series(1, 200) g",
        "ALTER TABLE \"select\" ALTER COLUMN \"from\" SET NOT NULL, ALTER COLUMN \"Ä\" SET NOT NULL",
    ),
    (
        "CREATE TABLE t (id int, a int, v text); INSERT INTO t SELECT g, g, 'v' || g FROM generate_series(1, 200) g",
        "ALTER TABLE t ADD COLUMN x int, ADD CONSTRAINT c1 CHECK (a >= 0), ALTER COLUMN x SET DEFAULT 7, ALTER COLUMN a SET NOT NULL",
    ),
    (
        "CREATE TABLE t (id int, a int, v text); INSERT INTO t SELECT g, g, 'v' || g FROM generate_series(1, 5000) g",
        "ALTER TABLE t ADD COLUMN created timestamptz NOT NULL DEFAULT clock_timestamp()",
    ),
    (
        "CREATE TABLE \"Odd 'Table'\" (id int); INSERT INTO \"Odd 'Table'\" SELECT generate_series(1, 300)",
        "ALTER TABLE \"Odd 'Table'\" ADD COLUMN IF NOT EXISTS \"Tag\" text COLLATE \"C\" DEFAULT md5(random()::text), ADD COLUMN n int DEFAULT 0",
    ),
    (
        "CREATE TABLE t (id int, a int); INSERT INTO t SELECT g, g FROM generate_series(1, 3000) g",
        "ALTER TABLE t ADD COLUMN seq_no bigserial",
    ),
    (
        "CREATE TABLE t (id int, a int); CREATE INDEX t_a_idx ON t (a); CREATE INDEX t_id_idx ON t (id)",
        "DROP INDEX t_a_idx, t_id_idx",
    ),
    (
        "CREATE TABLE t (id int, a int); CREATE INDEX ON t (a); INSERT INTO t SELECT g, g FROM generate_series(1, 200) g",
        "REINDEX TABLE t",
    ),
    (
        "CREATE TABLE p (k int, v text) PARTITION BY RANGE (k); \
         CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100); \
         CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (100) TO (300); \
         INSERT INTO p SELECT g, 'x' FROM generate_series(1, 200) g",
        "ALTER TABLE p DETACH PARTITION p1",
    ),
    (
        "CREATE TABLE p (k int, v text) PARTITION BY RANGE (k); \
         CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100); \
         CREATE TABLE p2 (k int, v text); INSERT INTO p2 SELECT g, 'x' FROM generate_series(100, 299) g",
        "ALTER TABLE p ATTACH PARTITION p2 FOR VALUES FROM (100) TO (300)",
    ),
    (
        "CREATE TABLE \"Regions\" (\"Code\" text, n int) PARTITION BY LIST (\"Code\"); \
         CREATE TABLE eu (\"Code\" text, n int); INSERT INTO eu VALUES ('fr', 1), ('de', 2), (NULL, 3)",
        "ALTER TABLE \"Regions\" ATTACH PARTITION eu FOR VALUES IN ('fr', 'de', NULL)",
    ),
    (
        "CREATE TABLE p (k int) PARTITION BY RANGE (k); \
         CREATE TABLE p2 (k int); INSERT INTO p2 SELECT generate_series(500, 900)",
        "ALTER TABLE p ATTACH PARTITION p2 FOR VALUES FROM (500) TO (MAXVALUE)",
    ),
    (
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 5 CHECK (v > 0), w text, \
         UNIQUE (v, w)); CREATE INDEX t_v ON t (v) WHERE v > 3; \
         CREATE INDEX t_expr ON t ((v + 1), lower(w)); COMMENT ON COLUMN t.v IS 'it''s v'; \
         ALTER TABLE t ALTER COLUMN v SET STATISTICS 500; \
         INSERT INTO t SELECT g, g, 'w' || g FROM generate_series(1, 300) g",
        "ALTER TABLE t ALTER COLUMN v TYPE bigint",
    ),
    (
        "CREATE TABLE parent (id serial PRIMARY KEY, n text); \
         CREATE TABLE child (id int PRIMARY KEY, pid int REFERENCES parent ON DELETE CASCADE); \
         INSERT INTO parent (n) SELECT 'n' || g FROM generate_series(1, 300) g; \
         INSERT INTO child SELECT g, g FROM generate_series(1, 300) g",
        "ALTER TABLE parent ALTER COLUMN id TYPE bigint",
    ),
    (
        "CREATE TABLE parent (id int PRIMARY KEY); \
         CREATE TABLE child (id int PRIMARY KEY, pid int CONSTRAINT \"to parent\" REFERENCES parent); \
         INSERT INTO parent SELECT generate_series(1, 300); \
         INSERT INTO child SELECT g, g FROM generate_series(1, 300) g",
        "ALTER TABLE child ALTER pid TYPE bigint",
    ),
    (
        "CREATE TABLE \"Odd T\" (id bigint PRIMARY KEY, \"Val\" text NOT NULL); \
         INSERT INTO \"Odd T\" SELECT g, g::text FROM generate_series(1, 300) g",
        "ALTER TABLE \"Odd T\" ALTER \"Val\" SET DATA TYPE int USING \"Val\"::int + 0",
    ),
    (
        "CREATE TABLE t (id int, a int); INSERT INTO t SELECT g, g FROM generate_series(1, 3000) g",
        "ALTER TABLE t ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY (START WITH 10 INCREMENT BY 5)",
    ),
    (
        "CREATE TABLE \"Odd T\" (id int PRIMARY KEY); INSERT INTO \"Odd T\" SELECT generate_series(1, 3000)",
        "ALTER TABLE \"Odd T\" ADD COLUMN \"No\" int GENERATED BY DEFAULT AS IDENTITY NOT NULL",
    ),
];

/// What the proxy's lookup reads for a type change: the dependents of
/// each column the statement retypes, in `schema`.
async fn dependents_facts(db: &Client, schema: &str, sql: &str, major: u32, c: &mut Catalog) {
    use ddlgate::ddl::op::{fold_name, unquote, Op};
    let analyzed = Analyzer::findings_only().analyze(
        sql.as_bytes(),
        Mode::Script,
        false,
        major,
        &Catalog::default(),
    );
    db.batch_execute(&format!("SET search_path = {schema}"))
        .await
        .unwrap();
    for op in analyzed.iter().flat_map(|a| &a.ops) {
        let Op::AlterType { table, column, .. } = op else {
            continue;
        };
        let mut d = ddlgate::ddl::dependents::Dependents::default();
        for r in db
            .query(ddlgate::ddl::dependents::SQL, &[table, &unquote(column)])
            .await
            .unwrap()
        {
            let cols: Vec<Option<String>> = (0..r.len()).map(|i| r.get(i)).collect();
            let bytes: Vec<Option<&[u8]>> = cols
                .iter()
                .map(|c| c.as_deref().map(str::as_bytes))
                .collect();
            ddlgate::ddl::dependents::on_row(&bytes, &mut d);
        }
        c.dependents
            .insert((fold_name(table), fold_name(column)), d);
    }
    db.batch_execute("RESET search_path").await.unwrap();
}

/// The facts the proxy would look up for a plan: each partitioned table's
/// key and DEFAULT partition, in `schema`.
async fn partition_facts(db: &Client, schema: &str) -> Catalog {
    let mut c = Catalog::default();
    for r in db
        .query(
            "SELECT c.relname::text, pg_get_partkeydef(c.oid), p.partdefid <> 0 \
             FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
            &[&schema],
        )
        .await
        .unwrap()
    {
        let table = ddlgate::ddl::op::fold_name(&format!("\"{}\"", r.get::<_, String>(0)));
        c.partition_keys.insert(table.clone(), r.get(1));
        let has_default: bool = r.get(2);
        c.default_partitions
            .insert(table, has_default.then(|| ("default".to_owned(), false)));
    }
    c
}

/// The schema's catalog, with its own name taken out, as comparable text.
async fn catalog(db: &Client, schema: &str) -> Vec<String> {
    let rows = db
        .query(
            "SELECT 'column ' || c.relname || '.' || a.attname || ' ' || \
                    format_type(a.atttypid, a.atttypmod) || \
                    CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || \
                    CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END || \
                    coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE n.nspname = $1 AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p') \
             UNION ALL \
             SELECT 'constraint ' || c.relname || ' ' || k.conname || ' ' || k.contype::text || ' ' || \
                    pg_get_constraintdef(k.oid) || CASE WHEN k.convalidated THEN '' ELSE ' (not valid)' END \
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
             UNION ALL \
             SELECT 'index ' || pg_get_indexdef(i.indexrelid) || \
                    CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
             UNION ALL \
             SELECT 'column ' || c.relname || '.' || a.attname || ' comment ' || \
                    coalesce(col_description(c.oid, a.attnum), '-') || ' statistics ' || a.attstattarget \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p') \
             UNION ALL \
             SELECT 'sequence ' || s.relname || ' owned by ' || coalesce(( \
                    SELECT t.relname || '.' || a.attname FROM pg_depend d \
                    JOIN pg_class t ON t.oid = d.refobjid \
                    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                    WHERE d.objid = s.oid AND d.deptype IN ('a', 'i') AND d.classid = 'pg_class'::regclass), '-') \
                    || (SELECT ' start ' || q.seqstart || ' by ' || q.seqincrement || ' ' || q.seqtypid::regtype \
                        FROM pg_sequence q WHERE q.seqrelid = s.oid) \
             FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace \
             WHERE n.nspname = $1 AND s.relkind = 'S' \
             UNION ALL \
             SELECT 'partition ' || c.relname || ' of ' || p.relname \
             FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid \
             JOIN pg_class p ON p.oid = h.inhparent \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
             ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(0).replace(&format!("{schema}."), "S."))
        .collect()
}

async fn fresh_schema(db: &Client, schema: &str, setup: &str) {
    db.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; \
         SET search_path = {schema}; {setup}; RESET search_path"
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn every_plan_runs_as_printed_and_reaches_the_same_schema() {
    // A database of its own: CONCURRENTLY steps wait for the transactions of
    // their database, and the lock test holds some open in `postgres`.
    let admin = connect().await;
    admin
        .batch_execute("DROP DATABASE IF EXISTS plans")
        .await
        .unwrap();
    admin.batch_execute("CREATE DATABASE plans").await.unwrap();
    let (db, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={} user=postgres dbname=plans", port()),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let version: String = db
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap()
        .get(0);
    let major = version.parse::<u32>().unwrap() / 10000;
    let bin = ddlgate::pgcluster::find_bin_dir().unwrap();
    let mut failures = Vec::new();
    for (i, (setup, sql)) in CASES.iter().enumerate() {
        let (direct, planned) = (format!("plan_direct_{i}"), format!("plan_phased_{i}"));
        fresh_schema(&db, &direct, setup).await;
        fresh_schema(&db, &planned, setup).await;
        db.batch_execute(&format!(
            "SET search_path = {direct}; {sql}; RESET search_path"
        ))
        .await
        .unwrap_or_else(|e| panic!("{sql} directly: {e}"));

        let mut facts = partition_facts(&db, &planned).await;
        dependents_facts(&db, &planned, sql, major, &mut facts).await;
        let analyzed =
            Analyzer::default().analyze(sql.as_bytes(), Mode::Script, false, major, &facts);
        let Some(plan) = analyzed.into_iter().next().and_then(|a| a.plan) else {
            failures.push(format!("{sql}: no plan"));
            continue;
        };
        let script = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(script.path(), plan.render()).unwrap();
        let out = Command::new(bin.join("psql"))
            .env("PGOPTIONS", format!("-c search_path={planned}"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-d", "plans", "-p", &port().to_string(), "-f"])
            .arg(script.path())
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{sql}: the plan failed:\n{}\n{}",
                plan.render(),
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let (want, mut got) = (catalog(&db, &direct).await, catalog(&db, &planned).await);
        if sql.contains("DETACH PARTITION") {
            // DETACH ... CONCURRENTLY keeps the partition's bound as a CHECK
            // constraint on the detached table (documented; it makes a
            // later ATTACH skip its scan). The one difference allowed.
            got.retain(|l| !(l.starts_with("constraint p1 p1_k_check c CHECK")));
        }
        if want != got {
            failures.push(format!(
                "{sql}: schemas differ\n  direct: {want:#?}\n  planned: {got:#?}\n{}",
                plan.render()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
