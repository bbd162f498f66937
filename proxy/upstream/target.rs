//! Parsing of the upstream URL, `postgres://HOST[:PORT][/DB][?sslmode=..&sslrootcert=..]`.

use std::fmt;
use std::path::PathBuf;

/// Where the upstream listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp {
        host: String,
        port: u16,
    },
    /// A socket directory, as libpq takes it: the socket is `DIR/.s.PGSQL.PORT`.
    Unix {
        dir: PathBuf,
        port: u16,
    },
}

/// libpq's `sslmode` values, with libpq's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<Self, String> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                "sslmode '{other}' is not one of disable, prefer, require, verify-ca, verify-full"
            ))
            }
        })
    }
}

/// A parsed upstream URL. `database` and `user` are for ddlgate's own
/// connections; client sessions use the database and role they asked for.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    pub address: Address,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub sslmode: SslMode,
    pub root_cert: Option<PathBuf>,
}

impl fmt::Debug for UpstreamTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Renders the target without its password, so it is safe to log.
impl fmt::Display for UpstreamTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.address {
            Address::Tcp { host, port } => write!(f, "{host}:{port}")?,
            Address::Unix { dir, port } => write!(f, "{}/.s.PGSQL.{port}", dir.display())?,
        }
        write!(f, " (sslmode={:?})", self.sslmode)
    }
}

impl UpstreamTarget {
    /// Why the link to the upstream does not protect what crosses it (the
    /// runner's password, every client's queries): a TCP host other than
    /// loopback with `sslmode` `disable`, or `prefer`, which an attacker on
    /// the path can turn into no TLS.
    pub fn unprotected(&self) -> Option<String> {
        let Address::Tcp { host, .. } = &self.address else {
            return None;
        };
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        match (loopback, self.sslmode) {
            (false, SslMode::Disable) => Some(format!(
                "the upstream link to {host} is not encrypted (sslmode=disable)"
            )),
            (false, SslMode::Prefer) => Some(format!(
                "the upstream link to {host} may not be encrypted (sslmode=prefer falls back to \
                 plain text, and an attacker on the path can make it)"
            )),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("'{}' is not a URL: {e}", redact(s)))?;
        if url.scheme() != "postgres" && url.scheme() != "postgresql" {
            return Err(format!(
                "scheme must be postgres://, not {}://",
                url.scheme()
            ));
        }
        let decode = |v: &str| {
            url::form_urlencoded::parse(format!("x={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let mut host = url.host_str().map(decode).unwrap_or_default();
        let port = url.port().unwrap_or(5432);
        let mut sslmode = None;
        let mut root_cert = None;
        for (k, v) in url.query_pairs() {
            match &*k {
                "sslmode" => sslmode = Some(SslMode::parse(&v)?),
                "sslrootcert" => root_cert = Some(PathBuf::from(&*v)),
                "host" => host = v.into_owned(),
                other => return Err(format!("unsupported URL parameter '{other}'")),
            }
        }
        if host.is_empty() {
            return Err("the URL names no host".into());
        }
        let address = if host.starts_with('/') {
            Address::Unix {
                dir: host.into(),
                port,
            }
        } else {
            Address::Tcp { host, port }
        };
        let sslmode = match (sslmode, &address) {
            (Some(m), _) => m,
            // libpq never uses TLS on a Unix socket.
            (None, Address::Unix { .. }) => SslMode::Disable,
            (None, Address::Tcp { .. }) => SslMode::Prefer,
        };
        if matches!(address, Address::Unix { .. })
            && sslmode != SslMode::Disable
            && sslmode != SslMode::Prefer
        {
            return Err("sslmode require/verify-* cannot be used with a Unix socket".into());
        }
        let database = url.path().trim_start_matches('/');
        Ok(UpstreamTarget {
            address,
            database: (!database.is_empty()).then(|| decode(database)),
            user: (!url.username().is_empty()).then(|| decode(url.username())),
            password: url.password().map(decode),
            sslmode,
            root_cert,
        })
    }
}

/// Hides the password of a URL that is about to be shown.
fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let creds = &s[start + 3..at];
            match creds.find(':') {
                Some(colon) => format!("{}{}:***{}", &s[..start + 3], &creds[..colon], &s[at..]),
                None => s.to_owned(),
            }
        }
        _ => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unencrypted_link_off_this_host_is_flagged() {
        let flagged = |u: &str| UpstreamTarget::parse(u).unwrap().unprotected().is_some();
        assert!(flagged("postgres://db.internal:5432?sslmode=disable"));
        assert!(flagged("postgres://10.0.0.5:5432"));
        assert!(!flagged("postgres://db.internal:5432?sslmode=verify-full"));
        assert!(!flagged("postgres://db.internal:5432?sslmode=require"));
        assert!(!flagged("postgres://127.0.0.1:5432?sslmode=disable"));
        assert!(!flagged("postgres://localhost:5432"));
        assert!(!flagged("postgres://[::1]:5432?sslmode=prefer"));
    }

    #[test]
    fn tcp_with_defaults() {
        let t = UpstreamTarget::parse("postgres://db.internal").unwrap();
        assert_eq!(
            t.address,
            Address::Tcp {
                host: "db.internal".into(),
                port: 5432
            }
        );
        assert_eq!(t.sslmode, SslMode::Prefer);
        assert_eq!(t.database, None);
    }

    #[test]
    fn full_url() {
        let t = UpstreamTarget::parse(
            "postgresql://ddl:s%40cret@10.0.0.1:6000/app?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(
            t.address,
            Address::Tcp {
                host: "10.0.0.1".into(),
                port: 6000
            }
        );
        assert_eq!(t.database.as_deref(), Some("app"));
        assert_eq!(t.password.as_deref(), Some("s@cret"));
        assert_eq!(t.sslmode, SslMode::VerifyFull);
        assert_eq!(t.root_cert, Some(PathBuf::from("/ca.pem")));
        assert!(!format!("{t} {t:?}").contains("cret"));
    }

    #[test]
    fn unix_socket_directories() {
        let t = UpstreamTarget::parse("postgres://%2Ftmp%2Fpg:5433").unwrap();
        assert_eq!(
            t.address,
            Address::Unix {
                dir: "/tmp/pg".into(),
                port: 5433
            }
        );
        assert_eq!(t.sslmode, SslMode::Disable);
        let t = UpstreamTarget::parse("postgres://localhost:5433?host=/run/pg").unwrap();
        assert_eq!(
            t.address,
            Address::Unix {
                dir: "/run/pg".into(),
                port: 5433
            }
        );
    }

    #[test]
    fn errors_never_show_the_password() {
        let e = UpstreamTarget::parse("postgres://u:hunter2@host:99999").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(UpstreamTarget::parse("mysql://x").is_err());
        assert!(UpstreamTarget::parse("postgres://x?sslmode=sometimes").is_err());
    }
}
