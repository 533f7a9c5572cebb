//! A soak: many sessions mixing continuous queries (COPY and cursors),
//! snapshots, catalog queries, cancels and reconnects against two engine
//! nodes, one of which is killed and restarted along the way. Every
//! operation has a client-side deadline; none may hang, and the only
//! errors allowed are the ones a node restart or a cancel explains
//! (58030, 57014). The gateway's memory must stay flat after warm-up.
//!
//! The suite runs a short version; the full one is the same test with
//! SOAK_SECONDS=1800 SOAK_SESSIONS=200 SOAK_RESTARTS=2, and prints its
//! figures (run with --no-capture). SOAK_DEADLINE_SECS (default 30) sets
//! how long one operation may take before it counts as hung;
//! VELO_BIN_DIR=target/release runs it against release binaries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use tokio_postgres::{Client, NoTls};
use velo_integration::{Engine, Gateway};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Deadline for any one operation, however slow the machine
/// (SOAK_DEADLINE_SECS, default 30).
fn operation_deadline() -> Duration {
    Duration::from_secs(env("SOAK_DEADLINE_SECS", 30))
}
/// SQLSTATEs a node restart (58030) or a cancel (57014) explains.
const EXPECTED: &[&str] = &["58030", "57014"];

#[derive(Default)]
struct Tally {
    done: BTreeMap<&'static str, u64>,
    /// The slowest successful operation of each kind, in milliseconds.
    slowest_ms: BTreeMap<&'static str, u128>,
    /// By kind and SQLSTATE.
    errors: BTreeMap<String, u64>,
    unexpected: Vec<String>,
    /// Kind and seconds into the run.
    hung: Vec<(&'static str, u64)>,
}

/// A client whose socket closes when it is dropped (a tokio-postgres
/// connection left to itself would go on reading an abandoned COPY).
struct Conn {
    client: Client,
    socket: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.socket.abort();
    }
}

async fn connect(dsn: &str) -> Result<Conn, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(dsn, NoTls).await?;
    let socket = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { client, socket })
}

