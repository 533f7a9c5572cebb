//! The row pump: the one loop that moves a query's rows from its
//! `ResultStream` to the client, for simple queries, COPY, portals and
//! cursors alike. It is where waiting happens, so it is where flushing,
//! cancellation and a client that goes away are handled: rows leave as
//! each batch arrives, and a partly sent batch waits for the next
//! Execute or FETCH.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use chrono_tz::Tz;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::quotas::QueryPermit;
use crate::backend::{ResultSchema, ResultStream, StreamEvent};
use crate::codec::RowEncoder;
use crate::error::GatewayError;
use crate::metrics::METRICS;
use crate::wire::{Connection, FLUSH_AT};

/// Where pumped rows go.
pub enum Sink<'a> {
    /// DataRow messages; `true` columns in binary; timestamptz text in
    /// the zone.
    Rows(&'a [bool], Tz),
    /// COPY data lines (text or CSV), one CopyData per output buffer.
    Copy { csv: bool, zone: Tz },
    /// Counted, not sent (MOVE).
    Discard,
}

/// What may interrupt a statement: the session's cancel token (a
/// CancelRequest), its statement_timeout, and the end of a drain.
pub struct Interrupt {
    pub token: CancellationToken,
    pub deadline: Option<Instant>,
    pub shutdown: CancellationToken,
}

impl Interrupt {
    pub fn new(
        token: CancellationToken,
        timeout: Option<Duration>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            token,
            deadline: timeout.map(|t| Instant::now() + t),
            shutdown,
        }
    }

    /// The reason the statement must stop, if there is one already.
    fn fired_already(&self) -> Option<GatewayError> {
        if self.token.is_cancelled() {
            Some(GatewayError::Cancelled)
        } else if self.shutdown.is_cancelled() {
            Some(GatewayError::AdminShutdown)
        } else if self.deadline.is_some_and(|at| at <= Instant::now()) {
            Some(GatewayError::StatementTimeout)
        } else {
            None
        }
    }

    /// Resolves with the reason the statement must stop.
    async fn fired(&self) -> GatewayError {
        let deadline = async {
            match self.deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.token.cancelled() => GatewayError::Cancelled,
            _ = self.shutdown.cancelled() => GatewayError::AdminShutdown,
            _ = deadline => GatewayError::StatementTimeout,
        }
    }
}

/// An open query and how far its rows have gone.
pub struct RowPump {
    _permit: QueryPermit,
    stream: ResultStream,
    schema: ResultSchema,
    /// A batch partly sent, and how many of its rows went out.
    pending: Option<(RecordBatch, usize)>,
    /// When the pending batch arrived, until its first rows are written.
    arrived: Option<Instant>,
    /// The engine's tag, once the stream completed.
    completion: Option<String>,
    rows: u64,
}

/// Waits for `work`, unless the statement is interrupted or the client
/// goes away first. Replies still buffered are flushed before waiting: the
/// client may need them (BindComplete, RowDescription) before it does
/// what makes the next row appear. When `work` is ready at once, nothing
/// is flushed yet: what is ready leaves together with what is buffered (a
/// small query's RowDescription, rows and CommandComplete in one write),
/// and batches form only when events arrive faster than they leave.
pub async fn guarded<T>(
    conn: &mut Connection,
    interrupt: &Interrupt,
    work: impl Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    tokio::pin!(work);
    if conn.has_pending_output() {
        if let Poll::Ready(result) = futures::poll!(work.as_mut()) {
            return result;
        }
        flush(conn, interrupt).await?;
    }
    tokio::select! {
        result = &mut work => result,
        e = interrupt.fired() => Err(e),
        _ = conn.closed() => Err(GatewayError::ClientGone),
    }
}

/// Flushes; an interrupt (cancel, statement_timeout, drain) that fires
/// meanwhile is answered once the flush is through, between messages, so
/// the session goes on. A client that does not take the rest within
/// `FLUSH_GRACE` is not reading: part of a message may have gone out, the
/// protocol stream cannot continue, and the connection ends.
async fn flush(conn: &mut Connection, interrupt: &Interrupt) -> Result<(), GatewayError> {
    let flushing = conn.flush();
    tokio::pin!(flushing);
    let e = tokio::select! {
        result = &mut flushing => return Ok(result?),
        e = interrupt.fired() => e,
    };
    match tokio::time::timeout(FLUSH_GRACE, flushing).await {
        Ok(Ok(())) => Err(e),
        _ => {
            tracing::info!("{e} while the client was not reading: closing the connection");
            Err(GatewayError::ClientGone)
        }
    }
}

/// How long an interrupted flush may take to finish.
const FLUSH_GRACE: Duration = Duration::from_secs(2);

