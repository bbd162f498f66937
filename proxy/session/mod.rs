//! One client connection, from accept to close, as an explicit sequence of
//! phases: negotiation (SSL/GSS/cancel), startup, upstream connect,
//! authentication, relay. Runs inside one tracing span whose fields are
//! filled in as they become known.

mod auth;
mod conn;
mod console;
mod control;
mod error;
pub mod fuzz;
mod gate;
mod negotiate;
mod pipe;
mod relay;
mod state;

pub use error::SessionError;
pub use relay::End;
pub use state::SessionState;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{timeout_at, Instant};
use tokio_util::either::Either;
use tracing::field::Empty;
use tracing::{debug, info, info_span, warn, Instrument, Span};

use crate::process::{Admission, CancelTarget, Registration, Runtime, SessionEntry, Shared, Slot};
use crate::protocol::startup::CancelKey;
use crate::upstream;

use conn::{Conn, ReadError};
use control::Control;
use gate::{Gate, SessionInfo};
use negotiate::{negotiate, report, Opening};
use pipe::Pipe;
use relay::Relay;

/// The database name that reaches the admin console instead of the
/// upstream.
pub const CONSOLE_DATABASE: &str = "ddlgate";

/// How a session ended without error.
#[derive(Debug)]
enum Outcome {
    Cancel,
    Relayed(End),
    Console,
}

/// Serves one client connection to completion.
pub async fn serve<C>(
    io: C,
    peer: SocketAddr,
    shared: Arc<Shared>,
    slot: Slot,
    admission: Admission,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let runtime = shared.runtime();
    let id = shared.next_id();
    let span = info_span!(
        "session",
        id,
        client = %peer,
        user = Empty,
        database = Empty,
        application_name = Empty,
        backend_pid = Empty,
        backfill_traffic = Empty,
    );
    let started = StdInstant::now();
    let result = run(io, peer, id, &shared, runtime, admission, &span)
        .instrument(span.clone())
        .await;
    let _enter = span.enter();
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(Outcome::Cancel) => {}
        Ok(Outcome::Relayed(end)) => info!(?end, duration_secs = secs, "session closed"),
        Ok(Outcome::Console) => info!(duration_secs = secs, "admin console session closed"),
        Err(e) => {
            shared.metrics.error(e.kind());
            match &e {
                SessionError::Client(_) | SessionError::UpstreamRejected => {
                    debug!(error = %e, duration_secs = secs, "session ended during startup")
                }
                _ => warn!(error = %e, duration_secs = secs, "session failed"),
            }
        }
    }
    drop(slot);
}

async fn run<C>(
    io: C,
    peer: SocketAddr,
    id: u64,
    shared: &Shared,
    runtime: Arc<Runtime>,
    admission: Admission,
    span: &Span,
) -> Result<Outcome, SessionError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let settings = &runtime.settings;
    let deadline = Instant::now() + settings.handshake_timeout;
    let opening = negotiate(io, runtime.tls_acceptor.as_ref(), deadline).await?;
    let (mut client, startup) = match opening {
        Opening::Cancel(key) => {
            cancel(shared, &key).await;
            return Ok(Outcome::Cancel);
        }
        Opening::Startup { conn, msg } => (conn, msg),
    };
    for (key, field) in [
        ("user", "user"),
        ("database", "database"),
        ("application_name", "application_name"),
    ] {
        if let Some(v) = startup.param(key) {
            span.record(field, v.as_str());
        }
    }
    if let Admission::OverLimit(max) = admission {
        return Err(report(&mut client.io, SessionError::TooManyClients(max)).await);
    }
    if shared.drain.is_cancelled() {
        return Err(report(&mut client.io, SessionError::ShuttingDown).await);
    }

    let client_tls = matches!(client.io, Either::Right(_));
    // Routing: the admin console, or the upstream.
    if startup.param("database").as_deref() == Some(CONSOLE_DATABASE) {
        return console_session(
            &mut client,
            &startup,
            shared,
            &runtime,
            deadline,
            client_tls,
        )
        .await;
    }
    let mut state = SessionState::default();
    let mut registration: Option<Registration> = None;
    let mut backend_pid = None;
    let interrupt = Arc::new(tokio::sync::Notify::new());
    let setup = async {
        let mut server =
            open_upstream(&mut client, &startup.raw, shared, &runtime, client_tls).await?;
        auth::finish_startup(&mut client, &mut server, &mut state, |upstream_key| {
            span.record("backend_pid", upstream_key.pid);
            backend_pid = Some(upstream_key.pid);
            let (ours, reg) = shared.cancels.register(CancelTarget {
                upstream_key,
                runtime: runtime.clone(),
                interrupt: interrupt.clone(),
            });
            registration = Some(reg);
            ours
        })
        .await?;
        Ok::<_, SessionError>(server)
    };
    let result = timeout_at(deadline, setup).await;
    let server = settle(&mut client, result).await?;
    debug!(server_version = %state.server_version, "session ready");

    let user = startup.param("user").unwrap_or_default();
    let who = SessionInfo {
        database: startup.param("database").unwrap_or_else(|| user.clone()),
        application_name: startup.param("application_name").unwrap_or_default(),
        user,
        client_addr: peer,
    };
    // Backfill traffic yields to the application.
    let pacer = settings
        .backfill_traffic
        .as_ref()
        .filter(|p| p.marks(&who.user, &who.application_name))
        .map(|p| shared.pacers.database(&who.database, p));
    if pacer.is_some() {
        span.record("backfill_traffic", true);
    }
    // Listed for the console while it relays; unlisted when it ends.
    let _listed = shared.sessions.register(SessionEntry {
        id,
        user: who.user.clone(),
        database: who.database.clone(),
        application_name: who.application_name.clone(),
        client_addr: peer,
        backend_pid,
        connected_at: std::time::SystemTime::now(),
    });
    let Conn {
        io: mut client_io,
        rbuf: client_buf,
        ..
    } = *client;
    let Conn {
        io: mut server_io,
        rbuf: server_buf,
        ..
    } = server;
    let mut relay = Relay {
        client: &mut client_io,
        server: &mut server_io,
        c2s: Pipe::new(client_buf),
        s2c: Pipe::new(server_buf),
        state,
        gate: Gate::new(
            runtime.clone(),
            shared.runner.clone(),
            // Only the runner's throttle and the pacers read it.
            (shared.runner.is_some() || settings.backfill_traffic.is_some())
                .then(|| shared.latency.database(&who.database)),
            who,
            interrupt,
        )
        .paced_by(pacer),
        control: Control::new(
            settings.idle_timeout,
            shared.drain.clone(),
            shared.force.clone(),
        ),
        metrics: &shared.metrics,
        max_message_size: settings.max_message_size,
        held: relay::Held {
            max_one: settings.max_held_message_size,
            max_total: settings.max_held_total,
            budget: shared.held.clone(),
            reserved: None,
        },
    };
    let end = relay.run().await;
    if let Some((requests, waited)) = relay.gate.backfill_traffic() {
        tracing::info!(
            event = "backfill_traffic.session",
            requests,
            waited_ms = waited.as_millis() as u64,
            "backfill traffic session ended"
        );
    }
    drop(registration);
    Ok(Outcome::Relayed(end))
}

