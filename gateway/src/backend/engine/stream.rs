//! One query's event stream from an engine node, decoded: Arrow IPC
//! schema and batches become `SchemaRef`/`RecordBatch`, notices become
//! NoticeResponses, heartbeats are absorbed, and an engine error is a
//! `GatewayError`.

use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use velo_proto::v1::{
    execute_query_response::Event, CancelQueryRequest, ExecuteQueryResponse, Notice,
};
use velo_proto::EngineClient;

use super::Slot;
use crate::codec::IpcDecoder;
use crate::error::GatewayError;
use crate::metrics::{StreamingQuery, METRICS};
use crate::pg::{Response, Severity};

/// What a query's stream carries after its schema.
pub enum StreamEvent {
    Batch(RecordBatch),
    /// The terminal event, with the engine's command tag.
    Complete {
        tag: String,
    },
    /// Something the client should know that does not end the query
    /// (e.g. a snapshot missing events retention deleted).
    Notice(Response),
}

/// An engine notice as the NoticeResponse a PostgreSQL client expects.
fn notice(n: Notice) -> Response {
    let severity = match n.severity.as_str() {
        "WARNING" => Severity::Warning,
        _ => Severity::Notice,
    };
    let code = if n.sqlstate.len() == 5 {
        n.sqlstate.as_str()
    } else {
        "01000"
    };
    let mut response = Response::new(severity, code, n.message);
    response.detail = (!n.detail.is_empty()).then_some(n.detail);
    response
}

/// A query's result columns and how the engine runs it.
#[derive(Debug, Clone)]
pub struct ResultSchema {
    pub schema: SchemaRef,
    /// A snapshot ends by itself; a continuous query (EMIT) does not.
    pub bounded: bool,
    /// The engine's command tag (SELECT, SHOW, CREATE VIEW, ...).
    pub tag: String,
}

/// A running query on one node, holding its node slot. Dropping it drops
/// the gRPC stream, which cancels the query on the node.
pub struct QueryStream {
    pub node: String,
    query_id: String,
    stream: tonic::Streaming<ExecuteQueryResponse>,
    first: Option<Event>,
    decoder: IpcDecoder,
    slot: Slot,
    _streaming: StreamingQuery,
    started: Instant,
    awaiting_first_row: bool,
    heartbeat_timeout: Duration,
}

/// Cancels a query from elsewhere (the cancel-request path), while the
/// session that owns the stream is waiting on it.
#[derive(Clone)]
pub struct CancelHandle {
    client: EngineClient,
    query_id: String,
}

impl CancelHandle {
    pub async fn cancel(self) {
        let mut client = self.client;
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            client.cancel_query(CancelQueryRequest {
                query_id: self.query_id,
            }),
        )
        .await;
    }
}

impl QueryStream {
    pub(super) fn new(
        query_id: String,
        stream: tonic::Streaming<ExecuteQueryResponse>,
        first: Option<Event>,
        slot: Slot,
        started: Instant,
        heartbeat_timeout: Duration,
    ) -> Self {
        Self {
            node: slot.node.addr.clone(),
            query_id,
            stream,
            first,
            decoder: IpcDecoder::default(),
            slot,
            _streaming: StreamingQuery::start(),
            started,
            awaiting_first_row: true,
            heartbeat_timeout,
        }
    }

    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            client: self.slot.node.client.clone(),
            query_id: self.query_id.clone(),
        }
    }

    /// The next event that is not a heartbeat. A stream that ends without
    /// its terminal event, or a node that vanishes, is a 58030 error.
    async fn event(&mut self) -> Result<Event, GatewayError> {
        loop {
            let event = match self.first.take() {
                Some(first) => Some(first),
                None => match tokio::time::timeout(self.heartbeat_timeout, self.stream.message())
                    .await
                {
                    Ok(Ok(Some(msg))) => msg.event,
                    Ok(Ok(None)) => {
                        return Err(GatewayError::EngineUnavailable(format!(
                            "engine node {} ended the query without completing it",
                            self.node
                        )))
                    }
                    Ok(Err(status)) => {
                        self.slot.node.failed(status.message());
                        return Err(GatewayError::EngineUnavailable(format!(
                            "lost the engine node {} mid-query: {}",
                            self.node,
                            status.message()
                        )));
                    }
                    Err(_) => {
                        self.slot.node.failed("no heartbeat");
                        return Err(GatewayError::EngineUnavailable(format!(
                            "engine node {} sent nothing for {:?} (not even a heartbeat)",
                            self.node, self.heartbeat_timeout
                        )));
                    }
                },
            };
            match event {
                Some(Event::Heartbeat(_)) | None => continue,
                Some(Event::Error(e)) => return Err(GatewayError::Engine(e)),
                Some(other) => return Ok(other),
            }
        }
    }

    /// The result's schema: the first event of every query.
    pub async fn schema(&mut self) -> Result<ResultSchema, GatewayError> {
        let Event::Schema(s) = self.event().await? else {
            return Err(GatewayError::EngineUnavailable(
                "engine ended the query before describing it".into(),
            ));
        };
        Ok(ResultSchema {
            schema: self.decoder.schema(&s.arrow_ipc_schema)?,
            bounded: s.bounded,
            tag: s.command_tag,
        })
    }

    /// The next batch, or the completion.
    pub async fn next(&mut self) -> Result<StreamEvent, GatewayError> {
        match self.event().await? {
            Event::Batch(b) => {
                if self.awaiting_first_row && b.num_rows > 0 {
                    self.awaiting_first_row = false;
                    METRICS
                        .query_first_row
                        .with_label_values(&["engine"])
                        .observe(self.started.elapsed().as_secs_f64());
                }
                if b.node_time_micros > 0 {
                    let transit = chrono::Utc::now().timestamp_micros() - b.node_time_micros;
                    METRICS.batch_transit.observe(transit.max(0) as f64 / 1e6);
                }
                Ok(StreamEvent::Batch(self.decoder.batch(b.arrow_ipc)?))
            }
            Event::Complete(c) => Ok(StreamEvent::Complete { tag: c.command_tag }),
            Event::Notice(n) => Ok(StreamEvent::Notice(notice(n))),
            _ => Err(GatewayError::EngineUnavailable(format!(
                "engine node {} sent an event out of order",
                self.node
            ))),
        }
    }
}
