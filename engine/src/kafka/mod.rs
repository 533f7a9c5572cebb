//! Kafka topics as DataFusion partition streams: JSON values decoded into
//! Arrow batches, read either as a bounded snapshot (up to the high
//! watermarks seen at start) or tailed forever. Queries tailing from the
//! live position share one consumer per topic (`live`); snapshots slice a
//! decoded copy of the topic kept in memory (`retained`) when it holds
//! their offsets; other snapshots and replays from the earliest offset own
//! a consumer. Dropping the stream stops a query's part in any of them.

mod batcher;
mod live;
mod retained;

pub use live::{LiveTopics, MAX_LAG_ROWS};
pub use retained::{RetainedTopics, DEFAULT_RETAINED_BYTES};

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::json::reader::{infer_json_schema_from_iterator, Decoder, ReaderBuilder};
use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::compute::{cast, kernels::aggregate::max};
use datafusion::arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::config::LOGICAL_TYPE_KEY;
use crate::error::EngineError;
use crate::notice::{Notice, QueryNotices};
use batcher::Batcher;

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// A tailing scan hands over what it has as soon as no further message is
/// waiting (the loop below takes waiting messages first): an event leaves
/// at once, and batches form only while messages arrive faster than they
/// are handed over.
const TAIL_LINGER: Duration = Duration::ZERO;
const MAX_BATCH_ROWS: usize = 8192;
/// How often a snapshot checks whether retention has deleted all that is
/// left of a partition it is stuck on.
const STALL_CHECK: Duration = Duration::from_secs(1);

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
    /// The event-time column (by index) and the clock to advance to the
    /// latest time it holds, as each batch enters the query's plan.
    pub event_clock: Option<(usize, EventClock)>,
    /// Where a snapshot tells its query's client about events it lost.
    pub notices: QueryNotices,
    /// Where the node reads topics.
    pub readers: Readers,
}

/// How a node reads its topics, shared by every query.
#[derive(Debug, Clone)]
pub struct Readers {
    /// One consumer per topic, for tailing from the live position.
    pub live: LiveTopics,
    /// Decoded topics in memory, for snapshots.
    pub retained: RetainedTopics,
    /// Permits for a consumer of the query's own (a snapshot memory cannot
    /// serve, a replay).
    pub private_scans: Arc<tokio::sync::Semaphore>,
}

/// The latest event time (microseconds) the Kafka scans of one continuous
/// query have handed to its plan, before any filter: windows close on it
/// even when the query's WHERE clause lets few events through.
#[derive(Debug, Clone)]
pub struct EventClock(Arc<AtomicI64>);

impl Default for EventClock {
    fn default() -> Self {
        Self(Arc::new(AtomicI64::new(i64::MIN)))
    }
}

impl EventClock {
    pub fn now(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Acquire)).filter(|&t| t != i64::MIN)
    }

    fn advance(&self, times: &ArrayRef) {
        if let Some(t) = latest_time(times) {
            self.0.fetch_max(t, Ordering::AcqRel);
        }
    }
}

/// The latest of `times` (any timestamp type) in microseconds.
fn latest_time(times: &ArrayRef) -> Option<i64> {
    let micros = cast(times, &DataType::Timestamp(TimeUnit::Microsecond, None)).ok()?;
    max(micros.as_primitive::<TimestampMicrosecondType>())
}

