//! The gate driven without I/O: client and server frames are scripted, fed
//! through the same [`Pipe`]s and entry points the relay uses, and what
//! each side would receive is read back as one line per message.

use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::BytesMut;

use super::{sql, Action, Gate, SessionInfo};
use crate::config::Settings;
use crate::process::Runtime;
use crate::protocol::backend::{Report, Severity};
use crate::protocol::frame::{parse_header, put_frame, take_cstr, FrameError, HEADER_LEN};
use crate::protocol::{frontend, sqlstate};
use crate::session::pipe::{Handler, Pipe, Seen, Verdict};
use crate::session::state::SessionState;
use crate::upstream::UpstreamTarget;

const LOCK_TIMEOUT: Duration = Duration::from_secs(2);

struct Script {
    gate: Gate,
    state: SessionState,
    interrupt: Arc<tokio::sync::Notify>,
    c2s: Pipe,
    s2c: Pipe,
}

struct ClientSide<'a>(&'a mut Gate, &'a mut SessionState);
struct ServerSide<'a>(&'a mut Gate, &'a mut SessionState);

impl Handler for ClientSide<'_> {
    type Error = FrameError;
    fn whole(&mut self, tag: u8, _len: usize) -> bool {
        self.0.wants_client(tag)
    }
    fn seen(&mut self, seen: Seen<'_>) -> Result<Verdict, FrameError> {
        Ok(match seen {
            Seen::Whole(tag, body) => self.0.on_client(tag, body, self.1),
            Seen::Streamed(tag) => self.0.on_client_streamed(tag, self.1),
        })
    }
}

impl Handler for ServerSide<'_> {
    type Error = FrameError;
    fn whole(&mut self, tag: u8, len: usize) -> bool {
        self.0.wants_server(tag, len)
    }
    fn seen(&mut self, seen: Seen<'_>) -> Result<Verdict, FrameError> {
        Ok(match seen {
            Seen::Whole(tag, body) => {
                self.1.observe_server(tag, body);
                self.0.on_server(tag, body, self.1)
            }
            Seen::Streamed(_) => self.0.on_server_streamed(),
        })
    }
}

impl Script {
    fn new() -> Self {
        let target = UpstreamTarget::parse("postgres://127.0.0.1:1").unwrap();
        let mut settings = Settings::for_upstream(target);
        settings.ddl.lock_timeout = LOCK_TIMEOUT;
        let runtime = Arc::new(Runtime::build(settings).unwrap());
        let interrupt = Arc::new(tokio::sync::Notify::new());
        let who = SessionInfo {
            user: "app".into(),
            database: "app".into(),
            application_name: String::new(),
            client_addr: "127.0.0.1:1".parse().unwrap(),
        };
        let mut state = SessionState::default();
        state.observe_server(b'S', b"server_version\x0015.4\x00");
        Script {
            gate: Gate::new(runtime, None, None, who, interrupt.clone()),
            state,
            interrupt,
            c2s: Pipe::new(BytesMut::new()),
            s2c: Pipe::new(BytesMut::new()),
        }
    }

    /// The client sends `bytes`: what reaches the server.
    fn client(&mut self, bytes: &[u8]) -> Vec<String> {
        self.c2s.buf.extend_from_slice(bytes);
        self.scan_client();
        self.sent()
    }

    /// The server sends `bytes`: what reaches the client. Client messages
    /// the gate let go are scanned again, as the relay does.
    fn server(&mut self, bytes: &[u8]) -> Vec<String> {
        self.s2c.buf.extend_from_slice(bytes);
        let held = self.gate.holding_client();
        let mut side = ServerSide(&mut self.gate, &mut self.state);
        self.s2c.scan(usize::MAX, &mut side).unwrap();
        if held && !self.gate.holding_client() {
            self.scan_client();
        }
        let out = self.s2c.ready().to_vec();
        self.s2c.consume(out.len());
        show(&out, false)
    }

    fn scan_client(&mut self) {
        let mut side = ClientSide(&mut self.gate, &mut self.state);
        self.c2s.scan(1 << 20, &mut side).unwrap();
    }

    /// What is ready for the server and not yet taken.
    fn sent(&mut self) -> Vec<String> {
        let out = self.c2s.ready().to_vec();
        self.c2s.consume(out.len());
        show(&out, true)
    }

    /// The relay's poll when nothing else happened.
    fn poll(&mut self) -> Option<Action> {
        let mut cx = Context::from_waker(Waker::noop());
        let at_boundary = self.s2c.at_boundary();
        let action = self.gate.poll(&mut cx, &mut self.state, at_boundary);
        match &action {
            Some(Action::ToServer(bytes)) => self.c2s.insert_ready(bytes),
            Some(Action::ToClient(bytes)) => {
                self.s2c.inject(bytes);
                self.scan_client();
            }
            Some(Action::Rescan) => self.scan_client(),
            None => {}
        }
        action
    }

