//! The admin console: what ddlgate answers itself to a client that
//! connected to the database `ddlgate` (after authenticating against the
//! upstream with its own credentials, and only for `admin_roles`). Each
//! command becomes result sets psql prints as tables; the session layer
//! (`session::console`) does the I/O.

pub mod command;

use std::time::SystemTime;

use crate::process::Shared;
use crate::protocol::backend::{Report, Severity};
use crate::runner::{model::Request, Runner, Status};
use crate::telemetry::decisions;

pub use command::{parse, Command, Target};

/// One result set: column names and text rows (`None` is NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    fn new(columns: &[&'static str]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, values: Vec<Option<String>>) {
        self.rows.push(values);
    }
}

fn error(code: &'static str, message: impl Into<String>) -> Report {
    Report::new(Severity::Error, code, message)
}

/// The answer to one command: result sets, or an error.
pub async fn answer(cmd: Command, shared: &Shared) -> Result<Vec<Table>, Report> {
    match cmd {
        Command::Empty => Ok(Vec::new()),
        Command::Help => {
            let mut t = Table::new(&["command", "what it does"]);
            for (c, what) in command::HELP {
                t.row(vec![Some((*c).into()), Some((*what).into())]);
            }
            Ok(vec![t])
        }
        Command::Migrations => migrations(runner(shared)?).await,
        Command::Migration(t) => migration(runner(shared)?, &t).await,
        Command::Blocked => Ok(vec![blocked()]),
        Command::Pause(t) => request(runner(shared)?, &t, Request::Pause).await,
        Command::Cancel(t) => request(runner(shared)?, &t, Request::Cancel).await,
        Command::Resume(t) => requeue(runner(shared)?, &t, &[Status::Paused], "resumed").await,
        Command::Retry(t) => {
            requeue(
                runner(shared)?,
                &t,
                &[Status::Failed],
                "queued again from its failed step",
            )
            .await
        }
        Command::Throttle(t, change) => throttle(runner(shared)?, &t, change).await,
        Command::Complete(t) => complete(runner(shared)?, &t).await,
        Command::Revert(t) => revert(runner(shared)?, &t).await,
        Command::Clients => Ok(vec![clients(shared)]),
        Command::Servers => Ok(vec![servers(shared)]),
        Command::Stats => Ok(vec![stats(shared)]),
        Command::Config => Ok(vec![config(shared)]),
        Command::Jobs => {
            let mut t = Table::new(&["id", "kind", "name", "running for"]);
            for j in shared.jobs.running() {
                t.row(vec![
                    Some(j.id.to_string()),
                    Some(j.kind.into()),
                    Some(j.name),
                    Some(since(j.started_at)),
                ]);
            }
            Ok(vec![t])
        }
        Command::Reload => {
            shared.reload.notify_one();
            let mut t = Table::new(&["result"]);
            t.row(vec![Some(
                "configuration reload requested: new sessions get the new settings".into(),
            )]);
            Ok(vec![t])
        }
    }
}

fn runner(shared: &Shared) -> Result<&std::sync::Arc<Runner>, Report> {
    shared.runner.as_ref().ok_or_else(|| {
        error(
            "55000",
            "ddlgate has no migration runner: configure the [runner] section",
        )
    })
}

fn since(t: SystemTime) -> String {
    let secs = t.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    format!("{secs} s")
}

fn failed(e: crate::runner::RunnerError) -> Report {
    tracing::warn!(error = %e, "admin console command failed");
    let f = e.failure();
    error(
        "58000",
        format!("ddlgate's runner could not answer: {}", f.message),
    )
}

