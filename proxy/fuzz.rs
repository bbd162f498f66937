//! Random fuzzing, on stable Rust, of everything a socket can reach: the
//! frame reader and pipe, startup packets, backend and frontend message
//! readers, the relay with its DDL gate (Parse/Bind/Execute included), the
//! authentication relay and SCRAM bridge, and the SQL lexer, fast path,
//! classifier, PL/pgSQL reader, planner and schema reader.
//!
//! Inputs are generated from a seed: structure-aware (real message shapes
//! and SQL fragments, so the deep paths are reached) and then mutated
//! (flipped, cut, spliced bytes, wild length words). A target fails by
//! panicking; [`run`] reports the seed and input that did it. The test suite
//! runs a short pass of every target; `bench/fuzz.sh` runs millions.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Settings;
use crate::ddl::{Analyzer, Catalog, Mode};
use crate::process::Runtime;
use crate::protocol::{backend, frame, frontend, startup};
use crate::upstream::UpstreamTarget;

/// SQL fragments that, spliced, reach the classifier's rules.
const SQL: &[&str] = &[
    "ALTER TABLE ",
    "t ",
    "\"T\" ",
    "ADD COLUMN ",
    "c ",
    "int ",
    "varchar(10) ",
    "DEFAULT ",
    "random() ",
    "now() ",
    "NOT NULL ",
    "CHECK (a > 0) ",
    "NOT VALID ",
    "CONSTRAINT k ",
    "FOREIGN KEY (a) REFERENCES u ",
    "UNIQUE (a) ",
    "PRIMARY KEY (id) ",
    "USING INDEX i ",
    "CREATE ",
    "INDEX ",
    "CONCURRENTLY ",
    "ON ",
    "ONLY ",
    "DROP ",
    "TYPE ",
    "SET ",
    "RENAME ",
    "TO ",
    "VALIDATE ",
    "DETACH PARTITION ",
    "FOR VALUES FROM (1) TO (MAXVALUE) ",
    "FOR VALUES IN ('a', NULL) ",
    "FOR VALUES ",
    "ATTACH PARTITION ",
    "PARTITION OF ",
    "DEFAULT ",
    "TRUNCATE ",
    "VACUUM (FULL) ",
    "CLUSTER ",
    "LOCK ",
    "IN ",
    "MODE ",
    "REINDEX ",
    "DO ",
    "$$ BEGIN ",
    "EXECUTE 'DROP TABLE t' ",
    "format('%I', x) ",
    "END $$ ",
    "$x$",
    "$1 ",
    "'",
    "''",
    "E'\\'",
    "\"",
    "--",
    "\n",
    "/*",
    "*/",
    ";",
    ",",
    ".",
    "(",
    ")",
    "BEGIN;",
    "COMMIT;",
    "ROLLBACK;",
    "::",
    "COLLATE \"C\" ",
    "IF EXISTS ",
    "SCHEMA ",
    "VIEW ",
    "DOMAIN d ",
    "IDENTITY ",
    "GENERATED ALWAYS ",
    "SELECT 1",
    "COPY t FROM STDIN",
    "ddlgate:allow x ",
    "\u{e9}",
    " ",
];

/// Client message tags the relay knows, and some it does not.
const CLIENT_TAGS: &[u8] = b"QPBEDCSHFXdcfpz";
/// Server message tags the relay knows, and some it does not.
const SERVER_TAGS: &[u8] = b"ZECDTSNA123ItnsGHWdcKRvq";

fn sql(rng: &mut StdRng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.random_range(0..16) {
        if rng.random_bool(0.05) {
            out.push(rng.random());
        } else {
            out.extend_from_slice(SQL[rng.random_range(0..SQL.len())].as_bytes());
        }
    }
    out
}

fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

