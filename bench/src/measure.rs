//! One function per measurement. Each returns plain numbers; main.rs puts
//! them in the table.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{pin_mut, StreamExt};
use tokio_postgres::NoTls;

use crate::systems::{Target, PASSWORD};

/// Latency quantiles in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quantiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

pub fn quantiles(mut micros: Vec<f64>) -> Quantiles {
    if micros.is_empty() {
        return Quantiles::default();
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
    Quantiles {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
    }
}

/// `pgbench` with a one-line script: transactions per second (and its
/// per-transaction log's quantiles, which are coarse at higher concurrency:
/// pgbench reuses one clock reading for several clients). `-C` makes every
/// transaction a new connection (so a SCRAM handshake).
pub fn pgbench(
    target: &Target,
    script: &str,
    mode: &str,
    clients: usize,
    seconds: u64,
    connect_each: bool,
) -> anyhow::Result<(f64, Quantiles)> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("script.sql");
    std::fs::write(&file, script)?;
    // A stuck run (seen with `-C` through PgBouncer) must not hang the
    // whole benchmark.
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", &(seconds * 3 + 30).to_string(), "pgbench"])
        .current_dir(dir.path())
        .args(["-n", "-M", mode, "-T", &seconds.to_string()])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
        ])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &target.port.to_string(),
            "-U",
            target.user,
        ])
        .args(["-l", "--log-prefix", "tx"])
        .arg("-f")
        .arg(&file)
        .arg(target.dbname)
        .env("PGPASSWORD", PASSWORD);
    if connect_each {
        cmd.arg("-C");
    }
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "pgbench on {}: {stdout}{}",
        target.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let tps = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir.path())?.flatten() {
        if entry.file_name().to_string_lossy().starts_with("tx.") {
            for line in std::fs::read_to_string(entry.path())?.lines() {
                if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse().ok()) {
                    latencies.push(us);
                }
            }
        }
    }
    Ok((tps, quantiles(latencies)))
}

