//! The engine contract through a real gRPC socket against a real node with
//! the in-process Kafka (librdkafka's mock cluster).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use arrow::ipc::reader::StreamDecoder;
use arrow::record_batch::RecordBatch;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tonic::transport::Channel;
use velo_engine::{NodeOptions, RunningNode};
use velo_proto::v1::{
    execute_query_response::Event, CancelQueryRequest, CancelSessionRequest, CompletionReason,
    DescribeQueryRequest, ExecuteQueryRequest, ExecuteQueryResponse, ListRelationsRequest,
    LogicalType, NodeInfoRequest, Notice, QueryError, RelationKind,
};
use velo_proto::EngineServiceClient;

async fn node_with(max: usize, rate: u32) -> (RunningNode, EngineServiceClient<Channel>) {
    node_with_options(NodeOptions {
        max_concurrent_queries: max,
        demo_rate: rate,
        ..NodeOptions::default()
    })
    .await
}

/// A demo node on a free port with `options`.
async fn node_with_options(options: NodeOptions) -> (RunningNode, EngineServiceClient<Channel>) {
    let node = velo_engine::start(NodeOptions {
        listen: "127.0.0.1:0".into(),
        demo: true,
        ..options
    })
    .await
    .expect("node starts");
    let client = EngineServiceClient::connect(format!("http://{}", node.addr))
        .await
        .expect("connects");
    (node, client)
}

async fn node() -> (RunningNode, EngineServiceClient<Channel>) {
    node_with(16, 500).await
}

#[derive(Default, Debug)]
struct Outcome {
    schema: Option<velo_proto::v1::Schema>,
    batches: Vec<RecordBatch>,
    heartbeats: usize,
    notices: Vec<Notice>,
    complete: Option<velo_proto::v1::Complete>,
    error: Option<QueryError>,
}

