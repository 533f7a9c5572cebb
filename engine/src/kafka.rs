//! Kafka topics as DataFusion partition streams: JSON values decoded into
//! Arrow batches, read either as a bounded snapshot (up to the high
//! watermarks seen at start) or tailed forever. Each scan owns its own
//! consumer; dropping the stream stops it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::json::reader::{infer_json_schema_from_iterator, Decoder, ReaderBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::config::LOGICAL_TYPE_KEY;
use crate::error::EngineError;

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// A tailing scan hands over what it has after this long, so rows reach the
/// client promptly at low rates.
const TAIL_LINGER: Duration = Duration::from_millis(50);
const MAX_BATCH_ROWS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// From the low to the high watermarks seen when the scan starts.
    Snapshot,
    /// Forever, from the latest (or earliest) offset.
    Tail { from_earliest: bool },
}

/// One Kafka topic read as a single DataFusion partition.
#[derive(Debug)]
pub struct KafkaPartition {
    pub bootstrap: String,
    pub topic: String,
    pub schema: SchemaRef,
    pub mode: ReadMode,
}

impl PartitionStream for KafkaPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        // Small buffer: a slow reader stops the consumer task from running ahead.
        let (tx, rx) = mpsc::channel(2);
        let scan = Scan {
            bootstrap: self.bootstrap.clone(),
            topic: self.topic.clone(),
            schema: self.schema.clone(),
            mode: self.mode,
        };
        tokio::spawn(async move {
            let result = tokio::select! {
                r = scan.run(&tx) => r,
                _ = tx.closed() => Ok(()),
            };
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|r| r.map_err(|e: EngineError| DataFusionError::External(Box::new(e))));
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

struct Scan {
    bootstrap: String,
    topic: String,
    schema: SchemaRef,
    mode: ReadMode,
}

type Tx = mpsc::Sender<Result<RecordBatch, EngineError>>;

impl Scan {
    async fn run(self, tx: &Tx) -> Result<(), EngineError> {
        let consumer: Arc<StreamConsumer> = Arc::new(consumer_config(&self.bootstrap).create()?);
        let (assignment, mut remaining) = {
            let (consumer, topic, mode) = (consumer.clone(), self.topic.clone(), self.mode);
            tokio::task::spawn_blocking(move || plan_assignment(consumer.as_ref(), &topic, mode))
                .await
                .map_err(|e| EngineError::Execution(e.to_string()))??
        };
        if self.mode == ReadMode::Snapshot && remaining.is_empty() {
            return Ok(());
        }
        consumer.assign(&assignment)?;
        let mut decoder = new_decoder(&self.schema)?;
        let linger = match self.mode {
            ReadMode::Snapshot => Duration::from_secs(3600),
            ReadMode::Tail { .. } => TAIL_LINGER,
        };
        let mut deadline = None;
        loop {
            let flush_at = deadline.unwrap_or_else(|| tokio::time::Instant::now() + linger);
            tokio::select! {
                message = consumer.recv() => {
                    let message = message?;
                    let (partition, offset) = (message.partition(), message.offset());
                    if self.mode == ReadMode::Snapshot {
                        match remaining.get(&partition) {
                            Some(&high) if offset < high => {}
                            _ => continue,
                        }
                    }
                    if let Some(payload) = message.payload() {
                        if let Err(e) = decoder.decode(payload) {
                            tracing::warn!(topic = %self.topic, partition, offset, "skipping malformed message: {e}");
                            decoder = new_decoder(&self.schema)?;
                        }
                    }
                    deadline.get_or_insert(tokio::time::Instant::now() + linger);
                    if self.mode == ReadMode::Snapshot && remaining.get(&partition).is_some_and(|&h| offset + 1 >= h) {
                        remaining.remove(&partition);
                        if remaining.is_empty() {
                            send(tx, decoder.flush()?).await;
                            return Ok(());
                        }
                    }
                    if decoder.len() >= MAX_BATCH_ROWS {
                        send(tx, decoder.flush()?).await;
                        deadline = None;
                    }
                }
                _ = tokio::time::sleep_until(flush_at), if deadline.is_some() => {
                    send(tx, decoder.flush()?).await;
                    deadline = None;
                }
            }
        }
    }
}

async fn send(tx: &Tx, batch: Option<RecordBatch>) {
    if let Some(batch) = batch.filter(|b| b.num_rows() > 0) {
        let _ = tx.send(Ok(batch)).await;
    }
}

fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "velo-engine")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("allow.auto.create.topics", "false")
        .set("log_level", "3")
        // Continuous queries want each event promptly; librdkafka waits up to
        // 500 ms by default for a fetch to fill.
        .set("fetch.wait.max.ms", "10");
    config
}

