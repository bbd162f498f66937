//! The admin console's side of a session: after the routing step sent a
//! client for the database `ddlgate` here (and it authenticated against
//! the upstream), each simple Query is one console command, answered as
//! result sets. The extended protocol is refused per batch.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::console::{self, command};
use crate::process::Shared;
use crate::protocol::backend::{Report, Severity, TxStatus};
use crate::protocol::frame::take_cstr;
use crate::protocol::{reply, sqlstate};

use super::conn::{Conn, ReadError};
use super::error::SessionError;

/// Console commands are short.
const COMMAND_MAX: usize = 64 * 1024;

pub async fn serve<C>(client: &mut Conn<C>, shared: &Shared) -> Result<(), SessionError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    // One error per extended batch, then silence until its Sync.
    let mut batch_refused = false;
    loop {
        client
            .flush()
            .await
            .map_err(|e| SessionError::Client(ReadError::Io(e)))?;
        let msg = match client.read_message(COMMAND_MAX).await {
            Ok(m) => m,
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Frame(f)) => return Err(SessionError::ClientFrame(f)),
            Err(e) => return Err(SessionError::Client(e)),
        };
        let mut out = BytesMut::new();
        match msg.tag {
            b'Q' => {
                let sql = take_cstr(msg.body()).map_or(&[][..], |(s, _)| s);
                let text = String::from_utf8_lossy(sql);
                match command::parse(&text) {
                    Ok(console::Command::Empty) => reply::empty_query(&mut out),
                    Ok(cmd) => {
                        tracing::info!(event = "console.command", command = %text.trim(), "admin console");
                        match console::answer(cmd, shared).await {
                            Ok(tables) => {
                                for t in tables {
                                    reply::result_set(&t.columns, &t.rows, &mut out);
                                }
                            }
                            Err(report) => report.encode(&mut out),
                        }
                    }
                    Err(command::Unknown(message)) => {
                        Report::new(Severity::Error, sqlstate::SYNTAX_ERROR, message)
                            .with_hint(command::command_list())
                            .encode(&mut out)
                    }
                }
                reply::ready_for_query(TxStatus::Idle, &mut out);
            }
            b'X' => return Ok(()),
            b'S' => {
                batch_refused = false;
                reply::ready_for_query(TxStatus::Idle, &mut out);
            }
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => {
                if !batch_refused {
                    batch_refused = true;
                    Report::new(
                        Severity::Error,
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "the ddlgate admin console answers simple queries only (as psql sends them)",
                    )
                    .encode(&mut out);
                }
            }
            _ => {
                return Err(SessionError::ClientProtocol(
                    "unexpected message in the admin console",
                ))
            }
        }
        client.send(&out);
    }
}