impl Outcome {
    fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Reads a response stream to its end, or until `until` says stop (then the
/// stream is dropped, which cancels the query).
async fn collect(
    stream: tonic::Streaming<ExecuteQueryResponse>,
    until: impl Fn(&Outcome) -> bool,
) -> Outcome {
    collect_with(stream, until, || {}).await
}

/// `collect`, calling `on_heartbeat` at the first heartbeat (proof that the
/// query is running and idle).
async fn collect_with(
    mut stream: tonic::Streaming<ExecuteQueryResponse>,
    until: impl Fn(&Outcome) -> bool,
    on_heartbeat: impl FnOnce(),
) -> Outcome {
    let mut on_heartbeat = Some(on_heartbeat);
    let mut out = Outcome::default();
    let mut decoder = StreamDecoder::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("stream stalled for 30 s")
            .expect("grpc status");
        let Some(msg) = msg else { break };
        match msg.event.expect("event") {
            Event::Schema(s) => {
                assert!(out.schema.is_none(), "schema sent twice");
                assert!(out.batches.is_empty());
                let mut buf = Buffer::from(s.arrow_ipc_schema.clone());
                if !buf.is_empty() {
                    assert!(decoder.decode(&mut buf).unwrap().is_none());
                }
                out.schema = Some(s);
            }
            Event::Batch(b) => {
                assert!(out.schema.is_some(), "batch before schema");
                let mut buf = Buffer::from(b.arrow_ipc);
                let batch = decoder
                    .decode(&mut buf)
                    .unwrap()
                    .expect("one batch per message");
                assert_eq!(batch.num_rows() as u64, b.num_rows);
                out.batches.push(batch);
            }
            Event::Heartbeat(_) => {
                out.heartbeats += 1;
                if let Some(f) = on_heartbeat.take() {
                    f();
                }
            }
            Event::Notice(n) => {
                assert!(out.schema.is_some(), "notice before schema");
                assert!(out.complete.is_none() && out.error.is_none());
                out.notices.push(n);
            }
            Event::Complete(c) => {
                assert!(out.complete.is_none() && out.error.is_none());
                out.complete = Some(c);
            }
            Event::Error(e) => {
                assert!(out.complete.is_none() && out.error.is_none());
                out.error = Some(e);
            }
        }
        if until(&out) {
            return out;
        }
    }
    assert!(
        out.complete.is_some() || out.error.is_some(),
        "stream ended without a terminal event"
    );
    out
}

fn request(sql: &str) -> ExecuteQueryRequest {
    ExecuteQueryRequest {
        query_id: format!("t-{:x}", rand::random::<u64>()),
        sql: sql.into(),
        ..Default::default()
    }
}

async fn query(client: &mut EngineServiceClient<Channel>, sql: &str) -> Outcome {
    let stream = client
        .execute_query(request(sql))
        .await
        .unwrap()
        .into_inner();
    collect(stream, |_| false).await
}

async fn error_of(client: &mut EngineServiceClient<Channel>, sql: &str) -> QueryError {
    let out = query(client, sql).await;
    match out.error {
        Some(e) => e,
        None => panic!("expected an error for {sql}, got {:?}", out.complete),
    }
}

/// Waits until the demo topic has at least `n` events.
async fn wait_for_trades(client: &mut EngineServiceClient<Channel>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = query(client, "SELECT COUNT(*) AS n FROM trades").await;
        let count = out.batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0);
        if count as usize >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "demo generator produced only {count} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_lifecycle_schema_batches_complete() {
    let (_node, mut client) = node().await;
    wait_for_trades(&mut client, 10).await;
    let out = query(
        &mut client,
        "SELECT symbol, price, volume, ts FROM trades LIMIT 5",
    )
    .await;
    let schema = out.schema.as_ref().unwrap();
    assert!(schema.bounded);
    let names: Vec<_> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["symbol", "price", "volume", "ts"]);
    assert_eq!(
        schema.columns[1].logical_type,
        LogicalType::ScaledInteger as i32
    );
    assert_eq!(
        (schema.columns[1].precision, schema.columns[1].scale),
        (18, 2)
    );
    assert_eq!(
        schema.columns[3].logical_type,
        LogicalType::Timestamp as i32
    );
    let batch = &out.batches[0];
    assert_eq!(
        batch.schema().field(1).data_type(),
        &DataType::Decimal128(18, 2)
    );
    assert_eq!(
        batch.schema().field(3).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    assert_eq!(out.rows(), 5);
    let complete = out.complete.unwrap();
    assert_eq!(complete.rows, 5);
    assert_eq!(complete.command_tag, "SELECT");
    assert_eq!(complete.reason, CompletionReason::Limit as i32);
    // The same stream by URI, unquoted and quoted, and by qualified name.
    for sql in [
        "SELECT COUNT(*) FROM kafka://trades",
        "SELECT COUNT(*) FROM \"public\".\"trades\"",
    ] {
        let out = query(&mut client, sql).await;
        assert!(out.error.is_none(), "{sql}: {:?}", out.error);
        assert!(
            out.batches[0]
                .column(0)
                .as_primitive::<Int64Type>()
                .value(0)
                >= 10
        );
    }
    let bootstrap = _node.kafka_bootstrap.clone().unwrap();
    let out = query(
        &mut client,
        &format!("SELECT COUNT(*) FROM 'kafka://{bootstrap}/trades'"),
    )
    .await;
    assert!(out.error.is_none(), "{:?}", out.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_kind_has_its_exact_arrow_type() {
    let (_node, mut client) = node_with(4, 10).await;
    let out = query(
        &mut client,
        "SELECT CAST(42 AS BIGINT) AS i, CAST(1.5 AS DOUBLE) AS f, 'text' AS s, true AS b, \
         CAST(NULL AS BIGINT) AS n, DATE '2024-02-29' AS d, \
         TIMESTAMP '2024-01-02 03:04:05.123456' AS ts, CAST(123.45 AS DECIMAL(10,2)) AS dec, \
         make_array(1, 2, 3) AS arr, named_struct('a', 1, 'b', 'x') AS st, \
         map(['k'], [1]) AS m, INTERVAL '1 day 2 hours' AS iv",
    )
    .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let schema = out.schema.unwrap();
    let logical: Vec<_> = schema
        .columns
        .iter()
        .map(|c| LogicalType::try_from(c.logical_type).unwrap())
        .collect();
    use LogicalType as L;
    assert_eq!(
        logical,
        [
            L::Int64,
            L::Float64,
            L::Text,
            L::Boolean,
            L::Int64,
            L::Date,
            L::Timestamp,
            L::Decimal,
            L::Array,
            L::Json,
            L::Json,
            L::Interval
        ]
    );
    assert_eq!(schema.columns[8].element_type, L::Int64 as i32);
    let batch = &out.batches[0];
    let types: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(types[2], DataType::Utf8);
    assert_eq!(types[6], DataType::Timestamp(TimeUnit::Microsecond, None));
    assert_eq!(types[7], DataType::Decimal128(10, 2));
    assert!(matches!(types[8], DataType::List(_)));
    assert!(matches!(types[9], DataType::Struct(_)));
    assert!(matches!(types[10], DataType::Map(..)));
    assert!(batch.column(4).is_null(0));
    assert_eq!(
        batch
            .column(6)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .value(0),
        1_704_164_645_123_456
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_class_has_its_sqlstate_and_position() {
    let (_node, mut client) = node_with(4, 10).await;
    let e = error_of(
        &mut client,
        "SELECT symbol FROM trades WHERE AND volume > 1",
    )
    .await;
    assert_eq!((e.sqlstate.as_str(), e.position), ("42601", 37), "{e:?}");
    let e = error_of(&mut client, "SELECT * FROM nope").await;
    assert_eq!((e.sqlstate.as_str(), e.position), ("42P01", 15), "{e:?}");
    assert!(e.message.contains("nope"));
    let e = error_of(&mut client, "SELECT nope FROM trades").await;
    assert_eq!((e.sqlstate.as_str(), e.position), ("42703", 8), "{e:?}");
    let e = error_of(&mut client, "SELECT symbol + 1 FROM kafka://trades").await;
    assert_eq!(e.sqlstate, "42804", "{e:?}");
    let e = error_of(&mut client, "SELECT nofunc(1)").await;
    assert_eq!(e.sqlstate, "42883", "{e:?}");
    let e = error_of(
        &mut client,
        "SELECT symbol, COUNT(*) FROM trades GROUP BY symbol EMIT FINAL",
    )
    .await;
    assert_eq!(e.sqlstate, "22023", "{e:?}");
    let e = error_of(&mut client, "CREATE TABLE t (a INT)").await;
    assert_eq!(e.sqlstate, "0A000", "{e:?}");
    let e = error_of(&mut client, "SELECT 'unterminated").await;
    assert_eq!((e.sqlstate.as_str(), e.position), ("42601", 8), "{e:?}");
    let e = error_of(&mut client, "SELECT * FROM kafka://no_such_topic").await;
    assert_eq!(e.sqlstate, "42P01", "{e:?}");
    // A position after a rewritten URI still points at the client's text.
    let e = error_of(&mut client, "SELECT * FROM kafka://trades WHERE nope > 1").await;
    assert_eq!((e.sqlstate.as_str(), e.position), ("42703", 36), "{e:?}");
}

async fn produce(bootstrap: &str, payloads: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for p in payloads {
        producer
            .send(
                FutureRecord::<(), _>::to("trades").payload(p),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
}

fn trade(symbol: &str, price: &str, volume: i64) -> String {
    let ts = chrono::Utc::now()
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S%.6f");
    format!(r#"{{"symbol":"{symbol}","price":"{price}","volume":{volume},"ts":"{ts}"}}"#)
}

/// Trades padded to 100 kB: librdkafka's mock cluster keeps 5 MiB per
/// partition, so once it is full every new one makes retention delete the
/// oldest messages of the topic.
async fn produce_big_trades(producer: &FutureProducer, n: usize) {
    let pad = "x".repeat(100_000);
    for _ in 0..n {
        let ts = chrono::Utc::now()
            .naive_utc()
            .format("%Y-%m-%dT%H:%M:%S%.6f");
        let payload =
            format!(r#"{{"symbol":"BIG","price":"1.00","volume":1,"ts":"{ts}","pad":"{pad}"}}"#);
        producer
            .send(
                FutureRecord::<(), _>::to("trades").payload(&payload),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
}

/// Retention deletes the oldest messages of the topic many times a second,
/// so snapshots keep finding their start offset (or the next one they
/// fetch) gone: every one must still end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_end_while_retention_deletes_continuously() {
    // The demo stream at 5,000 events a second: after about ten seconds
    // retention deletes as fast as events arrive, and a snapshot's start
    // offset is gone before it is fetched, again and again.
    let (node, mut client) = node_with(8, 5000).await;
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set(
            "bootstrap.servers",
            node.kafka_bootstrap.as_deref().unwrap(),
        )
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        use rdkafka::consumer::Consumer;
        let (low, _) = consumer
            .fetch_watermarks("trades", 0, Duration::from_secs(5))
            .unwrap();
        if low > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "retention never started");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..8 {
        let sql = "SELECT COUNT(*) AS n FROM trades";
        let out = tokio::time::timeout(Duration::from_secs(15), query(&mut client, sql))
            .await
            .unwrap_or_else(|_| panic!("snapshot {i} did not end in 15 s"));
        assert!(out.error.is_none(), "{:?}", out.error);
        assert!(out.complete.is_some(), "{out:?}");
    }
}

/// Fills the demo's `trades` past the 5 MiB its retention keeps, then
/// keeps producing, so retention deletes continually until `stop`.
async fn churn_retention(
    node: &RunningNode,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let producer: FutureProducer = ClientConfig::new()
        .set(
            "bootstrap.servers",
            node.kafka_bootstrap.as_deref().unwrap(),
        )
        .create()
        .unwrap();
    produce_big_trades(&producer, 60).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let churn = tokio::spawn({
        let stop = stop.clone();
        async move {
            while !stop.is_cancelled() {
                produce_big_trades(&producer, 1).await;
            }
        }
    });
    (stop, churn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_end_while_retention_deletes_what_they_read() {
    let (node, mut client) = node_with(4, 100).await;
    let (stop, churn) = churn_retention(&node).await;
    for i in 0..10 {
        for sql in [
            "SELECT COUNT(*) AS n FROM trades",
            "SELECT * FROM kafka://trades LIMIT 5",
        ] {
            let out = tokio::time::timeout(Duration::from_secs(10), query(&mut client, sql))
                .await
                .unwrap_or_else(|_| panic!("snapshot {i} `{sql}` did not end in 10 s"));
            assert!(out.error.is_none(), "{sql}: {:?}", out.error);
            // LIMIT 5 may find fewer rows if retention deleted nearly all of
            // what the snapshot set out to read; the point is that it ends.
            assert!(out.complete.is_some(), "{sql}: {out:?}");
        }
    }
    stop.cancel();
    churn.await.unwrap();
}

/// How many events a retention notice says a snapshot of kafka://trades
/// skipped.
fn skipped_by_retention(n: &Notice) -> u64 {
    assert_eq!(
        (n.severity.as_str(), n.sqlstate.as_str()),
        ("WARNING", "01000"),
        "{n:?}"
    );
    n.message
        .strip_prefix("snapshot of kafka://trades skipped ")
        .and_then(|m| m.strip_suffix(" events that retention deleted before they were read"))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("not a retention notice: {n:?}"))
}

/// A snapshot that loses events to retention while it reads says so, in a
/// WARNING notice before its Complete; one that loses none says nothing.
/// (Snapshots read the broker here: from memory, they lose nothing while
/// the node's copy of the topic keeps up with retention.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_retention_outran_warns_its_client() {
    let (node, mut client) = node_with_options(NodeOptions {
        max_concurrent_queries: 4,
        demo_rate: 100,
        snapshot_memory_mib: 0,
        ..NodeOptions::default()
    })
    .await;
    // The demo's small trades are far from the 5 MiB retention keeps.
    wait_for_trades(&mut client, 1).await;
    for sql in [
        "SELECT COUNT(*) AS n FROM trades",
        "SELECT * FROM kafka://trades",
    ] {
        let out = query(&mut client, sql).await;
        assert!(out.complete.is_some(), "{sql}: {out:?}");
        assert!(out.notices.is_empty(), "{sql}: {:?}", out.notices);
    }

    let (stop, churn) = churn_retention(&node).await;
    // Retention deletes many times a second: snapshots soon lose events
    // between planning their offsets and fetching them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut warned = 0;
    let mut snapshots = 0;
    while warned < 2 {
        assert!(
            Instant::now() < deadline,
            "no snapshot of {snapshots} lost events to retention in 30 s"
        );
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            query(&mut client, "SELECT COUNT(*) AS n FROM trades"),
        )
        .await
        .expect("the snapshot ends");
        snapshots += 1;
        assert!(out.complete.is_some(), "{out:?}");
        assert!(
            out.notices.len() <= 1,
            "one scan of one topic: {:?}",
            out.notices
        );
        if let Some(n) = out.notices.first() {
            assert!(skipped_by_retention(n) > 0, "{n:?}");
            assert!(n.detail.contains("partition 0: "), "{n:?}");
            warned += 1;
        }
    }
    stop.cancel();
    churn.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_changes_aggregation_reflects_new_events() {
    let (node, mut client) = node().await;
    let bootstrap = node.kafka_bootstrap.clone().unwrap();
    let stream = client
        .execute_query(request(
            "SELECT symbol, COUNT(*) AS n, SUM(volume) AS v, AVG(price) AS avg_price \
             FROM kafka://trades WHERE symbol IN ('ZZTEST', 'ZZOTHER') GROUP BY symbol EMIT CHANGES",
        ))
        .await
        .unwrap()
        .into_inner();
    let (running, started) = tokio::sync::oneshot::channel();
    let (both_seen, second_round) = tokio::sync::oneshot::channel();
    let producer = tokio::spawn(async move {
        // Once the query is running (it heartbeats while nothing matches),
        // feed both groups; once both were emitted, change only one.
        started.await.unwrap();
        produce(
            &bootstrap,
            &[
                trade("ZZTEST", "10.00", 5),
                trade("ZZTEST", "20.50", 7),
                trade("ZZOTHER", "1.00", 1),
            ],
        )
        .await;
        second_round.await.unwrap();
        produce(&bootstrap, &[trade("ZZTEST", "30.00", 8)]).await;
    });
    let count_of = |o: &Outcome, symbol: &str| {
        o.batches.iter().rev().find_map(|b| {
            (0..b.num_rows())
                .find(|&i| b.column(0).as_string::<i32>().value(i) == symbol)
                .map(|i| b.column(1).as_primitive::<Int64Type>().value(i))
        })
    };
    let both_seen = std::sync::Mutex::new(Some(both_seen));
    let out = collect_with(
        stream,
        |o| {
            if count_of(o, "ZZTEST") == Some(2) && count_of(o, "ZZOTHER") == Some(1) {
                if let Some(signal) = both_seen.lock().unwrap().take() {
                    let _ = signal.send(());
                }
            }
            count_of(o, "ZZTEST") == Some(3)
        },
        move || {
            let _ = running.send(());
        },
    )
    .await;
    producer.await.unwrap();
    let schema = out.schema.as_ref().unwrap();
    assert!(!schema.bounded);
    // A recomputation would emit ZZOTHER again, unchanged.
    let last = out.batches.last().unwrap();
    assert_eq!(last.num_rows(), 1, "only the changed group is emitted");
    assert_eq!(last.column(0).as_string::<i32>().value(0), "ZZTEST");
    assert_eq!(last.column(1).as_primitive::<Int64Type>().value(0), 3);
    assert_eq!(last.column(2).as_primitive::<Int64Type>().value(0), 20);
    let avg = arrow::util::display::array_value_to_string(last.column(3), 0).unwrap();
    // PostgreSQL's avg: 60.50 / 3 to 16 significant digits.
    assert_eq!(avg, "20.1666666666666667");
    // Every emission of a group carried its running state.
    let counts: Vec<i64> = out
        .batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows())
                .filter(|&i| b.column(0).as_string::<i32>().value(i) == "ZZTEST")
                .map(|i| b.column(1).as_primitive::<Int64Type>().value(i))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_completes_a_continuous_query() {
    let (_node, mut client) = node().await;
    let out = query(
        &mut client,
        "SELECT symbol, price FROM trades EMIT CHANGES LIMIT 7",
    )
    .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.rows(), 7);
    let c = out.complete.unwrap();
    assert_eq!((c.rows, c.reason), (7, CompletionReason::Limit as i32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_stream_and_frees_the_job() {
    let (_node, mut client) = node().await;
    let req = request("SELECT * FROM trades EMIT CHANGES");
    let id = req.query_id.clone();
    let stream = client.execute_query(req).await.unwrap().into_inner();
    let mut canceller = client.clone();
    let started = tokio::spawn(async move {
        let out = collect(stream, |_| false).await;
        (out, Instant::now())
    });
    // Let rows flow, then cancel.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let jobs = query(&mut client, "SHOW JOBS").await;
        let listed = jobs.batches[0]
            .column(0)
            .as_string::<i32>()
            .iter()
            .any(|v| v == Some(id.as_str()));
        let rows = jobs.batches[0].column(3).as_primitive::<Int64Type>();
        if listed && rows.iter().flatten().any(|r| r > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "query never produced rows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    let cancelled = canceller
        .cancel_query(CancelQueryRequest {
            query_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .cancelled;
    assert!(cancelled);
    let (out, ended) = started.await.unwrap();
    let e = out
        .error
        .clone()
        .expect("cancelled query ends with an error");
    assert_eq!(e.sqlstate, "57014");
    assert!(out.rows() > 0);
    assert!(
        ended - asked < Duration::from_secs(2),
        "cancel took {:?}",
        ended - asked
    );
    // Idempotent, and the job is gone.
    let again = canceller
        .cancel_query(CancelQueryRequest {
            query_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.cancelled);
    let jobs = query(&mut client, "SHOW JOBS").await;
    assert!(!jobs.batches[0]
        .column(0)
        .as_string::<i32>()
        .iter()
        .any(|v| v == Some(id.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_continuous_queries_run_independently() {
    let (_node, mut client) = node().await;
    let mut other = client.clone();
    let a = client
        .execute_query(request(
            "SELECT symbol FROM trades WHERE volume > 0 EMIT CHANGES",
        ))
        .await
        .unwrap()
        .into_inner();
    let b = other
        .execute_query(request(
            "SELECT symbol, COUNT(*) FROM trades GROUP BY symbol EMIT CHANGES",
        ))
        .await
        .unwrap()
        .into_inner();
    let (a, b) = tokio::join!(
        collect(a, |o| o.rows() >= 20),
        collect(b, |o| o.rows() >= 5)
    );
    assert!(a.rows() >= 20 && b.rows() >= 5);
    assert_eq!(a.schema.unwrap().columns.len(), 1);
    assert_eq!(b.schema.unwrap().columns.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_windows_emit_final_once_closed() {
    let (_node, mut client) = node_with(4, 1000).await;
    let stream = client
        .execute_query(request(
            "SELECT window_start, window_end, COUNT(*) AS n FROM trades \
             WINDOW TUMBLING(ts, INTERVAL '1' SECOND) EMIT FINAL",
        ))
        .await
        .unwrap()
        .into_inner();
    let out = collect(stream, |o| o.rows() >= 2).await;
    let schema = out.schema.as_ref().unwrap();
    assert_eq!(schema.emit_mode, velo_proto::v1::EmitMode::Final as i32);
    let mut starts = Vec::new();
    for b in &out.batches {
        let s = b
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let e = b
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            assert_eq!(e.value(i) - s.value(i), 1_000_000);
            assert_eq!(s.value(i) % 1_000_000, 0);
            starts.push(s.value(i));
        }
    }
    // Each window is emitted once, in order.
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
}

/// `(symbol, n, window_start)` rows of a query selecting those first.
fn keyed_counts(batches: &[RecordBatch]) -> Vec<(String, i64, i64)> {
    batches
        .iter()
        .flat_map(|b| {
            let symbols = b.column(0).as_string::<i32>();
            let counts = b.column(1).as_primitive::<Int64Type>();
            let starts = b.column(2).as_primitive::<TimestampMicrosecondType>();
            (0..b.num_rows()).map(move |i| {
                (
                    symbols.value(i).to_string(),
                    counts.value(i),
                    starts.value(i),
                )
            })
        })
        .collect()
}

fn timestamp_literal(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap()
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_windows_emit_final_one_row_per_key() {
    let (_node, mut client) = node_with(4, 1000).await;
    let stream = client
        .execute_query(request(
            "SELECT symbol, COUNT(*) AS n, window_start FROM kafka://trades \
             GROUP BY symbol WINDOW TUMBLING(ts, 1s) EMIT FINAL",
        ))
        .await
        .unwrap()
        .into_inner();
    let windows =
        |o: &Outcome| -> BTreeSet<i64> { keyed_counts(&o.batches).iter().map(|r| r.2).collect() };
    // The query starts during the first window; the second is whole.
    let out = tokio::time::timeout(
        Duration::from_secs(15),
        collect(stream, |o| windows(o).len() >= 3),
    )
    .await
    .expect("three windows closed within 15 s");
    assert!(out.error.is_none(), "{:?}", out.error);
    let rows = keyed_counts(&out.batches);
    assert!(
        rows.windows(2).all(|w| w[0].2 <= w[1].2),
        "windows in order: {rows:?}"
    );
    let second = *windows(&out).iter().nth(1).unwrap();
    let mut emitted: Vec<(String, i64)> = rows
        .iter()
        .filter(|r| r.2 == second)
        .map(|r| (r.0.clone(), r.1))
        .collect();
    emitted.sort();
    assert!(
        emitted.len() >= 4 && emitted.windows(2).all(|w| w[0].0 < w[1].0),
        "one row per symbol: {emitted:?}"
    );
    // A snapshot of the topic counts the same events in that window.
    let snapshot = query(
        &mut client,
        &format!(
            "SELECT symbol, COUNT(*) AS n FROM trades \
             WHERE ts >= TIMESTAMP '{}' AND ts < TIMESTAMP '{}' GROUP BY symbol ORDER BY symbol",
            timestamp_literal(second),
            timestamp_literal(second + 1_000_000)
        ),
    )
    .await;
    let expected: Vec<(String, i64)> = snapshot
        .batches
        .iter()
        .flat_map(|b| {
            let symbols = b.column(0).as_string::<i32>();
            let counts = b.column(1).as_primitive::<Int64Type>();
            (0..b.num_rows()).map(move |i| (symbols.value(i).to_string(), counts.value(i)))
        })
        .collect();
    assert_eq!(emitted, expected);
}

/// Windows close when the stream's event time passes their end, not when
/// an event the WHERE clause lets through does: here the only such events
/// are the test's own, all in one window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_final_closes_windows_on_the_streams_event_time() {
    let (node, mut client) = node_with(4, 200).await;
    let bootstrap = node.kafka_bootstrap.clone().unwrap();
    let stream = client
        .execute_query(request(
            "SELECT symbol, COUNT(*) AS n, window_start FROM kafka://trades \
             WHERE symbol IN ('ZZA', 'ZZB') GROUP BY symbol WINDOW TUMBLING(ts, 1s) EMIT FINAL",
        ))
        .await
        .unwrap()
        .into_inner();
    let (running, started) = tokio::sync::oneshot::channel();
    let producer = tokio::spawn(async move {
        // Once the query is running (it heartbeats while nothing matches),
        // produce events into a window two seconds ahead of the demo's.
        started.await.unwrap();
        let now = chrono::Utc::now().timestamp_micros();
        let window = (now / 1_000_000 + 2) * 1_000_000;
        let events: Vec<String> = [
            ("ZZA", 100),
            ("ZZA", 200),
            ("ZZB", 300),
            ("ZZA", 900),
            ("ZZB", 950),
        ]
        .iter()
        .map(|(symbol, ms)| {
            let ts = timestamp_literal(window + ms * 1000);
            format!(r#"{{"symbol":"{symbol}","price":"1.00","volume":1,"ts":"{ts}"}}"#)
        })
        .collect();
        produce(&bootstrap, &events).await;
        window
    });
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        collect_with(
            stream,
            |o| o.rows() >= 2,
            move || {
                let _ = running.send(());
            },
        ),
    )
    .await
    .expect("the window closed within 10 s");
    let window = producer.await.unwrap();
    let mut rows = keyed_counts(&out.batches);
    rows.sort();
    assert_eq!(
        rows,
        [
            ("ZZA".to_string(), 3, window),
            ("ZZB".to_string(), 2, window)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_describe_views_and_health() {
    let (_node, mut client) = node_with(4, 10).await;
    let relations = client
        .list_relations(ListRelationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let trades = relations
        .relations
        .iter()
        .find(|r| r.name == "trades")
        .unwrap();
    assert_eq!(trades.kind, RelationKind::Stream as i32);
    let cols: Vec<_> = trades.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(cols, ["symbol", "price", "volume", "ts"]);
    let unchanged = client
        .list_relations(ListRelationsRequest {
            known_catalog_version: relations.catalog_version,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(unchanged.unchanged);

    let described = client
        .describe_query(DescribeQueryRequest {
            sql: "SELECT symbol, price FROM trades WHERE volume > $1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(described.error.is_none(), "{:?}", described.error);
    assert_eq!(described.schema.unwrap().columns.len(), 2);
    assert_eq!(described.parameter_types, [LogicalType::Int64 as i32]);
    let bad = client
        .describe_query(DescribeQueryRequest {
            sql: "SELECT * FROM nope".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bad.error.unwrap().sqlstate, "42P01");

    let out = query(
        &mut client,
        "CREATE VIEW big AS SELECT symbol, volume FROM trades WHERE volume > 500",
    )
    .await;
    assert_eq!(out.complete.unwrap().command_tag, "CREATE VIEW");
    assert_eq!(
        error_of(&mut client, "CREATE VIEW big AS SELECT 1")
            .await
            .sqlstate,
        "42P07"
    );
    query(&mut client, "ALTER VIEW big RENAME TO large")
        .await
        .complete
        .unwrap();
    let out = query(&mut client, "SELECT COUNT(*) FROM large").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let desc = query(&mut client, "DESCRIBE large").await;
    assert_eq!(desc.rows(), 2);
    let after = client
        .list_relations(ListRelationsRequest {
            known_catalog_version: relations.catalog_version,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!after.unchanged && after.catalog_version > relations.catalog_version);
    assert!(after
        .relations
        .iter()
        .any(|r| r.name == "large" && r.kind == RelationKind::View as i32));
    query(&mut client, "DROP VIEW large")
        .await
        .complete
        .unwrap();
    assert_eq!(
        error_of(&mut client, "DROP VIEW large").await.sqlstate,
        "42P01"
    );
    assert!(query(&mut client, "DROP VIEW IF EXISTS large")
        .await
        .complete
        .is_some());
    let streams = query(&mut client, "SHOW STREAMS").await;
    assert_eq!(
        streams.batches[0].column(0).as_string::<i32>().value(0),
        "trades"
    );

    let info = client
        .node_info(NodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.max_concurrent_queries, 4);
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        Channel::from_shared(format!("http://{}", _node.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_sources() {
    let (_node, mut client) = node_with(4, 10).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("symbols.csv");
    std::fs::write(&csv, "symbol,sector\nAAPL,tech\nXOM,energy\n").unwrap();
    let json = dir.path().join("events.jsonl");
    std::fs::write(&json, "{\"a\": 1}\n{\"a\": 2}\n{\"a\": 4}\n").unwrap();
    let out = query(
        &mut client,
        &format!(
            "SELECT sector FROM file://{} WHERE symbol = 'XOM'",
            csv.display()
        ),
    )
    .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(
        out.batches[0].column(0).as_string::<i32>().value(0),
        "energy"
    );
    let out = query(
        &mut client,
        &format!("SELECT SUM(a) FROM 'file://{}'", json.display()),
    )
    .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(
        out.batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0),
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_concurrent_queries_is_resource_exhausted() {
    let (_node, mut client) = node_with(1, 100).await;
    let _running = client
        .execute_query(request("SELECT * FROM trades EMIT CHANGES"))
        .await
        .unwrap()
        .into_inner();
    let status = client
        .execute_query(request("SELECT 1"))
        .await
        .expect_err("second query refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.message().contains("maximum of 1"));
}

/// A node joining the Kafka (and the catalog command topic) of `bootstrap`,
/// serving the demo's `trades` stream.
async fn joining_node(
    bootstrap: &str,
    catalog_topic: Option<&str>,
) -> (RunningNode, EngineServiceClient<Channel>) {
    let node = velo_engine::start(NodeOptions {
        listen: "127.0.0.1:0".into(),
        demo: true,
        kafka_bootstrap: Some(bootstrap.into()),
        catalog_topic: catalog_topic.map(str::to_string),
        ..NodeOptions::default()
    })
    .await
    .expect("node starts");
    let client = EngineServiceClient::connect(format!("http://{}", node.addr))
        .await
        .expect("connects");
    (node, client)
}

/// The node's catalog version and its views with their definitions.
async fn views(
    client: &mut EngineServiceClient<Channel>,
) -> (u64, std::collections::BTreeMap<String, String>) {
    let r = client
        .list_relations(ListRelationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let views = r
        .relations
        .into_iter()
        .filter(|r| r.kind == RelationKind::View as i32)
        .map(|r| (r.name, r.source))
        .collect();
    (r.catalog_version, views)
}

/// Polls `client`'s views until `ok` holds, for at most `within`.
async fn views_until(
    client: &mut EngineServiceClient<Channel>,
    within: Duration,
    what: &str,
    ok: impl Fn(&std::collections::BTreeMap<String, String>) -> bool,
) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let (version, views) = views(client).await;
        if ok(&views) {
            return version;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; views: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_are_one_catalog_across_nodes() {
    let (a, mut client_a) = node_with(8, 50).await;
    let bootstrap = a.kafka_bootstrap.clone().unwrap();
    let (_b, mut client_b) = joining_node(&bootstrap, None).await;
    let second = Duration::from_secs(1);

    // Created on A: B lists it and can query it within a second.
    let out = query(
        &mut client_a,
        "CREATE VIEW big AS SELECT symbol, volume FROM trades WHERE volume > 500",
    )
    .await;
    assert_eq!(out.complete.unwrap().command_tag, "CREATE VIEW");
    let created = Instant::now();
    let (version_a, on_a) = views(&mut client_a).await;
    assert!(on_a.contains_key("big"), "read-your-writes on A: {on_a:?}");
    views_until(&mut client_b, second, "B sees A's view", |v| {
        v.contains_key("big")
    })
    .await;
    let out = query(&mut client_b, "SELECT COUNT(*) AS n FROM big").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(created.elapsed() < second, "took {:?}", created.elapsed());
    // One catalog version for the cluster: B, having applied the commands A
    // had applied, reports A's version (B may see the view a record before
    // A's last one, so it is given a second to catch up).
    let deadline = Instant::now() + second;
    loop {
        let (version_b, _) = views(&mut client_b).await;
        if version_b == version_a {
            break;
        }
        assert!(
            version_b < version_a && Instant::now() < deadline,
            "B's catalog version {version_b}, A's {version_a}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Still checked before anything is written: 42P07 on either node.
    for client in [&mut client_a, &mut client_b] {
        let e = error_of(client, "CREATE VIEW big AS SELECT 1").await;
        assert_eq!(e.sqlstate, "42P07");
        let e = error_of(client, "CREATE VIEW trades AS SELECT 1").await;
        assert_eq!(e.sqlstate, "42P07");
    }
    assert_eq!(views(&mut client_a).await.0, version_a, "nothing written");

    // Renamed on B, then dropped on B: gone from A within a second.
    query(
        &mut client_a,
        "CREATE VIEW small AS SELECT symbol FROM trades WHERE volume < 10",
    )
    .await
    .complete
    .unwrap();
    views_until(&mut client_b, second, "B sees small", |v| {
        v.contains_key("small")
    })
    .await;
    query(&mut client_b, "ALTER VIEW small RENAME TO tiny")
        .await
        .complete
        .unwrap();
    query(&mut client_b, "DROP VIEW big")
        .await
        .complete
        .unwrap();
    let dropped = Instant::now();
    let version_a = views_until(&mut client_a, second, "A sees B's drop and rename", |v| {
        !v.contains_key("big") && !v.contains_key("small") && v.contains_key("tiny")
    })
    .await;
    assert!(dropped.elapsed() < second);
    let version_b = views_until(&mut client_b, second, "B is caught up", |_| true).await;
    assert_eq!(version_a, version_b);
    assert_eq!(
        error_of(&mut client_a, "DROP VIEW big").await.sqlstate,
        "42P01"
    );
    assert_eq!(
        error_of(&mut client_a, "SELECT * FROM big").await.sqlstate,
        "42P01"
    );

    // The same name created on both nodes at once: the command topic orders
    // them, exactly one wins, and both nodes end with its definition.
    let (x, y) = tokio::join!(
        query(
            &mut client_a,
            "CREATE VIEW raced AS SELECT symbol FROM trades"
        ),
        query(
            &mut client_b,
            "CREATE VIEW raced AS SELECT volume FROM trades"
        ),
    );
    let failed: Vec<_> = [&x, &y].iter().filter_map(|o| o.error.clone()).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].sqlstate, "42P07");
    // The losing node restates the name after its refused command, so the
    // two converge on the same views and the same version, not at once.
    let deadline = Instant::now() + second;
    loop {
        let (va, views_a) = views(&mut client_a).await;
        let (vb, views_b) = views(&mut client_b).await;
        if va == vb && views_a == views_b {
            assert!(views_a.contains_key("raced"), "{views_a:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A ({va}, {views_a:?}) and B ({vb}, {views_b:?}) did not converge"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A node started afterwards replays the topic before it serves.
    let (_c, mut client_c) = joining_node(&bootstrap, None).await;
    let (version_c, views_c) = views(&mut client_c).await;
    let (version_a, views_a) = views(&mut client_a).await;
    assert_eq!((version_c, &views_c), (version_a, &views_a));
    assert!(views_c.contains_key("tiny") && views_c.contains_key("raced"));
    let out = query(&mut client_c, "SELECT COUNT(*) FROM tiny").await;
    assert!(out.error.is_none(), "{:?}", out.error);

    // Without a command topic a node keeps its views to itself.
    let (_d, mut client_d) = joining_node(&bootstrap, Some("")).await;
    assert!(views(&mut client_d).await.1.is_empty());
    query(&mut client_d, "CREATE VIEW mine AS SELECT 1 AS one")
        .await
        .complete
        .unwrap();
    assert!(views(&mut client_d).await.1.contains_key("mine"));
    assert!(!views(&mut client_a).await.1.contains_key("mine"));
}

/// The query ids SHOW JOBS lists, with their session ids.
async fn jobs(client: &mut EngineServiceClient<Channel>) -> Vec<(String, Option<String>)> {
    let out = query(client, "SHOW JOBS").await;
    let schema = out.schema.unwrap();
    assert_eq!(schema.columns[4].name, "session_id");
    out.batches
        .iter()
        .flat_map(|b| {
            let ids = b.column(0).as_string::<i32>();
            let sessions = b.column(4).as_string::<i32>();
            (0..b.num_rows())
                .map(|i| {
                    let session = (!sessions.is_null(i)).then(|| sessions.value(i).to_string());
                    (ids.value(i).to_string(), session)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_session_cancels_every_query_of_the_session() {
    let (_node, mut client) = node_with(16, 500).await;
    let start = |session: &str| {
        let mut req = request("SELECT symbol, volume FROM trades EMIT CHANGES");
        req.session_id = session.into();
        req
    };
    let (a, b, c) = (start("s1"), start("s1"), start("s2"));
    let ids = [a.query_id.clone(), b.query_id.clone(), c.query_id.clone()];
    let a = client.execute_query(a).await.unwrap().into_inner();
    let b = client.execute_query(b).await.unwrap().into_inner();
    let mut c = client.execute_query(c).await.unwrap().into_inner();
    let ended = |stream| tokio::spawn(collect(stream, |_| false));
    let (a, b) = (ended(a), ended(b));
    // The s2 query: rows received so far, and its error if it gets one.
    let (rows_tx, mut rows) = tokio::sync::watch::channel(0u64);
    let s2 = tokio::spawn(async move {
        while let Some(msg) = c.message().await.expect("grpc status") {
            match msg.event.expect("event") {
                Event::Batch(b) => {
                    rows_tx.send_modify(|n| *n += b.num_rows);
                }
                Event::Error(e) => return Some(e),
                _ => {}
            }
        }
        None
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = jobs(&mut client).await;
        if ids.iter().all(|id| listed.iter().any(|(j, _)| j == id)) {
            let session = |id: &String| listed.iter().find(|(j, _)| j == id).unwrap().1.clone();
            assert_eq!(session(&ids[0]).as_deref(), Some("s1"));
            assert_eq!(session(&ids[2]).as_deref(), Some("s2"));
            break;
        }
        assert!(Instant::now() < deadline, "queries never ran: {listed:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let canceller = client.clone();
    let cancel = |id: &str| {
        let mut client = canceller.clone();
        let id = id.to_string();
        async move {
            client
                .cancel_session(CancelSessionRequest { session_id: id })
                .await
                .unwrap()
                .into_inner()
                .cancelled
        }
    };
    assert_eq!(cancel("").await, 0, "an empty id cancels nothing");
    assert_eq!(cancel("nope").await, 0);
    let asked = Instant::now();
    assert_eq!(cancel("s1").await, 2);
    for out in [a.await.unwrap(), b.await.unwrap()] {
        assert_eq!(out.error.expect("cancelled").sqlstate, "57014");
    }
    let deadline = asked + Duration::from_secs(1);
    loop {
        let listed = jobs(&mut client).await;
        let gone = !listed.iter().any(|(j, _)| *j == ids[0] || *j == ids[1]);
        if gone {
            assert!(listed.iter().any(|(j, _)| *j == ids[2]), "{listed:?}");
            break;
        }
        assert!(Instant::now() < deadline, "still listed: {listed:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cancel("s1").await, 0, "idempotent");

    // The s2 query goes on streaming.
    let before = *rows.borrow_and_update();
    tokio::time::timeout(
        Duration::from_secs(10),
        rows.wait_for(|&n| n >= before + 50),
    )
    .await
    .expect("the s2 query keeps streaming")
    .unwrap();
    assert!(!s2.is_finished());
    assert_eq!(cancel("s2").await, 1);
    assert_eq!(s2.await.unwrap().expect("cancelled").sqlstate, "57014");
}

/// A gateway that restarts under thousands of clients opens their queries
/// on one fresh connection almost at once. Each request is a small HTTP/2
/// DATA frame, and HTTP/2 servers count buffered small frames against a
/// budget (half the connection window) to stop floods of them: with the
/// default 1 MiB window, a few thousand requests the node had not yet read
/// made it close the connection ("too_many_data_frames"), and every query
/// on it failed (in every run of this test before the node's window grew).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_queries_on_one_connection_all_start() {
    const BURST: usize = 8_000;
    const ROUNDS: usize = 3;
    let (node, _client) = node_with(BURST * ROUNDS, 100).await;
    for round in 0..ROUNDS {
        // A connection of its own per round: the budget is per connection.
        // The client's side has the same budget for the small frames it has
        // not read (heartbeats on streams the test is not reading yet): a
        // large window, as the gateway's.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr))
            .expect("address")
            .initial_connection_window_size(i32::MAX as u32)
            .connect()
            .await
            .expect("connects");
        let fresh = EngineServiceClient::new(channel);
        let opened = futures::future::join_all((0..BURST).map(|_| {
            let mut client = fresh.clone();
            // No rows: the queries' events would fill the client's own
            // connection window while the test reads one stream at a time.
            async move {
                client
                    .execute_query(request(
                        "SELECT symbol FROM trades WHERE symbol = 'none' EMIT CHANGES",
                    ))
                    .await
            }
        }));
        let opened = tokio::time::timeout(Duration::from_secs(60), opened)
            .await
            .expect("the burst was not answered within 60 s");
        let mut streams = Vec::with_capacity(BURST);
        for (i, response) in opened.into_iter().enumerate() {
            match response {
                Ok(response) => streams.push(response.into_inner()),
                Err(status) => panic!("round {round}: query {i} of the burst failed: {status}"),
            }
        }
        let first = futures::future::join_all(streams.iter_mut().map(|s| s.message()));
        let first = tokio::time::timeout(Duration::from_secs(60), first)
            .await
            .expect("not every query of the burst answered within 60 s");
        for (i, message) in first.into_iter().enumerate() {
            match message {
                Ok(Some(ExecuteQueryResponse {
                    event: Some(Event::Schema(_)),
                })) => {}
                other => panic!("round {round}: query {i} began with {other:?}, not its schema"),
            }
        }
    }
}
