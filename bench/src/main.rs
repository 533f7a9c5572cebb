//! velo-bench: the gateway side by side with PostgreSQL 15 and PgBouncer on
//! this machine, in one run. Prints one table of absolute numbers and ratios
//! and writes the same as JSON.
//!
//!   cargo run --profile production -p velo-bench -- all            # every section
//!   cargo run --profile production -p velo-bench -- select1 bulk   # some of them
//!
//! Sections: select1, engine, bulk, live, scram, clients, streams.
//! Environment: BENCH_SECONDS (per pgbench run, default 5), BENCH_ROWS
//! (default 1000000), BENCH_CLIENTS (default 10000), BENCH_STREAMS
//! (concurrent continuous queries, default 100,1000,5000), BENCH_STREAM_EVENTS
//! and BENCH_STREAM_RATE (numbered events each stream must see, default 20,
//! at 10 per second), BENCH_STREAM_VIA (gateway, direct or both), BENCH_OUT (JSON path, default
//! bench/results/latest.json).

mod measure;
mod streams;
mod systems;

use std::process::Command;

use systems::Systems;

/// One line of the report. `None` where a system does not apply.
struct Row {
    metric: String,
    unit: &'static str,
    gateway: Option<f64>,
    postgresql: Option<f64>,
    pgbouncer: Option<f64>,
}

impl Row {
    fn new(metric: impl Into<String>, unit: &'static str) -> Self {
        Self {
            metric: metric.into(),
            unit,
            gateway: None,
            postgresql: None,
            pgbouncer: None,
        }
    }

    /// Records `value` for the system named `system` (a `Target::name`).
    fn set(&mut self, system: &str, value: f64) {
        match system {
            "gateway" => self.gateway = Some(value),
            "postgresql" => self.postgresql = Some(value),
            _ => self.pgbouncer = Some(value),
        }
    }

    fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
        Some(a? / b?).filter(|r| r.is_finite())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "metric": self.metric,
            "unit": self.unit,
            "gateway": self.gateway,
            "postgresql": self.postgresql,
            "pgbouncer": self.pgbouncer,
            "gateway_over_postgresql": Row::ratio(self.gateway, self.postgresql),
            "gateway_over_pgbouncer": Row::ratio(self.gateway, self.pgbouncer),
        })
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn select1(s: &Systems, seconds: u64, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    for mode in ["simple", "extended"] {
        for clients in [1, 8, 64] {
            let name = format!("SELECT 1 ({mode}, {clients} clients)");
            let mut tps = Row::new(format!("{name} tps"), "tx/s");
            let mut p50 = Row::new(format!("{name} p50"), "µs");
            let mut p99 = Row::new(format!("{name} p99"), "µs");
            for target in [&s.gateway, &s.postgres, &s.pgbouncer] {
                let Some((t, lat)) = report(
                    &name,
                    target.name,
                    measure::pgbench(target, "SELECT 1;\n", mode, clients, seconds, false),
                ) else {
                    continue;
                };
                tps.set(target.name, t);
                let _ = lat; // pgbench's own quantiles are coarse; measure precisely:
                if let Some(lat) = report(
                    &name,
                    target.name,
                    measure::select1_latency(target, clients, seconds, mode == "extended").await,
                ) {
                    p50.set(target.name, lat.p50);
                    p99.set(target.name, lat.p99);
                }
                eprintln!("  {name} {}: {t:.0} tps", target.name);
            }
            rows.extend([tps, p50, p99]);
        }
    }
    Ok(())
}

async fn engine_latency(s: &Systems, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let sql = "SELECT x FROM (VALUES (1), (2), (3)) AS t(x)";
    let runs = 2000;
    // Warm both paths first.
    measure::engine_query_direct(&s.engine_addr, sql, 50).await?;
    let direct = measure::engine_query_direct(&s.engine_addr, sql, runs).await?;
    for (protocol, prepared) in [("simple", false), ("prepared", true)] {
        measure::engine_query_via_gateway(&s.gateway, sql, 50, prepared).await?;
        let via = measure::engine_query_via_gateway(&s.gateway, sql, runs, prepared).await?;
        for (label, v, d) in [
            ("p50", via.p50, direct.p50),
            ("p99", via.p99, direct.p99),
            ("p99.9", via.p999, direct.p999),
        ] {
            let mut r = Row::new(
                format!("small engine query ({protocol}) {label} via gateway"),
                "µs",
            );
            r.gateway = Some(v);
            rows.push(r);
            let mut added = Row::new(
                format!("latency added by the gateway ({protocol}) {label}"),
                "µs",
            );
            added.gateway = Some(v - d);
            rows.push(added);
        }
    }
    for (label, d) in [
        ("p50", direct.p50),
        ("p99", direct.p99),
        ("p99.9", direct.p999),
    ] {
        let mut direct_row = Row::new(format!("small engine query {label} direct gRPC"), "µs");
        direct_row.gateway = Some(d);
        rows.push(direct_row);
    }
    Ok(())
}