/// A frontend message body of the kind `tag` names, mostly well formed.
fn client_body(tag: u8, rng: &mut StdRng) -> Vec<u8> {
    let mut b = Vec::new();
    let name: &[u8] = [&b""[..], b"s1", b"ddlgate_guard"][rng.random_range(0..3)];
    match tag {
        b'Q' => cstr(&mut b, &sql(rng)),
        b'P' => {
            cstr(&mut b, name);
            cstr(&mut b, &sql(rng));
            b.extend_from_slice(&0u16.to_be_bytes());
        }
        b'B' => {
            cstr(&mut b, b"");
            cstr(&mut b, name);
            b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        b'E' => {
            cstr(&mut b, b"");
            b.extend_from_slice(&0u32.to_be_bytes());
        }
        b'C' | b'D' => {
            b.push(if rng.random() { b'S' } else { b'P' });
            cstr(&mut b, name);
        }
        _ => b.extend((0..rng.random_range(0..8)).map(|_| rng.random::<u8>())),
    }
    b
}

/// A backend message body of the kind `tag` names, mostly well formed.
fn server_body(tag: u8, rng: &mut StdRng) -> Vec<u8> {
    let mut b = Vec::new();
    match tag {
        b'Z' => b.push(b"ITEx"[rng.random_range(0..4)]),
        b'E' | b'N' => {
            b.push(b'S');
            cstr(
                &mut b,
                [&b"ERROR"[..], b"FATAL", b"WARNING"][rng.random_range(0..3)],
            );
            b.push(b'C');
            cstr(
                &mut b,
                [&b"55P03"[..], b"42601", b"22P02", b"57014"][rng.random_range(0..4)],
            );
            b.push(b'M');
            cstr(
                &mut b,
                [&b"x"[..], b"invalid input syntax: \"ddlgate:block:1-1\""][rng.random_range(0..2)],
            );
            b.push(0);
        }
        b'S' => {
            let (k, v): (&[u8], &[u8]) = [
                (&b"TimeZone"[..], &b"UTC"[..]),
                (b"server_version", b"9.6"),
                (b"client_encoding", b"LATIN1"),
                (b"x", b""),
            ][rng.random_range(0..4)];
            cstr(&mut b, k);
            cstr(&mut b, v);
        }
        b'D' => {
            let n = rng.random_range(0..4u16);
            b.extend_from_slice(&n.to_be_bytes());
            for _ in 0..n {
                if rng.random_bool(0.2) {
                    b.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    let v: &[u8] =
                        [&b"t"[..], b"f", b"0", b"8192", b"integer", b"p1"][rng.random_range(0..6)];
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b'C' => cstr(&mut b, b"SELECT 1"),
        b'R' => {
            let code: i32 = [0, 3, 5, 10, 11, 12, 7][rng.random_range(0..7)];
            b.extend_from_slice(&code.to_be_bytes());
            match code {
                5 => b.extend_from_slice(&[1, 2, 3, 4]),
                10 => {
                    cstr(&mut b, b"SCRAM-SHA-256");
                    cstr(&mut b, b"SCRAM-SHA-256-PLUS");
                    b.push(0);
                }
                11 => b.extend_from_slice(b"r=abc,s=QSXCR+Q6sek8bf92,i=4096"),
                12 => b.extend_from_slice(b"v=abcd"),
                _ => {}
            }
        }
        b'K' => b.extend_from_slice(&[0, 0, 0, 7, 1, 2, 3, 4]),
        _ => b.extend((0..rng.random_range(0..8)).map(|_| rng.random::<u8>())),
    }
    b
}

/// A stream of frames, some with wild length words.
fn frames(rng: &mut StdRng, tags: &[u8], body: fn(u8, &mut StdRng) -> Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.random_range(0..12) {
        let tag = tags[rng.random_range(0..tags.len())];
        let b = body(tag, rng);
        if rng.random_bool(0.02) {
            out.push(tag);
            out.extend_from_slice(&rng.random::<i32>().to_be_bytes());
            out.extend_from_slice(&b);
        } else {
            frame::put_frame(&mut out, tag, &b);
        }
    }
    out
}

/// Flips, cuts and splices a few bytes, sometimes.
fn mutate(rng: &mut StdRng, data: &mut Vec<u8>) {
    if data.is_empty() || rng.random_bool(0.6) {
        return;
    }
    for _ in 0..rng.random_range(1..4) {
        let i = rng.random_range(0..data.len());
        match rng.random_range(0..4) {
            0 => data[i] = rng.random(),
            1 => data.truncate(i),
            2 => data.insert(i, rng.random()),
            _ => {
                let j = rng.random_range(i..data.len());
                let piece = data[i..j].to_vec();
                data.splice(i..i, piece);
            }
        }
        if data.is_empty() {
            return;
        }
    }
}

/// One fuzz target: what it is called and how it runs one seed.
pub struct Target {
    pub name: &'static str,
    run: fn(&mut StdRng, &mut Env),
}

/// What targets share across inputs: a runtime and the proxy's settings.
pub struct Env {
    rt: tokio::runtime::Runtime,
    runtime: Arc<Runtime>,
    /// The last input, for the report when a target panics.
    last: Vec<u8>,
}

impl Env {
    pub fn new() -> Self {
        let target = UpstreamTarget::parse("postgres://127.0.0.1:1/fuzz?sslmode=disable")
            .expect("literal URL");
        let mut settings = Settings::for_upstream(target);
        // Retries sleep: none, so one input is one pass.
        settings.ddl.lock_retries = 0;
        Env {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            runtime: Arc::new(Runtime::build(settings).expect("settings")),
            last: Vec::new(),
        }
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "pipe",
        run: |rng, env| {
            let mut data = frames(rng, CLIENT_TAGS, client_body);
            mutate(rng, &mut data);
            let verdicts: Vec<u8> = (0..8).map(|_| rng.random()).collect();
            env.last.clone_from(&data);
            let max = [16usize, 1 << 10, 1 << 20][rng.random_range(0..3)];
            crate::session::fuzz::pipe(&data, &verdicts, max);
        },
    },
    Target {
        name: "startup",
        run: |rng, env| {
            let mut p = Vec::new();
            let code: u32 = [80877103, 80877104, 80877102, 196608, 131072][rng.random_range(0..5)];
            p.extend_from_slice(&0u32.to_be_bytes());
            p.extend_from_slice(&code.to_be_bytes());
            for _ in 0..rng.random_range(0..4) {
                cstr(&mut p, b"user");
                cstr(&mut p, &sql(rng));
            }
            p.push(0);
            let len = p.len() as u32;
            p[..4].copy_from_slice(&len.to_be_bytes());
            mutate(rng, &mut p);
            env.last.clone_from(&p);
            if p.len() < 4 {
                return;
            }
            // As the session reads it: the length word first, then that many bytes.
            if let Ok(n) = startup::packet_len([p[0], p[1], p[2], p[3]]) {
                if p.len() >= n {
                    if let Ok(startup::StartupPacket::Startup(m)) =
                        startup::decode(Bytes::copy_from_slice(&p[..n]))
                    {
                        let _ = m.params().count();
                        let _ = m.param("user");
                    }
                }
            }
        },
    },
    Target {
        name: "messages",
        run: |rng, env| {
            let tag = SERVER_TAGS[rng.random_range(0..SERVER_TAGS.len())];
            let mut b = if rng.random() {
                server_body(tag, rng)
            } else {
                client_body(tag, rng)
            };
            mutate(rng, &mut b);
            env.last.clone_from(&b);
            let _ = frame::parse_header(&b, 1 << 20);
            let _ = frame::take_cstr(&b);
            let _ = backend::ready_for_query_status(&b);
            let _ = backend::tx_status_after(&b);
            let _ = backend::parameter_status(&b);
            let _ = backend::error_field(&b, b'C');
            let _ = backend::data_row(&b);
            let _ = backend::error_is_fatal(&b);
            let _ = backend::auth_code(&b);
            let _ = backend::sasl_mechanisms(&b);
            let _ = frontend::bind_names(&b);
            let _ = frontend::target(&b);
            let _ = frontend::execute_portal(&b);
        },
    },
    Target {
        name: "relay",
        run: |rng, env| {
            let mut client = frames(rng, CLIENT_TAGS, client_body);
            let mut server = frames(rng, SERVER_TAGS, server_body);
            mutate(rng, &mut client);
            mutate(rng, &mut server);
            let chunks: Vec<u8> = (0..rng.random_range(0..4)).map(|_| rng.random()).collect();
            env.last = [client.as_slice(), b"|", server.as_slice()].concat();
            crate::session::fuzz::relay(&env.rt, &env.runtime, &client, &server, &chunks);
        },
    },
    Target {
        name: "auth",
        run: |rng, env| {
            let mut server = frames(rng, b"RRRSKZEN", server_body);
            let mut client = frames(rng, b"pp", |_, rng| {
                let mut b = sql(rng);
                b.push(0);
                b
            });
            mutate(rng, &mut server);
            mutate(rng, &mut client);
            env.last = [client.as_slice(), b"|", server.as_slice()].concat();
            crate::session::fuzz::auth(&env.rt, &client, &server, rng.random());
        },
    },
    Target {
        name: "sql",
        run: |rng, env| {
            let mut s = sql(rng);
            mutate(rng, &mut s);
            env.last.clone_from(&s);
            let lex = crate::ddl::lexer::Lexical::ALL[rng.random_range(0..8)];
            let _ = crate::ddl::fastpath::may_contain_ddl(&s, lex);
            let _ = crate::ddl::fastpath::may_contain_ddl_unsure(&s, lex);
            let _ = crate::ddl::lexer::redact_in(&s, lex);
            let _ = crate::ddl::lexer::leading_comments(&s);
            let _ = crate::ddl::policy::override_rules(&s);
            let mut a = Analyzer::for_session(rng.random());
            let mode = if rng.random() {
                Mode::QueryString
            } else {
                Mode::Script
            };
            let reading = crate::ddl::lexer::Reading {
                lex,
                sure: rng.random(),
            };
            for st in a.analyze_read(
                &s,
                reading,
                mode,
                rng.random(),
                9 + rng.random_range(0..9),
                &Catalog::default(),
            ) {
                if let Some(p) = st.plan {
                    let _ = p.render();
                }
            }
            let text = String::from_utf8_lossy(&s);
            let _ = crate::ddl::plpgsql::embedded(&text);
            // Facts that open the fact-driven plans (ATTACH's bound).
            let mut facts = Catalog::default();
            facts.partition_keys.insert("t".into(), "RANGE (k)".into());
            facts
                .partition_keys
                .insert("u".into(), "LIST (\"T\")".into());
            facts.default_partitions.insert("t".into(), None);
            facts.default_partitions.insert("u".into(), None);
            let _ = crate::ddl::plan::plan(&text, &facts, &|_| true);
            let _ = crate::ddl::schema::read_schema(&s);
        },
    },
];

/// What a run did.
#[derive(Debug, Clone)]
pub struct Stats {
    pub target: &'static str,
    pub inputs: u64,
    pub elapsed: Duration,
}

/// Runs `target` on `inputs` inputs from `seed`. A panic is reported with
/// its seed and input, then propagated.
pub fn run(target: &Target, inputs: u64, seed: u64, env: &mut Env) -> Stats {
    let start = Instant::now();
    for i in 0..inputs {
        let s = seed.wrapping_add(i);
        let mut rng = StdRng::seed_from_u64(s);
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&mut rng, env)));
        if let Err(p) = outcome {
            eprintln!(
                "fuzz target {} panicked on seed {s}; input ({} bytes): {:?}",
                target.name,
                env.last.len(),
                String::from_utf8_lossy(&env.last)
            );
            std::panic::resume_unwind(p);
        }
    }
    Stats {
        target: target.name,
        inputs,
        elapsed: start.elapsed(),
    }
}
