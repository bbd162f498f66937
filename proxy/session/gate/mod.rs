//! The DDL gate inside a session: decides each Query and Parse that may be a
//! schema change, and keeps the server's responses in step with what was
//! sent.
//!
//! Responses arrive in order, one ReadyForQuery per Query or Sync, so the
//! gate keeps a queue of [`Group`]s, one per ReadyForQuery expected: the
//! client's own, ddlgate's own (`lock_timeout` guard and restore, whose
//! responses are dropped), and guarded DDL units (whose responses are held
//! until their ReadyForQuery, so a lock timeout can be retried unseen).
//!
//! - A stopped statement never reaches the server: a statement that fails
//!   during parse analysis with a unique marker takes its place, so the
//!   server aborts the transaction and skips the rest of an extended batch
//!   exactly as it would have; its error is then replaced by ddlgate's.
//! - An allowed one runs between a guard that sets `lock_timeout` (unless
//!   the client set one) and a restore; run outside a transaction, it is
//!   retried with backoff on SQLSTATE 55P03 while later client messages wait.

mod commit;
mod consistency;
mod defer;
mod event;
mod extended;
mod fill;
mod judge;
mod lookup;
mod migrate;
mod pace;
mod query;
mod queued;
mod responses;
mod sql;
#[cfg(test)]
mod tests;

pub use event::SessionInfo;

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::ddl::lexer::Reading;
use crate::ddl::{Analyzer, Catalog, Created};
use crate::process::Runtime;
use crate::protocol::backend::Report;
use crate::protocol::frame::put_frame;
use crate::protocol::frontend;
use crate::runner::Runner;

use super::pipe::Verdict;
use super::state::SessionState;

/// The server major version assumed before ParameterStatus has told it
/// (the server always sends server_version at startup).
const ASSUMED_MAJOR: u32 = 16;

/// Responses of one unit held for a possible retry, at most this much;
/// beyond it they are released and the unit is not retried.
const HOLD_LIMIT: usize = 1 << 20;

/// One ReadyForQuery the session is waiting for, and whose it is.
enum Group {
    /// The client's own request, sent at this instant.
    Client(Instant),
    /// ddlgate's guard or restore: responses dropped.
    Proxy {
        restore: bool,
    },
    /// ddlgate's catalog lookup: rows read, responses dropped.
    Lookup(Box<lookup::Lookup>),
    Unit(Box<Unit>),
}

impl Group {
    /// ddlgate's own: it leaves the session's transaction state as it was.
    fn is_ours(&self) -> bool {
        matches!(self, Group::Proxy { .. } | Group::Lookup(_))
    }
}

/// A prepared schema change let through.
#[derive(Default)]
struct Prepared {
    /// The decisions that let it through.
    events: Vec<event::Event>,
    /// What it creates each time it is executed.
    creates: Vec<Created>,
}

/// A schema change let through, from its Query (or the start of its
/// extended batch) to its ReadyForQuery.
struct Unit {
    /// The decisions that let it through, repeated as `ddl.retried`.
    events: Vec<event::Event>,
    /// Sent as an extended batch (guards must be too).
    extended: bool,
    /// A guard was sent before it, so a restore follows it.
    guard: bool,
    /// The client's messages, for a retry; `None` when it cannot be
    /// replayed (inside a transaction, behind other requests, too large).
    copy: Option<Vec<u8>>,
    attempt: u32,
    held: Vec<u8>,
    lock_timeout_hit: bool,
    /// The server answered some statement of it with an error.
    failed: bool,
    /// Warnings for the client, sent before its ReadyForQuery.
    notices: Vec<u8>,
    /// Objects it creates: the session's own once it succeeds (and its
    /// transaction commits). Temporary tables stay here; the rest are read
    /// by the recording lookup sent right behind it.
    creates: Vec<Created>,
    /// The server said a CREATE ... IF NOT EXISTS of it found an existing
    /// object (NOTICE 42P07).
    skipped_create: bool,
    /// The migration it stands for: its statement was replaced, and the
    /// runner applies it once the unit's ReadyForQuery says it ran.
    migration: Option<Box<migrate::Pending>>,
    /// The deferral it confirms in the client's transaction.
    confirming: Option<Box<defer::Confirming>>,
    /// Where it stands in the client's query string.
    part: Part,
    /// ddlgate's own statement in the client's transaction, and what of
    /// its answer the client gets.
    quiet: Quiet,
}

