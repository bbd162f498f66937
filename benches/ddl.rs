//! What the DDL gate adds per statement: the fast-path keyword check every
//! Query/Parse pays, and the full classification plus policy a DDL pays.
//! Targets: <= 200 ns for non-DDL, <= 20 us for DDL. Results in
//! bench/RESULTS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ddlgate::ddl::fastpath::may_contain_ddl;
use ddlgate::ddl::lexer::Lexical;
use ddlgate::ddl::{Analyzer, Catalog, Mode, Policy, Who};

const NON_DDL: &[(&str, &str)] = &[
    ("select", "SELECT abalance FROM pgbench_accounts WHERE aid = $1"),
    (
        "update",
        "UPDATE pgbench_accounts SET abalance = abalance + -3716 WHERE aid = 74963;",
    ),
    (
        "commented",
        "/* app:orders */ -- trace 1f2e\n(SELECT id, total FROM orders WHERE customer_id = $1 ORDER BY id DESC LIMIT 20)",
    ),
    (
        "two_statements",
        "SET LOCAL statement_timeout = '5s'; SELECT * FROM orders WHERE note = 'a;b' LIMIT 1",
    ),
];

const DDL: &[(&str, &str)] = &[
    (
        "add_column_volatile",
        "ALTER TABLE orders ADD COLUMN created_at timestamptz DEFAULT clock_timestamp()",
    ),
    (
        "create_index",
        "CREATE INDEX orders_customer ON orders (customer_id)",
    ),
    (
        "drop_index_concurrently_tokens",
        "DROP INDEX CONCURRENTLY IF EXISTS orders_customer",
    ),
    (
        "django_migration",
        "BEGIN; CREATE TABLE app_item (id bigserial PRIMARY KEY, name varchar(100) NOT NULL); \
         CREATE INDEX app_item_name ON app_item (name); \
         ALTER TABLE app_order ADD COLUMN item_id bigint NULL; \
         ALTER TABLE app_order ADD CONSTRAINT app_order_item_fk FOREIGN KEY (item_id) \
         REFERENCES app_item (id) DEFERRABLE INITIALLY DEFERRED; COMMIT;",
    ),
];

fn fast_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("non_ddl_fast_path");
    for (name, sql) in NON_DDL {
        assert!(
            !may_contain_ddl(sql.as_bytes(), Lexical::STANDARD),
            "{name}"
        );
        g.bench_function(*name, |b| {
            b.iter(|| may_contain_ddl(black_box(sql.as_bytes()), black_box(Lexical::STANDARD)))
        });
    }
    g.finish();
}

fn classify(c: &mut Criterion) {
    let policy = Policy::default();
    let catalog = Catalog::default();
    let who = Who {
        user: "app",
        database: "shop",
    };
    let mut g = c.benchmark_group("ddl_classify_and_decide");
    for (name, sql) in DDL {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let sql = black_box(sql.as_bytes());
                assert!(may_contain_ddl(sql, Lexical::STANDARD));
                let mut a = Analyzer::default();
                let stmts = a.analyze(sql, Mode::QueryString, false, 15, &catalog);
                stmts
                    .iter()
                    .map(|s| {
                        policy
                            .judge(&sql[s.range.clone()], &s.findings, who)
                            .decision()
                    })
                    .max()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fast_path, classify);
criterion_main!(benches);
