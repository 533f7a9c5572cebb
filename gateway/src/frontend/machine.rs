//! The message loop of a logged-in connection, as a state machine: in
//! `Ready` every message is handled; after an error in an extended-protocol
//! batch the state is `SkipUntilSync`, where Parse/Bind/Describe/Execute/
//! Close are discarded until Sync (PostgreSQL's rule, so a pipelined batch
//! fails as a whole). Every error goes out through `fail`.

use pgwire::messages::PgWireFrontendMessage as F;
use tokio::time::Instant;

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

/// What ends an idle wait.
enum Wake {
    Input,
    IdleLimit,
    Shutdown,
}

/// Runs until Terminate, end of input, or a client that went away.
pub async fn run(conn: &mut Connection, session: &mut Session) {
    let mut state = State::Ready;
    let mut activity = ConnectionState::idle();
    loop {
        activity.set_active(false);
        let deadline = session
            .idle_timeout()
            .map(|(after, _)| Instant::now() + after);
        // The idle wait is its own small future; reading and handling the
        // message are boxed. An idle connection's task then holds its
        // session and this wait, not the largest handler's state.
        let woke = tokio::select! {
            () = conn.input_ready() => Wake::Input,
            () = expires(deadline) => Wake::IdleLimit,
            () = session.shutdown().cancelled() => Wake::Shutdown,
        };
        let ended = match woke {
            Wake::Input => {
                match Box::pin(next_message(conn, session, state, &mut activity, deadline)).await {
                    Some(next) => state = next,
                    None => return,
                }
                continue;
            }
            Wake::IdleLimit => idle_limit_error(session),
            Wake::Shutdown => GatewayError::AdminShutdown,
        };
        Box::pin(super::send_fatal(conn, &ended)).await;
        return;
    }
}

/// The error of the idle limit that applies now (idle in a transaction,
/// or idle between them).
fn idle_limit_error(session: &Session) -> GatewayError {
    session
        .idle_timeout()
        .map_or(GatewayError::IdleSessionTimeout, |(_, e)| e)
}

/// Resolves at `deadline`, or never. The timer is boxed, and only made
/// when there is a deadline.
async fn expires(deadline: Option<Instant>) {
    match deadline {
        Some(at) => Box::pin(tokio::time::sleep_until(at)).await,
        None => std::future::pending().await,
    }
}

/// Reads the next message (input has arrived; the rest of it may still be
/// on its way, under the same deadline) and handles it. `None` ends the
/// connection.
async fn next_message(
    conn: &mut Connection,
    session: &mut Session,
    state: State,
    activity: &mut ConnectionState,
    deadline: Option<Instant>,
) -> Option<State> {
    let read = async {
        match deadline {
            Some(at) => match tokio::time::timeout_at(at, conn.read_message()).await {
                Ok(read) => read,
                Err(_) => Err(idle_limit_error(session)),
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
        Ok(None) => return None,
        // Skipped unread: the connection goes on.
        Err(e @ GatewayError::MessageTooLarge { message_type, .. }) => {
            let extended = matches!(message_type, b'P' | b'B' | b'D' | b'E' | b'C');
            if extended && state == State::SkipUntilSync {
                return Some(state);
            }
            return fail(conn, session, e, extended).await.ok();
        }
        Err(e) => {
            // Framing is lost: say why and close.
            super::send_fatal(conn, &e).await;
            return None;
        }
    };
    activity.set_active(true);
    step(conn, session, state, msg).await.ok().flatten()
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