/// Timed runs per system and case in the bulk section; the median is reported.
const BULK_RUNS: usize = 3;

async fn bulk(s: &Systems, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let file = format!(
        "SELECT symbol, CAST(price AS DECIMAL(12,2)) AS price, volume, ts, id FROM 'file://{}'",
        s.csv.display()
    );
    let table = "SELECT symbol, price, volume, ts, id FROM trades";
    let cases: [(&str, String, String); 3] = [
        (
            "COPY … TO STDOUT via psql",
            format!("COPY ({file}) TO STDOUT"),
            format!("COPY ({table}) TO STDOUT"),
        ),
        ("SELECT * via psql", file.clone(), table.to_string()),
        (
            "SELECT * via tokio-postgres (binary)",
            file.clone(),
            table.to_string(),
        ),
    ];
    for (i, (name, gw_sql, pg_sql)) in cases.iter().enumerate() {
        let mut r = Row::new(format!("bulk rows: {name}"), "rows/s");
        for (target, sql) in [
            (&s.gateway, gw_sql),
            (&s.postgres, pg_sql),
            (&s.pgbouncer, pg_sql),
        ] {
            // One run first, untimed, so every system serves from memory
            // (PostgreSQL's shared buffers, the engine's parsed file), then
            // the median of three.
            let mut rates = Vec::new();
            for run in 0..=BULK_RUNS {
                let result = if i == 2 {
                    measure::driver_rows_per_sec(target, sql).await
                } else {
                    measure::psql_rows_per_sec(target, sql)
                };
                let Some((n, rate)) = report(name, target.name, result) else {
                    break;
                };
                let kind = if run == 0 { "warm-up" } else { "timed" };
                eprintln!(
                    "  {name} {} ({kind}): {n} rows, {rate:.0} rows/s",
                    target.name
                );
                if run > 0 {
                    rates.push(rate);
                }
            }
            if rates.len() == BULK_RUNS {
                rates.sort_by(f64::total_cmp);
                r.set(target.name, rates[BULK_RUNS / 2]);
            }
        }
        rows.push(r);
    }
    Ok(())
}

async fn live(s: &Systems, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let (via, direct, path) = measure::live_latency(
        &s.gateway,
        &s.gateway_admin,
        &s.engine_addr,
        &s.kafka_bootstrap,
        200,
    )
    .await?;
    for (label, v, d) in [
        ("p50", via.p50, direct.p50),
        ("p99", via.p99, direct.p99),
        ("p99.9", via.p999, direct.p999),
    ] {
        let mut r = Row::new(format!("live event → client {label} via gateway"), "µs");
        r.gateway = Some(v);
        rows.push(r);
        let mut r = Row::new(format!("live event → client {label} direct gRPC"), "µs");
        r.gateway = Some(d);
        rows.push(r);
    }
    for (step, mean) in [
        ("Kafka produce → engine batch sent", path.to_engine_batch),
        ("engine batch sent → gateway", path.engine_to_gateway),
        ("in the gateway (received → rows encoded)", path.in_gateway),
        (
            "engine batch sent → direct gRPC client",
            path.engine_to_direct_client,
        ),
    ] {
        let mut r = Row::new(format!("live path, mean: {step}"), "µs");
        r.gateway = Some(mean);
        rows.push(r);
    }
    Ok(())
}

async fn scram(s: &Systems, seconds: u64, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let mut r = Row::new(
        "SCRAM connection setups/s (pgbench -C, 8 clients)",
        "conn/s",
    );
    for target in [&s.gateway, &s.postgres, &s.pgbouncer] {
        let Some((tps, _)) = report(
            "scram setups",
            target.name,
            measure::pgbench(target, "SELECT 1;\n", "simple", 8, seconds, true),
        ) else {
            continue;
        };
        eprintln!("  scram setups {}: {tps:.0}/s", target.name);
        r.set(target.name, tps);
    }
    rows.push(r);
    Ok(())
}

async fn clients(s: &Systems, n: usize, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let mut memory = Row::new(
        format!("resident memory per idle client ({n} clients)"),
        "bytes",
    );
    let mut results = Vec::new();
    for target in [&s.gateway, &s.pgbouncer] {
        let Some(m) = report(
            "many clients",
            target.name,
            measure::many_clients(target, n, 3).await,
        ) else {
            continue;
        };
        eprintln!(
            "  {n} clients {}: {} connected, {:.0} B/conn, SELECT 1 p50 {:.0} µs p99 {:.0} µs",
            target.name, m.connected, m.bytes_per_idle_connection, m.select1.p50, m.select1.p99
        );
        results.push((target.name, m));
    }
    let mut p50 = Row::new(format!("{n} concurrent clients SELECT 1 p50"), "µs");
    let mut p99 = Row::new(format!("{n} concurrent clients SELECT 1 p99"), "µs");
    let mut spread = Row::new(format!("{n} concurrent clients SELECT 1 p99/p50"), "ratio");
    for (name, m) in results {
        memory.set(name, m.bytes_per_idle_connection);
        p50.set(name, m.select1.p50);
        p99.set(name, m.select1.p99);
        spread.set(name, m.select1.p99 / m.select1.p50);
    }
    rows.extend([memory, p50, p99, spread]);
    Ok(())
}

