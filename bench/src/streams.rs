//! Many concurrent continuous queries on one topic, as a wall of dashboards
//! makes them: rows delivered against rows expected, the delay from
//! producing an event to each client receiving it, and what each stream
//! costs the gateway and the engine in memory and CPU. The same N streams
//! run once through the gateway and once straight from the engine over one
//! gRPC connection, which isolates the gateway's share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_postgres::NoTls;
use velo_proto::v1::ExecuteQueryRequest;

use crate::measure::{quantiles, Quantiles};
use velo_integration::rss_kib;

use crate::systems::Systems;

/// How each stream reaches the engine.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Gateway,
    DirectGrpc,
}

pub struct StreamsResult {
    pub delivered: u64,
    pub expected: u64,
    pub delay: Quantiles,
    /// Until every stream had its first row.
    pub all_live_after: Duration,
    pub gateway_kib_per_stream: f64,
    pub engine_kib_per_stream: f64,
    /// CPU (percent of one core) while events flow, per 1,000 streams.
    pub gateway_cpu_per_1000: f64,
    pub engine_cpu_per_1000: f64,
}

/// When each numbered event was produced (index = its number).
type Sent = Arc<Mutex<Vec<Option<Instant>>>>;

/// One stream's numbered rows: how many, and each one's delay in µs.
#[derive(Default)]
struct Received {
    rows: u64,
    delays: Vec<f64>,
}

impl Received {
    /// Takes row `volume`; returns whether it was the last event.
    fn take(
        &mut self,
        volume: i64,
        sent: &Sent,
        live: &AtomicUsize,
        first: &mut bool,
        last: i64,
    ) -> bool {
        if std::mem::take(first) {
            live.fetch_add(1, Ordering::AcqRel);
        }
        if volume > 0 {
            if let Some(t) = sent.lock().unwrap().get(volume as usize).copied().flatten() {
                self.delays.push(t.elapsed().as_secs_f64() * 1e6);
            }
            self.rows += 1;
        }
        volume == last
    }
}

/// N streams of `SELECT volume ... WHERE symbol = <tag>`, then `events`
/// numbered events at `rate` per second.
pub async fn streams(
    s: &Systems,
    via: Via,
    n: usize,
    events: usize,
    rate: u32,
) -> anyhow::Result<StreamsResult> {
    let tag = format!("N{n}{}", if via == Via::Gateway { "G" } else { "D" });
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &s.kafka_bootstrap)
        .set("linger.ms", "0")
        .create()?;
    let produce = |volume: usize| {
        let payload = format!(
            r#"{{"symbol":"{tag}","price":"1.00","volume":{volume},"ts":"2026-01-01T00:00:00"}}"#
        );
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::<(), _>::to("trades").payload(&payload),
                    Duration::from_secs(5),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))
        }
    };
    let sql = format!("SELECT volume FROM kafka://trades WHERE symbol = '{tag}' EMIT CHANGES");
    let gateway_before = rss_kib(s.gateway.pid);
    let engine_before = rss_kib(s.engine_pid);

    let sent: Sent = Arc::new(Mutex::new(vec![None; events + 1]));
    let live = Arc::new(AtomicUsize::new(0));
    let engine = match via {
        Via::DirectGrpc => Some(
            velo_proto::EngineServiceClient::connect(format!("http://{}", s.engine_addr)).await?,
        ),
        Via::Gateway => None,
    };
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (sent, live, sql) = (sent.clone(), live.clone(), sql.clone());
        let last = events as i64;
        tasks.push(match &engine {
            None => tokio::spawn(through_gateway(s.gateway.dsn(), sql, sent, live, last)),
            Some(client) => tokio::spawn(direct(client.clone(), i, sql, sent, live, last)),
        });
    }
    // Unnumbered events until every stream has had a row.
    let started = Instant::now();
    while live.load(Ordering::Acquire) < n {
        if let Some(i) = tasks.iter().position(|t| t.is_finished()) {
            let failed = tasks.swap_remove(i).await?;
            anyhow::bail!(
                "a stream ended before every stream was live: {:?}",
                failed.err()
            );
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(180),
            "{} of {n} streams had a row within 180 s",
            live.load(Ordering::Acquire)
        );
        produce(0).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_live_after = started.elapsed();
    let gateway_kib = rss_kib(s.gateway.pid).saturating_sub(gateway_before) as f64;
    let engine_kib = rss_kib(s.engine_pid).saturating_sub(engine_before) as f64;

    let (gateway_cpu, engine_cpu) = (cpu_ticks(s.gateway.pid), cpu_ticks(s.engine_pid));
    let flowing = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    for volume in 1..=events {
        sent.lock().unwrap()[volume] = Some(Instant::now());
        produce(volume).await?;
        tokio::time::sleep_until((flowing + interval * volume as u32).into()).await;
    }
    let mut received = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for task in tasks {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Ok(r))) => received.push(r),
            Ok(Ok(Err(e))) => eprintln!("  a stream failed: {e:#}"),
            Ok(Err(e)) => eprintln!("  a stream task failed: {e}"),
            Err(_) => eprintln!("  a stream did not see the last event within 30 s"),
        }
    }
    let seconds = flowing.elapsed().as_secs_f64();
    let per_1000 =
        |ticks: u64| ticks as f64 / clock_ticks() / seconds * 100.0 / (n as f64 / 1000.0);
    let gateway_cpu = per_1000(cpu_ticks(s.gateway.pid) - gateway_cpu);
    let engine_cpu = per_1000(cpu_ticks(s.engine_pid) - engine_cpu);
    drop(engine);
    wait_for_no_jobs(&s.engine_addr).await;

    Ok(StreamsResult {
        delivered: received.iter().map(|r| r.rows).sum(),
        expected: (n * events) as u64,
        delay: quantiles(received.into_iter().flat_map(|r| r.delays).collect()),
        all_live_after,
        gateway_kib_per_stream: if via == Via::Gateway {
            gateway_kib / n as f64
        } else {
            0.0
        },
        engine_kib_per_stream: engine_kib / n as f64,
        gateway_cpu_per_1000: if via == Via::Gateway {
            gateway_cpu
        } else {
            0.0
        },
        engine_cpu_per_1000: engine_cpu,
    })
}

