//! The session state machine in-process: a gateway (with its embedded
//! engine node, over real gRPC) started on port 0 inside the test, driven
//! message by message by a raw protocol client built on the pgwire crate's
//! own codec. Fast, and exact about what goes over the wire: portals with
//! row limits, skip-until-Sync, failed transactions, cursors, cancel and a
//! client that vanishes mid-stream.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::{Bind, Describe, Execute, Parse, Sync};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::{SecretKey, Startup};
use pgwire::messages::{DecodeContext, PgWireBackendMessage as B, PgWireFrontendMessage as F};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use velo_gateway::{GatewayConfig, RunningGateway};

/// Every wait in these tests has this bound.
const DEADLINE: Duration = Duration::from_secs(20);

async fn gateway(tune: impl FnOnce(&mut GatewayConfig)) -> RunningGateway {
    let mut config = GatewayConfig {
        listen: vec!["127.0.0.1:0".into()],
        admin_listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    tune(&mut config);
    timeout(DEADLINE, velo_gateway::start(config))
        .await
        .expect("gateway starts in time")
        .expect("gateway starts")
}

/// A PostgreSQL client speaking the protocol one message at a time.
struct Client {
    socket: TcpStream,
    read: BytesMut,
    pid: i32,
    secret: i32,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let socket = timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut client = Self {
            socket,
            read: BytesMut::new(),
            pid: 0,
            secret: 0,
        };
        let mut startup = Startup::new();
        startup.parameters.insert("user".into(), "velo".into());
        startup
            .parameters
            .insert("database".into(), "velostream".into());
        client.send(F::Startup(startup)).await;
        for msg in client.until_ready().await {
            if let B::BackendKeyData(key) = msg {
                client.pid = key.pid;
                client.secret = match key.secret_key {
                    SecretKey::I32(s) => s,
                    SecretKey::Bytes(b) => i32::from_be_bytes(b[..].try_into().expect("4 bytes")),
                };
            }
        }
        assert_ne!(client.pid, 0, "BackendKeyData received");
        client
    }

    async fn send(&mut self, msg: F) {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf).expect("encode");
        self.socket.write_all(&buf).await.expect("write");
    }

    async fn send_all(&mut self, msgs: Vec<F>) {
        for msg in msgs {
            self.send(msg).await;
        }
    }

    /// The next backend message, or `None` when the server closed.
    async fn recv(&mut self) -> Option<B> {
        loop {
            if let Some(msg) =
                B::decode(&mut self.read, &DecodeContext::default()).expect("valid backend message")
            {
                return Some(msg);
            }
            let n = timeout(DEADLINE, self.socket.read_buf(&mut self.read))
                .await
                .expect("server answers in time")
                .expect("read");
            if n == 0 {
                return None;
            }
        }
    }

    /// Messages up to and including ReadyForQuery.
    async fn until_ready(&mut self) -> Vec<B> {
        let mut out = Vec::new();
        loop {
            let msg = self.recv().await.expect("server still there");
            let done = matches!(msg, B::ReadyForQuery(_));
            out.push(msg);
            if done {
                return out;
            }
        }
    }

    async fn query(&mut self, sql: &str) -> Vec<B> {
        self.send(F::Query(Query::new(sql.into()))).await;
        self.until_ready().await
    }
}

fn status(msgs: &[B]) -> u8 {
    match msgs.last() {
        Some(B::ReadyForQuery(r)) => r.status as u8,
        other => panic!("no ReadyForQuery at the end: {other:?}"),
    }
}

fn sqlstate(msgs: &[B]) -> Option<String> {
    msgs.iter().find_map(|m| match m {
        B::ErrorResponse(e) => e
            .fields
            .iter()
            .find(|(k, _)| *k == b'C')
            .map(|(_, v)| v.clone()),
        _ => None,
    })
}

fn tags(msgs: &[B]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            B::CommandComplete(c) => Some(c.tag.clone()),
            _ => None,
        })
        .collect()
}

