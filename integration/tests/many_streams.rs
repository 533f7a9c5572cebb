//! Many continuous queries over one topic, as a wall of dashboard panels
//! makes them: the engine node reads the topic with one consumer and fans it
//! out, and every stream sees every matching event, in order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use velo_integration::{rss_kib, Engine, Gateway};

const STREAMS: usize = 500;
/// Numbered events produced once every stream is live.
const EVENTS: i64 = 40;
/// Every stream must have its first row this soon after it started.
const FIRST_ROW_WITHIN: Duration = Duration::from_secs(60);
const QUERY: &str =
    "COPY (SELECT volume FROM kafka://trades WHERE symbol = 'MANY' EMIT CHANGES) TO STDOUT";

/// A demo trade of the test's own symbol, numbered by its volume.
fn trade(volume: i64) -> String {
    let ts = chrono::Utc::now()
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S%.6f");
    format!(r#"{{"symbol":"MANY","price":"1.00","volume":{volume},"ts":"{ts}"}}"#)
}

async fn produce(producer: &FutureProducer, volume: i64) {
    producer
        .send(
            FutureRecord::<(), _>::to("trades").payload(&trade(volume)),
            Duration::from_secs(5),
        )
        .await
        .expect("produced");
}

/// One client's stream: counts its first row in `live`, then returns the
/// numbered rows (volume > 0) it saw up to the last one.
async fn stream(gw: Arc<(String, u16)>, live: Arc<AtomicUsize>) -> Vec<i64> {
    let dsn = format!(
        "host={} port={} user=alice dbname=velostream connect_timeout=30",
        gw.0, gw.1
    );
    let (client, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .expect("connects");
    let socket = tokio::spawn(connection);
    let rows = client.copy_out(QUERY).await.expect("COPY starts");
    let mut rows = Box::pin(rows);
    let mut first = true;
    let mut numbered = Vec::new();
    while let Some(chunk) = rows.next().await {
        let chunk = chunk.expect("COPY data");
        if std::mem::take(&mut first) {
            live.fetch_add(1, Ordering::AcqRel);
        }
        for line in std::str::from_utf8(&chunk).expect("utf-8").lines() {
            let volume: i64 = line.parse().expect("a volume");
            if volume > 0 {
                numbered.push(volume);
            }
            if volume == EVENTS {
                socket.abort();
                return numbered;
            }
        }
    }
    panic!("the stream ended after {numbered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_streams_on_one_topic_share_one_consumer_and_see_every_event() {
    let limit = (STREAMS + 10).to_string();
    let engine = Engine::start(&["--max-concurrent-queries", &limit]);
    let gw = Gateway::start(&["--engine", &engine.addr, "--max-queries-per-node", &limit]);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &engine.kafka)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let kafka_clients_before = engine.kafka_clients();
    let engine_rss_before = rss_kib(engine.proc.child.id());
    let gateway_rss_before = gw.rss_kib();

    // Unnumbered trades until every stream has had a row.
    let live = Arc::new(AtomicUsize::new(0));
    let addr = Arc::new((gw.host.clone(), gw.port));
    let streams: Vec<_> = (0..STREAMS)
        .map(|_| tokio::spawn(stream(addr.clone(), live.clone())))
        .collect();
    let started = Instant::now();
    while live.load(Ordering::Acquire) < STREAMS {
        assert!(
            started.elapsed() < FIRST_ROW_WITHIN,
            "{} of {STREAMS} streams had a row within {FIRST_ROW_WITHIN:?}",
            live.load(Ordering::Acquire)
        );
        produce(&producer, 0).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_live_after = started.elapsed();

    let kafka_clients = engine.kafka_clients();
    let engine_rss = rss_kib(engine.proc.child.id());
    let gateway_rss = gw.rss_kib();
    let jobs = engine.jobs().await.len();
    assert_eq!(jobs, STREAMS, "the engine runs every stream");
    assert!(
        kafka_clients <= kafka_clients_before + 1,
        "{STREAMS} streams on one topic use one consumer: the engine had {kafka_clients_before} Kafka clients before and {kafka_clients} with the streams"
    );

    for n in 1..=EVENTS {
        produce(&producer, n).await;
    }
    let expected: Vec<i64> = (1..=EVENTS).collect();
    for s in streams {
        let seen = tokio::time::timeout(Duration::from_secs(60), s)
            .await
            .expect("every stream sees the last event within 60 s")
            .expect("stream task");
        assert_eq!(seen, expected, "every event, once, in order");
    }
    let per_stream = |after: u64, before: u64| after.saturating_sub(before) / STREAMS as u64;
    println!(
        "{STREAMS} streams: all live after {all_live_after:?}; per stream: engine {} KiB, gateway {} KiB",
        per_stream(engine_rss, engine_rss_before),
        per_stream(gateway_rss, gateway_rss_before),
    );
}
