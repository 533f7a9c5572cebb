//! Arrow IPC from an engine node, decoded into `RecordBatch`es. The bytes
//! come from the network: a malformed message is a 58030 error for its
//! query, never a panic.

use std::sync::Arc;

use arrow::buffer::Buffer;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamDecoder;
use arrow::record_batch::RecordBatch;

use crate::error::GatewayError;

/// One query's IPC stream: its schema message, then its batch messages.
#[derive(Default)]
pub struct IpcDecoder {
    decoder: StreamDecoder,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> GatewayError {
    GatewayError::EngineUnavailable(format!("invalid Arrow {what} from engine: {e}"))
}

impl IpcDecoder {
    /// A schema message; commands (CREATE VIEW, ...) have none.
    pub fn schema(&mut self, ipc: &[u8]) -> Result<SchemaRef, GatewayError> {
        if ipc.is_empty() {
            return Ok(Arc::new(Schema::empty()));
        }
        // The decoder only finishes the schema message when more bytes come, so
        // read the schema from the message itself, then feed the decoder.
        let schema = unwind_safe("schema", || {
            arrow::ipc::convert::try_schema_from_ipc_buffer(ipc).map_err(|e| invalid("schema", e))
        })?;
        unwind_safe("schema", || {
            self.decoder
                .decode(&mut Buffer::from(ipc.to_vec()))
                .map_err(|e| invalid("schema", e))
        })?;
        Ok(Arc::new(schema))
    }

    /// The batch a message carries.
    pub fn batch(&mut self, ipc: Vec<u8>) -> Result<RecordBatch, GatewayError> {
        let mut buf = Buffer::from(ipc);
        let mut batch = None;
        while !buf.is_empty() {
            let before = buf.len();
            if let Some(b) = unwind_safe("batch", || {
                self.decoder
                    .decode(&mut buf)
                    .map_err(|e| invalid("batch", e))
            })? {
                batch = Some(b);
            }
            if buf.len() == before {
                return Err(invalid("batch", "the decoder made no progress"));
            }
        }
        if batch.is_none() {
            // A message with an empty body (a batch of zero columns) is
            // finished only when more bytes come: offer the end-of-stream
            // marker, which a waiting empty body does not consume.
            let mut end = Buffer::from(vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
            batch = unwind_safe("batch", || {
                self.decoder
                    .decode(&mut end)
                    .map_err(|e| invalid("batch", e))
            })?;
        }
        batch.ok_or_else(|| invalid("batch", "no batch in message"))
    }
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
    use arrow::record_batch::RecordBatchOptions;

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
        let mut decoder = IpcDecoder::default();
        let schema = decoder.schema(&schema_ipc).unwrap();
        assert_eq!(schema.fields().len(), 2);
        let batch = decoder.batch(batch_ipc).unwrap();
        assert_eq!(batch.num_rows(), 3);
    }

    #[test]
    fn a_hostile_engine_gets_an_error_never_a_panic() {
        let (schema_ipc, batch_ipc) = messages();
        for input in crate::mutate::mutations(&[&batch_ipc], 5_000) {
            let mut decoder = IpcDecoder::default();
            decoder.schema(&schema_ipc).unwrap();
            match decoder.batch(input) {
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
            if let Err(e) = IpcDecoder::default().schema(&input) {
                assert_eq!(e.sqlstate(), "58030");
            }
        }
    }

    #[test]
    fn a_zero_column_batch_decodes_with_its_row_count() {
        let schema = Arc::new(Schema::empty());
        let batch = RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(7)),
        )
        .unwrap();
        let mut writer = StreamWriter::try_new(Vec::new(), &schema).unwrap();
        let schema_ipc = std::mem::take(writer.get_mut());
        writer.write(&batch).unwrap();
        let batch_ipc = std::mem::take(writer.get_mut());
        let mut decoder = IpcDecoder::default();
        assert!(decoder.schema(&schema_ipc).unwrap().fields().is_empty());
        assert_eq!(decoder.batch(batch_ipc.clone()).unwrap().num_rows(), 7);
        assert_eq!(decoder.batch(batch_ipc).unwrap().num_rows(), 7);
    }
}
