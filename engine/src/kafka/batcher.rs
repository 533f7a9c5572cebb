//! JSON messages decoded into Arrow rows, each row's offset remembered. A
//! message that is not JSON, or whose values do not fit the columns, is
//! skipped alone: the rows decoded around it are kept.

use arrow::json::reader::Decoder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use super::new_decoder;
use crate::error::EngineError;

/// Messages decoded into Arrow rows, each row's offset remembered.
pub(super) struct Batcher {
    schema: SchemaRef,
    decoder: Decoder,
    offsets: Vec<i64>,
    /// The payloads decoded since the last flush and where each ends, to
    /// decode again when a malformed message leaves the decoder unusable
    /// (its rows would be lost with it).
    payloads: Vec<u8>,
    ends: Vec<(usize, i64)>,
    /// The offset after the last message taken since the last flush.
    next: Option<i64>,
}

/// What a flush hands over.
pub(super) struct Flushed {
    pub batch: Option<RecordBatch>,
    pub offsets: Vec<i64>,
    /// The offset after the last message taken.
    pub next: i64,
}

impl Batcher {
    pub fn new(schema: &SchemaRef) -> Result<Self, EngineError> {
        Ok(Self {
            schema: schema.clone(),
            decoder: new_decoder(schema)?,
            offsets: Vec::new(),
            payloads: Vec::new(),
            ends: Vec::new(),
            next: None,
        })
    }

    pub fn push(
        &mut self,
        offset: i64,
        payload: Option<&[u8]>,
        topic: &str,
    ) -> Result<(), EngineError> {
        self.next = Some(offset + 1);
        let Some(payload) = payload else {
            return Ok(());
        };
        let before = self.decoder.len();
        match self.decoder.decode(payload) {
            Ok(_) => {
                let added = self.decoder.len() - before;
                self.offsets.extend(std::iter::repeat_n(offset, added));
                self.payloads.extend_from_slice(payload);
                self.ends.push((self.payloads.len(), offset));
                Ok(())
            }
            Err(e) => {
                tracing::warn!(topic, offset, "skipping malformed message: {e}");
                self.redecode()
            }
        }
    }

    /// Rows decoded since the last flush.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether a message was taken since the last flush.
    pub fn has_pending(&self) -> bool {
        self.next.is_some()
    }

    /// A fresh decoder fed again with the payloads decoded since the last
    /// flush (all of which decoded before).
    fn redecode(&mut self) -> Result<(), EngineError> {
        self.decoder = new_decoder(&self.schema)?;
        self.offsets.clear();
        let mut start = 0;
        for &(end, offset) in &self.ends {
            let before = self.decoder.len();
            self.decoder.decode(&self.payloads[start..end])?;
            let added = self.decoder.len() - before;
            self.offsets.extend(std::iter::repeat_n(offset, added));
            start = end;
        }
        Ok(())
    }

    /// The rows decoded since the last flush. A batch that does not fit the
    /// schema (a value of the wrong type) is taken message by message, so
    /// that only the messages at fault are skipped.
    pub fn flush(&mut self, topic: &str) -> Result<Flushed, EngineError> {
        let next = self.next.take().unwrap_or_default();
        let batch = match self.decoder.flush() {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(
                    topic,
                    "a batch did not fit the schema ({e}); decoding its messages one by one"
                );
                self.decoder = new_decoder(&self.schema)?;
                Some(self.flush_one_by_one(topic)?)
            }
        };
        let offsets = std::mem::take(&mut self.offsets);
        self.payloads.clear();
        self.ends.clear();
        Ok(Flushed {
            batch,
            offsets,
            next,
        })
    }

    fn flush_one_by_one(&mut self, topic: &str) -> Result<RecordBatch, EngineError> {
        let mut batches = Vec::new();
        self.offsets.clear();
        let mut start = 0;
        for &(end, offset) in &self.ends {
            let payload = &self.payloads[start..end];
            start = end;
            let decoded = self
                .decoder
                .decode(payload)
                .map_err(EngineError::from)
                .and_then(|_| self.decoder.flush().map_err(EngineError::from));
            match decoded {
                Ok(Some(batch)) => {
                    self.offsets
                        .extend(std::iter::repeat_n(offset, batch.num_rows()));
                    batches.push(batch);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(
                        topic,
                        offset,
                        "skipping a message that does not fit the schema: {e}"
                    );
                    self.decoder = new_decoder(&self.schema)?;
                }
            }
        }
        Ok(datafusion::arrow::compute::concat_batches(
            &self.schema,
            &batches,
        )?)
    }
}