    /// Polls, and reads what reached the client.
    fn poll_to_client(&mut self) -> Vec<String> {
        self.poll();
        let out = self.s2c.ready().to_vec();
        self.s2c.consume(out.len());
        show(&out, false)
    }

    /// The marker (from `prefix` on) in the first message sent that has one.
    fn sent_marker(&self, sent: &[String], prefix: &str) -> String {
        let line = sent
            .iter()
            .find(|l| l.contains(prefix))
            .expect("a stand-in");
        let at = line.find(prefix).unwrap();
        line[at..].split(['\'', ' ']).next().unwrap().to_owned()
    }
}

/// One line per message: the tag and what tells it apart. ddlgate's own
/// lock_timeout statements are shown as `<guard>` and `<restore>`.
fn show(bytes: &[u8], to_server: bool) -> Vec<String> {
    let guard = sql::guard_sql(LOCK_TIMEOUT);
    let restore = sql::restore_sql(LOCK_TIMEOUT);
    let own = |s: &str| {
        if s == guard {
            "<guard>".to_owned()
        } else if s == restore {
            "<restore>".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut lines = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let h = parse_header(&bytes[at..], usize::MAX).unwrap().unwrap();
        let body = &bytes[at + HEADER_LEN..at + h.frame_len()];
        let text =
            |b: &[u8]| String::from_utf8_lossy(take_cstr(b).map_or(b, |(s, _)| s)).into_owned();
        let field = |code: u8| {
            crate::protocol::backend::error_field(body, code)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let line = match (to_server, h.tag) {
            (true, b'Q') => format!("Q {}", own(&text(body))),
            (true, b'P') => {
                let (name, rest) = take_cstr(body).unwrap();
                let name = String::from_utf8_lossy(name);
                format!("P {name:?} {}", own(&text(rest)))
            }
            (true, tag) => (tag as char).to_string(),
            (false, b'C') => format!("C {}", text(body)),
            (false, b'Z') => format!("Z {}", body[0] as char),
            (false, b'E' | b'N') => {
                format!("{} {} {}", h.tag as char, field(b'C'), field(b'M'))
            }
            (false, tag) => (tag as char).to_string(),
        };
        lines.push(line);
        at += h.frame_len();
    }
    lines
}

fn query(sql: &str) -> Vec<u8> {
    let mut out = Vec::new();
    frontend::query(sql.as_bytes(), &mut out);
    out
}

fn complete(tag: &str) -> Vec<u8> {
    let mut out = Vec::new();
    put_frame(&mut out, b'C', format!("{tag}\0").as_bytes());
    out
}

fn ready(status: u8) -> Vec<u8> {
    let mut out = Vec::new();
    put_frame(&mut out, b'Z', &[status]);
    out
}

fn error(code: &str, message: &str) -> Vec<u8> {
    Report::new(Severity::Error, code.to_owned(), message.to_owned())
        .to_bytes()
        .to_vec()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn strs(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

#[test]
fn ordinary_traffic_passes_untouched() {
    let mut s = Script::new();
    assert_eq!(s.client(&query("SELECT 1")), strs(&["Q SELECT 1"]));
    assert_eq!(s.state.outstanding, 1);
    let reply = cat(&[&complete("SELECT 1"), &ready(b'I')]);
    assert_eq!(s.server(&reply), strs(&["C SELECT 1", "Z I"]));
    assert_eq!(s.state.outstanding, 0);
    assert!(!s.gate.holding_client());
}

#[test]
fn an_allowed_change_runs_between_guard_and_restore_and_the_client_sees_only_its_answer() {
    let mut s = Script::new();
    let sent = s.client(&query("ALTER TABLE t ADD COLUMN c int"));
    assert_eq!(
        sent,
        strs(&[
            "Q <guard>",
            "Q ALTER TABLE t ADD COLUMN c int",
            "Q <restore>"
        ])
    );
    // The unit's responses are held (it may be retried): later client
    // messages wait behind it.
    assert!(s.gate.holding_client());
    assert!(s.client(&query("SELECT 2")).is_empty());
    let guard = cat(&[&complete("SELECT 1"), &ready(b'I')]);
    assert!(s.server(&guard).is_empty());
    let unit = cat(&[&complete("ALTER TABLE"), &ready(b'I')]);
    assert_eq!(s.server(&unit), strs(&["C ALTER TABLE", "Z I"]));
    // Released: the held query goes on, behind the restore.
    assert!(!s.gate.holding_client());
    assert_eq!(s.sent(), strs(&["Q SELECT 2"]));
    assert!(s
        .server(&cat(&[&complete("SELECT 0"), &ready(b'I')]))
        .is_empty());
    let second = cat(&[&complete("SELECT 1"), &ready(b'I')]);
    assert_eq!(s.server(&second), strs(&["C SELECT 1", "Z I"]));
    assert_eq!(s.state.outstanding, 0);
}

#[tokio::test(start_paused = true)]
async fn a_lock_timeout_is_retried_after_a_backoff_unseen_by_the_client() {
    let mut s = Script::new();
    s.client(&query("ALTER TABLE t ADD COLUMN c int"));
    s.server(&cat(&[&complete("SELECT 1"), &ready(b'I')]));
    let timed_out = cat(&[
        &error(
            sqlstate::LOCK_NOT_AVAILABLE,
            "canceling statement due to lock timeout",
        ),
        &ready(b'I'),
    ]);
    let seen = s.server(&timed_out);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with("N 01000 ddlgate: the schema change gave up waiting for its lock"),
        "{seen:?}"
    );
    assert!(s
        .server(&cat(&[&complete("SELECT 0"), &ready(b'I')]))
        .is_empty());
    // The wait counts as a request in flight; the client's next one waits.
    assert_eq!(s.state.outstanding, 1);
    assert!(s.client(&query("SELECT 2")).is_empty());
    assert!(s.poll().is_none(), "sent again before its backoff");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(matches!(s.poll(), Some(Action::ToServer(_))));
    assert_eq!(
        s.sent(),
        strs(&[
            "Q <guard>",
            "Q ALTER TABLE t ADD COLUMN c int",
            "Q <restore>"
        ])
    );
    s.server(&cat(&[&complete("SELECT 1"), &ready(b'I')]));
    let done = cat(&[&complete("ALTER TABLE"), &ready(b'I')]);
    assert_eq!(s.server(&done), strs(&["C ALTER TABLE", "Z I"]));
    assert_eq!(s.sent(), strs(&["Q SELECT 2"]));
}

#[tokio::test(start_paused = true)]
async fn a_cancel_during_the_backoff_answers_the_client_and_sends_nothing_again() {
    let mut s = Script::new();
    s.client(&query("ALTER TABLE t ADD COLUMN c int"));
    s.server(&cat(&[&complete("SELECT 1"), &ready(b'I')]));
    s.server(&cat(&[
        &error(
            sqlstate::LOCK_NOT_AVAILABLE,
            "canceling statement due to lock timeout",
        ),
        &ready(b'I'),
    ]));
    s.server(&cat(&[&complete("SELECT 0"), &ready(b'I')]));
    s.interrupt.notify_waiters();
    assert_eq!(
        s.poll_to_client(),
        strs(&["E 57014 canceling statement due to user request", "Z I"])
    );
    assert!(!s.gate.holding_client());
    assert_eq!(s.state.outstanding, 0);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(s.poll().is_none());
    assert!(s.sent().is_empty());
}

#[test]
fn an_extended_batch_is_guarded_as_a_whole_and_its_sync_carries_the_restore() {
    let mut s = Script::new();
    let mut batch = Vec::new();
    frontend::parse(b"", b"ALTER TABLE t ADD COLUMN c int", &mut batch);
    frontend::bind(b"", b"", &mut batch);
    frontend::execute(b"", &mut batch);
    frontend::sync(&mut batch);
    let guard_batch = ["C", "P \"ddlgate_guard\" <guard>", "B", "E", "C", "C", "S"];
    let restore_batch = [
        "C",
        "P \"ddlgate_guard\" <restore>",
        "B",
        "E",
        "C",
        "C",
        "S",
    ];
    let mut expected: Vec<&str> = guard_batch.to_vec();
    expected.extend(["P \"\" ALTER TABLE t ADD COLUMN c int", "B", "E", "S"]);
    expected.extend(restore_batch);
    assert_eq!(s.client(&batch), strs(&expected));
    let own = cat(&[
        b"3\0\0\0\x04",
        b"1\0\0\0\x04",
        b"2\0\0\0\x04",
        &complete("SELECT 1"),
    ]);
    let own = cat(&[&own, b"3\0\0\0\x04", b"3\0\0\0\x04", &ready(b'I')]);
    assert!(s.server(&own).is_empty());
    let unit = cat(&[
        b"1\0\0\0\x04",
        b"2\0\0\0\x04",
        &complete("ALTER TABLE"),
        &ready(b'I'),
    ]);
    assert_eq!(s.server(&unit), strs(&["1", "2", "C ALTER TABLE", "Z I"]));
    assert!(s.server(&own).is_empty());
    assert_eq!(s.state.outstanding, 0);
}

#[test]
fn a_statement_waits_for_its_lookup_and_a_failed_lookup_decides_without_facts() {
    let mut s = Script::new();
    let sent = s.client(&query("CREATE INDEX i ON t (a)"));
    // Only the lookup goes out (the statement parsed, never run, by the
    // server's parser); the statement itself is held.
    assert!(
        sent.iter()
            .filter(|l| l.contains("CREATE INDEX"))
            .all(|l| l.starts_with("P \"ddlgate_lookup_syntax\"")),
        "{sent:?}"
    );
    assert_eq!(sent.last().map(String::as_str), Some("S"));
    assert!(s.gate.holding_client());
    let failed = cat(&[&error("XX000", "lookup broke"), &ready(b'I')]);
    assert!(s.server(&failed).is_empty());
    // Decided without facts: a CREATE INDEX that would block writes is
    // stopped (no runner here), through a stand-in that fails at parse.
    let sent = s.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let marker = s.sent_marker(&sent, "ddlgate:block:");
    let stand_in = format!("invalid input syntax for type integer: \"{marker}\"");
    let answer = s.server(&cat(&[&error("22P02", &stand_in), &ready(b'I')]));
    assert_eq!(answer.len(), 2, "{answer:?}");
    // ZD002: a change that has a safe plan, blocked with it in HINT.
    assert!(
        answer[0].starts_with("E ZD002 ddlgate: create-index-non-concurrent"),
        "{answer:?}"
    );
    assert_eq!(answer[1], "Z I");
    assert_eq!(s.state.outstanding, 0);
}

/// A syntax error as the server's parser reports it (with a position).
fn syntax_error(position: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (f, v) in [
        (b'S', "ERROR"),
        (b'C', "42601"),
        (b'M', "syntax error at or near \";\""),
        (b'P', position),
    ] {
        body.push(f);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = Vec::new();
    put_frame(&mut out, b'E', &body);
    out
}

#[test]
fn a_statement_the_servers_parser_rejects_goes_as_sent() {
    let mut s = Script::new();
    let sent = s.client(&query("drop index;"));
    assert!(
        sent.iter()
            .any(|l| l == "P \"ddlgate_lookup_syntax\" drop index"),
        "{sent:?}"
    );
    assert!(s
        .server(&cat(&[&syntax_error("11"), &ready(b'I')]))
        .is_empty());
    // The client's own text, unchanged: the server's error is the answer.
    assert_eq!(s.sent(), strs(&["Q drop index;"]));
    let answer = s.server(&cat(&[&syntax_error("11"), &ready(b'I')]));
    assert_eq!(
        answer,
        strs(&["E 42601 syntax error at or near \";\"", "Z I"])
    );
    // A 42601 without a position is not the parser's verdict on the
    // statement (several commands in one Parse): decided without facts.
    s.client(&query("drop index i;"));
    let multiple = error(
        "42601",
        "cannot insert multiple commands into a prepared statement",
    );
    assert!(s.server(&cat(&[&multiple, &ready(b'I')])).is_empty());
    let sent = s.sent();
    assert!(
        sent.iter().any(|l| l.contains("ddlgate:block:")),
        "{sent:?}"
    );
}

/// Backfill traffic: a marked session's request waits, unsent, for its
/// pacer (one a second here, one slot); what it sent meanwhile follows it
/// in order, and the next request waits for the next token.
#[tokio::test(start_paused = true)]
async fn backfill_traffic_waits_for_its_turn_before_it_is_sent() {
    let pacing = crate::config::PacingSettings {
        roles: vec!["app".into()],
        application_names: Vec::new(),
        max_concurrent: 1,
        max_per_sec: 1.0,
        app_p99_factor: 1.5,
        latency_window: Duration::from_secs(3),
    };
    let pacers = crate::pacing::Pacers::new(Arc::default());
    let mut s = Script::new();
    s.gate = std::mem::replace(&mut s.gate, Script::new().gate)
        .paced_by(Some(pacers.database("app", &pacing)));
    // The first request is held until the pacer admits it (at once: a
    // full bucket), then goes with what followed it.
    assert!(s.client(&query("SELECT 1")).is_empty());
    assert!(matches!(s.poll(), Some(Action::Rescan)));
    assert_eq!(s.sent(), ["Q SELECT 1"]);
    assert_eq!(
        s.server(&cat(&[&complete("SELECT 1"), &ready(b'I')])),
        ["C SELECT 1", "Z I"]
    );
    // The bucket is empty: the next one waits a second.
    assert!(s.client(&query("SELECT 2")).is_empty());
    assert!(s.poll().is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(s.poll().is_none());
    assert!(s.client(&query("SELECT 3")).is_empty(), "sent out of turn");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(matches!(s.poll(), Some(Action::Rescan)));
    // Both go now: they were sent while the first was admitted.
    assert_eq!(s.sent(), ["Q SELECT 2", "Q SELECT 3"]);
}
