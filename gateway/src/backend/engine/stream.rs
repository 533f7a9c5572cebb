//! One query's event stream from an engine node, decoded: Arrow IPC
//! schema and batches become `SchemaRef`/`RecordBatch`, heartbeats are
//! absorbed, and an engine error is a `GatewayError`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::buffer::Buffer;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamDecoder;
use arrow::record_batch::RecordBatch;
use tonic::transport::Channel;
use velo_proto::v1::{execute_query_response::Event, CancelQueryRequest, ExecuteQueryResponse};
use velo_proto::EngineServiceClient;

use super::Slot;
use crate::error::GatewayError;
use crate::metrics::{StreamingQuery, METRICS};

/// What a query's stream carries after its schema.
pub enum StreamEvent {
    Batch(RecordBatch),
    /// The terminal event, with the engine's command tag.
    Complete {
        tag: String,
    },
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
    decoder: StreamDecoder,
    slot: Slot,
    _streaming: StreamingQuery,
    started: Instant,
    awaiting_first_row: bool,
}

/// Cancels a query from elsewhere (the cancel-request path), while the
/// session that owns the stream is waiting on it.
#[derive(Clone)]
pub struct CancelHandle {
    client: EngineServiceClient<Channel>,
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

fn invalid(what: &str, e: impl std::fmt::Display) -> GatewayError {
    GatewayError::EngineUnavailable(format!("invalid Arrow {what} from engine: {e}"))
}

impl QueryStream {
    pub(super) fn new(
        query_id: String,
        stream: tonic::Streaming<ExecuteQueryResponse>,
        first: Option<Event>,
        slot: Slot,
        started: Instant,
    ) -> Self {
        Self {
            node: slot.node.addr.clone(),
            query_id,
            stream,
            first,
            decoder: StreamDecoder::new(),
            slot,
            _streaming: StreamingQuery::start(),
            started,
            awaiting_first_row: true,
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
                None => match self.stream.message().await {
                    Ok(Some(msg)) => msg.event,
                    Ok(None) => {
                        return Err(GatewayError::EngineUnavailable(format!(
                            "engine node {} ended the query without completing it",
                            self.node
                        )))
                    }
                    Err(status) => {
                        return Err(GatewayError::EngineUnavailable(format!(
                            "lost the engine node {} mid-query: {}",
                            self.node,
                            status.message()
                        )))
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
            schema: decode_schema(&mut self.decoder, &s.arrow_ipc_schema)?,
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
                Ok(StreamEvent::Batch(decode_batch(
                    &mut self.decoder,
                    b.arrow_ipc,
                )?))
            }
            Event::Complete(c) => Ok(StreamEvent::Complete { tag: c.command_tag }),
            _ => Err(GatewayError::EngineUnavailable(format!(
                "engine node {} sent an event out of order",
                self.node
            ))),
        }
    }
}

/// A schema message; commands (CREATE VIEW, ...) have none.
pub fn decode_schema(decoder: &mut StreamDecoder, ipc: &[u8]) -> Result<SchemaRef, GatewayError> {
    if ipc.is_empty() {
        return Ok(Arc::new(Schema::empty()));
    }
    // The decoder only finishes the schema message when more bytes come, so
    // read the schema from the message itself, then feed the decoder.
    let schema = unwind_safe("schema", || {
        arrow::ipc::convert::try_schema_from_ipc_buffer(ipc).map_err(|e| invalid("schema", e))
    })?;
    unwind_safe("schema", || {
        decoder
            .decode(&mut Buffer::from(ipc.to_vec()))
            .map_err(|e| invalid("schema", e))
    })?;
    Ok(Arc::new(schema))
}

fn decode_batch(decoder: &mut StreamDecoder, ipc: Vec<u8>) -> Result<RecordBatch, GatewayError> {
    let mut buf = Buffer::from(ipc);
    let mut batch = None;
    while !buf.is_empty() {
        let before = buf.len();
        if let Some(b) = unwind_safe("batch", || {
            decoder.decode(&mut buf).map_err(|e| invalid("batch", e))
        })? {
            batch = Some(b);
        }
        if buf.len() == before {
            return Err(invalid("batch", "the decoder made no progress"));
        }
    }
    batch.ok_or_else(|| invalid("batch", "no batch in message"))
}

/// Runs an Arrow decoder step on bytes from the network. Arrow's IPC
/// reader can panic on malformed input; from a node that is a 58030 for
/// this query, not the end of the client's connection.
fn unwind_safe<T>(
    what: &str,
    decode: impl FnOnce() -> Result<T, GatewayError>,
) -> Result<T, GatewayError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode))
        .unwrap_or_else(|_| Err(invalid(what, "malformed IPC message")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use arrow::ipc::writer::StreamWriter;

    /// A schema message and a batch message, as an engine node sends them.
    fn messages() -> (Vec<u8>, Vec<u8>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("volume", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("AAPL"), None, Some("TSLA")])),
                Arc::new(Int64Array::from(vec![Some(1), Some(2), None])),
            ],
        )
        .unwrap();
        let mut writer = StreamWriter::try_new(Vec::new(), &schema).unwrap();
        let schema_ipc = std::mem::take(writer.get_mut());
        writer.write(&batch).unwrap();
        (schema_ipc, std::mem::take(writer.get_mut()))
    }

    #[test]
    fn a_well_formed_batch_decodes_and_encodes() {
        let (schema_ipc, batch_ipc) = messages();
        let mut decoder = StreamDecoder::new();
        let schema = decode_schema(&mut decoder, &schema_ipc).unwrap();
        assert_eq!(schema.fields().len(), 2);
        let batch = decode_batch(&mut decoder, batch_ipc).unwrap();
        assert_eq!(batch.num_rows(), 3);
    }

    #[test]
    fn a_hostile_engine_gets_an_error_never_a_panic() {
        let (schema_ipc, batch_ipc) = messages();
        for input in crate::mutate::mutations(&[&batch_ipc], 5_000) {
            let mut decoder = StreamDecoder::new();
            decode_schema(&mut decoder, &schema_ipc).unwrap();
            match decode_batch(&mut decoder, input) {
                Ok(batch) => {
                    // Whatever decodes must encode.
                    let mut rows = crate::codec::RowEncoder::new(&batch);
                    for i in 0..batch.num_rows() {
                        rows.data_row(i);
                    }
                }
                Err(e) => assert_eq!(e.sqlstate(), "58030"),
            }
        }
        for input in crate::mutate::mutations(&[&schema_ipc], 5_000) {
            if let Err(e) = decode_schema(&mut StreamDecoder::new(), &input) {
                assert_eq!(e.sqlstate(), "58030");
            }
        }
    }
}