/// Partitions to assign, and for snapshots each partition's end offset.
fn plan_assignment(
    consumer: &impl Consumer,
    topic: &str,
    mode: ReadMode,
) -> Result<(TopicPartitionList, HashMap<i32, i64>), EngineError> {
    let partitions = topic_partitions(consumer, topic)?;
    let mut list = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in partitions {
        let offset = match mode {
            ReadMode::Snapshot => {
                let (low, high) = consumer.fetch_watermarks(topic, p, METADATA_TIMEOUT)?;
                if high > low {
                    ends.insert(p, high);
                }
                Offset::Offset(low)
            }
            ReadMode::Tail {
                from_earliest: true,
            } => Offset::Beginning,
            // The latest offset as of now, not whenever the first fetch resolves.
            ReadMode::Tail {
                from_earliest: false,
            } => Offset::Offset(consumer.fetch_watermarks(topic, p, METADATA_TIMEOUT)?.1),
        };
        list.add_partition_offset(topic, p, offset)?;
    }
    Ok((list, ends))
}

fn topic_partitions(consumer: &impl Consumer, topic: &str) -> Result<Vec<i32>, EngineError> {
    let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| EngineError::UnknownRelation {
            name: format!("kafka://{topic}"),
            position: 0,
        })?;
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

fn new_decoder(schema: &SchemaRef) -> Result<Decoder, EngineError> {
    ReaderBuilder::new(schema.clone())
        .with_batch_size(MAX_BATCH_ROWS * 2)
        .with_strict_mode(false)
        .build_decoder()
        .map_err(|e| EngineError::Execution(e.to_string()))
}

impl From<rdkafka::error::KafkaError> for EngineError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        EngineError::Source(format!("kafka: {e}"))
    }
}

impl From<arrow::error::ArrowError> for EngineError {
    fn from(e: arrow::error::ArrowError) -> Self {
        EngineError::Data(e.to_string())
    }
}

/// Infers a topic's schema from a sample of its first messages. Strings that
/// look like decimals become exact Decimal128 (Velostream's ScaledInteger),
/// ISO timestamps become microsecond timestamps.
pub fn infer_topic_schema(bootstrap: &str, topic: &str) -> Result<SchemaRef, EngineError> {
    const SAMPLE: usize = 200;
    let consumer: BaseConsumer = consumer_config(bootstrap).create()?;
    let (list, _) = plan_assignment(
        &consumer,
        topic,
        ReadMode::Tail {
            from_earliest: true,
        },
    )?;
    consumer.assign(&list)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut values = Vec::new();
    while values.len() < SAMPLE && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message?;
            if let Some(v) = message
                .payload()
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                .filter(|v| v.is_object())
            {
                values.push(v);
            }
        }
    }
    if values.is_empty() {
        return Err(EngineError::Source(format!(
            "cannot infer the schema of kafka://{topic}: no JSON messages to sample; declare its columns in the config file"
        )));
    }
    let inferred = infer_json_schema_from_iterator(values.iter().map(|v| Ok(v.clone())))?;
    let fields = inferred
        .fields()
        .iter()
        .map(|f| refine_string_field(f, &values))
        .collect::<Vec<_>>();
    Ok(Arc::new(Schema::new(fields)))
}

fn refine_string_field(field: &Arc<Field>, values: &[serde_json::Value]) -> Field {
    if field.data_type() != &DataType::Utf8 {
        return field.as_ref().clone();
    }
    let samples: Vec<&str> = values
        .iter()
        .filter_map(|v| v.get(field.name()).and_then(|s| s.as_str()))
        .collect();
    let all = |pred: fn(&str) -> bool| !samples.is_empty() && samples.iter().all(|s| pred(s));
    if all(is_decimal) {
        let scale = samples
            .iter()
            .map(|s| s.split('.').nth(1).map_or(0, str::len))
            .max()
            .unwrap_or(0)
            .min(18) as i8;
        let metadata = HashMap::from([(LOGICAL_TYPE_KEY.to_string(), "scaled_integer".into())]);
        return Field::new(field.name(), DataType::Decimal128(18, scale), true)
            .with_metadata(metadata);
    }
    if all(is_timestamp) {
        return Field::new(
            field.name(),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        );
    }
    field.as_ref().clone()
}

fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    match s.split_once('.') {
        Some((i, f)) => {
            !i.is_empty()
                && !f.is_empty()
                && i.bytes().all(|b| b.is_ascii_digit())
                && f.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b' ')
        && b[13] == b':'
        && chrono::NaiveDateTime::parse_from_str(&s[..19].replace(' ', "T"), "%Y-%m-%dT%H:%M:%S")
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_timestamp_strings() {
        assert!(is_decimal("189.45") && is_decimal("-0.5"));
        assert!(!is_decimal("189") && !is_decimal("1.2.3") && !is_decimal("abc"));
        assert!(is_timestamp("2026-11-24T10:00:00.123456"));
        assert!(!is_timestamp("2026-11-24"));
    }
}
