//! `ddlgate lint --database URL`: the facts the proxy looks up per
//! statement, read once for the whole database from a live catalog, so the
//! linter decides as the proxy would. Names are keyed as the rules fold
//! them: bare in `public`, `schema.name` elsewhere.

use std::time::Duration;

use tokio_postgres::Client;

use crate::ddl::rules::ColumnFacts;
use crate::ddl::types::SqlType;
use crate::ddl::Catalog;
use crate::upstream::UpstreamTarget;

/// A relation's name as the rules fold it.
const QNAME: &str = "CASE WHEN n.nspname = 'public' THEN c.relname::text \
     ELSE n.nspname || '.' || c.relname END";

const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";

/// Connects as `url` says (sslmode as in libpq) and reads every fact.
pub fn read_live(url: &str, small_table_bytes: u64) -> Result<Catalog, String> {
    let target = UpstreamTarget::parse(url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let tls = crate::tls::client_config(target.sslmode, target.root_cert.as_deref())
            .map_err(|e| e.to_string())?;
        let stream = crate::upstream::connect(&target, tls.as_ref(), Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        let mut config = tokio_postgres::Config::new();
        config.user(target.user.as_deref().unwrap_or("postgres"));
        if let Some(db) = &target.database {
            config.dbname(db);
        }
        if let Some(p) = &target.password {
            config.password(p);
        }
        config.application_name("ddlgate lint");
        let (client, conn) = config
            .connect_raw(stream, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        read(&client, small_table_bytes)
            .await
            .map_err(|e| e.to_string())
    })
}

async fn read(db: &Client, small_table_bytes: u64) -> Result<Catalog, tokio_postgres::Error> {
    let mut c = Catalog {
        complete: true,
        ..Catalog::default()
    };
    // A lookup never waits behind another session's ACCESS EXCLUSIVE.
    db.batch_execute("SET lock_timeout = '1s'; SET statement_timeout = '60s'")
        .await?;
    let rel_sql = format!(
        "SELECT {QNAME}, c.relkind::text, \
         CASE WHEN c.relkind IN ('r', 'm') THEN pg_catalog.pg_relation_size(c.oid) END, \
         coalesce(a.amname::text, '') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_am a ON a.oid = c.relam WHERE {USER_SCHEMAS}"
    );
    for r in db.query(&rel_sql, &[]).await? {
        let name: String = r.get(0);
        let kind: String = r.get(1);
        let size: Option<i64> = r.get(2);
        let am: String = r.get(3);
        if size.is_some_and(|s| s as u64 <= small_table_bytes) {
            c.small_tables.insert(name.clone());
        }
        if kind == "r" || kind == "m" {
            c.access_methods.insert(name.clone(), am);
        }
        c.relations.insert(name);
    }
    let col_sql = format!(
        "SELECT {QNAME}, a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), \
         a.attnotnull, \
         EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = a.attrelid \
                 AND k.contype = 'c' AND a.attnum = ANY (k.conkey)), \
         EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class i ON i.oid = d.objid \
                 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
                 AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum \
                 AND i.relkind IN ('i', 'I')), \
         coalesce((SELECT l.collname::text FROM pg_collation l WHERE l.oid = a.attcollation), ''), \
         EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = a.attrelid AND k.contype = 'c' \
                 AND k.convalidated AND pg_get_constraintdef(k.oid) = \
                 'CHECK ((' || quote_ident(a.attname) || ' IS NOT NULL))') \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE {USER_SCHEMAS} AND c.relkind IN ('r', 'p', 'm', 'f') \
         AND a.attnum > 0 AND NOT a.attisdropped"
    );
    for r in db.query(&col_sql, &[]).await? {
        let key = (r.get::<_, String>(0), r.get::<_, String>(1));
        c.column_types
            .insert(key.clone(), SqlType::parse(&r.get::<_, String>(2)));
        if r.get::<_, bool>(7) {
            c.not_null_checks.insert(key.clone());
        }
        c.columns.insert(
            key,
            ColumnFacts {
                not_null: r.get(3),
                has_check: r.get(4),
                indexed: r.get(5),
                collation: r.get(6),
            },
        );
    }
    let part_sql = format!(
        "SELECT {QNAME}, CASE WHEN d.oid IS NOT NULL THEN \
         CASE WHEN dn.nspname = 'public' THEN d.relname::text ELSE dn.nspname || '.' || d.relname END \
         END, pg_catalog.pg_relation_size(d.oid), pg_catalog.pg_get_partkeydef(p.partrelid) \
         FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_class d ON d.oid = p.partdefid \
         LEFT JOIN pg_namespace dn ON dn.oid = d.relnamespace"
    );
    for r in db.query(&part_sql, &[]).await? {
        let default: Option<String> = r.get(1);
        let size: Option<i64> = r.get(2);
        let small = size.is_some_and(|s| s as u64 <= small_table_bytes);
        let parent: String = r.get(0);
        c.partition_keys.insert(parent.clone(), r.get(3));
        c.default_partitions
            .insert(parent, default.map(|d| (d, small)));
    }
    for r in db
        .query(
            "SELECT DISTINCT t.typname::text FROM pg_type t \
             WHERE t.typtype = 'd' AND (t.typnotnull OR EXISTS \
             (SELECT 1 FROM pg_constraint k WHERE k.contypid = t.oid))",
            &[],
        )
        .await?
    {
        c.constrained_domains.insert(r.get(0));
    }
    let index_sql = format!(
        "SELECT {QNAME} FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS} \
         AND (SELECT bool_and(a.attnotnull) FROM pg_attribute a \
              WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))"
    );
    for r in db.query(&index_sql, &[]).await? {
        c.not_null_indexes.insert(r.get(0));
    }
    for r in db
        .query(
            "SELECT proname::text FROM pg_proc GROUP BY proname \
             HAVING bool_and(provolatile <> 'v')",
            &[],
        )
        .await?
    {
        c.stable_functions.insert(r.get(0));
    }
    Ok(c)
}