/// The databases a command's target may be in, and the one it is in.
async fn locate(runner: &Runner, t: &Target) -> Result<String, Report> {
    let candidates = match &t.database {
        Some(d) => vec![d.clone()],
        None => runner.databases(),
    };
    let mut found = Vec::new();
    for db in candidates {
        let Ok(c) = runner.connector().connect(&db, "console").await else {
            continue;
        };
        let hit = c
            .query_opt("SELECT 1 FROM ddlgate.migrations WHERE id = $1", &[&t.id])
            .await;
        if matches!(hit, Ok(Some(_))) {
            found.push(db);
        }
    }
    match found.len() {
        0 => Err(error("42704", format!("migration {} does not exist", t.id))),
        1 => Ok(found.remove(0)),
        _ => Err(error(
            "42725",
            format!(
                "migration {} exists in several databases: name one as {}",
                t.id,
                found
                    .iter()
                    .map(|d| format!("{d}/{}", t.id))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        )),
    }
}

async fn migrations(runner: &Runner) -> Result<Vec<Table>, Report> {
    let mut t = Table::new(&[
        "database",
        "id",
        "status",
        "table",
        "step",
        "progress",
        "role",
        "runs on",
        "created",
        "updated",
        "error",
        "statement",
    ]);
    for db in runner.databases() {
        let c = runner
            .connector()
            .connect(&db, "console")
            .await
            .map_err(failed)?;
        let rows = c
            .query(
                "SELECT id::text, status, table_name, LEAST(current_step, steps_total) || '/' || steps_total, \
                 progress, role::text, instance, \
                 pg_catalog.to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), \
                 pg_catalog.to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS'), \
                 sqlstate || ': ' || error, statement \
                 FROM ddlgate.migrations ORDER BY id DESC LIMIT 200",
                &[],
            )
            .await
            .map_err(|e| failed(e.into()))?;
        for r in rows {
            let status: String = r.get(1);
            let instance: Option<String> = r.get(6);
            let runs_on = match (status.as_str(), instance) {
                ("running", Some(i)) if i == runner.instance() => Some("here".to_owned()),
                ("running", Some(i)) => Some(format!("elsewhere ({i})")),
                (_, i) => i,
            };
            t.row(vec![
                Some(db.clone()),
                r.get(0),
                Some(status),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                runs_on,
                r.get(7),
                r.get(8),
                r.get(9),
                r.get(10),
            ]);
        }
    }
    Ok(vec![t])
}

async fn migration(runner: &Runner, target: &Target) -> Result<Vec<Table>, Report> {
    let db = locate(runner, target).await?;
    let c = runner
        .connector()
        .connect(&db, "console")
        .await
        .map_err(failed)?;
    let m = c
        .query_one(
            "SELECT id::text, status, coalesce(requested, ''), table_name, role::text, \
             LEAST(current_step, steps_total) || '/' || steps_total, progress, instance, \
             pg_catalog.to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), \
             pg_catalog.to_char(started_at, 'YYYY-MM-DD HH24:MI:SS'), \
             pg_catalog.to_char(finished_at, 'YYYY-MM-DD HH24:MI:SS'), \
             sqlstate || ': ' || error, statement, gate_event, effect::text \
             FROM ddlgate.migrations WHERE id = $1",
            &[&target.id],
        )
        .await
        .map_err(|e| failed(e.into()))?;
    let mut summary = Table::new(&[
        "database",
        "id",
        "status",
        "requested",
        "table",
        "role",
        "step",
        "progress",
        "instance",
        "created",
        "started",
        "finished",
        "error",
        "statement",
        "gate event",
        "application latency",
    ]);
    let mut row = vec![Some(db.clone())];
    row.extend((0..14).map(|i| m.get::<_, Option<String>>(i)));
    let effect: Option<crate::runner::effect::Effect> = m
        .get::<_, Option<String>>(14)
        .and_then(|j| serde_json::from_str(&j).ok());
    row.push(Some(match effect {
        Some(e) => e.to_string(),
        None if m.get::<_, Option<String>>(1).as_deref() == Some("running") => {
            "before: measured at its start; during: running".into()
        }
        None => "not measured".into(),
    }));
    summary.row(row);
    let mut steps = Table::new(&[
        "step", "kind", "status", "attempts", "started", "finished", "duration", "sql", "error",
    ]);
    for r in c
        .query(
            "SELECT n::text, kind, status, attempts::text, \
             pg_catalog.to_char(started_at, 'YYYY-MM-DD HH24:MI:SS'), \
             pg_catalog.to_char(finished_at, 'YYYY-MM-DD HH24:MI:SS'), \
             CASE WHEN finished_at IS NOT NULL THEN \
             pg_catalog.round(EXTRACT(epoch FROM finished_at - started_at)::numeric, 3)::text || ' s' END, \
             sql, sqlstate || ': ' || error \
             FROM ddlgate.steps WHERE migration = $1 ORDER BY n",
            &[&target.id],
        )
        .await
        .map_err(|e| failed(e.into()))?
    {
        steps.row((0..9).map(|i| r.get::<_, Option<String>>(i)).collect());
    }
    Ok(vec![summary, steps])
}

async fn request(
    runner: &std::sync::Arc<Runner>,
    target: &Target,
    req: Request,
) -> Result<Vec<Table>, Report> {
    let db = locate(runner, target).await?;
    let status = runner
        .request(&(db.clone(), target.id), req)
        .await
        .map_err(failed)?;
    let Some(status) = status else {
        return Err(error(
            "55000",
            format!(
                "migration {} has finished or is past its cut-over: nothing to {} \
                 (REVERT {} undoes a change that is made)",
                target.id,
                req.as_str(),
                target.id
            ),
        ));
    };
    let what = match req {
        Request::Pause => "pause requested: it stops after its current step",
        Request::Cancel => {
            "cancel requested: its statement is interrupted and the steps that can be undone are"
        }
        Request::Complete | Request::Revert => "requested",
    };
    let mut t = Table::new(&["database", "id", "status", "result"]);
    t.row(vec![
        Some(db),
        Some(target.id.to_string()),
        Some(status.as_str().into()),
        Some(what.into()),
    ]);
    Ok(vec![t])
}

async fn throttle(
    runner: &std::sync::Arc<Runner>,
    target: &Target,
    change: command::ThrottleChange,
) -> Result<Vec<Table>, Report> {
    let db = locate(runner, target).await?;
    if !runner
        .set_throttle(&(db.clone(), target.id), change)
        .await
        .map_err(failed)?
    {
        return Err(error(
            "55000",
            format!(
                "migration {} has no backfill left to pace (THROTTLE changes a backfill's batches)",
                target.id
            ),
        ));
    }
    let what = match change {
        command::ThrottleChange::BatchTime(d) => {
            format!("batches now aim at {} ms each", d.as_millis())
        }
        command::ThrottleChange::MaxRowsPerSec(0) => "no rows/s ceiling now".to_owned(),
        command::ThrottleChange::MaxRowsPerSec(n) => format!("at most {n} rows/s now"),
    };
    Ok(result(db, target, what))
}

/// What a command did to one migration, as a one-row result set.
fn result(db: String, target: &Target, what: impl Into<String>) -> Vec<Table> {
    let mut t = Table::new(&["database", "id", "result"]);
    t.row(vec![
        Some(db),
        Some(target.id.to_string()),
        Some(what.into()),
    ]);
    vec![t]
}

async fn requeue(
    runner: &std::sync::Arc<Runner>,
    target: &Target,
    from: &[Status],
    what: &str,
) -> Result<Vec<Table>, Report> {
    let db = locate(runner, target).await?;
    if !runner
        .requeue(&(db.clone(), target.id), from)
        .await
        .map_err(failed)?
    {
        let states: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        return Err(error(
            "55000",
            format!("migration {} is not {}", target.id, states.join(" or ")),
        ));
    }
    Ok(result(db, target, what))
}

async fn revert(runner: &std::sync::Arc<Runner>, target: &Target) -> Result<Vec<Table>, Report> {
    use crate::runner::store::Revert;
    let db = locate(runner, target).await?;
    let what = match runner
        .revert(&(db.clone(), target.id))
        .await
        .map_err(failed)?
    {
        Revert::Queued => "reverting: its revert steps are queued",
        Revert::Requested => "reverting: its revert steps run next",
        Revert::Refused(why) => return Err(error("55000", why)),
    };
    Ok(result(db, target, what))
}

async fn complete(runner: &std::sync::Arc<Runner>, target: &Target) -> Result<Vec<Table>, Report> {
    let db = locate(runner, target).await?;
    let what = match runner
        .complete(&(db.clone(), target.id))
        .await
        .map_err(failed)?
    {
        None => {
            return Err(error(
                "55000",
                format!(
                    "migration {} has no cut-over left to run (only a type change has one)",
                    target.id
                ),
            ))
        }
        Some(true) => "going on now (the cut-over, or the old column's drop)",
        Some(false) => "it cuts over when it gets there",
    };
    Ok(result(db, target, what))
}

fn blocked() -> Table {
    let mut t = Table::new(&[
        "at",
        "event",
        "id",
        "decision",
        "rules",
        "table",
        "user",
        "database",
        "statement",
    ]);
    for d in decisions::recent() {
        t.row(vec![
            Some(d.at),
            Some(d.event.into()),
            Some(d.id),
            Some(d.decision.into()),
            Some(d.rules),
            d.table,
            Some(d.user),
            Some(d.database),
            Some(d.statement),
        ]);
    }
    t
}

fn clients(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        "id",
        "user",
        "database",
        "application_name",
        "client",
        "backend_pid",
        "connected for",
    ]);
    for s in shared.sessions.sessions() {
        t.row(vec![
            Some(s.id.to_string()),
            Some(s.user),
            Some(s.database),
            Some(s.application_name),
            Some(s.client_addr.to_string()),
            s.backend_pid.map(|p| p.to_string()),
            Some(since(s.connected_at)),
        ]);
    }
    t
}

