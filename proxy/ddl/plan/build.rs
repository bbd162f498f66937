//! Building a plan from one statement's text: which form it is, and the
//! step constructor the forms share. The forms: `index` (CREATE INDEX, DROP
//! INDEX, REINDEX), `alter` (ALTER TABLE, split into its subcommands, with
//! `constraints` and `columns`).

use super::source::Toks;
use super::{alter, index, Plan, Step, StepKind};
use crate::ddl::rule::Lock;
use crate::ddl::Catalog;

/// The plan for `sql`, if it has a safe phased form. `brief_ok` tells
/// whether a lone `ALTER TABLE <table> <subcommand>` is safe as it is
/// (the rules find nothing in it); a subcommand that is neither safe nor
/// plannable means the statement has no plan.
pub fn plan(sql: &str, catalog: &Catalog, brief_ok: &dyn Fn(&str) -> bool) -> Option<Plan> {
    let t = Toks::new(sql);
    let (tag, form) = if t.is(0, "CREATE") {
        ("CREATE INDEX", index::create_index(&t)?)
    } else if t.eat(0, &["DROP", "INDEX"]).is_some() {
        ("DROP INDEX", index::drop_index(&t)?)
    } else if t.is(0, "REINDEX") {
        ("REINDEX", index::reindex(&t)?)
    } else if t.eat(0, &["ALTER", "TABLE"]).is_some() {
        ("ALTER TABLE", alter::alter_table(&t, catalog, brief_ok)?)
    } else {
        return None;
    };
    (!form.steps.is_empty()).then_some(Plan {
        tag,
        table: form.table,
        steps: form.steps,
        revert: form.revert,
    })
}

/// What a form's planner gives: the relation it works on (as written) and
/// its steps.
pub(super) struct Form {
    pub table: Option<String>,
    pub steps: Vec<Step>,
    /// What undoes it once made (`Plan::revert`).
    pub revert: Vec<Step>,
}