/// A unit of ddlgate's own statements run for the client (not ddlgate's
/// guard or lookup, which leave the session as it was).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quiet {
    /// The client's own.
    Not,
    /// Before a client's message: errors kept, the rest (and its
    /// ReadyForQuery) dropped (`fill`).
    Before,
    /// The BEGIN that opens a block around a string PostgreSQL would run
    /// as one implicit transaction; the string is scanned again once it ran.
    Open,
    /// The COMMIT or ROLLBACK that closes it: its ReadyForQuery (and
    /// errors) end the client's Query.
    Close,
}

/// A unit's place in the client's query string, sent in parts when it
/// holds a deferral (`defer`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The whole string.
    Whole,
    /// More follows: its ReadyForQuery is the client's only if it failed.
    Middle,
    /// The last part: its ReadyForQuery ends the client's Query.
    Last,
}

impl Unit {
    fn new(
        events: Vec<event::Event>,
        extended: bool,
        guard: bool,
        copy: Option<Vec<u8>>,
        notices: Vec<u8>,
    ) -> Self {
        Unit {
            events,
            extended,
            guard,
            copy,
            attempt: 0,
            held: Vec::new(),
            lock_timeout_hit: false,
            failed: false,
            notices,
            creates: Vec::new(),
            skipped_create: false,
            migration: None,
            confirming: None,
            part: Part::Whole,
            quiet: Quiet::Not,
        }
    }

    /// The permanent objects it creates, for the lookup sent behind it.
    fn take_named(&mut self) -> Vec<Created> {
        let (named, temp) = std::mem::take(&mut self.creates)
            .into_iter()
            .partition(|c| matches!(c, Created::Named { .. }));
        self.creates = temp;
        named
    }

    /// Its responses are held until its ReadyForQuery.
    fn holding(&self) -> bool {
        self.copy.is_some()
            || self.migration.is_some()
            || self.confirming.is_some()
            || self.quiet != Quiet::Not
    }
}

/// A statement replaced by a failing one: the marker in the server's error,
/// and what the client gets instead.
struct Stopped {
    marker: String,
    /// Sequence number of the group the replacement belongs to.
    group: u64,
    report: Vec<u8>,
}

struct Retry {
    sleep: Pin<Box<Sleep>>,
    unit: Box<Unit>,
    /// The client's cancel request, which ends the wait.
    cancelled: CancelSignal,
    /// Cancelled; the client's error waits for a message boundary.
    aborting: bool,
}

/// Ready once the client sends a CancelRequest for this session.
type CancelSignal = Pin<Box<tokio::sync::futures::OwnedNotified>>;

/// Where the client's side of the session stands: one value, so every
/// combination the code can reach is a state it names.
enum Request {
    /// Between requests: the next client message starts one.
    Boundary,
    /// Extended-protocol messages sent since the last Sync, with the unit
    /// they make when a schema change starts the batch.
    Batch(Option<Box<Unit>>),
    /// Later client messages wait, unscanned, until this is over.
    Held(Hold),
}

/// What held client messages wait for.
enum Hold {
    /// The catalog lookup the held message is decided with.
    Lookup,
    /// A unit whose responses are held (to be retried, or to start its
    /// migration) until its ReadyForQuery.
    Unit,
    /// A retry's backoff, or the migration applying the client's statement.
    Wait(Wait),
}

/// What the session waits for, with the client's later messages held.
enum Wait {
    /// The backoff before a unit is sent again.
    Retry(Retry),
    /// A migration applying the client's statement.
    Migration(Box<migrate::Waiting>),
    /// A backfill-traffic session's turn (`pace`).
    Pace(pace::PaceWait),
    /// The end of a string ddlgate runs in a block it opened: COMMIT if
    /// it succeeded, else ROLLBACK (`defer`).
    Close(bool),
    /// The runner registering a deferral (`defer`).
    Register(Box<defer::Registering>),
    /// The migrations the client's COMMIT committed (sync mode).
    Commit(Box<commit::CommitWait>),
}

/// What a wait produces, for the relay to carry out.
pub enum Action {
    /// Messages for the server, in front of what the client sent since.
    ToServer(Vec<u8>),
    /// Messages for the client (at a message boundary).
    ToClient(Vec<u8>),
    /// Nothing to send: the held client messages may go now.
    Rescan,
}

