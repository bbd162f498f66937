//! Settings: flags and `DDLGATE_*` variables over the TOML file over defaults,
//! resolved into one validated [`Settings`] value. A bad value is reported as
//! a single [`ConfigError`] naming the key.

pub mod cli;
pub mod ddl;
pub mod file;
pub mod pacing;
pub mod runner;
pub mod throttle;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::upstream::UpstreamTarget;
use cli::ProxyArgs;
pub use ddl::DdlSettings;
use file::FileConfig;
pub use pacing::PacingSettings;
pub use runner::{ClientWait, RunnerSettings};
pub use throttle::ThrottleSettings;

/// One configuration problem: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key '{key}': {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn bad(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Validated settings of a running proxy.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub upstream: UpstreamTarget,
    pub tls: Option<TlsFiles>,
    pub workers: usize,
    pub max_client_connections: usize,
    pub max_message_size: usize,
    /// The largest message ddlgate holds whole (a Query or Parse, to judge
    /// its SQL), and what large ones may hold across sessions.
    pub max_held_message_size: usize,
    pub max_held_total: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub connect_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    pub metrics_listen: Option<SocketAddr>,
    pub ddl: DdlSettings,
    /// The migration runner; `None`: rewrites fall back to blocking.
    pub runner: Option<RunnerSettings>,
    /// Roles the admin console (database `ddlgate`) admits.
    pub admin_roles: Vec<String>,
    /// Client sessions paced as backfill traffic; `None`: none are.
    pub backfill_traffic: Option<PacingSettings>,
}

impl Settings {
    /// Settings for `upstream` with every other value at its default.
    pub fn for_upstream(upstream: UpstreamTarget) -> Self {
        Settings {
            listen: "127.0.0.1:6432".parse().expect("valid literal"),
            upstream,
            tls: None,
            workers: 1,
            max_client_connections: 1000,
            max_message_size: 1 << 30,
            max_held_message_size: 64 << 20,
            max_held_total: 256 << 20,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: None,
            connect_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            metrics_listen: None,
            ddl: DdlSettings::default(),
            runner: None,
            admin_roles: Vec::new(),
            backfill_traffic: None,
        }
    }

    /// Loads the file named by `args.config` (if any) and applies `args` over it.
    pub fn load(args: &ProxyArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        resolve(args, file)
    }
}

/// Layers flags over the file over defaults and validates every value.
pub fn resolve(args: &ProxyArgs, file: FileConfig) -> Result<Settings, ConfigError> {
    let upstream = args
        .upstream
        .clone()
        .or(file.upstream)
        .ok_or_else(|| bad("upstream", "is required (e.g. postgres://127.0.0.1:5432)"))?;
    let upstream = UpstreamTarget::parse(&upstream).map_err(|p| bad("upstream", p))?;
    let mut s = Settings::for_upstream(upstream);

    if let Some(v) = args.listen.clone().or(file.listen) {
        s.listen = parse_addr("listen", &v)?;
    }
    if let Some(v) = args.workers.or(file.workers) {
        if v == 0 || v > 256 {
            return Err(bad("workers", format!("{v} is out of range 1..=256")));
        }
        s.workers = v;
    }
    if let Some(v) = args.max_client_connections.or(file.max_client_connections) {
        if v == 0 {
            return Err(bad("max_client_connections", "must be at least 1"));
        }
        s.max_client_connections = v;
    }
    if let Some(v) = args.max_message_size.clone().or(file.max_message_size) {
        let size = parse_size("max_message_size", &v)?;
        if !(1024..=(1 << 30)).contains(&size) {
            return Err(bad("max_message_size", "must be between 1kB and 1GB"));
        }
        s.max_message_size = size;
    }
    if let Some(v) = args
        .max_held_message_size
        .clone()
        .or(file.max_held_message_size)
    {
        let size = parse_size("max_held_message_size", &v)?;
        if !(1024..=(1 << 30)).contains(&size) {
            return Err(bad("max_held_message_size", "must be between 1kB and 1GB"));
        }
        s.max_held_message_size = size;
    }
    if let Some(v) = args.max_held_total.clone().or(file.max_held_total) {
        let size = parse_size("max_held_total", &v)?;
        if size < s.max_held_message_size {
            return Err(bad(
                "max_held_total",
                "must be at least max_held_message_size",
            ));
        }
        s.max_held_total = size;
    }
    if let Some(v) = args.handshake_timeout.clone().or(file.handshake_timeout) {
        s.handshake_timeout = nonzero(
            "handshake_timeout",
            parse_duration("handshake_timeout", &v)?,
        )?;
    }
    if let Some(v) = args.idle_timeout.clone().or(file.idle_timeout) {
        let d = parse_duration("idle_timeout", &v)?;
        s.idle_timeout = (!d.is_zero()).then_some(d);
    }
    if let Some(v) = args.connect_timeout.clone().or(file.connect_timeout) {
        s.connect_timeout = nonzero("connect_timeout", parse_duration("connect_timeout", &v)?)?;
    }
    if let Some(v) = args.shutdown_timeout.clone().or(file.shutdown_timeout) {
        s.shutdown_timeout = parse_duration("shutdown_timeout", &v)?;
    }
    let cert = args.tls_cert.clone().or(file.tls.cert);
    let key = args.tls_key.clone().or(file.tls.key);
    s.tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => return Err(bad("tls.key", "is required when tls.cert is set")),
        (None, Some(_)) => return Err(bad("tls.cert", "is required when tls.key is set")),
    };
    if let Some(v) = args.log_format.clone().or(file.log.format) {
        s.log_format = match v.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(bad("log.format", format!("'{other}' is not text or json"))),
        };
    }
    if let Some(v) = args.log_level.clone().or(file.log.level) {
        tracing_subscriber::EnvFilter::try_new(&v)
            .map_err(|e| bad("log.level", format!("'{v}': {e}")))?;
        s.log_level = v;
    }
    if let Some(v) = args.metrics_listen.clone().or(file.metrics.listen) {
        s.metrics_listen = Some(parse_addr("metrics.listen", &v)?);
    }
    s.ddl = file.ddl.resolve()?;
    s.runner = file
        .runner
        .resolve(std::env::var(runner::PASSWORD_ENV).ok())?;
    let throttle = file.throttle.resolve()?;
    if let Some(r) = &mut s.runner {
        r.throttle = throttle;
    }
    s.admin_roles = file.admin_roles.unwrap_or_default();
    s.backfill_traffic = file.backfill_traffic.resolve()?;
    Ok(s)
}

