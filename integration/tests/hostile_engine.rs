//! Engine nodes that misbehave, played by a test double (a real node
//! cannot be made to): a batch claiming billions of rows, bytes that are
//! not Arrow, nodes failing before their first event. The gateway's
//! answer must stay bounded, interruptible and local to the query. The
//! double also plays a node that warns, to check notices reach clients.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use velo_integration::fake_engine::{Behaviour, FakeEngine};
use velo_integration::{pg_client, Engine, Gateway};

/// Cancels the running query and reads on until its error: the error and
/// how long it took to come.
async fn cancel_and_wait<T: std::fmt::Debug>(
    client: &Client,
    rows: &mut (impl futures::Stream<Item = Result<T, tokio_postgres::Error>> + Unpin),
) -> (tokio_postgres::Error, Duration) {
    client.cancel_token().cancel_query(NoTls).await.unwrap();
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), rows.next()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return (e, started.elapsed()),
            other => panic!("no cancel error: {other:?}"),
        }
    }
}

/// What the gateway may grow by while streaming the double's rows.
const BOUND_KIB: u64 = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_claiming_billions_of_rows_streams_in_bounded_memory_and_cancels() {
    let engine = FakeEngine::start(Behaviour::ClaimsRows(2_000_000_000)).await;
    let gw = Gateway::start(&["--engine", &engine.addr]);
    let before = gw.rss_kib();

    for copy in [false, true] {
        let client = pg_client(&gw).await;
        let mut received = 0usize;
        let cancelled = if copy {
            let rows = client
                .copy_out("COPY (SELECT * FROM kafka://anything EMIT CHANGES) TO STDOUT")
                .await
                .unwrap();
            let mut rows = Box::pin(rows);
            while received < 1_000_000 {
                let chunk = tokio::time::timeout(Duration::from_secs(10), rows.next())
                    .await
                    .expect("rows keep coming")
                    .expect("not the end")
                    .expect("rows, not an error");
                assert!(chunk.len() <= 512 * 1024, "a {} byte CopyData", chunk.len());
                received += chunk.iter().filter(|&&b| b == b'\n').count();
            }
            cancel_and_wait(&client, &mut rows).await
        } else {
            let rows = client
                .query_raw(
                    "SELECT * FROM kafka://anything EMIT CHANGES",
                    std::iter::empty::<i32>(),
                )
                .await
                .unwrap();
            let mut rows = Box::pin(rows);
            while received < 200_000 {
                tokio::time::timeout(Duration::from_secs(10), rows.next())
                    .await
                    .expect("rows keep coming")
                    .expect("not the end")
                    .expect("a row, not an error");
                received += 1;
            }
            cancel_and_wait(&client, &mut rows).await
        };
        let (error, took) = cancelled;
        let grown = gw.rss_kib().saturating_sub(before);
        println!("copy={copy}: {received} rows, cancel took {took:?}, gateway grew {grown} KiB");
        assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
        assert!(took < Duration::from_secs(2), "cancel took {took:?}");
        assert!(grown < BOUND_KIB, "the gateway grew {grown} KiB");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_arrow_fail_that_query_with_58030() {
    let engine = FakeEngine::start(Behaviour::Garbage).await;
    let gw = Gateway::start(&["--engine", &engine.addr]);
    let client = pg_client(&gw).await;
    let error = client
        .simple_query("SELECT * FROM kafka://anything")
        .await
        .expect_err("garbage is an error");
    assert_eq!(error.code(), Some(&SqlState::IO_ERROR), "{error}");
    // The session goes on.
    let rows = client.simple_query("SELECT 1").await.unwrap();
    assert!(rows.iter().any(|m| matches!(m,
        tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("1"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_failing_before_its_first_event_is_retried_once_and_a_query_error_never() {
    // Two nodes failing at the transport level before the real one: a
    // query tries the first, retries once on the second, and stops.
    let first = FakeEngine::start(Behaviour::Unavailable).await;
    let second = FakeEngine::start(Behaviour::Unavailable).await;
    let real = Engine::start(&[]);
    // The doubles pass their health checks: the first check after the
    // failure puts them back, so checks are far apart here (a loaded
    // machine may take seconds between the two queries).
    let gw = Gateway::start(&[
        "--engine",
        &format!("{},{},{}", first.addr, second.addr, real.addr),
        "--engine-health-interval",
        "600s",
    ]);
    let client = pg_client(&gw).await;
    let error = client
        .simple_query("SELECT * FROM kafka://trades LIMIT 1")
        .await
        .expect_err("two failing nodes");
    assert_eq!(error.code(), Some(&SqlState::IO_ERROR), "{error}");
    assert_eq!((first.executions(), second.executions()), (1, 1));
    // Both left the rotation: the next query goes to the real node.
    let rows = client
        .simple_query("SELECT * FROM kafka://trades LIMIT 1")
        .await
        .expect("the real node answers");
    assert!(rows
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))));
    assert_eq!((first.executions(), second.executions()), (1, 1));

    // A query error is the query's answer: never retried elsewhere.
    let erring = FakeEngine::start(Behaviour::QueryError).await;
    let gw = Gateway::start(&["--engine", &format!("{},{}", erring.addr, real.addr)]);
    let client = pg_client(&gw).await;
    let error = client
        .simple_query("SELECT * FROM kafka://trades LIMIT 1")
        .await
        .expect_err("the double's syntax error");
    assert_eq!(error.code(), Some(&SqlState::SYNTAX_ERROR), "{error}");
    assert_eq!(erring.executions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_notice_reaches_psql_as_a_warning() {
    let engine = FakeEngine::start(Behaviour::Warns).await;
    let gw = Gateway::start(&["--engine", &engine.addr]);
    let out = velo_integration::run_script(gw.psql("alice"), "SELECT * FROM kafka://trades;");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARNING:  snapshot of kafka://trades skipped 12 events"),
        "{stderr}"
    );
    assert!(
        stderr.contains("DETAIL:  Events deleted by partition: partition 0: 12."),
        "{stderr}"
    );
    assert!(out.status.success(), "{out:?}");
}
