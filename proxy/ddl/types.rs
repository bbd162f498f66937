//! Column types as far as ALTER COLUMN TYPE cares: which changes PostgreSQL
//! makes without rewriting the table (binary-coercible, with a length or
//! precision that only grows).

use std::fmt;

/// A column type read from SQL (`varchar(20)`) or from `format_type()`
/// (`character varying(20)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    Varchar(Option<u32>),
    Text,
    Numeric(Option<(u32, u32)>),
    /// timestamp, timestamptz, time, timetz, interval with optional precision.
    Temporal(Temporal, Option<u32>),
    VarBit(Option<u32>),
    Cidr,
    Inet,
    Serial,
    /// Anything else, lower-cased as written.
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporal {
    Timestamp,
    TimestampTz,
    Time,
    TimeTz,
    Interval,
}

impl SqlType {
    pub fn parse(text: &str) -> SqlType {
        let t = text.trim().to_ascii_lowercase();
        let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
        let (base, mods) = match t.find('(') {
            Some(i) => {
                let close = t[i..].find(')').map_or(t.len(), |j| i + j);
                let rest = format!("{}{}", &t[..i], t.get(close + 1..).unwrap_or(""));
                let mods: Vec<u32> = t[i + 1..close]
                    .split(',')
                    .filter_map(|m| m.trim().parse().ok())
                    .collect();
                (rest.split_whitespace().collect::<Vec<_>>().join(" "), mods)
            }
            None => (t.clone(), Vec::new()),
        };
        let first = mods.first().copied();
        match base.as_str() {
            "varchar" | "character varying" | "char varying" => SqlType::Varchar(first),
            "text" => SqlType::Text,
            "numeric" | "decimal" | "dec" => SqlType::Numeric(match mods.as_slice() {
                [] => None,
                [p] => Some((*p, 0)),
                [p, s, ..] => Some((*p, *s)),
            }),
            "timestamp" | "timestamp without time zone" => {
                SqlType::Temporal(Temporal::Timestamp, first)
            }
            "timestamptz" | "timestamp with time zone" => {
                SqlType::Temporal(Temporal::TimestampTz, first)
            }
            "time" | "time without time zone" => SqlType::Temporal(Temporal::Time, first),
            "timetz" | "time with time zone" => SqlType::Temporal(Temporal::TimeTz, first),
            "interval" => SqlType::Temporal(Temporal::Interval, first),
            "varbit" | "bit varying" => SqlType::VarBit(first),
            "cidr" => SqlType::Cidr,
            "inet" => SqlType::Inet,
            "serial" | "serial4" | "bigserial" | "serial8" | "smallserial" | "serial2" => {
                SqlType::Serial
            }
            "int" | "int4" | "integer" => SqlType::Other("integer".into()),
            "int8" | "bigint" => SqlType::Other("bigint".into()),
            "int2" | "smallint" => SqlType::Other("smallint".into()),
            "bool" | "boolean" => SqlType::Other("boolean".into()),
            "float8" | "double precision" => SqlType::Other("double precision".into()),
            "float4" | "real" => SqlType::Other("real".into()),
            _ => SqlType::Other(t),
        }
    }

    /// Whether changing a column from `self` to `to` leaves the table file as
    /// it is (PostgreSQL 9.2 and later).
    pub fn changes_without_rewrite(&self, to: &SqlType) -> bool {
        use SqlType::*;
        let grows = |from: Option<u32>, to: Option<u32>| match (from, to) {
            (_, None) => true,
            (Some(f), Some(t)) => t >= f,
            (None, Some(_)) => false,
        };
        match (self, to) {
            (a, b) if a == b => true,
            (Varchar(f), Varchar(t)) => grows(*f, *t),
            (Varchar(_), Text) | (Text, Varchar(None)) => true,
            (Numeric(f), Numeric(t)) => match (f, t) {
                (_, None) => true,
                (Some((fp, fs)), Some((tp, ts))) => fs == ts && tp >= fp,
                (None, Some(_)) => false,
            },
            (Temporal(fk, f), Temporal(tk, t)) => fk == tk && grows(*f, *t),
            (VarBit(f), VarBit(t)) => grows(*f, *t),
            (Cidr, Inet) => true,
            _ => false,
        }
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |n: &Option<u32>| n.map(|n| format!("({n})")).unwrap_or_default();
        match self {
            SqlType::Varchar(n) => write!(f, "varchar{}", opt(n)),
            SqlType::Text => f.write_str("text"),
            SqlType::Numeric(None) => f.write_str("numeric"),
            SqlType::Numeric(Some((p, s))) => write!(f, "numeric({p},{s})"),
            SqlType::Temporal(k, n) => {
                let name = match k {
                    Temporal::Timestamp => "timestamp",
                    Temporal::TimestampTz => "timestamptz",
                    Temporal::Time => "time",
                    Temporal::TimeTz => "timetz",
                    Temporal::Interval => "interval",
                };
                write!(f, "{name}{}", opt(n))
            }
            SqlType::VarBit(n) => write!(f, "varbit{}", opt(n)),
            SqlType::Cidr => f.write_str("cidr"),
            SqlType::Inet => f.write_str("inet"),
            SqlType::Serial => f.write_str("serial"),
            SqlType::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_rewrite(from: &str, to: &str) -> bool {
        SqlType::parse(from).changes_without_rewrite(&SqlType::parse(to))
    }

    #[test]
    fn binary_coercible_changes() {
        assert!(no_rewrite("character varying(10)", "VARCHAR(20)"));
        assert!(no_rewrite("varchar(10)", "varchar"));
        assert!(no_rewrite("varchar(10)", "text"));
        assert!(no_rewrite("numeric(10,2)", "numeric(12,2)"));
        assert!(no_rewrite("numeric(10,2)", "numeric"));
        assert!(no_rewrite("timestamp(3) without time zone", "timestamp(6)"));
        assert!(no_rewrite("cidr", "inet"));
        assert!(no_rewrite("integer", "INT4"));
    }

    #[test]
    fn rewriting_changes() {
        assert!(!no_rewrite("varchar(20)", "varchar(10)"));
        assert!(!no_rewrite("text", "varchar(10)"));
        assert!(!no_rewrite("numeric(10,2)", "numeric(12,3)"));
        assert!(!no_rewrite("numeric", "numeric(12,2)"));
        assert!(!no_rewrite("integer", "bigint"));
        assert!(!no_rewrite("timestamp", "timestamptz"));
        assert!(!no_rewrite("char(5)", "char(10)"));
    }
}
