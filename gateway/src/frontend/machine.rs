//! The message loop of a logged-in connection, as a state machine: in
//! `Ready` every message is handled; after an error in an extended-protocol
//! batch the state is `SkipUntilSync`, where Parse/Bind/Describe/Execute/
//! Close are discarded until Sync (PostgreSQL's rule, so a pipelined batch
//! fails as a whole). Every error goes out through `fail`.

use pgwire::messages::PgWireFrontendMessage as F;

use crate::error::GatewayError;
use crate::metrics::ConnectionState;
use crate::pg::Severity;
use crate::session::Session;
use crate::wire::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    SkipUntilSync,
}

/// Runs until Terminate, end of input, or a client that went away.
pub async fn run(conn: &mut Connection, session: &mut Session) {
    let mut state = State::Ready;
    let mut activity = ConnectionState::idle();
    loop {
        activity.set_active(false);
        let idle_limit = session.idle_timeout();
        let read = async {
            match idle_limit {
                Some((after, e)) => match tokio::time::timeout(after, conn.read_message()).await {
                    Ok(read) => read,
                    Err(_) => Err(e),
                },
                None => conn.read_message().await,
            }
        };
        let shutdown = session.shutdown().clone();
        let read = tokio::select! {
            read = read => read,
            _ = shutdown.cancelled() => Err(GatewayError::AdminShutdown),
        };
        let msg = match read {
            Ok(Some(msg)) => msg,
            Ok(None) => return,
            // Skipped unread: the connection goes on.
            Err(e @ GatewayError::MessageTooLarge { message_type, .. }) => {
                let extended = matches!(message_type, b'P' | b'B' | b'D' | b'E' | b'C');
                if extended && state == State::SkipUntilSync {
                    continue;
                }
                match Box::pin(fail(conn, session, e, extended)).await {
                    Ok(next) => {
                        state = next;
                        continue;
                    }
                    Err(_) => return,
                }
            }
            Err(e) => {
                // Framing is lost: say why and close.
                Box::pin(super::send_fatal(conn, &e)).await;
                return;
            }
        };
        activity.set_active(true);
        // Boxed: an idle connection's task holds only the loop's state,
        // not the largest message handler's.
        state = match Box::pin(step(conn, session, state, msg)).await {
            Ok(Some(next)) => next,
            Ok(None) | Err(_) => return,
        };
    }
}

/// Handles one message; `None` ends the connection (Terminate). Only a
/// client that went away is an error.
async fn step(
    conn: &mut Connection,
    session: &mut Session,
    state: State,
    msg: F,
) -> Result<Option<State>, GatewayError> {
    let extended = matches!(
        msg,
        F::Parse(_) | F::Bind(_) | F::Describe(_) | F::Execute(_) | F::Close(_)
    );
    if extended && state == State::SkipUntilSync {
        return Ok(Some(state));
    }
    // Statement work is boxed once more: `step` itself stays small.
    let outcome = match msg {
        F::Query(q) => {
            Box::pin(session.simple_query(conn, &q.query)).await?;
            return Ok(Some(State::Ready));
        }
        F::Terminate(_) => return Ok(None),
        F::Sync(_) => {
            session.sync();
            conn.send(session.ready_for_query());
            conn.flush().await?;
            return Ok(Some(State::Ready));
        }
        F::Flush(_) => {
            conn.flush().await?;
            return Ok(Some(state));
        }
        F::Parse(m) => session.parse(conn, m),
        F::Bind(m) => Box::pin(session.bind(conn, m)).await,
        F::Describe(m) => Box::pin(session.describe(conn, m)).await,
        F::Execute(m) => Box::pin(session.execute(conn, m)).await,
        F::Close(m) => {
            session.close(conn, m);
            Ok(())
        }
        // COPY FROM is refused before it starts; stray copy messages are
        // ignored, as PostgreSQL ignores them outside COPY IN.
        F::CopyData(_) | F::CopyDone(_) | F::CopyFail(_) => Ok(()),
        other => Err(GatewayError::Protocol(format!(
            "unexpected message {other:?}"
        ))),
    };
    match outcome {
        Ok(()) => {
            // Replies to a pipeline the client does not read (Describe
            // after Describe) must not pile up in memory.
            conn.maybe_flush().await?;
            Ok(Some(state))
        }
        Err(e) => fail(conn, session, e, extended).await.map(Some),
    }
}

/// The one error path: ErrorResponse (and a failed transaction block),
/// then skip until Sync in an extended batch, or ReadyForQuery otherwise.
async fn fail(
    conn: &mut Connection,
    session: &mut Session,
    e: GatewayError,
    extended: bool,
) -> Result<State, GatewayError> {
    if let GatewayError::ClientGone = e {
        return Err(e);
    }
    if e.severity() == Severity::Fatal {
        // A drain ran out of time mid-statement: the session ends here.
        super::send_fatal(conn, &e).await;
        return Err(e);
    }
    session.fail(conn, &e);
    let next = if extended {
        State::SkipUntilSync
    } else {
        conn.send(session.ready_for_query());
        State::Ready
    };
    conn.flush().await?;
    Ok(next)
}
