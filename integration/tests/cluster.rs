//! Engine nodes seen from both sides: every way a client stops a query
//! stops it on the node (asked with SHOW JOBS on the node itself), a node
//! that dies, freezes or refuses costs its own queries and nothing else,
//! a cancel finds its query from any gateway replica, and a draining
//! gateway ends what is still open with 57P01.

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use velo_integration::{
    engine_jobs, http_get, pg_client, pg_client_with_socket, Engine, Gateway, Proc,
};

type Rows = Pin<Box<dyn Stream<Item = Result<Bytes, tokio_postgres::Error>> + Send>>;

/// A continuous COPY whose SQL carries `tag`, so SHOW JOBS can find it.
fn continuous(tag: &str) -> String {
    format!("COPY (SELECT symbol AS {tag}, price FROM kafka://trades EMIT CHANGES) TO STDOUT")
}

/// Starts a continuous COPY and waits for its first rows.
async fn stream(client: &Client, tag: &str) -> Rows {
    let rows = tokio::time::timeout(Duration::from_secs(10), client.copy_out(&continuous(tag)))
        .await
        .expect("COPY starts within 10 s")
        .expect("COPY starts");
    let mut rows: Rows = Box::pin(rows);
    next(&mut rows, Duration::from_secs(10))
        .await
        .expect("first rows")
        .expect("rows, not an error");
    rows
}

/// The next chunk of a COPY, within `timeout` (`None`: it ended).
async fn next(rows: &mut Rows, timeout: Duration) -> Option<Result<Bytes, tokio_postgres::Error>> {
    tokio::time::timeout(timeout, rows.next())
        .await
        .expect("the stream moves within its deadline")
}

/// Reads until the stream fails; returns its SQLSTATE and how long that took.
async fn error_of(rows: &mut Rows, timeout: Duration) -> (SqlState, String, Duration) {
    let started = Instant::now();
    loop {
        match next(rows, timeout).await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                let code = e
                    .code()
                    .cloned()
                    .unwrap_or_else(|| panic!("no SQLSTATE: {e:?}"));
                let message = e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_default();
                return (code, message, started.elapsed());
            }
            None => panic!("the stream ended without an error"),
        }
    }
}