fn rows(msgs: &[B]) -> Vec<&DataRow> {
    msgs.iter()
        .filter_map(|m| match m {
            B::DataRow(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The first column of a text DataRow.
fn first_text(row: &DataRow) -> String {
    let len = i32::from_be_bytes(row.data[..4].try_into().unwrap()) as usize;
    String::from_utf8(row.data[4..4 + len].to_vec()).unwrap()
}

fn parse(name: &str, sql: &str, types: Vec<u32>) -> F {
    F::Parse(Parse::new(Some(name.into()), sql.into(), types))
}

fn bind(portal: &str, statement: &str, formats: Vec<i16>, params: Vec<Option<Bytes>>) -> F {
    F::Bind(Bind::new(
        Some(portal.into()),
        Some(statement.into()),
        formats,
        params,
        Vec::new(),
    ))
}

fn execute(portal: &str, max_rows: i32) -> F {
    F::Execute(Execute::new(Some(portal.into()), max_rows))
}

#[tokio::test]
async fn portal_with_a_row_limit_suspends_and_resumes() {
    let gw = gateway(|_| {}).await;
    let mut c = Client::connect(gw.addrs[0]).await;
    c.send_all(vec![
        parse(
            "s",
            "SELECT symbol, price FROM trades EMIT CHANGES LIMIT 7",
            vec![],
        ),
        bind("p", "s", vec![], vec![]),
        execute("p", 3),
        F::Flush(pgwire::messages::extendedquery::Flush::new()),
    ])
    .await;
    let mut got = Vec::new();
    while !matches!(got.last(), Some(B::PortalSuspended(_))) {
        got.push(c.recv().await.expect("message"));
    }
    assert!(matches!(got[0], B::ParseComplete(_)));
    assert!(matches!(got[1], B::BindComplete(_)));
    assert_eq!(rows(&got).len(), 3);
    c.send_all(vec![execute("p", 3), execute("p", 3), F::Sync(Sync::new())])
        .await;
    let rest = c.until_ready().await;
    assert_eq!(rows(&rest).len(), 4, "{rest:?}");
    assert_eq!(
        rest.iter()
            .filter(|m| matches!(m, B::PortalSuspended(_)))
            .count(),
        1
    );
    assert_eq!(tags(&rest), vec!["SELECT 7"]);
    assert_eq!(status(&rest), b'I');
}

#[tokio::test]
async fn an_error_in_a_batch_skips_until_sync() {
    let gw = gateway(|_| {}).await;
    let mut c = Client::connect(gw.addrs[0]).await;
    c.send_all(vec![
        bind("", "no_such_statement", vec![], vec![]),
        F::Describe(Describe::new(b'P', Some(String::new()))),
        execute("", 0),
        F::Sync(Sync::new()),
    ])
    .await;
    let got = c.until_ready().await;
    assert_eq!(got.len(), 2, "only the error and ReadyForQuery: {got:?}");
    assert_eq!(sqlstate(&got).as_deref(), Some("26000"));
    assert_eq!(status(&got), b'I');
    // The next batch runs normally.
    c.send_all(vec![
        parse("", "SELECT 42", vec![]),
        bind("", "", vec![], vec![]),
        execute("", 0),
        F::Sync(Sync::new()),
    ])
    .await;
    let got = c.until_ready().await;
    assert_eq!(
        rows(&got).iter().map(|r| first_text(r)).collect::<Vec<_>>(),
        vec!["42"]
    );
    assert_eq!(tags(&got), vec!["SELECT 1"]);
}

#[tokio::test]
async fn a_failed_transaction_refuses_statements_until_rollback() {
    let gw = gateway(|_| {}).await;
    let mut c = Client::connect(gw.addrs[0]).await;
    assert_eq!(status(&c.query("BEGIN").await), b'T');
    let failed = c.query("SELECT * FROM no_such_relation").await;
    assert!(sqlstate(&failed).is_some(), "{failed:?}");
    assert_eq!(status(&failed), b'E');
    let refused = c.query("SELECT 1").await;
    assert_eq!(sqlstate(&refused).as_deref(), Some("25P02"));
    assert_eq!(status(&refused), b'E');
    let rolled_back = c.query("ROLLBACK").await;
    assert_eq!(tags(&rolled_back), vec!["ROLLBACK"]);
    assert_eq!(status(&rolled_back), b'I');
    assert_eq!(tags(&c.query("SELECT 1").await), vec!["SELECT 1"]);
}

#[tokio::test]
async fn a_cursor_fetches_a_stream_in_steps() {
    let gw = gateway(|_| {}).await;
    let mut c = Client::connect(gw.addrs[0]).await;
    let got = c
        .query("BEGIN; DECLARE c CURSOR FOR SELECT symbol FROM trades EMIT CHANGES")
        .await;
    assert_eq!(tags(&got), vec!["BEGIN", "DECLARE CURSOR"]);
    let got = c.query("FETCH 5 FROM c").await;
    assert_eq!(rows(&got).len(), 5);
    assert_eq!(tags(&got), vec!["FETCH 5"]);
    let got = c.query("MOVE 3 IN c; FETCH 2 c").await;
    assert_eq!(rows(&got).len(), 2);
    assert_eq!(tags(&got), vec!["MOVE 3", "FETCH 2"]);
    let got = c.query("CLOSE c; FETCH 1 FROM c").await;
    assert_eq!(sqlstate(&got).as_deref(), Some("34000"));
    assert_eq!(tags(&c.query("ROLLBACK").await), vec!["ROLLBACK"]);
}

#[tokio::test]
async fn a_cancel_request_stops_a_running_query() {
    let gw = gateway(|_| {}).await;
    let mut c = Client::connect(gw.addrs[0]).await;
    // A filter nothing matches: the query runs and sends no rows.
    c.send(F::Query(Query::new(
        "SELECT symbol FROM trades WHERE volume < 0 EMIT CHANGES".into(),
    )))
    .await;
    // RowDescription means the engine query is running.
    loop {
        match c.recv().await.expect("message") {
            B::RowDescription(_) => break,
            B::NoticeResponse(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut cancel = TcpStream::connect(gw.addrs[0]).await.expect("connect");
    let mut request = Vec::new();
    for word in [16i32, 80877102, c.pid, c.secret] {
        request.extend_from_slice(&word.to_be_bytes());
    }
    cancel.write_all(&request).await.expect("cancel request");
    let got = c.until_ready().await;
    assert_eq!(sqlstate(&got).as_deref(), Some("57014"));
    assert_eq!(status(&got), b'I');
    assert_eq!(tags(&c.query("SELECT 1").await), vec!["SELECT 1"]);
}

#[tokio::test]
async fn a_client_vanishing_mid_stream_frees_its_engine_slot() {
    // One engine slot: the next query can run only once the first one's
    // slot is given back.
    let gw = gateway(|c| {
        c.max_queries_per_node = 1;
        c.queue_timeout_ms = 15_000;
    })
    .await;
    let mut first = Client::connect(gw.addrs[0]).await;
    first
        .send(F::Query(Query::new(
            "COPY (SELECT symbol FROM trades EMIT CHANGES) TO STDOUT".into(),
        )))
        .await;
    loop {
        if let B::CopyData(_) = first.recv().await.expect("message") {
            break;
        }
    }
    drop(first);
    let mut second = Client::connect(gw.addrs[0]).await;
    let got = second
        .query("SELECT symbol FROM trades EMIT CHANGES LIMIT 3")
        .await;
    assert_eq!(sqlstate(&got), None, "{got:?}");
    assert_eq!(rows(&got).len(), 3);
}

/// COPY of a windowed `EMIT FINAL` aggregation sends each window's rows
/// once it closes: from the demo's 1,000 events/s, one closed window holds
/// a row for each of several symbols well within the deadline.
#[tokio::test]
async fn copy_of_emit_final_sends_each_closed_window() {
    let gw = gateway(|_| {}).await;
    let mut c = Client::connect(gw.addrs[0]).await;
    c.send(F::Query(Query::new(
        "COPY (SELECT symbol, COUNT(*) AS n, window_start FROM kafka://trades \
         GROUP BY symbol WINDOW TUMBLING(ts, 1s) EMIT FINAL) TO STDOUT"
            .into(),
    )))
    .await;
    // window_start -> (symbol, n), as the text COPY lines carry them.
    let mut windows: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    let whole = timeout(Duration::from_secs(10), async {
        loop {
            match c.recv().await.expect("server still there") {
                B::CopyOutResponse(_) | B::NoticeResponse(_) => {}
                B::CopyData(data) => {
                    let text = std::str::from_utf8(&data.data).expect("UTF-8");
                    for line in text.lines() {
                        let fields: Vec<&str> = line.split('\t').collect();
                        let [symbol, n, start] = fields[..] else {
                            panic!("three columns: {line:?}");
                        };
                        let n: i64 = n.parse().expect("a count");
                        windows
                            .entry(start.to_string())
                            .or_default()
                            .push((symbol.to_string(), n));
                    }
                    if let Some((start, rows)) = windows.iter().find(|(_, rows)| rows.len() >= 2) {
                        return (start.clone(), rows.clone());
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    let Ok((start, rows)) = whole else {
        panic!("no closed window with two symbols within 10 s; rows so far: {windows:?}");
    };
    assert!(rows.iter().all(|(_, n)| *n > 0), "{start}: {rows:?}");
    let symbols: BTreeSet<&str> = rows.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        symbols.len(),
        rows.len(),
        "one row per symbol in {start}: {rows:?}"
    );
}

#[tokio::test]
async fn simple_queries_answer_each_statement_in_order() {
    let gw = gateway(|_| {}).await;
    let mut c = Client::connect(gw.addrs[0]).await;
    let got = c.query("-- ping").await;
    assert!(matches!(got[0], B::EmptyQueryResponse(_)), "{got:?}");
    let got = c
        .query("SET application_name = 'x'; SHOW application_name; SELECT 1 AS one, 'a'")
        .await;
    assert_eq!(tags(&got), vec!["SET", "SHOW", "SELECT 1"]);
    let texts: Vec<String> = rows(&got).iter().map(|r| first_text(r)).collect();
    assert_eq!(texts, vec!["x", "1"]);
    assert!(got.iter().any(
        |m| matches!(m, B::ParameterStatus(p) if p.name == "application_name" && p.value == "x")
    ));
}

#[tokio::test]
async fn a_binary_numeric_with_a_negative_scale_is_22p03() {
    let gw = gateway(|_| {}).await;
    let mut c = Client::connect(gw.addrs[0]).await;
    // ndigits 1, weight 0, sign +, dscale 0xFFFF (-1 as i16), digit 1.
    let numeric = Bytes::from_static(&[0, 1, 0, 0, 0, 0, 0xFF, 0xFF, 0, 1]);
    c.send_all(vec![
        parse(
            "",
            "SELECT symbol FROM trades WHERE price > $1 EMIT CHANGES",
            vec![1700],
        ),
        bind("", "", vec![1], vec![Some(numeric)]),
        execute("", 0),
        F::Sync(Sync::new()),
    ])
    .await;
    let got = c.until_ready().await;
    assert_eq!(sqlstate(&got).as_deref(), Some("22P03"), "{got:?}");
    assert_eq!(tags(&c.query("SELECT 1").await), vec!["SELECT 1"]);
}
