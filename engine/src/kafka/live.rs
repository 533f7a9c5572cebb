//! Shared live reading: every query on a node that tails a topic from the
//! live position is fed by one consumer and one JSON→Arrow decode of that
//! topic, fanned out to each query's plan (which then filters, projects and
//! aggregates on its own). A thousand dashboards on one topic cost one
//! consumer, not a thousand.
//!
//! The shared consumer never waits for a query: each query may have at most
//! `MAX_LAG_ROWS` rows handed to it and not yet taken. A query that falls
//! further behind (its client stopped reading) is dropped with an error,
//! so that one slow client cannot hold back the others.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ReadMode, Scan};
use crate::error::EngineError;
use crate::notice::QueryNotices;

/// Rows one query may have waiting before it is dropped: at the demo's
/// 1,000 events per second, a client may stop reading for over a minute.
pub const MAX_LAG_ROWS: usize = 100_000;
/// How long a topic's consumer stays up after its last query ends, so that
/// a dashboard re-running its queries finds it running.
const IDLE_LINGER: Duration = Duration::from_secs(5);
const IDLE_CHECK: Duration = Duration::from_secs(1);

type Key = (String, String);
type Readers = Arc<Mutex<HashMap<Key, Arc<LiveTopic>>>>;

/// The node's shared readers, one per (bootstrap servers, topic).
#[derive(Clone)]
pub struct LiveTopics {
    readers: Readers,
    max_lag_rows: usize,
}

impl Default for LiveTopics {
    fn default() -> Self {
        Self::with_max_lag(MAX_LAG_ROWS)
    }
}

impl std::fmt::Debug for LiveTopics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.readers.lock().map_or(0, |r| r.len());
        write!(f, "LiveTopics({n} topics)")
    }
}

impl LiveTopics {
    /// Readers that drop a query once `max_lag_rows` rows wait for it.
    pub fn with_max_lag(max_lag_rows: usize) -> Self {
        Self {
            readers: Readers::default(),
            max_lag_rows,
        }
    }

    /// The batches of `topic` from now on, decoded with `schema`. A topic
    /// already read with another schema (a stream declared twice with
    /// different columns) gets a reader of its own.
    pub fn subscribe(&self, bootstrap: &str, topic: &str, schema: &SchemaRef) -> Subscription {
        let key = (bootstrap.to_string(), topic.to_string());
        let mut readers = self.readers.lock().expect("live readers");
        let reader = match readers.get(&key) {
            Some(r) if &r.schema == schema => r.clone(),
            Some(_) => return self.start(bootstrap, topic, schema, None).subscribe(),
            None => {
                let r = self.start(bootstrap, topic, schema, Some(key.clone()));
                readers.insert(key, r.clone());
                r
            }
        };
        reader.subscribe()
    }