/// Polls `ok` every 20 ms until it holds or `timeout` passes; returns
/// how long it took.
async fn within<F, Fut>(what: &str, timeout: Duration, mut ok: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !ok().await {
        assert!(
            started.elapsed() < timeout,
            "not within {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn runs(engine: &str, tag: &str) -> bool {
    engine_jobs(engine)
        .await
        .iter()
        .any(|job| job.sql.contains(tag))
}

async fn stopped_on_engine(engine: &str, tag: &str) {
    within(
        &format!("{tag} gone from SHOW JOBS"),
        Duration::from_secs(1),
        || async { !runs(engine, tag).await },
    )
    .await;
}

/// A psql process running `sql`, with its output piped.
fn psql_running(gw: &Gateway, sql: &str) -> Proc {
    let mut cmd = gw.psql("alice");
    cmd.args(["-c", sql]);
    Proc::spawn(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_of_stopping_a_query_stops_it_on_the_engine() {
    let engine = Engine::start(&[]);
    let gw = Gateway::start(&["--engine", &engine.addr]);
    let node = engine.addr.as_str();

    // A driver's cancel (a CancelRequest on its own connection).
    let client = pg_client(&gw).await;
    let mut rows = stream(&client, "by_cancel").await;
    assert!(runs(node, "by_cancel").await);
    client.cancel_token().cancel_query(NoTls).await.unwrap();
    let (code, _, _) = error_of(&mut rows, Duration::from_secs(5)).await;
    assert_eq!(code, SqlState::QUERY_CANCELED);
    stopped_on_engine(node, "by_cancel").await;
    drop(rows);

    // statement_timeout.
    client
        .batch_execute("SET statement_timeout = '1s'")
        .await
        .unwrap();
    let mut rows = stream(&client, "by_timeout").await;
    let (code, message, _) = error_of(&mut rows, Duration::from_secs(5)).await;
    assert_eq!(code, SqlState::QUERY_CANCELED);
    assert!(message.contains("statement timeout"), "{message}");
    stopped_on_engine(node, "by_timeout").await;
    drop(rows);
    client
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();

    // A portal closed after its first rows (extended protocol).
    let mut client = client;
    let tx = client.transaction().await.unwrap();
    let statement = tx
        .prepare("SELECT symbol AS by_portal FROM kafka://trades EMIT CHANGES")
        .await
        .unwrap();
    let portal = tx.bind(&statement, &[]).await.unwrap();
    let first = tx.query_portal(&portal, 3).await.unwrap();
    assert_eq!(first.len(), 3);
    assert!(runs(node, "by_portal").await);
    drop(portal); // sends Close
    tx.batch_execute("SELECT 1").await.unwrap();
    stopped_on_engine(node, "by_portal").await;
    tx.rollback().await.unwrap();

    drop(client);

    // The client's socket closing mid-stream.
    let (client, socket) = pg_client_with_socket(&gw).await;
    let _rows = stream(&client, "by_disconnect").await;
    socket.abort();
    stopped_on_engine(node, "by_disconnect").await;

    // psql killed with SIGKILL mid-stream.
    let psql = psql_running(&gw, &continuous("by_kill"));
    within(
        "psql's stream on the engine",
        Duration::from_secs(10),
        || async { runs(node, "by_kill").await },
    )
    .await;
    psql.signal("KILL");
    stopped_on_engine(node, "by_kill").await;

    // Ctrl+C in psql (psql sends a CancelRequest).
    let psql = psql_running(&gw, &continuous("by_ctrl_c"));
    within(
        "psql's stream on the engine",
        Duration::from_secs(10),
        || async { runs(node, "by_ctrl_c").await },
    )
    .await;
    psql.signal("INT");
    stopped_on_engine(node, "by_ctrl_c").await;
    let (status, stderr) = psql.finish(Duration::from_secs(5));
    assert!(status.is_some(), "psql ends after Ctrl+C");
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
}

fn node_up(gw: &Gateway, node: &str) -> f64 {
    gw.metric(&format!("velo_gateway_engine_node_up{{node=\"{node}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_its_own_streams_at_once_and_the_other_node_serves() {
    let mut a = Engine::start(&[]);
    let b = Engine::start(&[]);
    let a_addr = a.addr.clone();
    let gw = Gateway::start(&["--engine", &format!("{},{}", a.addr, b.addr)]);

    // Balancing puts two streams on two nodes.
    let first = pg_client(&gw).await;
    let second = pg_client(&gw).await;
    let rows_first = stream(&first, "first_stream").await;
    let rows_second = stream(&second, "second_stream").await;
    let (mut on_a, mut on_b) = if runs(&a.addr, "first_stream").await {
        (rows_first, rows_second)
    } else {
        (rows_second, rows_first)
    };
    assert_eq!(engine_jobs(&a.addr).await.len(), 1);
    assert_eq!(engine_jobs(&b.addr).await.len(), 1);

    a.proc.signal("KILL");
    let (code, message, took) = error_of(&mut on_a, Duration::from_secs(5)).await;
    assert_eq!(code, SqlState::IO_ERROR, "{message}");
    assert!(took < Duration::from_secs(1), "58030 after {took:?}");
    assert_eq!(node_up(&gw, &a_addr), 0.0);

    // The other node's stream goes on; new queries go there.
    for _ in 0..3 {
        next(&mut on_b, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
    }
    for _ in 0..4 {
        let client = pg_client(&gw).await;
        let count: i64 = client
            .query_one("SELECT COUNT(*) FROM trades", &[])
            .await
            .expect("a new query finds the live node")
            .get(0);
        assert!(count > 0);
    }
    assert_eq!(http_get(&gw.admin, "/readyz").unwrap().0, 200);

    // The node returns where it was and is used again.
    a = Engine::start_at(&a_addr, &[]);
    within(
        "the node healthy again",
        Duration::from_secs(10),
        || async { node_up(&gw, &a_addr) == 1.0 },
    )
    .await;
    let third = pg_client(&gw).await;
    let _rows_third = stream(&third, "third_stream").await;
    assert!(
        runs(&a.addr, "third_stream").await,
        "the returned node gets the next query"
    );
    drop(on_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_is_noticed_from_its_missing_heartbeats() {
    let engine = Engine::start(&[]);
    let gw = Gateway::start(&["--engine", &engine.addr, "--engine-heartbeat-timeout", "2s"]);
    let client = pg_client(&gw).await;
    let mut rows = stream(&client, "frozen").await;

    engine.proc.signal("STOP");
    let (code, message, took) = error_of(&mut rows, Duration::from_secs(10)).await;
    assert_eq!(node_up(&gw, &engine.addr), 0.0);
    engine.proc.signal("CONT");
    assert_eq!(code, SqlState::IO_ERROR, "{message}");
    assert!(message.contains("heartbeat"), "{message}");
    assert!(
        took < Duration::from_secs(4),
        "noticed after {took:?} (timeout 2 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_refuses_is_skipped() {
    let full = Engine::start(&["--max-concurrent-queries", "1"]);
    let roomy = Engine::start(&[]);
    let gw = Gateway::start(&["--engine", &format!("{},{}", full.addr, roomy.addr)]);
    let clients = [
        pg_client(&gw).await,
        pg_client(&gw).await,
        pg_client(&gw).await,
    ];
    let mut streams = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        streams.push(stream(client, &format!("refused_{i}")).await);
    }
    // (SHOW JOBS would be refused by the full node too.)
    assert_eq!(engine_jobs(&roomy.addr).await.len(), 2);
    for rows in &mut streams {
        next(rows, Duration::from_secs(5)).await.unwrap().unwrap();
    }
}

/// A TCP proxy that hands each new connection to the next of `backends`
/// in turn, as a Kubernetes Service may.
async fn round_robin_proxy(backends: Vec<String>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        for turn in 0.. {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let backend = backends[turn % backends.len()].clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    port
}

fn cancel_requests(gw: &Gateway, outcome: &str) -> f64 {
    gw.metric(&format!(
        "velo_gateway_cancel_requests_total{{outcome=\"{outcome}\"}}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaching_another_replica_cancels_through_the_engine() {
    let engine = Engine::start(&[]);
    let replicas = [
        Gateway::start(&["--engine", &engine.addr]),
        Gateway::start(&["--engine", &engine.addr]),
    ];
    let port = round_robin_proxy(
        replicas
            .iter()
            .map(|gw| format!("{}:{}", gw.host, gw.port))
            .collect(),
    )
    .await;

    // psql's session lands on the first replica; its Ctrl+C opens the
    // proxy's next connection, which goes to the second.
    let mut cmd = velo_integration::psql_command("127.0.0.1", port, "alice", "velostream");
    cmd.args(["-c", &continuous("across_replicas")]);
    let psql = Proc::spawn(cmd);
    within(
        "the stream on the engine",
        Duration::from_secs(10),
        || async { runs(&engine.addr, "across_replicas").await },
    )
    .await;

    // A wrong key, sent to the second replica directly, cancels nothing.
    let second = &replicas[1];
    velo_integration::raw::cancel(second, 12345, 67890);
    within("the wrong key counted", Duration::from_secs(5), || async {
        cancel_requests(second, "unmatched") == 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        runs(&engine.addr, "across_replicas").await,
        "a wrong key cancelled the stream"
    );

    psql.signal("INT");
    stopped_on_engine(&engine.addr, "across_replicas").await;
    let (status, stderr) = psql.finish(Duration::from_secs(5));
    assert!(status.is_some(), "psql ends after Ctrl+C");
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    assert_eq!(cancel_requests(second, "unmatched"), 2.0);
    assert_eq!(cancel_requests(&replicas[0], "matched"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_what_is_still_open_with_57p01_at_its_timeout() {
    let engine = Engine::start(&[]);
    let gw = Gateway::start(&["--engine", &engine.addr, "--drain-timeout-secs", "2"]);
    let streaming = pg_client(&gw).await;
    let mut rows = stream(&streaming, "drained").await;
    // An idle session: its connection task reports how it ended.
    let dsn = format!(
        "host={} port={} user=alice dbname=velostream",
        gw.host, gw.port
    );
    let (_idle, idle_connection) = tokio_postgres::connect(&dsn, NoTls).await.unwrap();
    let idle_ended = tokio::spawn(idle_connection);

    gw.proc.signal("TERM");
    let drain_started = Instant::now();
    within(
        "not ready while draining",
        Duration::from_secs(2),
        || async { http_get(&gw.admin, "/readyz").is_ok_and(|r| r.0 == 503) },
    )
    .await;
    // The stream goes on until the drain's timeout...
    next(&mut rows, Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    // ...then ends with 57P01, as does the idle session.
    let (code, message, _) = error_of(&mut rows, Duration::from_secs(5)).await;
    let ended_after = drain_started.elapsed();
    assert_eq!(code, SqlState::ADMIN_SHUTDOWN, "{message}");
    assert!(
        ended_after >= Duration::from_millis(1500) && ended_after < Duration::from_secs(4),
        "stream ended {ended_after:?} into a 2 s drain"
    );
    let idle = tokio::time::timeout(Duration::from_secs(5), idle_ended)
        .await
        .expect("the idle session ends")
        .unwrap()
        .expect_err("with an error");
    assert_eq!(idle.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{idle}");
    stopped_on_engine(&engine.addr, "drained").await;
    let Gateway { proc, .. } = gw;
    let (status, _) = proc.finish(Duration::from_secs(5));
    assert!(status.is_some(), "the gateway exits after its drain");
}
