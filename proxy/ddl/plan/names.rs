//! The names PostgreSQL chooses for an index or constraint created without
//! one (`makeObjectName` and `ChooseIndexNameAddition` in its source), so a
//! plan can name the object exactly as the original statement would have.
//! A name already taken makes PostgreSQL append a number; plans name the
//! object explicitly, so that case does not arise silently: the step fails.

/// NAMEDATALEN - 1.
const MAX: usize = 63;

/// `name1_name2_label`, shortening the longer of the two names first so the
/// whole fits in 63 bytes (on a character boundary).
pub fn object_name(name1: &str, name2: Option<&str>, label: &str) -> String {
    let overhead = label.len() + 1 + usize::from(name2.is_some());
    let avail = MAX.saturating_sub(overhead);
    let (mut n1, mut n2) = (name1.len(), name2.map_or(0, str::len));
    while n1 + n2 > avail {
        if n1 > n2 {
            n1 -= 1;
        } else {
            n2 -= 1;
        }
    }
    let mut out = clip(name1, n1).to_owned();
    if let Some(n) = name2 {
        out.push('_');
        out.push_str(clip(n, n2));
    }
    out.push('_');
    out.push_str(label);
    out
}

/// Column names joined with `_`, stopping once 63 bytes are reached.
pub fn columns_addition(columns: &[String]) -> String {
    let mut buf = String::new();
    for c in columns {
        if !buf.is_empty() {
            buf.push('_');
        }
        buf.push_str(c);
        if buf.len() > MAX {
            break;
        }
    }
    clip(&buf, MAX).to_owned()
}

fn clip(s: &str, max: usize) -> &str {
    let mut n = max.min(s.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_postgres_chooses_them() {
        assert_eq!(
            object_name("orders", Some("customer_id"), "idx"),
            "orders_customer_id_idx"
        );
        assert_eq!(object_name("orders", None, "pkey"), "orders_pkey");
        let long = "a".repeat(70);
        let n = object_name(&long, Some("col"), "idx");
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("_col_idx"), "{n}");
        assert_eq!(columns_addition(&["a".into(), "b".into()]), "a_b");
    }
}