fn parse_addr(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse()
        .map_err(|_| bad(key, format!("'{v}' is not an address like 127.0.0.1:6432")))
}

fn nonzero(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(bad(key, "must be greater than 0"));
    }
    Ok(d)
}

/// Parses sizes such as `1024`, `64kB`, `16MB`, `1GB` (powers of 1024, as
/// PostgreSQL's own settings use them).
pub fn parse_size(key: &str, v: &str) -> Result<usize, ConfigError> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| bad(key, format!("'{v}' is not a size like 64MB")))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        _ => {
            return Err(bad(
                key,
                format!("'{v}' has an unknown unit (use B, kB, MB or GB)"),
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| bad(key, format!("'{v}' is too large")))
}

/// Parses durations such as `500ms`, `30s`, `5min`, `1h`; a bare number is seconds.
pub fn parse_duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| bad(key, format!("'{v}' is not a duration like 30s or 500ms")))?;
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "min" | "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => {
            return Err(bad(
                key,
                format!("'{v}' has an unknown unit (use ms, s, min or h)"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn args(upstream: &str) -> ProxyArgs {
        ProxyArgs {
            upstream: Some(upstream.into()),
            ..Default::default()
        }
    }

    #[test]
    fn flags_override_the_file() {
        let file = FileConfig::parse(
            "listen = \"127.0.0.1:7000\"\nmax_message_size = \"2MB\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        let mut a = args("postgres://db:5433");
        a.listen = Some("127.0.0.1:7001".into());
        let s = resolve(&a, file).unwrap();
        assert_eq!(s.listen.port(), 7001);
        assert_eq!(s.max_message_size, 2 << 20);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = FileConfig::parse("listen = \"x\"\nbogus = 1\n", Path::new("c.toml")).unwrap_err();
        assert_eq!(e.key, "bogus");
        assert!(e.problem.contains("line 2"), "{}", e.problem);
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = FileConfig::parse("workers = \"two\"\n", Path::new("c.toml")).unwrap_err();
        assert_eq!(e.key, "workers");
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut a = args("postgres://db");
        a.idle_timeout = Some("ten".into());
        assert_eq!(
            resolve(&a, FileConfig::default()).unwrap_err().key,
            "idle_timeout"
        );
        let e = resolve(&ProxyArgs::default(), FileConfig::default()).unwrap_err();
        assert_eq!(e.key, "upstream");
        let mut a = args("postgres://db");
        a.tls_cert = Some("c.pem".into());
        assert_eq!(
            resolve(&a, FileConfig::default()).unwrap_err().key,
            "tls.key"
        );
    }

    #[test]
    fn the_shipped_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ddlgate.toml");
        let file = FileConfig::load(&path).unwrap();
        let s = resolve(&ProxyArgs::default(), file).unwrap();
        assert_eq!(s.listen.port(), 6432);
        assert_eq!(s.max_message_size, 1 << 30);
        assert_eq!(s.idle_timeout, None);
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("k", "64kB").unwrap(), 65536);
        assert_eq!(parse_size("k", "1GB").unwrap(), 1 << 30);
        assert!(parse_size("k", "12XB").is_err());
        assert_eq!(
            parse_duration("k", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("k", "2min").unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(parse_duration("k", "7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("k", "1 fortnight").is_err());
    }
}