impl RowPump {
    /// Opens a query: `start` yields its schema and stream; `permit`
    /// counts it against the session's and the user's bounds.
    pub async fn open(
        conn: &mut Connection,
        interrupt: &Interrupt,
        permit: QueryPermit,
        start: impl Future<Output = Result<(ResultSchema, ResultStream), GatewayError>>,
    ) -> Result<Self, GatewayError> {
        let (schema, stream) = guarded(conn, interrupt, start).await?;
        Ok(Self {
            _permit: permit,
            stream,
            schema,
            pending: None,
            arrived: None,
            completion: None,
            rows: 0,
        })
    }

    /// The engine node running the query (none for the catalog).
    pub fn node(&self) -> Option<&str> {
        self.stream.node()
    }

    pub fn schema(&self) -> &ResultSchema {
        &self.schema
    }

    /// A command (CREATE VIEW, ...): no columns, only a completion.
    pub fn is_command(&self) -> bool {
        self.schema.schema.fields().is_empty()
            && !matches!(self.schema.tag.as_str(), "SELECT" | "SHOW")
    }

    /// Sends up to `limit` rows (all when `None`) and returns how many
    /// went. Stops early only when the query completes.
    pub async fn pump(
        &mut self,
        conn: &mut Connection,
        interrupt: &Interrupt,
        sink: Sink<'_>,
        limit: Option<u64>,
    ) -> Result<u64, GatewayError> {
        let mut sent = 0u64;
        while limit.is_none_or(|l| sent < l) {
            if let Some((batch, at)) = self.pending.take() {
                let want = limit.map_or(usize::MAX, |l| {
                    usize::try_from(l - sent).unwrap_or(usize::MAX)
                });
                let end = batch.num_rows().min(at.saturating_add(want));
                let reached = write_rows(conn, &batch, at, end, &sink);
                sent += (reached - at) as u64;
                if reached < batch.num_rows() {
                    self.pending = Some((batch, reached));
                }
                // A full buffer goes now; less waits to leave with what is
                // ready next (`guarded` flushes before waiting for more), so a
                // small result and its CommandComplete share one write.
                if conn.needs_flush() {
                    flush(conn, interrupt).await?;
                }
                if let Some(arrived) = self.arrived.take() {
                    METRICS
                        .batch_in_gateway
                        .observe(arrived.elapsed().as_secs_f64());
                }
                if self.pending.is_some() {
                    // A big batch is written a buffer at a time, each a lot
                    // of work: let the worker run other tasks in between (a
                    // CancelRequest's connection may be queued behind this
                    // one), and notice an interrupt even when every flush
                    // is instant.
                    tokio::task::yield_now().await;
                    if let Some(e) = interrupt.fired_already() {
                        return Err(e);
                    }
                }
                continue;
            }
            if self.completion.is_some() {
                break;
            }
            match guarded(conn, interrupt, self.stream.next()).await {
                Ok(StreamEvent::Batch(batch)) => {
                    self.pending = Some((batch, 0));
                    self.arrived = Some(Instant::now());
                }
                Ok(StreamEvent::Complete { tag }) => self.completion = Some(tag),
                Ok(StreamEvent::Notice(notice)) => conn.send(notice.into_message()),
                Err(e @ (GatewayError::Cancelled | GatewayError::StatementTimeout)) => {
                    if let Some(handle) = self.stream.cancel_handle() {
                        tokio::spawn(handle.cancel());
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        self.rows += sent;
        Ok(sent)
    }

    /// Every row sent and the completion received.
    pub fn is_finished(&self) -> bool {
        self.completion.is_some() && self.pending.is_none()
    }

    /// Rows sent so far, over every call.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// CommandComplete's tag: `SELECT n` for results, the engine's tag
    /// for commands.
    pub fn completion_tag(&self) -> String {
        match self.completion.as_deref() {
            Some("SELECT" | "SHOW") | None => format!("SELECT {}", self.rows),
            Some(tag) => tag.to_string(),
        }
    }
}

/// Encodes rows `from..to` until about a flush's worth of output is
/// buffered, and returns the row it stopped at. A batch's size in rows
/// says nothing about its size as text (a zero-column batch can claim
/// billions of rows), so output is bounded here, not by the batch.
fn write_rows(
    conn: &mut Connection,
    batch: &RecordBatch,
    from: usize,
    to: usize,
    sink: &Sink<'_>,
) -> usize {
    if from == to {
        return to;
    }
    match sink {
        Sink::Rows(binary, zone) => {
            let mut rows = RowEncoder::with_formats(batch, binary.to_vec()).in_zone(*zone);
            let out = conn.output();
            let mut i = from;
            while i < to && out.len() < FLUSH_AT {
                rows.write_data_row(i, out);
                i += 1;
            }
            conn.count_rows(i - from);
            i
        }
        Sink::Copy { csv, zone } => {
            // One CopyData per chunk: clients accept any chunking.
            let mut rows = RowEncoder::new(batch).in_zone(*zone);
            let i = rows.write_copy_data(from, to, *csv, COPY_CHUNK, conn.output());
            conn.count_rows(i - from);
            i
        }
        Sink::Discard => to,
    }
}

/// COPY data is sent in messages of about this size.
const COPY_CHUNK: usize = 256 * 1024;