/// Connects to the upstream, sends the client's startup packet (`raw`) and
/// relays authentication with the client's own credentials.
async fn open_upstream<C>(
    client: &mut Conn<C>,
    raw: &[u8],
    shared: &Shared,
    runtime: &Runtime,
    client_tls: bool,
) -> Result<Conn<upstream::UpstreamStream>, SessionError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let settings = &runtime.settings;
    let t0 = StdInstant::now();
    let upstream = upstream::connect(
        &settings.upstream,
        runtime.upstream_tls.as_ref(),
        settings.connect_timeout,
    )
    .await?;
    shared
        .metrics
        .upstream_connect
        .record(t0.elapsed().as_secs_f64());
    let upstream_tls = matches!(upstream, Either::Right(_));
    let mut server = Conn::new(upstream);
    server.send(raw);
    server
        .flush()
        .await
        .map_err(|e| SessionError::UpstreamLost(ReadError::Io(e)))?;
    auth::authenticate(client, &mut server, client_tls && upstream_tls).await?;
    Ok(server)
}

/// The end of a handshake bounded by `handshake_timeout`: on failure the
/// client gets whatever the server said (its own ErrorResponse) first, then
/// ddlgate's report.
async fn settle<C, T>(
    client: &mut Conn<C>,
    result: Result<Result<T, SessionError>, tokio::time::error::Elapsed>,
) -> Result<T, SessionError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let e = match result {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(e)) => e,
        Err(_) => SessionError::HandshakeTimeout,
    };
    let _ = client.flush().await;
    Err(report(&mut client.io, e).await)
}

/// The admin console: admitted for `admin_roles`, authenticated against
/// the upstream's own database with the client's credentials (the auth
/// relay), then answered by ddlgate itself.
async fn console_session<C>(
    client: &mut Conn<C>,
    startup: &crate::protocol::startup::StartupMessage,
    shared: &Shared,
    runtime: &Runtime,
    deadline: Instant,
    client_tls: bool,
) -> Result<Outcome, SessionError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let settings = &runtime.settings;
    let user = startup.param("user").unwrap_or_default();
    if !settings.admin_roles.contains(&user) {
        return Err(report(&mut client.io, SessionError::NotAdmin(user)).await);
    }
    let home = settings
        .upstream
        .database
        .clone()
        .unwrap_or_else(|| "postgres".into());
    let setup = async {
        let raw = startup.with_param("database", &home).raw;
        let mut server = open_upstream(client, &raw, shared, runtime, client_tls).await?;
        let mut state = SessionState::default();
        auth::finish_startup(client, &mut server, &mut state, |key| key).await?;
        // Authenticated: the upstream connection has done its job.
        server.send(crate::protocol::frontend::TERMINATE);
        let _ = server.flush().await;
        Ok::<_, SessionError>(())
    };
    let result = timeout_at(deadline, setup).await;
    settle(client, result).await?;
    info!(user = %user, "admin console session");
    console::serve(client, shared).await?;
    Ok(Outcome::Console)
}

/// Forwards a CancelRequest for a key this proxy issued; others are dropped,
/// as PostgreSQL drops unknown keys, without telling the sender.
async fn cancel(shared: &Shared, key: &CancelKey) {
    let Some(target) = shared.cancels.lookup(key) else {
        shared.metrics.cancel("unknown_key");
        debug!(pid = key.pid, "cancel request with an unknown key ignored");
        return;
    };
    // Only waiters are woken: a cancel leaves nothing behind for later.
    target.interrupt.notify_waiters();
    let rt = &target.runtime;
    match upstream::send_cancel(
        &rt.settings.upstream,
        rt.upstream_tls.as_ref(),
        rt.settings.connect_timeout,
        &target.upstream_key,
    )
    .await
    {
        Ok(()) => {
            shared.metrics.cancel("forwarded");
            info!(pid = key.pid, "cancel request forwarded");
        }
        Err(e) => {
            shared.metrics.cancel("failed");
            warn!(pid = key.pid, error = %e, "cancel request could not be forwarded");
        }
    }
}