    /// How many topics are being read.
    pub fn len(&self) -> usize {
        self.readers.lock().map_or(0, |r| r.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a topic's consumer; `key`: where it is listed, to take
    /// itself off when it stops.
    fn start(
        &self,
        bootstrap: &str,
        topic: &str,
        schema: &SchemaRef,
        key: Option<Key>,
    ) -> Arc<LiveTopic> {
        let reader = Arc::new(LiveTopic {
            schema: schema.clone(),
            max_lag_rows: self.max_lag_rows,
            subscribers: Mutex::new(Vec::new()),
        });
        let scan = Scan {
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            schema: schema.clone(),
            mode: ReadMode::Tail {
                from_earliest: false,
            },
            notices: QueryNotices::default(),
        };
        let registry = key.map(|key| (self.clone(), key));
        tokio::spawn(reader.clone().run(scan, registry));
        reader
    }

    fn remove(&self, key: &Key, reader: &Arc<LiveTopic>) {
        unlist(&mut self.readers.lock().expect("live readers"), key, reader);
    }
}

/// Takes `reader` off the list, unless another reader has taken its place.
fn unlist(readers: &mut HashMap<Key, Arc<LiveTopic>>, key: &Key, reader: &Arc<LiveTopic>) {
    if readers.get(key).is_some_and(|r| Arc::ptr_eq(r, reader)) {
        readers.remove(key);
    }
}

/// One topic's consumer and the queries it feeds.
struct LiveTopic {
    schema: SchemaRef,
    max_lag_rows: usize,
    subscribers: Mutex<Vec<Subscriber>>,
}

struct Subscriber {
    tx: mpsc::UnboundedSender<Result<RecordBatch, EngineError>>,
    lag: Arc<Lag>,
}

/// Rows handed to one query and not yet taken by its plan.
#[derive(Default)]
struct Lag {
    rows: AtomicUsize,
    dropped: AtomicBool,
}

impl LiveTopic {
    fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let lag = Arc::new(Lag::default());
        self.subscribers
            .lock()
            .expect("subscribers")
            .push(Subscriber {
                tx,
                lag: lag.clone(),
            });
        Subscription {
            rx,
            lag,
            max_lag_rows: self.max_lag_rows,
        }
    }

    async fn run(self: Arc<Self>, scan: Scan, registry: Option<(LiveTopics, Key)>) {
        // The same consumer loop a query's own scan runs, into a small
        // channel this task empties without ever waiting on a query.
        let (tx, mut rx) = mpsc::channel(2);
        let reading = tokio::spawn(async move {
            if let Err(e) = scan.run(&tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        let mut idle_check = tokio::time::interval(IDLE_CHECK);
        let mut idle_since = None;
        let error = loop {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(Ok(batch)) => self.fan_out(&batch),
                    Some(Err(e)) => break Some(e),
                    None => break Some(EngineError::Source("kafka: the topic's reader stopped".into())),
                },
                _ = idle_check.tick() => {
                    if self.retire_if_idle(&registry, &mut idle_since) {
                        break None;
                    }
                }
            }
        };
        reading.abort();
        if let Some(e) = error {
            // Off the list first, so that the next query starts a new reader.
            if let Some((topics, key)) = &registry {
                topics.remove(key, &self);
            }
            for s in self.subscribers.lock().expect("subscribers").drain(..) {
                let _ = s.tx.send(Err(e.clone()));
            }
        }
    }

    /// Hands `batch` to every query still reading; drops those that have
    /// ended or fallen too far behind.
    fn fan_out(&self, batch: &RecordBatch) {
        let rows = batch.num_rows();
        self.subscribers.lock().expect("subscribers").retain(|s| {
            // A query with nothing waiting takes any batch, however large.
            let waiting = s.lag.rows.load(Ordering::Acquire);
            if waiting > 0 && waiting + rows > self.max_lag_rows {
                s.lag.dropped.store(true, Ordering::Release);
                return false; // its channel closes once it has read what it has
            }
            s.lag.rows.fetch_add(rows, Ordering::AcqRel);
            s.tx.send(Ok(batch.clone())).is_ok()
        });
    }

    /// Whether the reader has had no query for `IDLE_LINGER` and has taken
    /// itself off the list (under the list's lock, so that no query can
    /// subscribe in between).
    fn retire_if_idle(
        self: &Arc<Self>,
        registry: &Option<(LiveTopics, Key)>,
        idle_since: &mut Option<Instant>,
    ) -> bool {
        let readers = registry
            .as_ref()
            .map(|(topics, _)| topics.readers.lock().expect("live readers"));
        let mut subscribers = self.subscribers.lock().expect("subscribers");
        subscribers.retain(|s| !s.tx.is_closed());
        if !subscribers.is_empty() {
            *idle_since = None;
            return false;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() < IDLE_LINGER {
            return false;
        }
        if let (Some(mut readers), Some((_, key))) = (readers, registry) {
            unlist(&mut readers, key, self);
        }
        true
    }
}

/// One query's share of a topic's live batches.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Result<RecordBatch, EngineError>>,
    lag: Arc<Lag>,
    max_lag_rows: usize,
}

impl Stream for Subscription {
    type Item = Result<RecordBatch, EngineError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                self.lag.rows.fetch_sub(batch.num_rows(), Ordering::AcqRel);
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(None) if self.lag.dropped.swap(false, Ordering::AcqRel) => {
                Poll::Ready(Some(Err(EngineError::Resource(format!(
                    "this query fell more than {} rows behind the live stream (its client stopped reading) and was stopped",
                    self.max_lag_rows
                )))))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{produce_to_t, schema_of_t, topic_t};
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use futures::StreamExt;
    use rdkafka::producer::FutureProducer;

    async fn produce(producer: &FutureProducer, n: i64) {
        produce_to_t(producer, &format!(r#"{{"n":{n}}}"#)).await;
    }

    /// The numbers in the next batch, if one comes within `wait`.
    async fn next(s: &mut Subscription, wait: Duration) -> Option<Result<Vec<i64>, EngineError>> {
        let item = tokio::time::timeout(wait, s.next()).await.ok()??;
        Some(item.map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_reader_feeds_every_query_and_drops_the_one_that_stops_reading() {
        let (_cluster, bootstrap, producer) = topic_t();
        let schema = schema_of_t();
        let topics = LiveTopics::with_max_lag(100);
        let mut fast = topics.subscribe(&bootstrap, "t", &schema);
        let mut slow = topics.subscribe(&bootstrap, "t", &schema);
        assert_eq!(topics.len(), 1, "one reader for the topic");

        // The reader starts at the live position: produce until it has.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while seen.is_empty() {
            assert!(Instant::now() < deadline, "no live rows");
            produce(&producer, 0).await;
            if let Some(rows) = next(&mut fast, Duration::from_millis(200)).await {
                seen = rows.expect("rows");
            }
        }
        // 150 numbered rows, read as they come: past the slow query's
        // bound of 100.
        let producing = {
            let producer = producer.clone();
            tokio::spawn(async move {
                for n in 1..=150 {
                    produce(&producer, n).await;
                }
            })
        };
        let mut numbered = Vec::new();
        while numbered.last() != Some(&150) {
            let rows = next(&mut fast, Duration::from_secs(10))
                .await
                .expect("rows")
                .expect("ok");
            numbered.extend(rows.into_iter().filter(|&n| n > 0));
        }
        producing.await.expect("produced");
        assert_eq!(
            numbered,
            (1..=150).collect::<Vec<_>>(),
            "the fast query sees every row"
        );

        // The slow one gets what was handed to it within its bound, then
        // the error; the fast one goes on.
        let mut held = 0;
        let error = loop {
            match next(&mut slow, Duration::from_secs(10))
                .await
                .expect("an item")
            {
                Ok(rows) => held += rows.len(),
                Err(e) => break e,
            }
        };
        assert!(
            held <= 100 + 150,
            "at most the bound and one batch were buffered: {held}"
        );
        assert_eq!(error.classify().1, "53000");
        assert!(
            error.to_string().contains("fell more than 100 rows behind"),
            "{error}"
        );
        assert!(
            next(&mut slow, Duration::from_millis(100)).await.is_none(),
            "then it ends"
        );
        produce(&producer, 31).await;
        let rows = next(&mut fast, Duration::from_secs(10))
            .await
            .expect("rows")
            .expect("ok");
        assert_eq!(rows, [31]);

        // With no query left, the reader stops after its linger.
        drop(fast);
        let deadline = Instant::now() + IDLE_LINGER + Duration::from_secs(10);
        while !topics.is_empty() {
            assert!(Instant::now() < deadline, "the idle reader stopped");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