pub struct Gate {
    runtime: Arc<Runtime>,
    runner: Option<Arc<Runner>>,
    /// The database's request latencies, for the runner's throttle.
    latency: Option<Arc<crate::telemetry::latency::DbLatency>>,
    /// The session is backfill traffic: its requests wait for this.
    pace: Option<Arc<crate::pacing::Pacer>>,
    /// The admission its current requests run under.
    admitted: Option<crate::pacing::Admission>,
    paced: pace::Paced,
    interrupt: Arc<tokio::sync::Notify>,
    who: Arc<SessionInfo>,
    analyzer: Analyzer,
    groups: VecDeque<Group>,
    /// Groups pushed so far: the next one's sequence number. The head of
    /// `groups` is number `pushed - groups.len()`.
    pushed: u64,
    request: Request,
    /// Prepared statements that are allowed schema changes, with their
    /// decisions: a batch that starts by binding one is a unit.
    statements: HashMap<Vec<u8>, Arc<Prepared>>,
    /// Prepared statements that stand for migrations: each execution at
    /// the start of a batch is one.
    migrations: HashMap<Vec<u8>, Box<migrate::Pending>>,
    stopped: Vec<Stopped>,
    /// A restore failed (aborted transaction): send it again when idle.
    restore_pending: bool,
    /// A lookup failed inside the client's transaction: roll back to its
    /// savepoint before the client's next message.
    lookup_rollback: bool,
    /// Why the last lookup could not answer, for the decision's record.
    lookup_error: Option<String>,
    /// Scratch objects created in the open transaction, the session's own
    /// if it commits; and whether the server has said COMMIT.
    pending_commit: Vec<Created>,
    commit_seen: bool,
    /// Facts looked up for the statement being decided, and which columns
    /// were looked up (so a statement is looked up once).
    catalog: Catalog,
    looked_up: Vec<lookup::Want>,
    /// The session's role and search_path, read with the facts.
    session_facts: Option<lookup::SessionFacts>,
    /// Warnings about schema changes in the middle of an extended batch
    /// that is not a unit, for its ReadyForQuery.
    batch_notices: Vec<u8>,
    /// The client's Query being sent in parts.
    script: Option<defer::Script>,
    /// Deferrals confirmed in the open transaction.
    deferred: Vec<defer::Deferred>,
    /// A deferral registered for the held Parse.
    registered: Option<defer::Registration>,
    /// The client's string runs in a block ddlgate opened (and closes).
    own_block: bool,
    /// The extended batch being sent started with the client's BEGIN.
    batch_opened: bool,
    /// SET DEFAULTs run in the open transaction: (table, column, value).
    tx_defaults: Vec<(String, String, String)>,
    /// The client's backfills deferred in the open transaction (`fill`).
    fills: Vec<crate::ddl::plan::client::FillNulls>,
}

impl Gate {
    pub fn new(
        runtime: Arc<Runtime>,
        runner: Option<Arc<Runner>>,
        latency: Option<Arc<crate::telemetry::latency::DbLatency>>,
        who: SessionInfo,
        interrupt: Arc<tokio::sync::Notify>,
    ) -> Self {
        Gate {
            runtime: runtime.clone(),
            runner,
            latency,
            pace: None,
            admitted: None,
            paced: pace::Paced::default(),
            interrupt,
            who: Arc::new(who),
            analyzer: Analyzer::for_session(runtime.settings.ddl.trust_session_objects),
            groups: VecDeque::new(),
            pushed: 0,
            request: Request::Boundary,
            statements: HashMap::new(),
            migrations: HashMap::new(),
            stopped: Vec::new(),
            restore_pending: false,
            lookup_rollback: false,
            lookup_error: None,
            pending_commit: Vec::new(),
            commit_seen: false,
            catalog: Catalog::default(),
            looked_up: Vec::new(),
            session_facts: None,
            batch_notices: Vec::new(),
            script: None,
            deferred: Vec::new(),
            registered: None,
            tx_defaults: Vec::new(),
            fills: Vec::new(),
            own_block: false,
            batch_opened: false,
        }
    }

    /// The session is backfill traffic, paced by `pacer`.
    pub fn paced_by(mut self, pacer: Option<Arc<crate::pacing::Pacer>>) -> Self {
        self.pace = pacer;
        self
    }

    fn enabled(&self) -> bool {
        self.runtime.settings.ddl.enabled
    }

    fn lock_timeout(&self) -> Duration {
        self.runtime.settings.ddl.lock_timeout
    }