fn servers(shared: &Shared) -> Table {
    let upstream = shared.runtime().settings.upstream.to_string();
    let mut t = Table::new(&[
        "backend_pid",
        "upstream",
        "user",
        "database",
        "for client session",
    ]);
    for s in shared.sessions.sessions() {
        t.row(vec![
            s.backend_pid.map(|p| p.to_string()),
            Some(upstream.clone()),
            Some(s.user),
            Some(s.database),
            Some(s.id.to_string()),
        ]);
    }
    t
}

fn stats(shared: &Shared) -> Table {
    let mut t = Table::new(&["name", "value"]);
    let mut put = |k: &str, v: String| t.row(vec![Some(k.into()), Some(v)]);
    put("client sessions now", shared.sessions.len().to_string());
    put(
        "connections since start",
        (shared.next_id_peek() - 1).to_string(),
    );
    put("background jobs", shared.jobs.running().len().to_string());
    let recent = decisions::recent();
    put(
        "recent gate decisions (blocked, rewritten, warned)",
        recent.len().to_string(),
    );
    if let Some(r) = &shared.runner {
        put(
            "migrations running here",
            r.running_here().len().to_string(),
        );
        put("sessions waiting on migrations", r.followers().to_string());
        put("runner instance", r.instance().to_owned());
    }
    t
}