impl PartitionStream for KafkaPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches = match self.mode {
            ReadMode::Tail {
                from_earliest: false,
            } => self
                .readers
                .live
                .subscribe(&self.bootstrap, &self.topic, &self.schema)
                .boxed(),
            _ => self.own_scan(),
        };
        let clock = self.event_clock.clone();
        let stream = batches.map(move |r| {
            // Advanced here, in the task that runs the query's plan, not in
            // the consumer task: the clock then never runs ahead of the
            // batches the plan has been handed.
            if let (Ok(batch), Some((column, clock))) = (&r, &clock) {
                clock.advance(batch.column(*column));
            }
            r.map_err(|e: EngineError| DataFusionError::External(Box::new(e)))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

impl KafkaPartition {
    /// A consumer of the query's own, read by a task that stops when the
    /// query drops the stream.
    fn own_scan(&self) -> futures::stream::BoxStream<'static, Result<RecordBatch, EngineError>> {
        // Small buffer: a slow reader stops the consumer task from running ahead.
        let (tx, rx) = mpsc::channel(2);
        let scan = Scan {
            bootstrap: self.bootstrap.clone(),
            topic: self.topic.clone(),
            schema: self.schema.clone(),
            mode: self.mode,
            notices: self.notices.clone(),
        };
        let readers = self.readers.clone();
        tokio::spawn(async move {
            let result = tokio::select! {
                r = async {
                    if scan.mode == ReadMode::Snapshot {
                        let from_memory = readers.retained.snapshot(&scan.bootstrap, &scan.topic, &scan.schema).await;
                        if let Some((batches, deleted)) = from_memory {
                            // Told before the rows, which may end the query (LIMIT).
                            tell_deleted(&scan.topic, &scan.notices, deleted);
                            for batch in batches {
                                send(&tx, Some(batch)).await;
                            }
                            return Ok(());
                        }
                    }
                    let _permit = readers.private_scans.acquire_owned().await;
                    scan.run(&tx).await
                } => r,
                _ = tx.closed() => Ok(()),
            };
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
    }
}

struct Scan {
    bootstrap: String,
    topic: String,
    schema: SchemaRef,
    mode: ReadMode,
    notices: QueryNotices,
}

type Tx = mpsc::Sender<Result<RecordBatch, EngineError>>;

impl Scan {
    async fn run(self, tx: &Tx) -> Result<(), EngineError> {
        let consumer: Arc<StreamConsumer> = Arc::new(self.consumer_config().create()?);
        let (assignment, ranges) = plan(&consumer, &self.topic, self.mode).await?;
        self.read(consumer, &assignment, ranges, tx)
            .await
            .map(|_| ())
    }

    fn consumer_config(&self) -> ClientConfig {
        let mut config = consumer_config(&self.bootstrap);
        if self.mode == ReadMode::Snapshot {
            // Retention may delete offsets a snapshot has not read yet (its
            // start offset even before the first fetch). Go on from the new
            // start of the log, as Kafka consumers do, instead of jumping to
            // the end and never reaching the stop offsets; and learn about
            // reaching a partition's end even when no message is at the stop
            // offset (all deleted, or a transaction marker).
            config
                .set("auto.offset.reset", "earliest")
                .set("enable.partition.eof", "true");
        }
        config
    }

    /// Reads the assigned partitions; a snapshot stops at the end of each
    /// range in `ranges`. Returns how many of those offsets retention deleted
    /// before they could be read.
    async fn read(
        &self,
        consumer: Arc<StreamConsumer>,
        assignment: &TopicPartitionList,
        ranges: HashMap<i32, Range<i64>>,
        tx: &Tx,
    ) -> Result<u64, EngineError> {
        let mut snapshot = SnapshotProgress::new(ranges);
        if self.mode == ReadMode::Snapshot && snapshot.is_done() {
            return Ok(0);
        }
        consumer.assign(assignment)?;
        let mut rows = Batcher::new(&self.schema)?;
        let linger = match self.mode {
            ReadMode::Snapshot => Duration::from_secs(3600),
            ReadMode::Tail { .. } => TAIL_LINGER,
        };
        let mut deadline = None;
        let mut stall_check =
            tokio::time::interval_at(tokio::time::Instant::now() + STALL_CHECK, STALL_CHECK);
        stall_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let flush_at = deadline.unwrap_or_else(|| tokio::time::Instant::now() + linger);
            tokio::select! {
                // Messages already waiting first, before a due flush.
                biased;
                message = consumer.recv() => match message {
                    Err(KafkaError::PartitionEOF(partition)) => snapshot.end_of_partition(partition),
                    Err(e) => return Err(e.into()),
                    Ok(message) => {
                        let (partition, offset) = (message.partition(), message.offset());
                        let wanted = self.mode != ReadMode::Snapshot || snapshot.accept(partition, offset);
                        if let Some(payload) = message.payload().filter(|_| wanted) {
                            rows.push(offset, Some(payload), &self.topic)?;
                            deadline.get_or_insert(tokio::time::Instant::now() + linger);
                        }
                    }
                },
                _ = tokio::time::sleep_until(flush_at), if deadline.is_some() => {
                    send(tx, rows.flush(&self.topic)?.batch).await;
                    deadline = None;
                }
                // When retention deletes faster than the consumer's fetches
                // (backed off after each "offset out of range") reach the
                // new start of the log, no message and no end of partition
                // ever arrives; the log's start passing the stop offset
                // ends the partition instead.
                // librdkafka's reset after "offset out of range" goes to a
                // cached start of the log that retention may already have
                // passed again, so a partition can stall for as long as
                // retention keeps deleting: move it into the log, ahead of
                // its real start (`resume_point`).
                _ = stall_check.tick(), if self.mode == ReadMode::Snapshot => {
                    for partition in snapshot.stalled() {
                        if let Ok(low) = log_start(&consumer, &self.topic, partition).await {
                            if let Some(offset) = snapshot.resume_point(partition, low) {
                                seek(&consumer, &self.topic, partition, offset).await;
                            }
                        }
                    }
                }
            }
            if self.mode == ReadMode::Snapshot && snapshot.is_done() {
                // Told before the last rows go out, so that the notice
                // reaches the client even if those rows end the query (LIMIT).
                let deleted = self.report_deleted(consumer, snapshot).await;
                send(tx, rows.flush(&self.topic)?.batch).await;
                return Ok(deleted);
            }
            if rows.len() >= MAX_BATCH_ROWS {
                send(tx, rows.flush(&self.topic)?.batch).await;
                deadline = None;
            }
        }
    }

    /// Logs how many offsets the finished snapshot skipped because retention
    /// had deleted them, tells the query's client in a notice, and returns
    /// that number. Only offsets below the log's current start count: other
    /// gaps are transaction markers or compaction, not lost events.
    async fn report_deleted(
        &self,
        consumer: Arc<StreamConsumer>,
        snapshot: SnapshotProgress,
    ) -> u64 {
        let mut by_partition = Vec::new();
        for (partition, gaps) in snapshot.gaps_by_partition() {
            let deleted = if gaps.missing.is_empty() {
                0
            } else if let Ok(low) = log_start(&consumer, &self.topic, partition).await {
                deleted_below(&gaps.missing, low)
            } else {
                tracing::warn!(topic = %self.topic, partition, "a snapshot found offsets missing and could not look up the log's start to tell whether retention deleted them");
                0
            };
            let deleted = deleted + gaps.jumped;
            if deleted > 0 {
                by_partition.push((partition, deleted));
            }
        }
        tell_deleted(&self.topic, &self.notices, by_partition)
    }
}

/// Logs by partition how many events a snapshot lost because retention
/// deleted them before they were read, tells the query's client in a
/// notice, and returns the total.
fn tell_deleted(topic: &str, notices: &QueryNotices, mut by_partition: Vec<(i32, u64)>) -> u64 {
    if by_partition.is_empty() {
        return 0;
    }
    by_partition.sort_unstable();
    for (partition, deleted) in &by_partition {
        tracing::warn!(
            topic,
            partition,
            deleted,
            "a snapshot lost {deleted} events that retention deleted before they were read; it went on from the new start of the log"
        );
    }
    notices.push(Notice::retention_deleted(topic, &by_partition));
    by_partition.iter().map(|(_, n)| n).sum()
}

/// How many of the offsets in `ranges` lie below `low`, the log's start:
/// those retention deleted.
fn deleted_below(ranges: &[Range<i64>], low: i64) -> u64 {
    ranges
        .iter()
        .map(|r| (r.end.min(low) - r.start).max(0) as u64)
        .sum()
}

/// `plan_assignment` off the async threads (it waits on the broker).
async fn plan(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    mode: ReadMode,
) -> Result<(TopicPartitionList, HashMap<i32, Range<i64>>), EngineError> {
    let (consumer, topic) = (consumer.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || plan_assignment(consumer.as_ref(), &topic, mode))
        .await
        .map_err(|e| EngineError::Execution(e.to_string()))?
}

/// Moves the consumer's position in `partition` to `offset`.
async fn seek(consumer: &Arc<StreamConsumer>, topic: &str, partition: i32, offset: i64) {
    let (consumer, topic) = (consumer.clone(), topic.to_string());
    let sought = tokio::task::spawn_blocking(move || {
        consumer.seek(&topic, partition, Offset::Offset(offset), METADATA_TIMEOUT)
    })
    .await;
    if let Ok(Err(e)) = sought {
        tracing::warn!(partition, offset, "seeking past deleted offsets: {e}");
    }
}

/// The first offset still in `partition`'s log.
async fn log_start(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    partition: i32,
) -> Result<i64, EngineError> {
    let (consumer, topic) = (consumer.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        consumer.fetch_watermarks(&topic, partition, METADATA_TIMEOUT)
    })
    .await
    .map_err(|e| EngineError::Execution(e.to_string()))?
    .map(|(low, _)| low)
    .map_err(EngineError::from)
}

/// Where a snapshot stands: for each partition still being read, the next
/// offset it expects up to the offset it stops before (the high watermark
/// when the query started); and the offset ranges that were not there.
#[derive(Debug)]
struct SnapshotProgress {
    pending: HashMap<i32, Range<i64>>,
    missing: Vec<(i32, Range<i64>)>,
    /// Ranges jumped over after a stall, ahead of the log's start: gone to
    /// retention, or about to be.
    jumped: Vec<(i32, Range<i64>)>,
    /// Each pending partition's next offset at the last `stalled` call.
    last_seen: HashMap<i32, i64>,
    /// Each partition's log start at the last `resume_point` call.
    log_start_seen: HashMap<i32, i64>,
}

impl SnapshotProgress {
    fn new(ranges: HashMap<i32, Range<i64>>) -> Self {
        let pending = ranges.into_iter().filter(|(_, r)| !r.is_empty()).collect();
        Self {
            pending,
            missing: Vec::new(),
            jumped: Vec::new(),
            last_seen: HashMap::new(),
            log_start_seen: HashMap::new(),
        }
    }

    fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether the message at `offset` of `partition` is part of the
    /// snapshot. Offsets jumped over on the way (deleted by retention, or
    /// transaction markers) are recorded as missing; a message at or past the
    /// stop offset ends the partition.
    fn accept(&mut self, partition: i32, offset: i64) -> bool {
        let Some(range) = self.pending.get_mut(&partition) else {
            return false;
        };
        if offset < range.start {
            return false; // already read
        }
        if offset > range.start {
            let to = offset.min(range.end);
            self.missing.push((partition, range.start..to));
        }
        if offset >= range.end {
            self.pending.remove(&partition);
            return false;
        }
        range.start = offset + 1;
        if range.is_empty() {
            self.pending.remove(&partition);
        }
        true
    }

    /// The consumer reached the end of `partition`'s log (the high watermark,
    /// at or past the stop offset; or the last stable offset while a
    /// transaction is open): the rest of its range will not come.
    fn end_of_partition(&mut self, partition: i32) {
        if let Some(range) = self.pending.remove(&partition) {
            self.missing.push((partition, range));
        }
    }

    /// The pending partitions that have not moved since the last call.
    fn stalled(&mut self) -> Vec<i32> {
        let now: HashMap<i32, i64> = self.pending.iter().map(|(p, r)| (*p, r.start)).collect();
        let stalled = now
            .iter()
            .filter(|(p, next)| self.last_seen.get(p) == Some(next))
            .map(|(p, _)| *p)
            .collect();
        self.last_seen = now;
        stalled
    }

    /// Where to go on reading stalled `partition`, whose log now starts at
    /// `low`. Seeking to `low` itself loses the race with retention again
    /// and again when the consumer's round trips are slower than retention
    /// (a loaded node), so the read resumes ahead of it, by twice what
    /// retention deleted since the previous look; what is jumped over counts
    /// as deleted. `None`: nothing to move (not pending, or not behind the
    /// log's start), or the partition is over (its log starts past the
    /// stop offset).
    fn resume_point(&mut self, partition: i32, low: i64) -> Option<i64> {
        let previous = self.log_start_seen.insert(partition, low);
        let range = self.pending.get(&partition)?.clone();
        if low >= range.end {
            self.end_of_partition(partition);
            return None;
        }
        if low <= range.start {
            return None;
        }
        let ahead = previous.map_or(0, |p| 2 * (low - p).max(0));
        let resume = (low + ahead).min(range.end);
        self.jumped.push((partition, range.start..resume));
        if resume >= range.end {
            self.pending.remove(&partition);
            return None;
        }
        self.pending.insert(partition, resume..range.end);
        Some(resume)
    }

    /// What the snapshot did not read, by partition: the missing ranges
    /// (retention, or transaction markers and compaction) and how many
    /// offsets it jumped over after stalls.
    fn gaps_by_partition(&self) -> HashMap<i32, Gaps> {
        let mut by_partition: HashMap<i32, Gaps> = HashMap::new();
        for (partition, range) in &self.jumped {
            by_partition.entry(*partition).or_default().jumped += (range.end - range.start) as u64;
        }
        for (partition, range) in &self.missing {
            by_partition
                .entry(*partition)
                .or_default()
                .missing
                .push(range.clone());
        }
        by_partition
    }
}

/// One partition's part of what a snapshot did not read.
#[derive(Debug, Default)]
struct Gaps {
    missing: Vec<Range<i64>>,
    jumped: u64,
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

/// Partitions to assign, and for snapshots each partition's offsets to read
/// (low to high watermark now).
fn plan_assignment(
    consumer: &impl Consumer,
    topic: &str,
    mode: ReadMode,
) -> Result<(TopicPartitionList, HashMap<i32, Range<i64>>), EngineError> {
    let partitions = topic_partitions(consumer, topic)?;
    let mut list = TopicPartitionList::new();
    let mut ranges = HashMap::new();
    for p in partitions {
        let offset = match mode {
            ReadMode::Snapshot => {
                let (low, high) = consumer.fetch_watermarks(topic, p, METADATA_TIMEOUT)?;
                ranges.insert(p, low..high);
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
    Ok((list, ranges))
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
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    #[test]
    fn snapshot_progress_ends_each_partition_at_its_stop_offset() {
        let mut s = SnapshotProgress::new(HashMap::from([(0, 10..13), (1, 5..5)]));
        assert!(s.accept(0, 10) && s.accept(0, 11) && !s.is_done());
        assert!(!s.accept(0, 11), "already read");
        assert!(!s.accept(1, 5), "nothing to read on partition 1");
        assert!(s.accept(0, 12) && s.is_done());
        assert!(s.missing.is_empty());
    }

    #[test]
    fn snapshot_progress_records_what_was_not_there() {
        let mut s = SnapshotProgress::new(HashMap::from([(0, 10..20), (1, 0..8), (2, 3..9)]));
        // Partition 0 went on from a new log start at 15.
        assert!(s.accept(0, 15) && s.accept(0, 16));
        // Partition 1's log now starts past the stop offset.
        assert!(!s.accept(1, 30));
        // Partition 2 was read up to 5, then its end was reached.
        assert!(s.accept(2, 3) && s.accept(2, 4));
        s.end_of_partition(2);
        assert!(!s.is_done());
        s.end_of_partition(0);
        assert!(s.is_done());
        assert_eq!(s.missing, [(0, 10..15), (1, 0..8), (2, 5..9), (0, 17..20)]);
        assert_eq!(s.gaps_by_partition()[&0].missing, [10..15, 17..20]);
    }

    #[test]
    fn snapshot_progress_ends_a_stalled_partition_once_retention_passed_its_stop_offset() {
        let mut s = SnapshotProgress::new(HashMap::from([(0, 10..20), (1, 0..5)]));
        assert!(s.stalled().is_empty(), "no earlier look to compare with");
        assert!(s.accept(0, 10));
        assert_eq!(s.stalled(), [1]);
        assert_eq!(
            s.resume_point(1, 4),
            Some(4),
            "offset 4 is still to be read"
        );
        assert!(!s.is_done());
        assert_eq!(s.resume_point(1, 5), None);
        assert_eq!(s.stalled(), [0]);
        assert_eq!(s.resume_point(0, 25), None);
        assert!(s.is_done());
        assert_eq!(s.jumped, [(1, 0..4)]);
        assert_eq!(s.missing, [(1, 4..5), (0, 11..20)]);
    }

    #[test]
    fn a_stalled_snapshot_resumes_ahead_of_retention_and_counts_what_it_jumped() {
        let mut s = SnapshotProgress::new(HashMap::from([(0, 0..1000)]));
        // The log starts at 100: read from there (no earlier look).
        assert_eq!(s.resume_point(0, 100), Some(100));
        // Still stalled a second later, retention having moved 50 on:
        // resume 100 ahead of the new start, where it will be in 2 s.
        assert_eq!(s.resume_point(0, 150), Some(250));
        assert!(s.accept(0, 250));
        assert_eq!(
            s.gaps_by_partition()[&0].jumped,
            250,
            "0..100 and 100..250 jumped"
        );
        // A jump past the stop offset ends the partition.
        assert_eq!(s.resume_point(0, 700), None);
        assert!(s.is_done());
        assert_eq!(s.gaps_by_partition()[&0].jumped, 250 + (1000 - 251));
    }

    /// Produces messages `{"n": i}` for `ids`, each padded to 200 kB and sent
    /// on its own, so that the mock cluster's retention (hard-wired to 5 MiB
    /// per partition) deletes the oldest one for each new one once full.
    async fn produce_big(producer: &FutureProducer, ids: Range<i64>) {
        let pad = "x".repeat(200_000);
        for n in ids {
            let payload = format!(r#"{{"n":{n},"pad":"{pad}"}}"#);
            producer
                .send(
                    FutureRecord::<(), _>::to("t").payload(&payload),
                    Duration::from_secs(5),
                )
                .await
                .expect("delivered");
        }
    }

    /// A mock cluster with topic `t` (one partition), its bootstrap
    /// servers and a producer.
    pub(super) fn topic_t() -> (
        MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        String,
        FutureProducer,
    ) {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("t", 1, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "0")
            .create()
            .expect("producer");
        (cluster, bootstrap, producer)
    }

    /// Sends `payload` to `t`.
    pub(super) async fn produce_to_t(producer: &FutureProducer, payload: &str) {
        producer
            .send(
                FutureRecord::<(), _>::to("t").payload(payload),
                Duration::from_secs(5),
            )
            .await
            .expect("delivered");
    }

    /// `{"n": 1}` to `{"n": 100}` with a message that is not JSON and one
    /// whose value is not a number between 50 and 51: a reader that lost
    /// the rows around a bad message, or failed a whole batch for it,
    /// would not read back 1 to 100.
    pub(super) async fn produce_good_and_bad(producer: &FutureProducer) {
        for n in 1..=50 {
            produce_to_t(producer, &format!(r#"{{"n":{n}}}"#)).await;
        }
        produce_to_t(producer, "not json").await;
        produce_to_t(producer, r#"{"n":"abc"}"#).await;
        for n in 51..=100 {
            produce_to_t(producer, &format!(r#"{{"n":{n}}}"#)).await;
        }
    }

    /// The schema of `t`'s messages `{"n": <number>}`.
    pub(super) fn schema_of_t() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]))
    }

    fn snapshot_of_t(bootstrap: String) -> Scan {
        Scan {
            bootstrap,
            topic: "t".into(),
            schema: schema_of_t(),
            mode: ReadMode::Snapshot,
            notices: QueryNotices::default(),
        }
    }

    /// Reads a planned snapshot to its end (or fails after 20 s): the `n`
    /// values read, and how many offsets retention deleted from under it.
    async fn read_snapshot(
        scan: &Scan,
        consumer: Arc<StreamConsumer>,
        (assignment, ranges): (TopicPartitionList, HashMap<i32, Range<i64>>),
    ) -> (Vec<i64>, u64) {
        let (tx, mut rx) = mpsc::channel(2);
        let reading = async {
            let tx = tx;
            scan.read(consumer, &assignment, ranges, &tx).await
        };
        let collecting = async {
            let mut ns = Vec::new();
            while let Some(batch) = rx.recv().await {
                let batch = batch.expect("batch");
                ns.extend(batch.column(0).as_primitive::<Int64Type>().values());
            }
            ns
        };
        let (deleted, ns) = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(reading, collecting)
        })
        .await
        .expect("the snapshot ends");
        (ns, deleted.expect("the snapshot succeeds"))
    }

    /// A message that is not JSON and one whose value does not fit its
    /// column, among good ones: the scan skips those two alone. (It used to
    /// start a fresh decoder and lose the rows decoded before the first, and
    /// fail the whole query, and every live query on the topic, on the
    /// second.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scan_skips_bad_messages_alone() {
        let (_cluster, bootstrap, producer) = topic_t();
        produce_good_and_bad(&producer).await;
        let scan = snapshot_of_t(bootstrap);
        let consumer: Arc<StreamConsumer> = Arc::new(scan.consumer_config().create().unwrap());
        let plan = plan_assignment(consumer.as_ref(), "t", ReadMode::Snapshot).unwrap();
        let (ns, deleted) = read_snapshot(&scan, consumer, plan).await;
        assert_eq!(ns, (1..=100).collect::<Vec<_>>());
        assert_eq!(deleted, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_goes_on_from_the_new_log_start_when_retention_deletes_its_offsets() {
        let (_cluster, bootstrap, producer) = topic_t();
        let scan = snapshot_of_t(bootstrap);
        let low = |c: &StreamConsumer| c.fetch_watermarks("t", 0, METADATA_TIMEOUT).unwrap().0;
        produce_big(&producer, 0..40).await;
        let mut sent = 40;

        // Retention deletes the first offsets the snapshot planned to read
        // before it reads anything.
        let consumer: Arc<StreamConsumer> = Arc::new(scan.consumer_config().create().unwrap());
        let plan = plan_assignment(consumer.as_ref(), "t", ReadMode::Snapshot).unwrap();
        let planned = plan.1[&0].clone();
        assert!(planned.start > 0, "retention is deleting: {planned:?}");
        produce_big(&producer, sent..sent + 5).await;
        sent += 5;
        let new_start = low(&consumer);
        assert!(planned.start < new_start && new_start < planned.end);
        let (ns, deleted) = read_snapshot(&scan, consumer, plan).await;
        assert_eq!(ns, (new_start..planned.end).collect::<Vec<_>>());
        assert_eq!(deleted, (new_start - planned.start) as u64);
        assert_eq!(
            scan.notices.take(),
            [Notice::retention_deleted("t", &[(0, deleted)])]
        );

        // Retention deletes everything the snapshot planned to read.
        let consumer: Arc<StreamConsumer> = Arc::new(scan.consumer_config().create().unwrap());
        let plan = plan_assignment(consumer.as_ref(), "t", ReadMode::Snapshot).unwrap();
        let planned = plan.1[&0].clone();
        while low(&consumer) <= planned.end {
            produce_big(&producer, sent..sent + 1).await;
            sent += 1;
            assert!(sent < 200, "retention stopped deleting");
        }
        let (ns, deleted) = read_snapshot(&scan, consumer, plan).await;
        assert_eq!(ns, Vec::<i64>::new());
        assert_eq!(deleted, (planned.end - planned.start) as u64);
        assert_eq!(
            scan.notices.take(),
            [Notice::retention_deleted("t", &[(0, deleted)])]
        );
    }

    #[test]
    fn decimal_and_timestamp_strings() {
        assert!(is_decimal("189.45") && is_decimal("-0.5"));
        assert!(!is_decimal("189") && !is_decimal("1.2.3") && !is_decimal("abc"));
        assert!(is_timestamp("2026-11-24T10:00:00.123456"));
        assert!(!is_timestamp("2026-11-24"));
    }
}
