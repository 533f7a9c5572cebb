//! A client that stops reading: every buffer between the engine's source
//! and the client's socket is bounded, so the gateway and the engine hold
//! a bounded amount while it does not read, the engine stops producing,
//! and when it reads again every row arrives, in order.

use std::io::Write;
use std::time::{Duration, Instant};

use velo_integration::raw::{sqlstate, Raw};
use velo_integration::{engine_jobs, rss_kib, Engine, Gateway};

const ROWS: usize = 1_000_000;
/// How long the client does not read.
const PAUSE: Duration = Duration::from_secs(10);
/// What the gateway may grow by meanwhile.
const GATEWAY_BOUND_KIB: u64 = 32 * 1024;
/// What the engine node may grow by meanwhile.
const ENGINE_BOUND_KIB: u64 = 64 * 1024;

fn rows_sent(runtime: &tokio::runtime::Runtime, engine: &Engine) -> i64 {
    let jobs = runtime.block_on(engine_jobs(&engine.addr));
    jobs.iter()
        .find(|j| j.sql.contains("paused"))
        .map(|j| j.rows_sent)
        .expect("the COPY runs on the engine")
}

#[test]
fn a_client_that_stops_reading_costs_bounded_memory_and_loses_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("numbers.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(file, "n,label").unwrap();
    for n in 0..ROWS {
        writeln!(file, "{n},row-{n}").unwrap();
    }
    file.into_inner().unwrap().sync_all().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let engine = Engine::start(&[]);
    let gw = Gateway::start(&["--engine", &engine.addr]);

    let (mut raw, _, _) = Raw::startup(&gw);
    let sql = format!(
        "COPY (SELECT n AS paused, label FROM 'file://{}') TO STDOUT\0",
        path.display()
    );
    raw.send(b'Q', sql.as_bytes());
    let response = raw.read().expect("CopyOutResponse");
    assert_eq!(response.0, b'H', "{}", sqlstate(&response));
    let mut next_n = 0usize;
    let check = |data: &[u8], next_n: &mut usize| {
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = std::str::from_utf8(line).unwrap();
            let (n, label) = line.split_once('\t').expect("two columns");
            assert_eq!(
                n.parse::<usize>().unwrap(),
                *next_n,
                "rows out of order or lost"
            );
            assert_eq!(label, format!("row-{n}"));
            *next_n += 1;
        }
    };
    let first = raw.read().expect("first rows");
    assert_eq!(first.0, b'd');
    check(&first.1, &mut next_n);

    // Stop reading; let the buffers fill, then watch.
    std::thread::sleep(Duration::from_secs(2));
    let (gateway_before, engine_before) = (gw.rss_kib(), rss_kib(engine.proc.child.id()));
    let produced_before = rows_sent(&runtime, &engine);
    let (mut gateway_peak, mut engine_peak) = (gateway_before, engine_before);
    let until = Instant::now() + PAUSE;
    while Instant::now() < until {
        gateway_peak = gateway_peak.max(gw.rss_kib());
        engine_peak = engine_peak.max(rss_kib(engine.proc.child.id()));
        std::thread::sleep(Duration::from_millis(250));
    }
    let produced_after = rows_sent(&runtime, &engine);
    println!(
        "while the client did not read for {PAUSE:?}: gateway {gateway_before} -> peak {gateway_peak} KiB, \
         engine {engine_before} -> peak {engine_peak} KiB, engine rows sent {produced_before} -> {produced_after} \
         (of {ROWS})"
    );
    assert!(gateway_peak - gateway_before < GATEWAY_BOUND_KIB);
    assert!(engine_peak - engine_before < ENGINE_BOUND_KIB);
    assert_eq!(
        produced_before, produced_after,
        "the engine went on producing"
    );
    assert!(
        (produced_after as usize) < ROWS / 2,
        "the engine did not pause"
    );

    // Read again: every row, in order, then the end.
    loop {
        let msg = raw.read().expect("the COPY goes on");
        match msg.0 {
            b'd' => check(&msg.1, &mut next_n),
            b'c' => break,
            other => panic!("unexpected message {}: {}", other as char, sqlstate(&msg)),
        }
    }
    assert_eq!(next_n, ROWS);
    let complete = raw.read().expect("CommandComplete");
    assert_eq!(complete.1, format!("COPY {ROWS}\0").as_bytes());
    assert_eq!(raw.read().expect("ReadyForQuery").0, b'Z');
}

/// Clients that stop reading hold at most their own streams' share of the
/// gateway's one HTTP/2 connection to their engine node: the other
/// sessions' queries on that node go on.
#[test]
fn clients_that_stop_reading_do_not_stall_other_sessions_on_their_node() {
    const STALLED: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    writeln!(file, "n,label").unwrap();
    for n in 0..ROWS {
        writeln!(file, "{n},row-{n}-{}", "x".repeat(40)).unwrap();
    }
    file.into_inner().unwrap().sync_all().unwrap();
    let small = dir.path().join("small.csv");
    std::fs::write(&small, "n\n1\n2\n3\n").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let engine = Engine::start(&[]);
    let gw = Gateway::start(&["--engine", &engine.addr]);

    let mut stalled = Vec::new();
    for i in 0..STALLED {
        let (mut raw, _, _) = Raw::startup(&gw);
        let sql = format!(
            "COPY (SELECT n AS stalled_{i}, label FROM 'file://{}') TO STDOUT\0",
            big.display()
        );
        raw.send(b'Q', sql.as_bytes());
        assert_eq!(raw.read().expect("CopyOutResponse").0, b'H');
        stalled.push(raw);
    }
    // Every stalled query has stopped producing: its buffers are full.
    let sent = || -> Vec<i64> {
        let jobs = runtime.block_on(engine_jobs(&engine.addr));
        let mut sent: Vec<i64> = jobs
            .iter()
            .filter(|j| j.sql.contains("stalled_"))
            .map(|j| j.rows_sent)
            .collect();
        sent.sort_unstable();
        sent
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = sent();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = sent();
        if now.len() == STALLED && now == last && now.iter().all(|&n| n > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled queries never stopped: {now:?}"
        );
        last = now;
    }

    // Another session on the same node is answered promptly.
    let (mut other, _, _) = Raw::startup(&gw);
    let started = Instant::now();
    let msgs = other.query(&format!("SELECT n FROM 'file://{}'", small.display()));
    let error = msgs.iter().find(|m| m.0 == b'E').map(sqlstate);
    assert_eq!(error, None, "{msgs:?}");
    let rows = msgs.iter().filter(|m| m.0 == b'D').count();
    assert_eq!(rows, 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a small query waited {:?} behind clients that stopped reading",
        started.elapsed()
    );
    drop(stalled);
}