async fn many_streams(s: &Systems, ns: &[usize], rows: &mut Vec<Row>) -> anyhow::Result<()> {
    use streams::Via;
    let events = env_or("BENCH_STREAM_EVENTS", 20usize);
    let rate = env_or("BENCH_STREAM_RATE", 10u32);
    let vias: Vec<Via> = match std::env::var("BENCH_STREAM_VIA").as_deref() {
        Ok("gateway") => vec![Via::Gateway],
        Ok("direct") => vec![Via::DirectGrpc],
        _ => vec![Via::Gateway, Via::DirectGrpc],
    };
    for &n in ns {
        for &via in &vias {
            let Some(r) = report(
                "streams",
                "gateway",
                streams::streams(s, via, n, events, rate).await,
            ) else {
                continue;
            };
            eprintln!(
                "  {n} streams: {} of {} rows, all live after {:?}, delay p50 {:.0} µs p99 {:.0} µs",
                r.delivered, r.expected, r.all_live_after, r.delay.p50, r.delay.p99
            );
            for (metric, unit, value) in streams::rows_for(n, via, &r) {
                let mut row = Row::new(metric, unit);
                row.gateway = Some(value);
                rows.push(row);
            }
        }
    }
    Ok(())
}

/// A failed measurement leaves its cell empty (and says why) instead of
/// ending the run.
fn report<T>(what: &str, system: &str, result: anyhow::Result<T>) -> Option<T> {
    result
        .map_err(|e| eprintln!("  {what} {system}: FAILED: {e:#}"))
        .ok()
}

fn print_table(rows: &[Row]) {
    let fmt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.1}"));
    let ratio = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2}×"));
    println!(
        "| metric | unit | gateway | PostgreSQL | PgBouncer | gateway ÷ PostgreSQL | gateway ÷ PgBouncer |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.metric,
            r.unit,
            fmt(r.gateway),
            fmt(r.postgresql),
            fmt(r.pgbouncer),
            ratio(Row::ratio(r.gateway, r.postgresql)),
            ratio(Row::ratio(r.gateway, r.pgbouncer)),
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut sections: Vec<String> = std::env::args().skip(1).collect();
    let all = [
        "select1", "engine", "bulk", "live", "scram", "clients", "streams",
    ];
    if sections.is_empty() || sections.iter().any(|s| s == "all") {
        sections = all.iter().map(|s| s.to_string()).collect();
    }
    if let Some(bad) = sections.iter().find(|s| !all.contains(&s.as_str())) {
        anyhow::bail!("unknown section {bad}: one of all, {}", all.join(", "));
    }
    let seconds = env_or("BENCH_SECONDS", 5u64);
    let rows_in_file = env_or("BENCH_ROWS", 1_000_000usize);
    let n_clients = env_or("BENCH_CLIENTS", 10_000usize);
    let n_streams: Vec<usize> = std::env::var("BENCH_STREAMS")
        .unwrap_or_else(|_| "100,1000,5000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/results/latest.json").to_string()
    });

    // The systems under test are built fully optimised, as the container
    // image is (the `production` profile; `--release` trades some speed
    // for build time).
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--profile",
            &systems::profile(),
            "-q",
            "-p",
            "velo-gateway",
            "-p",
            "velo-engine",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "building the gateway and engine");
    systems::raise_own_fd_limit();
    let s = systems::start(rows_in_file)?;

    let mut rows = Vec::new();
    for section in &sections {
        eprintln!("== {section}");
        match section.as_str() {
            "select1" => select1(&s, seconds, &mut rows).await?,
            "engine" => {
                report(
                    "engine query",
                    "gateway",
                    engine_latency(&s, &mut rows).await,
                );
            }
            "bulk" => bulk(&s, &mut rows).await?,
            "live" => {
                report("live", "gateway", live(&s, &mut rows).await);
            }
            "scram" => scram(&s, seconds, &mut rows).await?,
            "clients" => clients(&s, n_clients, &mut rows).await?,
            "streams" => many_streams(&s, &n_streams, &mut rows).await?,
            _ => unreachable!(),
        }
    }
    print_table(&rows);
    let machine = format!(
        "{} vCPU, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c.lines().find_map(|l| l
                .strip_prefix("model name")?
                .split(':')
                .nth(1)
                .map(|s| s.trim().to_string())))
            .unwrap_or_default()
    );
    let json = serde_json::json!({
        "machine": machine,
        "seconds_per_pgbench_run": seconds,
        "rows_in_file": rows_in_file,
        "clients": n_clients,
        "results": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    if let Some(dir) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&json)?)?;
    eprintln!("wrote {out}");
    Ok(())
}