fn config(shared: &Shared) -> Table {
    let rt = shared.runtime();
    let s = &rt.settings;
    let mut t = Table::new(&["key", "value"]);
    let mut put = |k: &str, v: String| t.row(vec![Some(k.into()), Some(v)]);
    put("listen", s.listen.to_string());
    put("upstream", s.upstream.to_string());
    put("workers", s.workers.to_string());
    put(
        "max_client_connections",
        s.max_client_connections.to_string(),
    );
    put("idle_timeout", format!("{:?}", s.idle_timeout));
    put("admin_roles", s.admin_roles.join(", "));
    put("ddl.enabled", s.ddl.enabled.to_string());
    put("ddl.mode", s.ddl.mode.as_str().into());
    put("ddl.lock_timeout", format!("{:?}", s.ddl.lock_timeout));
    put("ddl.lock_retries", s.ddl.lock_retries.to_string());
    match &s.runner {
        Some(r) => {
            put("runner.user", r.user.clone());
            put("runner.mode", r.mode.as_str().into());
            put("runner.async_roles", r.async_roles.join(", "));
            put("runner.lock_timeout", format!("{:?}", r.lock_timeout));
            put("runner.lock_retries", r.lock_retries.to_string());
            put("runner.poll_interval", format!("{:?}", r.poll_interval));
        }
        None => put("runner", "off".into()),
    }
    t
}