    /// Client messages read whole: SQL carriers and Sync always; Bind and
    /// Close while schema changes are prepared (to see which statement);
    /// everything of a unit's batch (to replay it).
    #[inline]
    pub fn wants_client(&self, tag: u8) -> bool {
        match tag {
            b'Q' | b'P' | b'S' => true,
            b'B' | b'C' => self.batch_unit().is_some() || !self.statements.is_empty(),
            b'E' | b'D' | b'H' => self.batch_unit().is_some(),
            _ => false,
        }
    }

    /// Server messages read whole: ReadyForQuery, ParameterStatus and
    /// errors always; everything while ddlgate's own or held responses are
    /// at the head of the queue.
    #[inline]
    pub fn wants_server(&self, tag: u8, len: usize) -> bool {
        matches!(tag, b'Z' | b'S' | b'E')
            // Whether the transaction that created scratch objects commits.
            || (tag == b'C' && !(self.pending_commit.is_empty() && self.deferred.is_empty()))
            || match self.groups.front() {
                Some(Group::Proxy { .. } | Group::Lookup(_)) => true,
                Some(Group::Unit(u)) => u.holding() && len <= HOLD_LIMIT,
                _ => false,
            }
    }

    fn push(&mut self, g: Group, state: &mut SessionState) {
        self.groups.push_back(g);
        self.pushed += 1;
        self.sync_outstanding(state);
    }

    fn pop(&mut self, state: &mut SessionState) -> Option<Group> {
        let g = self.groups.pop_front();
        if let (Some(Group::Client(sent)), Some(book), None) = (&g, &self.latency, &self.pace) {
            // The application's latency through ddlgate: ordinary requests
            // only (schema changes are not what the throttle protects, and
            // backfill traffic is not the application).
            book.record(sent.elapsed());
        }
        self.release_pace();
        if g.is_some() {
            // Stand-ins of groups now answered can no longer appear.
            let head = self.pushed - self.groups.len() as u64;
            self.stopped.retain(|s| s.group >= head);
        }
        self.sync_outstanding(state);
        g
    }

    fn sync_outstanding(&self, state: &mut SessionState) {
        let waiting = matches!(self.request, Request::Held(Hold::Wait(_)));
        state.outstanding = self.groups.len() as u32 + u32::from(waiting);
    }

    /// How the server will read the SQL of the client message at hand: as
    /// the session's ParameterStatus last said, and sure of it only when
    /// nothing of the client's is still running before it (a statement that
    /// changes `standard_conforming_strings` or `client_encoding` is
    /// reported when the server is next idle; ddlgate's own requests change
    /// neither). `boundary`: the message starts a request (read before it
    /// enters a batch or pushes any group of its own).
    fn reading(&self, boundary: bool, state: &SessionState) -> Reading {
        Reading {
            lex: state.lexical,
            sure: boundary && self.groups.iter().all(Group::is_ours),
        }
    }

    /// The next client message starts a request.
    fn at_boundary(&self) -> bool {
        matches!(self.request, Request::Boundary)
    }

    /// A message of an extended batch was sent.
    fn enter_batch(&mut self) {
        if self.at_boundary() {
            self.request = Request::Batch(None);
        }
    }

    /// The unit the extended batch being sent makes, if any.
    fn batch_unit(&self) -> Option<&Unit> {
        match &self.request {
            Request::Batch(Some(u)) => Some(u),
            _ => None,
        }
    }

    fn batch_unit_mut(&mut self) -> Option<&mut Unit> {
        match &mut self.request {
            Request::Batch(Some(u)) => Some(u),
            _ => None,
        }
    }

    /// Held client messages may go on: the relay scans them again.
    fn release(&mut self, state: &mut SessionState) {
        if let Request::Held(_) = self.request {
            self.request = Request::Boundary;
            self.sync_outstanding(state);
        }
    }

    /// Right behind a unit that creates `named` objects: the lookup that
    /// reads their OIDs (kept once the unit succeeded).
    fn record(&mut self, named: Vec<Created>, state: &mut SessionState, out: &mut Vec<u8>) {
        let in_tx = state.tx == crate::protocol::backend::TxStatus::InTransaction;
        if let Some(l) = lookup::Lookup::recording(named, in_tx, out) {
            self.push(Group::Lookup(Box::new(l)), state);
        }
    }

    /// Later client messages wait.
    fn hold(&mut self, hold: Hold, state: &mut SessionState) {
        self.request = Request::Held(hold);
        self.sync_outstanding(state);
    }

