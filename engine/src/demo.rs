//! Demo mode: librdkafka's in-process mock cluster (a real Kafka protocol
//! implementation) with a `trades` topic fed by a synthetic market.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

use crate::config::{ColumnConfig, StreamConfig};

pub const TOPIC: &str = "trades";

/// The demo stream as it appears in the catalog.
pub fn trades_stream() -> StreamConfig {
    let column = |name: &str, type_name: &str| ColumnConfig {
        name: name.into(),
        type_name: type_name.into(),
        nullable: false,
    };
    StreamConfig {
        name: TOPIC.into(),
        topic: None,
        event_time: Some("ts".into()),
        columns: vec![
            column("symbol", "text"),
            column("price", "scaled_integer(2)"),
            column("volume", "bigint"),
            column("ts", "timestamp"),
        ],
        description: "Synthetic market trades (demo)".into(),
    }
}

/// A running mock cluster and market generator; both stop when dropped.
pub struct Demo {
    bootstrap: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Demo {
    /// Starts the cluster and a generator producing `rate` events per second.
    /// `topics` are created too, with one partition each (the mock cluster
    /// has no CreateTopics request).
    pub fn start(rate: u32, topics: Vec<String>) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_stop = stop.clone();
        // The mock cluster handle is not Send: it lives on its own thread.
        let thread = std::thread::Builder::new()
            .name("demo-kafka".into())
            .spawn(move || {
                let started = (|| -> anyhow::Result<_> {
                    let cluster = MockCluster::new(1)?;
                    cluster.create_topic(TOPIC, 1, 1)?;
                    for topic in &topics {
                        cluster.create_topic(topic, 1, 1)?;
                    }
                    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                        .set("bootstrap.servers", cluster.bootstrap_servers())
                        .set("linger.ms", "5")
                        .create()?;
                    Ok((cluster, producer))
                })();
                match started {
                    Ok((cluster, producer)) => {
                        let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                        generate(&producer, rate, &thread_stop);
                        let _ = producer.flush(Duration::from_secs(1));
                        drop(producer);
                        drop(cluster);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        let bootstrap = ready_rx.recv()??;
        Ok(Self {
            bootstrap,
            stop,
            thread: Some(thread),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const SYMBOLS: [(&str, i64); 8] = [
    ("AAPL", 18945),
    ("TSLA", 24233),
    ("NVDA", 48510),
    ("MSFT", 37890),
    ("AMZN", 15120),
    ("GOOGL", 13870),
    ("META", 33450),
    ("NFLX", 48960),
];

fn generate(producer: &ThreadedProducer<DefaultProducerContext>, rate: u32, stop: &AtomicBool) {
    let mut rng = rand::rng();
    let mut prices: Vec<i64> = SYMBOLS.iter().map(|(_, p)| *p).collect();
    // Each tick's events go out as one produce request, so one message set
    // in the mock cluster, which finds an offset by walking its message sets
    // from the oldest: fewer, larger sets keep every fetch cheap.
    let tick = Duration::from_millis(50);
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut payload = String::with_capacity(128);
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let i = rng.random_range(0..SYMBOLS.len());
            prices[i] = (prices[i] + rng.random_range(-25..=25)).max(100);
            let ts = chrono::Utc::now()
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.6f");
            payload.clear();
            use std::fmt::Write;
            let _ = write!(
                payload,
                r#"{{"symbol":"{}","price":"{}.{:02}","volume":{},"ts":"{}"}}"#,
                SYMBOLS[i].0,
                prices[i] / 100,
                prices[i] % 100,
                rng.random_range(1..=1000),
                ts
            );
            let record = BaseRecord::to(TOPIC).key(SYMBOLS[i].0).payload(&payload);
            if producer.send(record).is_err() {
                break; // queue full: catch up on the next tick
            }
            sent += 1;
        }
        std::thread::sleep(tick);
    }
}