/// One operation of one kind; the client may be replaced (reconnect).
async fn operation(
    kind: &'static str,
    dsn: &str,
    conn: &mut Conn,
) -> Result<(), tokio_postgres::Error> {
    let client = &conn.client;
    match kind {
        "copy" => {
            let rows = client
                .copy_out("COPY (SELECT symbol, price FROM kafka://trades EMIT CHANGES) TO STDOUT")
                .await?;
            let mut rows = Box::pin(rows);
            let read_for = Duration::from_millis(rand::rng().random_range(200..1500));
            let until = Instant::now() + read_for;
            while Instant::now() < until {
                match rows.next().await {
                    Some(chunk) => {
                        chunk?;
                    }
                    None => break,
                }
            }
            // A client that leaves mid-COPY closes its socket; the
            // session goes on with a new one.
            drop(rows);
            *conn = connect(dsn).await?;
        }
        "cancel" => {
            let token = client.cancel_token();
            let query = client.simple_query("SELECT symbol FROM kafka://trades EMIT CHANGES");
            let after = Duration::from_millis(rand::rng().random_range(100..800));
            // A CancelRequest that arrives before the gateway has read the
            // query cancels nothing (as in PostgreSQL): repeat it, as a
            // user repeats Ctrl+C, until the query ends.
            let cancel = async {
                tokio::time::sleep(after).await;
                loop {
                    let _ = token.cancel_query(NoTls).await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            };
            let result = tokio::select! {
                result = query => result,
                never = cancel => never,
            };
            match result {
                Err(e) if e.code().is_some_and(|c| c.code() == "57014") => {}
                other => {
                    other?;
                }
            }
        }
        "cursor" => {
            client
                .batch_execute(
                    "BEGIN; DECLARE live CURSOR FOR SELECT symbol, price FROM kafka://trades EMIT CHANGES",
                )
                .await?;
            for _ in 0..3 {
                client.simple_query("FETCH 5 FROM live").await?;
            }
            client.batch_execute("CLOSE live; COMMIT").await?;
        }
        "snapshot" => {
            let count: i64 = client
                .query_one("SELECT COUNT(*) FROM trades", &[])
                .await?
                .get(0);
            assert!(count >= 0);
            client
                .simple_query("SELECT * FROM kafka://trades LIMIT 5")
                .await?;
        }
        "catalog" => {
            client
                .query(
                    "SELECT c.relname, a.attname FROM pg_catalog.pg_class c \
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid WHERE c.relname = 'trades'",
                    &[],
                )
                .await?;
            client
                .simple_query("SELECT table_name FROM information_schema.tables")
                .await?;
        }
        "reconnect" => {
            *conn = connect(dsn).await?;
            conn.client.simple_query("SELECT 1").await?;
        }
        _ => unreachable!(),
    }
    Ok(())
}

const KINDS: &[&str] = &[
    "copy",
    "cancel",
    "cursor",
    "snapshot",
    "catalog",
    "reconnect",
];

async fn session(dsn: Arc<String>, started: Instant, until: Instant, tally: Arc<Mutex<Tally>>) {
    let mut client = None;
    while Instant::now() < until {
        let kind = KINDS[rand::rng().random_range(0..KINDS.len())];
        let began = Instant::now();
        let outcome = tokio::time::timeout(operation_deadline(), async {
            if client.is_none() {
                client = Some(connect(&dsn).await?);
            }
            operation(kind, &dsn, client.as_mut().expect("connected")).await
        })
        .await;
        let mut tally = tally.lock().unwrap();
        match outcome {
            Err(_) => {
                tally.hung.push((kind, started.elapsed().as_secs()));
                client = None;
            }
            Ok(Ok(())) => {
                *tally.done.entry(kind).or_default() += 1;
                let ms = began.elapsed().as_millis();
                let slowest = tally.slowest_ms.entry(kind).or_default();
                *slowest = (*slowest).max(ms);
            }
            Ok(Err(e)) => {
                let code = e.code().map_or("none", |c| c.code()).to_string();
                if !EXPECTED.contains(&code.as_str()) {
                    tally.unexpected.push(format!("{kind}: {e:?}"));
                }
                *tally.errors.entry(format!("{kind} {code}")).or_default() += 1;
                client = None; // the session may be broken; start afresh
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_an_engine_restart() {
    let seconds = env("SOAK_SECONDS", 60);
    let sessions = env("SOAK_SESSIONS", 24);
    let restarts = env("SOAK_RESTARTS", 1);
    // Every session may hold a continuous query, all on one node while
    // the other restarts: no admission limit may refuse them (53300).
    let limit = (sessions + 16).to_string();
    let engine_args = ["--max-concurrent-queries", limit.as_str()];
    let mut engines = [Engine::start(&engine_args), Engine::start(&engine_args)];
    let addrs: Vec<String> = engines.iter().map(|e| e.addr.clone()).collect();
    let gw = Gateway::start(&[
        "--engine",
        &addrs.join(","),
        "--max-queries-per-node",
        &limit,
    ]);
    let dsn = Arc::new(format!(
        "host={} port={} user=alice dbname=velostream connect_timeout=10",
        gw.host, gw.port
    ));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let workers: Vec<_> = (0..sessions)
        .map(|_| tokio::spawn(session(dsn.clone(), started, until, tally.clone())))
        .collect();

    // Memory every second; an engine node killed and restarted
    // `restarts` times, evenly spaced.
    let mut rss = Vec::new();
    let mut restarted = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(gw.rss_kib());
        let due = (restarted + 1) as f64 / (restarts + 1) as f64;
        if restarted < restarts && started.elapsed().as_secs_f64() >= due * seconds as f64 {
            let i = (restarted % 2) as usize;
            engines[i].proc.signal("KILL");
            tokio::time::sleep(Duration::from_secs(1)).await;
            engines[i] = Engine::start_at(&addrs[i], &engine_args);
            restarted += 1;
        }
    }
    for worker in workers {
        tokio::time::timeout(operation_deadline() * 2, worker)
            .await
            .expect("every session ends")
            .unwrap();
    }

    let tally = tally.lock().unwrap();
    let warm = rss.len() / 5;
    let after_warmup = rss[warm.max(1)];
    let end = *rss.last().unwrap();
    let peak = *rss.iter().max().unwrap();
    println!(
        "soak: {seconds} s, {sessions} sessions, {restarted} engine restarts\n  \
         operations: {:?}\n  slowest (ms): {:?}\n  errors: {:?}\n  hung: {}\n  gateway RSS KiB: \
         after warm-up {after_warmup}, peak {peak}, end {end}",
        tally.done,
        tally.slowest_ms,
        tally.errors,
        tally.hung.len()
    );
    assert!(
        tally.hung.is_empty(),
        "{} hung operations, the first: {:?}",
        tally.hung.len(),
        &tally.hung[..tally.hung.len().min(20)]
    );
    assert!(
        tally.unexpected.is_empty(),
        "unexpected errors: {:#?}",
        tally.unexpected
    );
    for kind in KINDS {
        assert!(
            tally.done.get(kind).is_some_and(|&n| n > 0),
            "no {kind} succeeded"
        );
    }
    assert!(
        end < after_warmup + 32 * 1024,
        "gateway RSS grew from {after_warmup} to {end} KiB after warm-up"
    );
}