async fn through_gateway(
    dsn: String,
    sql: String,
    sent: Sent,
    live: Arc<AtomicUsize>,
    last: i64,
) -> anyhow::Result<Received> {
    let (client, connection) = tokio_postgres::connect(&dsn, NoTls).await?;
    let socket = tokio::spawn(connection);
    let rows = client.copy_out(&format!("COPY ({sql}) TO STDOUT")).await?;
    let mut rows = Box::pin(rows);
    let (mut received, mut first) = (Received::default(), true);
    while let Some(chunk) = rows.next().await {
        for line in std::str::from_utf8(&chunk?)?.lines() {
            if received.take(line.parse()?, &sent, &live, &mut first, last) {
                socket.abort();
                return Ok(received);
            }
        }
    }
    anyhow::bail!("the stream ended")
}

async fn direct(
    mut client: velo_proto::EngineServiceClient<tonic::transport::Channel>,
    i: usize,
    sql: String,
    sent: Sent,
    live: Arc<AtomicUsize>,
    last: i64,
) -> anyhow::Result<Received> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    let stream = client
        .execute_query(ExecuteQueryRequest {
            query_id: format!("bench-streams-{i}-{}", std::process::id()),
            sql,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut batches = velo_integration::EngineBatches::new(stream);
    let (mut received, mut first) = (Received::default(), true);
    while let Some(batch) = batches.next().await? {
        let volumes = batch.column(0).as_primitive::<Int64Type>();
        for k in 0..volumes.len() {
            if received.take(volumes.value(k), &sent, &live, &mut first, last) {
                return Ok(received);
            }
        }
    }
    anyhow::bail!("the stream ended")
}

/// Waits (up to 60 s) until the engine has ended every stream.
async fn wait_for_no_jobs(engine: &str) {
    let started = Instant::now();
    loop {
        let left = velo_integration::engine_jobs(engine).await.len();
        if left == 0 {
            eprintln!(
                "  the engine ended every stream {:?} after the clients left",
                started.elapsed()
            );
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            eprintln!("  the engine still runs {left} streams 60 s after the clients left");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the
    // 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Rows for the report: each N through the gateway and direct.
pub fn rows_for(n: usize, via: Via, r: &StreamsResult) -> Vec<(String, &'static str, f64)> {
    let how = match via {
        Via::Gateway => "via gateway",
        Via::DirectGrpc => "direct gRPC",
    };
    let mut rows = vec![
        (
            format!("{n} streams {how}: rows delivered of expected"),
            "%",
            r.delivered as f64 * 100.0 / r.expected.max(1) as f64,
        ),
        (
            format!("{n} streams {how}: all live after"),
            "ms",
            r.all_live_after.as_secs_f64() * 1e3,
        ),
        (
            format!("{n} streams {how}: event → client p50"),
            "µs",
            r.delay.p50,
        ),
        (
            format!("{n} streams {how}: event → client p99"),
            "µs",
            r.delay.p99,
        ),
        (
            format!("{n} streams {how}: engine RSS per stream"),
            "KiB",
            r.engine_kib_per_stream,
        ),
        (
            format!("{n} streams {how}: engine CPU per 1,000 streams"),
            "% core",
            r.engine_cpu_per_1000,
        ),
    ];
    if via == Via::Gateway {
        rows.push((
            format!("{n} streams {how}: gateway RSS per stream"),
            "KiB",
            r.gateway_kib_per_stream,
        ));
        rows.push((
            format!("{n} streams {how}: gateway CPU per 1,000 streams"),
            "% core",
            r.gateway_cpu_per_1000,
        ));
    }
    rows
}