/// `SELECT 1` latency measured by `clients` concurrent tokio-postgres
/// connections for `seconds`, over the simple or the extended protocol.
pub async fn select1_latency(
    target: &Target,
    clients: usize,
    seconds: u64,
    extended: bool,
) -> anyhow::Result<Quantiles> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = connect(target).await?;
        tasks.push(tokio::spawn(async move {
            let stmt = client.prepare("SELECT 1").await?;
            let mut micros = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                if extended {
                    client.query(&stmt, &[]).await?;
                } else {
                    client.simple_query("SELECT 1").await?;
                }
                micros.push(t.elapsed().as_secs_f64() * 1e6);
            }
            Ok::<_, anyhow::Error>(micros)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(quantiles(all))
}

async fn connect(target: &Target) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(&target.dsn(), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A small query answered by the engine, through the gateway.
pub async fn engine_query_via_gateway(
    target: &Target,
    sql: &str,
    runs: usize,
    prepared: bool,
) -> anyhow::Result<Quantiles> {
    let client = connect(target).await?;
    // Prepared: Bind/Execute/Sync of a named statement, as drivers do.
    let statement = if prepared {
        Some(client.prepare(sql).await?)
    } else {
        None
    };
    let mut micros = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        match &statement {
            Some(statement) => {
                client.query(statement, &[]).await?;
            }
            None => {
                client.simple_query(sql).await?;
            }
        }
        micros.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(quantiles(micros))
}

/// The same query straight to the engine over gRPC.
pub async fn engine_query_direct(
    engine: &str,
    sql: &str,
    runs: usize,
) -> anyhow::Result<Quantiles> {
    let mut client = velo_proto::EngineServiceClient::connect(format!("http://{engine}")).await?;
    let mut micros = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        let mut stream = client
            .execute_query(velo_proto::v1::ExecuteQueryRequest {
                query_id: format!("bench-{i}"),
                sql: sql.to_string(),
                ..Default::default()
            })
            .await?
            .into_inner();
        // Done at Complete, as the gateway is (not at the stream's end).
        while let Some(msg) = stream.message().await? {
            use velo_proto::v1::execute_query_response::Event;
            if matches!(msg.event, Some(Event::Complete(_)) | Some(Event::Error(_))) {
                break;
            }
        }
        micros.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(quantiles(micros))
}

/// Rows per second of a psql command whose stdout is one line per row.
pub fn psql_rows_per_sec(target: &Target, sql: &str) -> anyhow::Result<(u64, f64)> {
    use std::io::Read;
    let t = Instant::now();
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &target.port.to_string(),
        ])
        .args([
            "-U",
            target.user,
            "-d",
            target.dbname,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env("PGPASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
    anyhow::ensure!(child.wait()?.success(), "psql failed on {}", target.name);
    Ok((lines, lines as f64 / t.elapsed().as_secs_f64()))
}

/// Rows per second streamed by a Rust client (tokio-postgres, binary rows).
pub async fn driver_rows_per_sec(target: &Target, sql: &str) -> anyhow::Result<(u64, f64)> {
    let client = connect(target).await?;
    let t = Instant::now();
    let stmt = client.prepare(sql).await?;
    let rows = client
        .query_raw(
            &stmt,
            std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>(),
        )
        .await?;
    pin_mut!(rows);
    let mut n = 0u64;
    while let Some(row) = rows.next().await {
        row?;
        n += 1;
    }
    Ok((n, n as f64 / t.elapsed().as_secs_f64()))
}

/// Event produced to Kafka → its row at a subscriber: through the gateway
/// (a continuous query read with tokio-postgres) and straight from the
/// engine over gRPC. One marker event at a time, each awaited.
/// Where a live event's time goes (means, µs): produce → engine batch
/// sent (node clock), batch sent → received (the gateway's, or the direct
/// client's), and inside the gateway (received → rows encoded; then one
/// write to the client's socket, the loopback and the client's parsing).
#[derive(Debug, Default, Clone, Copy)]
pub struct LivePath {
    pub to_engine_batch: f64,
    pub engine_to_gateway: f64,
    pub in_gateway: f64,
    pub engine_to_direct_client: f64,
}

/// A histogram's (sum in seconds, count) from a /metrics body.
fn histogram(body: &str, name: &str) -> (f64, f64) {
    let series = |suffix: &str| velo_integration::metric(body, &format!("{name}{suffix}"));
    (series("_sum"), series("_count"))
}

fn wall_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

pub async fn live_latency(
    gateway: &Target,
    gateway_admin: &str,
    engine: &str,
    bootstrap: &str,
    events: usize,
) -> anyhow::Result<(Quantiles, Quantiles, LivePath)> {
    let metrics = || -> anyhow::Result<[(f64, f64); 2]> {
        let (_, body) = velo_integration::http_get(gateway_admin, "/metrics")?;
        Ok([
            histogram(&body, "velo_gateway_engine_batch_transit_seconds"),
            histogram(&body, "velo_gateway_batch_in_gateway_seconds"),
        ])
    };
    let mut path = LivePath::default();
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()?;
    let produce = |i: usize| {
        let payload = format!(
            r#"{{"symbol":"BENCH","price":"1.00","volume":{i},"ts":"2026-01-01T00:00:00"}}"#
        );
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to("trades").key("BENCH").payload(&payload),
                    Duration::from_secs(5),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))
        }
    };
    let sql = "SELECT volume FROM trades WHERE symbol = 'BENCH' EMIT CHANGES";

    // Through the gateway.
    let client = connect(gateway).await?;
    let stmt = client.prepare(sql).await?;
    let mut rows = Box::pin(
        client
            .query_raw(
                &stmt,
                std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>(),
            )
            .await?,
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // the query is tailing
    let before = metrics()?;
    let mut via_gateway = Vec::new();
    for i in 0..events {
        let t = Instant::now();
        produce(i).await?;
        tokio::time::timeout(Duration::from_secs(10), rows.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream ended"))??;
        via_gateway.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let after = metrics()?;
    let mean = |i: usize| {
        let (sum, count) = (after[i].0 - before[i].0, after[i].1 - before[i].1);
        if count > 0.0 {
            sum / count * 1e6
        } else {
            0.0
        }
    };
    path.engine_to_gateway = mean(0);
    path.in_gateway = mean(1);
    drop(rows);
    drop(client);

    // Straight from the engine.
    let mut engine_client =
        velo_proto::EngineServiceClient::connect(format!("http://{engine}")).await?;
    let mut stream = engine_client
        .execute_query(velo_proto::v1::ExecuteQueryRequest {
            query_id: "bench-live".into(),
            sql: sql.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut direct = Vec::new();
    let (mut to_engine, mut to_client) = (Vec::new(), Vec::new());
    for i in 0..events {
        let t = Instant::now();
        let produced_at = wall_micros();
        produce(events + i).await?;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await??
                .ok_or_else(|| anyhow::anyhow!("stream ended"))?;
            if let Some(velo_proto::v1::execute_query_response::Event::Batch(b)) = msg.event {
                let now = wall_micros();
                to_engine.push((b.node_time_micros - produced_at) as f64);
                to_client.push((now - b.node_time_micros) as f64);
                break;
            }
        }
        direct.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    path.to_engine_batch = mean(&to_engine);
    path.engine_to_direct_client = mean(&to_client);
    Ok((quantiles(via_gateway), quantiles(direct), path))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

pub struct ManyClients {
    /// Resident memory added per idle client connection, bytes.
    pub bytes_per_idle_connection: f64,
    /// `SELECT 1` from every client at once.
    pub select1: Quantiles,
    pub connected: usize,
}

/// Opens `n` connections (authenticated, idle), measures the server's
/// resident memory growth, then runs `SELECT 1` on all of them at once.
pub async fn many_clients(target: &Target, n: usize, rounds: usize) -> anyhow::Result<ManyClients> {
    let before = rss_kib(target.pid);
    let mut clients = Vec::with_capacity(n);
    let dsn = target.dsn();
    let mut pending = futures::stream::iter(0..n)
        .map(|_| {
            let dsn = dsn.clone();
            async move {
                let (client, connection) = tokio_postgres::connect(&dsn, NoTls).await?;
                tokio::spawn(connection);
                Ok::<_, anyhow::Error>(client)
            }
        })
        .buffer_unordered(64);
    while let Some(c) = pending.next().await {
        clients.push(c?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(target.pid);
    let mut micros = Vec::with_capacity(n * rounds);
    for _ in 0..rounds {
        let runs = clients.iter().map(|c| async move {
            let t = Instant::now();
            c.simple_query("SELECT 1").await.map(|_| t.elapsed())
        });
        for r in futures::future::join_all(runs).await {
            micros.push(r?.as_secs_f64() * 1e6);
        }
    }
    Ok(ManyClients {
        bytes_per_idle_connection: after.saturating_sub(before) as f64 * 1024.0 / n as f64,
        select1: quantiles(micros),
        connected: clients.len(),
    })
}
