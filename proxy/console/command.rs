//! The admin console's commands, read from one simple Query: pure text in,
//! a [`Command`] out.

pub use crate::runner::model::ThrottleChange;

/// Which migration a command names: its id, and the database when given
/// as `database/id` (ids are per database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub database: Option<String>,
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Migrations,
    Migration(Target),
    Blocked,
    Pause(Target),
    Resume(Target),
    Cancel(Target),
    Retry(Target),
    /// A postponed cut-over may run; a kept old column is dropped now.
    Complete(Target),
    /// Undo a change that is made.
    Revert(Target),
    /// A running backfill's pace, changed now.
    Throttle(Target, ThrottleChange),
    Clients,
    Servers,
    Stats,
    Config,
    Jobs,
    Reload,
    /// An empty query string.
    Empty,
}

/// One line per command, for SHOW HELP and unknown commands.
pub const HELP: &[(&str, &str)] = &[
    (
        "SHOW MIGRATIONS",
        "migrations in every database the runner keeps state in",
    ),
    (
        "SHOW MIGRATION id",
        "one migration's steps: SQL, status, attempts, timings, errors",
    ),
    (
        "SHOW BLOCKED",
        "recent schema changes the gate stopped, rewrote or warned about",
    ),
    ("PAUSE id", "stop a migration after its current step"),
    ("RESUME id", "go on with a paused migration"),
    (
        "CANCEL id",
        "stop a migration and undo the steps that can be undone",
    ),
    (
        "RETRY id",
        "run a failed migration again from its failed step",
    ),
    (
        "COMPLETE id",
        "let a type change's postponed cut-over run, or drop its kept old column now",
    ),
    (
        "REVERT id",
        "undo a change that is made: a type change until its old column is dropped, an index, an added column",
    ),
    (
        "THROTTLE id batch_time 200ms | max_rows_per_sec 5000",
        "change a backfill's target batch time or rate ceiling (0: none), at once",
    ),
    ("SHOW CLIENTS", "client sessions relayed now"),
    ("SHOW SERVERS", "the upstream connections serving them"),
    ("SHOW STATS", "counts since start"),
    ("SHOW CONFIG", "settings in effect (no secrets)"),
    ("SHOW JOBS", "background work running in this process"),
    ("RELOAD", "re-read the configuration file, as SIGHUP does"),
    ("SHOW HELP", "this list"),
];

/// An unknown or malformed command: the message the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown(pub String);

