//! The SQLSTATE codes ddlgate itself reports (PostgreSQL Appendix A).

pub const CONNECTION_FAILURE: &str = "08006";
pub const PROTOCOL_VIOLATION: &str = "08P01";
pub const TOO_MANY_CONNECTIONS: &str = "53300";
pub const ADMIN_SHUTDOWN: &str = "57P01";
pub const CANNOT_CONNECT_NOW: &str = "57P03";
pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
pub const INVALID_AUTHORIZATION: &str = "28000";
pub const LOCK_NOT_AVAILABLE: &str = "55P03";
pub const QUERY_CANCELED: &str = "57014";
/// ddlgate's own class (implementation-defined classes start with I-Z).
/// A schema change stopped by policy.
pub const DDL_BLOCKED: &str = "ZD001";
/// A schema change that must run as ddlgate's safe phased plan; until the
/// rewriter runs it, it is stopped like a blocked one.
pub const DDL_NEEDS_REWRITE: &str = "ZD002";
/// WARNING-level notices ddlgate sends (warned rules, retries).
pub const WARNING: &str = "01000";
pub const SYNTAX_ERROR: &str = "42601";
/// "relation ... already exists, skipping" (a NOTICE under IF NOT EXISTS).
pub const DUPLICATE_TABLE: &str = "42P07";
/// "... already exists, skipping" for other objects.
pub const DUPLICATE_OBJECT: &str = "42710";
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
pub const INVALID_PARAMETER_VALUE: &str = "22023";
/// A statement over a limit of ddlgate's (`max_held_message_size`).
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
/// ddlgate's memory for held messages is spent (`max_held_total`).
pub const OUT_OF_MEMORY: &str = "53200";
