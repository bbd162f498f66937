//! Whether a DEFAULT expression is evaluated once (a constant, `now()`) or
//! per row (`random()`, `clock_timestamp()`): the difference between a
//! catalog-only ADD COLUMN and a table rewrite on PostgreSQL 11 and later.

use sqlparser::tokenizer::Token;

use super::cursor::Cursor;
use crate::ddl::op::Volatility;

/// Functions PostgreSQL marks volatile that show up in column defaults.
const VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "nextval",
    "setval",
    "txid_current",
    "pg_current_xact_id",
    "gen_random_bytes",
];

/// Functions (and type names used as casts) that are immutable or stable,
/// so a default using them is computed once.
const NOT_VOLATILE: &[&str] = &[
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "current_user",
    "session_user",
    "current_setting",
    "lower",
    "upper",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "abs",
    "length",
    "md5",
    "concat",
    "substr",
    "substring",
    "replace",
    "trim",
    "date_trunc",
    "make_date",
    "make_interval",
    "to_char",
    "to_timestamp",
    "to_date",
    "to_json",
    "to_jsonb",
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "array",
    "row",
    "cast",
    "extract",
    "date_part",
    "timezone",
    "varchar",
    "char",
    "character",
    "numeric",
    "decimal",
    "timestamp",
    "timestamptz",
    "time",
    "timetz",
    "interval",
    "bit",
    "varbit",
    "float",
];

/// Classifies an expression given as SQL text.
pub fn volatility(expr: &str) -> Volatility {
    let Some(mut c) = Cursor::new(expr) else {
        return Volatility::Volatile("an expression ddlgate cannot read".into());
    };
    let mut prev_cast = false;
    let mut unknown: Vec<String> = Vec::new();
    while let Some(t) = c.next().cloned() {
        let is_call = matches!(c.peek(), Some(Token::LParen));
        if let Token::Word(w) = &t {
            let name = if w.quote_style.is_some() {
                w.value.clone()
            } else {
                w.value.to_ascii_lowercase()
            };
            if is_call && !prev_cast && w.quote_style.is_none()
                || is_call && w.quote_style.is_some()
            {
                if VOLATILE.contains(&name.as_str()) {
                    return Volatility::Volatile(format!("{name}()"));
                }
                if !NOT_VOLATILE.contains(&name.as_str()) && !unknown.contains(&name) {
                    unknown.push(name);
                }
            }
        }
        prev_cast = matches!(t, Token::DoubleColon)
            || matches!(&t, Token::Word(w) if w.value.eq_ignore_ascii_case("AS"));
        // A qualified call (`pg_catalog.now()`) is judged by its last part.
        if matches!(t, Token::Period) {
            prev_cast = false;
        }
    }
    if unknown.is_empty() {
        Volatility::Stable
    } else {
        Volatility::Unknown(unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_common_defaults() {
        for stable in [
            "0",
            "'x'",
            "now()",
            "CURRENT_TIMESTAMP",
            "'{}'::jsonb",
            "0::numeric(10,2)",
            "CAST('a' AS varchar(3))",
            "pg_catalog.now()",
            "ARRAY[]::text[]",
            "lower('A')",
        ] {
            assert_eq!(volatility(stable), Volatility::Stable, "{stable}");
        }
        for volatile in [
            "random()",
            "clock_timestamp()",
            "gen_random_uuid()",
            "nextval('s'::regclass)",
            "public.uuid_generate_v4()",
            "my_func() + random()",
        ] {
            assert!(
                matches!(volatility(volatile), Volatility::Volatile(_)),
                "{volatile}"
            );
        }
        assert_eq!(
            volatility("my_func(1) + other(2) + my_func(3)"),
            Volatility::Unknown(vec!["my_func".into(), "other".into()])
        );
    }
}