pub(super) fn step(
    kind: StepKind,
    sql: String,
    lock: Lock,
    object: Option<String>,
    what: &str,
) -> Step {
    Step {
        kind,
        in_transaction: !matches!(
            kind,
            StepKind::BuildIndex
                | StepKind::DropIndex
                | StepKind::Reindex
                | StepKind::Detach
                | StepKind::Backfill
        ),
        sql,
        lock,
        object,
        what: what.to_owned(),
        backfill: None,
        undo: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ddl::Catalog;

    fn sqls(sql: &str) -> Vec<String> {
        plan(sql, &Catalog::default(), &|_| true)
            .map(|p| p.steps.into_iter().map(|s| s.sql).collect())
            .unwrap_or_default()
    }

    #[test]
    fn index_names_as_postgres_would_choose() {
        assert_eq!(
            sqls("CREATE INDEX ON t (a, b)"),
            ["CREATE INDEX CONCURRENTLY t_a_b_idx ON t (a, b)"]
        );
        assert_eq!(
            sqls("create unique index on s.\"T\" using btree (lower(email)) include (id) where x"),
            ["create unique index CONCURRENTLY \"T_lower_id_idx\" on s.\"T\" using btree (lower(email)) include (id) where x"]
        );
        assert_eq!(
            sqls("CREATE INDEX IF NOT EXISTS i ON t ((a::text), (a + b))"),
            ["CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t ((a::text), (a + b))"]
        );
        // Names read off PostgreSQL 15 for the same statements.
        assert_eq!(
            sqls("CREATE INDEX ON t ((a::text), (a + b))")[0],
            "CREATE INDEX CONCURRENTLY t_a_expr_idx ON t ((a::text), (a + b))"
        );
        assert_eq!(
            sqls("create index on \"Weird \"\"Name\"\"\" (\"Col A\")")[0],
            "create index CONCURRENTLY \"Weird \"\"Name\"\"_Col A_idx\" on \"Weird \"\"Name\"\"\" (\"Col A\")"
        );
        let long = format!(
            "CREATE INDEX ON longtable_{} (longcolumn_{}, c)",
            "a".repeat(57),
            "b".repeat(40)
        );
        assert!(sqls(&long)[0].starts_with(
            "CREATE INDEX CONCURRENTLY longtable_aaaaaaaaaaaaaaaaaaa_longcolumn_bbbbbbbbbbbbbbbbbb_idx ON"
        ), "{}", sqls(&long)[0]);
        assert!(sqls("CREATE INDEX CONCURRENTLY i ON t (a)").is_empty());
        assert!(sqls("CREATE INDEX i ON ONLY p (a)").is_empty());
    }

    #[test]
    fn constraint_names_as_postgres_would_choose() {
        assert_eq!(
            sqls("ALTER TABLE t ADD CHECK (a > 0)")[0],
            "ALTER TABLE t ADD CONSTRAINT t_a_check CHECK (a > 0) NOT VALID"
        );
        assert_eq!(
            sqls("ALTER TABLE t ADD CHECK (a > b)")[0],
            "ALTER TABLE t ADD CONSTRAINT t_check CHECK (a > b) NOT VALID"
        );
        assert_eq!(
            sqls("ALTER TABLE t ADD FOREIGN KEY (a, b) REFERENCES u")[1],
            "ALTER TABLE t VALIDATE CONSTRAINT t_a_b_fkey"
        );
        assert_eq!(
            sqls("ALTER TABLE t ADD UNIQUE NULLS NOT DISTINCT (a) INCLUDE (b) WITH (fillfactor = 70) USING INDEX TABLESPACE pg_default DEFERRABLE"),
            [
                "CREATE UNIQUE INDEX CONCURRENTLY t_a_b_key ON t (a) INCLUDE (b) NULLS NOT DISTINCT WITH (fillfactor = 70) TABLESPACE pg_default",
                "ALTER TABLE t ADD CONSTRAINT t_a_b_key UNIQUE USING INDEX t_a_b_key DEFERRABLE"
            ]
        );
    }

    #[test]
    fn subcommands_are_split_and_brief_ones_batched() {
        assert_eq!(
            sqls("ALTER TABLE ONLY t ADD COLUMN x int, ALTER COLUMN a SET NOT NULL, ALTER COLUMN x SET DEFAULT 1, DETACH PARTITION p"),
            [
                "ALTER TABLE ONLY t ADD COLUMN x int",
                "ALTER TABLE ONLY t ADD CONSTRAINT t_a_not_null CHECK (a IS NOT NULL) NOT VALID",
                "ALTER TABLE ONLY t VALIDATE CONSTRAINT t_a_not_null",
                "ALTER TABLE ONLY t ALTER COLUMN a SET NOT NULL",
                "ALTER TABLE ONLY t DROP CONSTRAINT t_a_not_null",
                "ALTER TABLE ONLY t ALTER COLUMN x SET DEFAULT 1",
                "ALTER TABLE ONLY t DETACH PARTITION p CONCURRENTLY",
            ]
        );
        // A part that is unsafe and has no plan: no plan at all.
        let no_drops = |s: &str| !s.contains("DROP");
        assert!(plan(
            "ALTER TABLE t ADD CHECK (a > 0), DROP COLUMN b",
            &Catalog::default(),
            &no_drops
        )
        .is_none());
        // Nothing phased: safe as written.
        assert!(sqls("ALTER TABLE t ADD COLUMN x int").is_empty());
    }

    #[test]
    fn attach_states_the_bound_first() {
        let mut c = Catalog::default();
        for (t, key) in [
            ("r", "RANGE (k)"),
            ("l", "LIST (\"Code\")"),
            ("h", "HASH (k)"),
        ] {
            c.partition_keys.insert(t.into(), key.into());
            c.default_partitions.insert(t.into(), None);
        }
        let steps = |sql: &str| -> Vec<String> {
            plan(sql, &c, &|_| true)
                .map(|p| p.steps.into_iter().map(|s| s.sql).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            steps("ALTER TABLE r ATTACH PARTITION r2 FOR VALUES FROM (100) TO (MAXVALUE)"),
            [
                "ALTER TABLE r2 ADD CONSTRAINT r2_bound_check CHECK (k IS NOT NULL AND k >= 100) NOT VALID",
                "ALTER TABLE r2 VALIDATE CONSTRAINT r2_bound_check",
                "ALTER TABLE r ATTACH PARTITION r2 FOR VALUES FROM (100) TO (MAXVALUE)",
                "ALTER TABLE r2 DROP CONSTRAINT r2_bound_check",
            ]
        );
        assert_eq!(
            steps("ALTER TABLE l ATTACH PARTITION e FOR VALUES IN ('fr', NULL)")[0],
            "ALTER TABLE e ADD CONSTRAINT e_bound_check CHECK ((\"Code\" IS NULL OR \"Code\" IN ('fr'))) NOT VALID"
        );
        // Hash keys, several key columns, a DEFAULT partition, or an unknown
        // key: no plan.
        assert!(steps(
            "ALTER TABLE h ATTACH PARTITION h1 FOR VALUES WITH (MODULUS 2, REMAINDER 0)"
        )
        .is_empty());
        assert!(steps("ALTER TABLE r ATTACH PARTITION r3 DEFAULT").is_empty());
        assert!(steps("ALTER TABLE unknown ATTACH PARTITION x FOR VALUES IN (1)").is_empty());
        c.default_partitions
            .insert("r".into(), Some(("rd".into(), false)));
        assert!(plan(
            "ALTER TABLE r ATTACH PARTITION r4 FOR VALUES FROM (1) TO (2)",
            &c,
            &|_| true
        )
        .is_none());
    }

    #[test]
    fn in_a_transaction_only_the_leading_catalog_changes_run_there() {
        let split = |sql: &str| -> (usize, usize) {
            let p = plan(sql, &Catalog::default(), &|_| true).expect("a plan");
            let (now, later) = p.split_in_transaction();
            (now.len(), later.len())
        };
        // Added bare with its default now; the backfill and NOT NULL after COMMIT.
        assert_eq!(
            split("ALTER TABLE t ADD COLUMN c timestamptz NOT NULL DEFAULT clock_timestamp()"),
            (2, 5)
        );
        // NOT VALID now, VALIDATE after.
        assert_eq!(split("ALTER TABLE t ADD CHECK (a > 0)"), (1, 1));
        assert_eq!(split("CREATE INDEX ON t (a)"), (0, 1));
    }

    #[test]
    fn made_changes_say_how_to_revert_them() {
        let revert = |sql: &str| -> Vec<String> {
            plan(sql, &Catalog::default(), &|_| true)
                .map(|p| p.revert.into_iter().map(|s| s.sql).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            revert("CREATE INDEX ON s.t (a)"),
            ["DROP INDEX CONCURRENTLY IF EXISTS s.t_a_idx"]
        );
        assert_eq!(
            revert("ALTER TABLE t ADD CHECK (a > 0)"),
            ["ALTER TABLE t DROP CONSTRAINT IF EXISTS t_a_check"]
        );
        assert_eq!(
            revert("ALTER TABLE t ADD PRIMARY KEY (id)"),
            ["ALTER TABLE t DROP CONSTRAINT IF EXISTS t_pkey"]
        );
        assert_eq!(
            revert("ALTER TABLE t ALTER COLUMN a SET NOT NULL"),
            ["ALTER TABLE t ALTER COLUMN a DROP NOT NULL"]
        );
        assert_eq!(
            revert("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()"),
            ["ALTER TABLE t DROP COLUMN IF EXISTS c"]
        );
        // Several parts, or no way back: none.
        assert!(revert("ALTER TABLE t ADD CHECK (a > 0), ALTER COLUMN a SET NOT NULL").is_empty());
        assert!(revert("DROP INDEX i").is_empty());
        assert!(revert("REINDEX TABLE t").is_empty());
    }

    #[test]
    fn drop_and_reindex() {
        assert_eq!(
            sqls("DROP INDEX IF EXISTS a, s.b RESTRICT"),
            [
                "DROP INDEX CONCURRENTLY IF EXISTS a",
                "DROP INDEX CONCURRENTLY IF EXISTS s.b"
            ]
        );
        assert!(sqls("DROP INDEX a CASCADE").is_empty());
        assert_eq!(
            sqls("REINDEX (VERBOSE) TABLE t"),
            ["REINDEX (VERBOSE) TABLE CONCURRENTLY t"]
        );
        assert!(sqls("REINDEX SYSTEM d").is_empty());
    }
}
