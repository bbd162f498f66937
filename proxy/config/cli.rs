//! Command-line flags. Each flag can also come from a `DDLGATE_*` environment
//! variable; flags and variables override the config file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ddlgate",
    version,
    about = "PostgreSQL proxy that passes queries through and gates schema changes",
    long_about = "PostgreSQL wire-protocol proxy. Point applications and psql at --listen; \
                  ordinary traffic is relayed to --upstream unchanged.\n\n\
                  Settings come from flags, then DDLGATE_* environment variables, then the \
                  TOML file given with --config, then built-in defaults."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub proxy: ProxyArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a throwaway PostgreSQL from the installed server binaries with
    /// ddlgate in front of it, and print how to connect.
    Demo {
        /// Address ddlgate listens on in the demo.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: String,
    },
    /// Check migration files with the proxy's own rules and policy (use
    /// --config for the policy). Exits 1 if any statement would be stopped.
    Lint(LintArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LintFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Major version of the PostgreSQL the migrations will run on.
    #[arg(long, default_value_t = 16)]
    pub pg_version: u32,

    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: LintFormat,

    /// Apply the per-role policy (and honour ddlgate:allow comments) as this role.
    #[arg(long)]
    pub user: Option<String>,

    /// Apply the per-database policy of this database. Given as a URL
    /// (postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=...]), also read the
    /// existing tables' facts from its catalog, as the proxy does.
    #[arg(long)]
    pub database: Option<String>,

    /// SQL describing the existing database (pg_dump -s output, or the
    /// migrations already applied): its tables are existing, populated
    /// tables, and their columns, constraints, indexes and domains known.
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,

    /// Print the safe phased plan (as SQL) of each statement that has one.
    #[arg(long)]
    pub plan: bool,

    /// Print every rule with its default decision and exit.
    #[arg(long)]
    pub list_rules: bool,

    /// Migration files, directories of .sql files, or - for standard input.
    pub paths: Vec<PathBuf>,
}

/// Flags of the proxy itself; every one is optional so the file can supply it.
#[derive(Debug, Default, Args)]
pub struct ProxyArgs {
    /// TOML configuration file (see config/ddlgate.toml).
    #[arg(long, short = 'c', env = "DDLGATE_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Address to accept PostgreSQL clients on [default: 127.0.0.1:6432].
    #[arg(long, env = "DDLGATE_LISTEN")]
    pub listen: Option<String>,

    /// Upstream server: postgres://HOST[:PORT][/DB][?sslmode=disable|prefer|require|verify-ca|verify-full&sslrootcert=FILE].
    /// HOST may be a Unix socket directory (percent-encoded, or ?host=/dir).
    #[arg(long, env = "DDLGATE_UPSTREAM")]
    pub upstream: Option<String>,

    /// PEM certificate chain for TLS with clients (enables SSL negotiation).
    #[arg(long, env = "DDLGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key matching --tls-cert.
    #[arg(long, env = "DDLGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Worker threads; 1 runs everything on one thread, as PgBouncer does [default: 1].
    #[arg(long, env = "DDLGATE_WORKERS")]
    pub workers: Option<usize>,

    /// Client connections served at once; more get SQLSTATE 53300 [default: 1000].
    #[arg(long, env = "DDLGATE_MAX_CLIENT_CONNECTIONS")]
    pub max_client_connections: Option<usize>,

    /// Largest client message accepted, e.g. 64MB [default: 1GB, PostgreSQL's own limit].
    #[arg(long, env = "DDLGATE_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<String>,

    /// Largest Query or Parse ddlgate holds whole to judge it, e.g. 16MB [default: 64MB].
    #[arg(long, env = "DDLGATE_MAX_HELD_MESSAGE_SIZE")]
    pub max_held_message_size: Option<String>,

    /// Bytes of large held messages all sessions together may hold [default: 256MB].
    #[arg(long, env = "DDLGATE_MAX_HELD_TOTAL")]
    pub max_held_total: Option<String>,

    /// Time a client has to finish SSL negotiation, startup and authentication [default: 30s].
    #[arg(long, env = "DDLGATE_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<String>,

    /// Close sessions idle outside a transaction this long; 0 disables [default: 0].
    #[arg(long, env = "DDLGATE_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,

    /// Time allowed to connect to the upstream [default: 5s].
    #[arg(long, env = "DDLGATE_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<String>,

    /// On SIGTERM/SIGINT, time sessions get to finish before being closed [default: 30s].
    #[arg(long, env = "DDLGATE_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<String>,

    /// Log format: text or json [default: text].
    #[arg(long, env = "DDLGATE_LOG_FORMAT")]
    pub log_format: Option<String>,

    /// Log filter, e.g. info or ddlgate=debug [default: info].
    #[arg(long, env = "DDLGATE_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Serve Prometheus metrics over HTTP on this address (off when unset).
    #[arg(long, env = "DDLGATE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}