pub fn parse(sql: &str) -> Result<Command, Unknown> {
    let text = sql.trim().trim_end_matches(';').trim();
    if text.is_empty() {
        return Ok(Command::Empty);
    }
    let words: Vec<String> = text
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    let raw: Vec<&str> = text.split_whitespace().collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let target = |i: usize| -> Result<Target, Unknown> {
        let arg = raw
            .get(i)
            .ok_or_else(|| Unknown(format!("{} needs a migration id", w[..i].join(" "))))?;
        if raw.len() > i + 1 {
            return Err(Unknown(format!("unexpected text after {arg}")));
        }
        target_of(arg).ok_or_else(|| {
            Unknown(format!(
                "'{arg}' is not a migration id (a number, or database/number)"
            ))
        })
    };
    Ok(match w.as_slice() {
        ["SHOW", "HELP"] | ["HELP"] => Command::Help,
        ["SHOW", "MIGRATIONS"] => Command::Migrations,
        ["SHOW", "MIGRATION", ..] => Command::Migration(target(2)?),
        ["SHOW", "BLOCKED"] => Command::Blocked,
        ["SHOW", "CLIENTS"] => Command::Clients,
        ["SHOW", "SERVERS"] => Command::Servers,
        ["SHOW", "STATS"] => Command::Stats,
        ["SHOW", "CONFIG"] => Command::Config,
        ["SHOW", "JOBS"] => Command::Jobs,
        ["RELOAD"] => Command::Reload,
        ["PAUSE", ..] => Command::Pause(target(1)?),
        ["RESUME", ..] => Command::Resume(target(1)?),
        ["CANCEL", ..] => Command::Cancel(target(1)?),
        ["RETRY", ..] => Command::Retry(target(1)?),
        ["COMPLETE", ..] => Command::Complete(target(1)?),
        ["REVERT", ..] => Command::Revert(target(1)?),
        ["THROTTLE", _, key, _] => {
            let t = target_of(raw[1]).ok_or_else(|| {
                Unknown(format!(
                    "'{}' is not a migration id (a number, or database/number)",
                    raw[1]
                ))
            })?;
            let value = raw[3].trim_matches('\'');
            let change = match *key {
                "BATCH_TIME" => ThrottleChange::BatchTime(
                    crate::config::parse_duration("batch_time", value)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| {
                            Unknown(format!("'{value}' is not a duration like 200ms"))
                        })?,
                ),
                "MAX_ROWS_PER_SEC" => ThrottleChange::MaxRowsPerSec(
                    value
                        .parse()
                        .map_err(|_| Unknown(format!("'{value}' is not a number of rows")))?,
                ),
                _ => {
                    return Err(Unknown(format!(
                        "THROTTLE changes batch_time or max_rows_per_sec, not {}",
                        raw[2]
                    )))
                }
            };
            Command::Throttle(t, change)
        }
        ["THROTTLE", ..] => {
            return Err(Unknown(
                "THROTTLE needs a migration id, a setting and a value, e.g. THROTTLE 3 batch_time 200ms".into(),
            ))
        }
        _ => return Err(Unknown(format!("unknown command: {text}"))),
    })
}

fn target_of(arg: &str) -> Option<Target> {
    let arg = arg.trim_matches('\'');
    match arg.rsplit_once('/') {
        Some((db, id)) if !db.is_empty() => Some(Target {
            database: Some(db.to_owned()),
            id: id.parse().ok()?,
        }),
        _ => Some(Target {
            database: None,
            id: arg.parse().ok()?,
        }),
    }
}

/// The list of commands, as the hint of an error.
pub fn command_list() -> String {
    let names: Vec<&str> = HELP.iter().map(|(c, _)| *c).collect();
    format!("Commands: {}.", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_targets() {
        assert_eq!(parse("show migrations;"), Ok(Command::Migrations));
        assert_eq!(
            parse("SHOW MIGRATION 12"),
            Ok(Command::Migration(Target {
                database: None,
                id: 12
            }))
        );
        assert_eq!(
            parse("cancel app/7"),
            Ok(Command::Cancel(Target {
                database: Some("app".into()),
                id: 7
            }))
        );
        assert_eq!(parse("  ;"), Ok(Command::Empty));
        assert!(parse("PAUSE")
            .unwrap_err()
            .0
            .contains("needs a migration id"));
        assert!(parse("RETRY x")
            .unwrap_err()
            .0
            .contains("not a migration id"));
        assert!(parse("DROP TABLE t")
            .unwrap_err()
            .0
            .starts_with("unknown command"));
        assert!(command_list().contains("SHOW MIGRATIONS"));
        assert_eq!(
            parse("throttle app/3 batch_time '250ms'"),
            Ok(Command::Throttle(
                Target {
                    database: Some("app".into()),
                    id: 3
                },
                ThrottleChange::BatchTime(std::time::Duration::from_millis(250))
            ))
        );
        assert_eq!(
            parse("THROTTLE 3 max_rows_per_sec 0"),
            Ok(Command::Throttle(
                Target {
                    database: None,
                    id: 3
                },
                ThrottleChange::MaxRowsPerSec(0)
            ))
        );
        assert!(parse("THROTTLE 3 speed 9")
            .unwrap_err()
            .0
            .contains("not speed"));
        assert!(parse("THROTTLE 3").unwrap_err().0.contains("e.g."));
    }
}
