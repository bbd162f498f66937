//! What the runner works with: a migration's and a step's status (one enum
//! each, stored as text), what a session submits, what it hears back, and
//! the runner's errors.

use crate::config::ClientWait;
use crate::ddl::plan::Plan;

/// A migration's status, as stored in `ddlgate.migrations.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    Running,
    Paused,
    Succeeded,
    Failed,
    Cancelled,
    /// Made, then undone by REVERT.
    Reverted,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Running,
        Status::Paused,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
        Status::Reverted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Reverted => "reverted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A step's status, as stored in `ddlgate.steps.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Pending,
    Running,
    Done,
    /// The catalog showed it had already happened.
    Skipped,
    Failed,
    /// Rolled back by CANCEL.
    Undone,
}

impl StepStatus {
    pub const ALL: [StepStatus; 6] = [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Done,
        StepStatus::Skipped,
        StepStatus::Failed,
        StepStatus::Undone,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        StepStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Finished: the migration goes on past it.
    pub fn is_complete(self) -> bool {
        matches!(self, StepStatus::Done | StepStatus::Skipped)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Done => "done",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            StepStatus::Undone => "undone",
        }
    }
}

/// An operator's request to a migration, stored in
/// `ddlgate.migrations.requested` so that the instance running it sees
/// a request given on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Pause,
    Cancel,
    /// End a type change's grace period now (COMPLETE).
    Complete,
    /// Undo the change (REVERT), for the worker to start.
    Revert,
}

impl Request {
    pub fn as_str(self) -> &'static str {
        match self {
            Request::Pause => "pause",
            Request::Cancel => "cancel",
            Request::Complete => "complete",
            Request::Revert => "revert",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(Request::Pause),
            "cancel" => Some(Request::Cancel),
            "complete" => Some(Request::Complete),
            "revert" => Some(Request::Revert),
            _ => None,
        }
    }
}

/// A schema change a session hands to the runner.
#[derive(Debug, Clone)]
pub struct Submission {
    pub database: String,
    /// The role the upstream authenticated for the session (its startup
    /// `user`): the runner checks on its own connection that it may be
    /// `role`, whatever the session answered.
    pub login: String,
    /// The session's current role (`current_user`, read from the server):
    /// every step runs as it.
    pub role: String,
    /// The session's search_path, so the client's names mean what they
    /// meant to the client.
    pub search_path: String,
    /// The table (an index's table) the plan's relation resolved to in the
    /// client's session, when the gate read it: the runner must resolve
    /// the name to the same one.
    pub relation_oid: Option<u32>,
    pub statement: String,
    /// Its `tag` is the CommandComplete PostgreSQL would have sent.
    pub plan: Plan,
    /// The gate decision's event id.
    pub event: String,
    pub wait: ClientWait,
    /// Stop before a type change's cut-over until COMPLETE.
    pub postpone_cutover: bool,
}

/// What a following session hears about its migration.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Recorded under this id.
    Recorded(i64),
    /// Not recorded: the client gets this error instead.
    Refused(Failure),
    /// Waiting before it can start (why).
    Waiting(String),
    Step {
        n: usize,
        total: usize,
        what: String,
    },
    /// A step gave up on its lock; tried again after `delay_ms`.
    Retrying {
        n: usize,
        attempt: u32,
        delay_ms: u64,
    },
    Paused,
    /// At its cut-over, which waits for COMPLETE.
    Postponed,
    /// Cut over; the old column is kept aside (REVERT swaps back) for
    /// this long.
    Kept(std::time::Duration),
    Succeeded,
    Failed(Failure),
    Cancelled,
    /// A deferred migration whose client's transaction did not confirm it
    /// (rolled back to a savepoint): it was never made, and is removed.
    Discarded,
}

/// An error as the client gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(sqlstate: &str, message: impl Into<String>) -> Self {
        Failure {
            sqlstate: sqlstate.to_owned(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }
}

/// The runner's errors, per cause.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("runner cannot connect to the upstream: {0}")]
    Connect(String),
    /// The server's error: SQLSTATE and message (and detail, hint).
    #[error("{}: {}", .0.sqlstate, .0.message)]
    Server(Failure),
    #[error("runner lost its upstream connection: {0}")]
    Lost(String),
    #[error("{0}")]
    State(String),
}

impl RunnerError {
    pub fn from_db(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => RunnerError::Server(Failure {
                sqlstate: db.code().code().to_owned(),
                message: db.message().to_owned(),
                detail: db.detail().map(str::to_owned),
                hint: db.hint().map(str::to_owned),
            }),
            // The connection is gone (closed, or its socket failed): the
            // next worker resumes. Anything else is ddlgate's own mistake
            // (a parameter it could not encode, a row it could not read),
            // which fails the step visibly instead of retrying forever.
            None if e.is_closed()
                || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) =>
            {
                RunnerError::Lost(e.to_string())
            }
            None => RunnerError::State(e.to_string()),
        }
    }

    pub fn sqlstate(&self) -> &str {
        match self {
            RunnerError::Server(f) => &f.sqlstate,
            RunnerError::Connect(_) | RunnerError::Lost(_) => "08006",
            RunnerError::State(_) => "XX000",
        }
    }

    /// As the client gets it.
    pub fn failure(&self) -> Failure {
        match self {
            RunnerError::Server(f) => f.clone(),
            other => Failure::new(other.sqlstate(), other.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for RunnerError {
    fn from(e: tokio_postgres::Error) -> Self {
        RunnerError::from_db(e)
    }
}

/// A throttle setting an operator changes for one migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleChange {
    BatchTime(std::time::Duration),
    /// 0: no ceiling.
    MaxRowsPerSec(u64),
}