    /// A signal for cancel requests from now on (only waiters are woken,
    /// so it is registered at once).
    fn cancel_signal(&self) -> CancelSignal {
        let mut signal = Box::pin(self.interrupt.clone().notified_owned());
        signal.as_mut().enable();
        signal
    }

    /// Later client messages wait (unscanned): once this turns false, the
    /// relay scans them again.
    pub fn holding_client(&self) -> bool {
        matches!(self.request, Request::Held(_))
    }

    /// What the gate has for the relay now that no message asked for it:
    /// a retry whose backoff is over, a migration's progress and answer.
    /// `client_at_boundary`: messages for the client may be put in.
    pub fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
        state: &mut SessionState,
        client_at_boundary: bool,
    ) -> Option<Action> {
        match self.request {
            Request::Held(Hold::Wait(Wait::Retry(_))) => {
                self.poll_retry(cx, state, client_at_boundary)
            }
            Request::Held(Hold::Wait(Wait::Migration(_))) => {
                self.poll_migration(cx, state, client_at_boundary)
            }
            Request::Held(Hold::Wait(Wait::Pace(_))) => self.poll_pace(cx, state),
            Request::Held(Hold::Wait(Wait::Register(_))) => self.poll_register(cx, state),
            Request::Held(Hold::Wait(Wait::Close(_))) => self.poll_close(state),
            Request::Held(Hold::Wait(Wait::Commit(_))) => {
                self.poll_commit(cx, state, client_at_boundary)
            }
            _ => None,
        }
    }

    /// A whole client message.
    pub fn on_client(&mut self, tag: u8, body: &[u8], state: &mut SessionState) -> Verdict {
        if self.holding_client() {
            return Verdict::Hold(Vec::new());
        }
        if let Some(v) = self.pace_first(tag, state) {
            return v;
        }
        match tag {
            b'Q' => {
                let v = self.on_query(body, state);
                if self.own_block && self.at_boundary() {
                    // The string's last part is out: what the client sends
                    // next waits until ddlgate has closed its block.
                    self.hold(Hold::Unit, state);
                }
                v
            }
            b'P' => self.on_parse(body, state),
            b'B' => self.on_bind(body, state),
            b'S' => self.on_sync(body, state),
            b'C' | b'E' | b'D' | b'H' => {
                self.enter_batch();
                if let (b'C', Some((b'S', name))) = (tag, frontend::target(body)) {
                    self.statements.remove(name);
                    self.migrations.remove(name);
                }
                self.copy_into_batch(tag, body);
                Verdict::Keep
            }
            _ => Verdict::Keep,
        }
    }

    /// The header of a client message that streams through.
    pub fn on_client_streamed(&mut self, tag: u8, state: &mut SessionState) -> Verdict {
        if self.holding_client() {
            return Verdict::Hold(Vec::new());
        }
        if let Some(v) = self.pace_first(tag, state) {
            return v;
        }
        match tag {
            b'F' => self.push(Group::Client(Instant::now()), state),
            // Extended messages that stream (no schema change prepared):
            // still part of the client's batch.
            b'B' | b'E' | b'D' | b'C' | b'H' => self.enter_batch(),
            _ => {}
        }
        if let Some(b) = self.batch_unit_mut() {
            // Cannot be replayed without its bytes.
            b.copy = None;
        }
        Verdict::Keep
    }

    fn copy_into_batch(&mut self, tag: u8, body: &[u8]) {
        if let Some(b) = self.batch_unit_mut() {
            if let Some(copy) = &mut b.copy {
                put_frame(copy, tag, body);
                if copy.len() > HOLD_LIMIT {
                    b.copy = None;
                }
            }
        }
    }
}

/// A report in bytes the client can read: text ddlgate writes is UTF-8
/// (names come from the client's own SQL, decoded lossily), so for clients
/// in another encoding it is reduced to ASCII.
fn encode(mut report: Report, state: &SessionState) -> Vec<u8> {
    fn ascii(s: &str) -> String {
        s.chars()
            .map(|c| if c.is_ascii() { c } else { '?' })
            .collect()
    }
    if !state.client_utf8 {
        report.message = ascii(&report.message);
        report.detail = report.detail.as_deref().map(ascii);
        report.hint = report.hint.as_deref().map(ascii);
    }
    report.to_bytes().to_vec()
}

/// Keeps the message, with `before` (if any) in front of it.
fn keep_after(before: Vec<u8>) -> Verdict {
    if before.is_empty() {
        Verdict::Keep
    } else {
        Verdict::Before(before)
    }
}
