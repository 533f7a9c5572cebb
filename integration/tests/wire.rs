//! The wire protocol byte by byte: what psql never sends but other clients
//! (and attackers) do.

use std::io::Read;
use std::time::Duration;

use velo_integration::raw::{cancel, cstr, sqlstate, Msg, Raw};
use velo_integration::Gateway;

/// Sends an encryption request (`code`), expects the one-byte refusal
/// 'N', then starts up on the same socket: the messages up to ReadyForQuery.
fn refused_then_started(gw: &Gateway, code: i32) -> Vec<Msg> {
    let mut raw = Raw::connect(gw);
    raw.send_untyped(&code.to_be_bytes());
    let mut answer = [0u8; 1];
    raw.s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"N");
    let mut body = 196608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0alice\0\0");
    raw.send_untyped(&body);
    raw.until_ready()
}

#[test]
fn ssl_is_refused_then_startup_proceeds() {
    let gw = Gateway::start(&[]);
    let msgs = refused_then_started(&gw, 80877103);
    let params: Vec<String> = msgs
        .iter()
        .filter(|m| m.0 == b'S')
        .map(|m| String::from_utf8_lossy(&m.1).replace('\0', "="))
        .collect();
    for expected in [
        "server_version=15.0=",
        "server_encoding=UTF8=",
        "client_encoding=UTF8=",
        "DateStyle=ISO, MDY=",
        "integer_datetimes=on=",
        "standard_conforming_strings=on=",
        "IntervalStyle=postgres=",
        "session_authorization=alice=",
    ] {
        assert!(
            params.iter().any(|p| p == expected),
            "{expected} not in {params:?}"
        );
    }
}

/// GSSENCRequest is refused with 'N' like SSLRequest, and the startup
/// then proceeds on the same socket (libpq's `gssencmode=prefer`).
#[test]
fn gssenc_is_refused_then_startup_proceeds() {
    let gw = Gateway::start(&[]);
    let msgs = refused_then_started(&gw, 80877104);
    assert_eq!(msgs.last().map(|m| m.0), Some(b'Z'));
}

/// A newer minor protocol version and `_pq_.` options: the server answers
/// NegotiateProtocolVersion with the minor it speaks (0) and the options
/// it does not know, then goes on with protocol 3.0.
#[test]
fn newer_protocol_minor_is_negotiated_down() {
    let gw = Gateway::start(&[]);
    let mut raw = Raw::connect(&gw);
    let mut body = (196608i32 + 2).to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0alice\0_pq_.future\0on\0\0");
    raw.send_untyped(&body);
    let msgs = raw.until_ready();
    let negotiate = msgs
        .iter()
        .find(|m| m.0 == b'v')
        .expect("NegotiateProtocolVersion");
    // Newest minor supported, count of unrecognized options, the option.
    assert_eq!(&negotiate.1[..8], &[0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(&negotiate.1[8..], b"_pq_.future\0");
    assert_eq!(msgs.last().map(|m| m.0), Some(b'Z'));
}

#[test]
fn transaction_status_and_errors_keep_the_connection() {
    let gw = Gateway::start(&[]);
    let (mut raw, _, _) = Raw::startup(&gw);
    let status = |msgs: &Vec<Msg>| msgs.last().unwrap().1.clone();
    assert_eq!(status(&raw.query("BEGIN")), b"T");
    let failed = raw.query("SELECT * FROM nope");
    assert_eq!(
        sqlstate(failed.iter().find(|m| m.0 == b'E').unwrap()),
        "42P01"
    );
    assert_eq!(status(&failed), b"E");
    let ignored = raw.query("SELECT 1");
    assert_eq!(sqlstate(&ignored[0]), "25P02");
    assert_eq!(status(&raw.query("ROLLBACK")), b"I");
    // Multi-statement: one result per statement, stop at the first error.
    let msgs = raw.query("SELECT 1; SELECT nope_fn(); SELECT 3");
    let kinds: Vec<u8> = msgs.iter().map(|m| m.0).collect();
    assert_eq!(kinds, b"TDCEZ");
    assert_eq!(sqlstate(&msgs[3]), "42883");
    // Empty statements.
    assert_eq!(raw.query(";")[0].0, b'I');
    // An error inside an extended batch discards the rest until Sync.
    raw.send(b'B', b"\0nope\0\0\0\0\0\0\0");
    raw.send(b'E', b"\0\0\0\0\0");
    raw.send(b'S', b"");
    let msgs = raw.until_ready();
    let kinds: Vec<u8> = msgs.iter().map(|m| m.0).collect();
    assert_eq!(kinds, b"EZ");
    assert_eq!(sqlstate(&msgs[0]), "26000");
    assert_eq!(raw.query("SELECT 1")[1].0, b'D');
}

#[test]
fn portals_with_row_limits_suspend_and_resume_a_continuous_query() {
    let gw = Gateway::start(&[]);
    let (mut raw, _, _) = Raw::startup(&gw);
    let mut parse = cstr("");
    parse.extend(cstr(
        "SELECT symbol, volume FROM trades WHERE volume > $1 EMIT CHANGES",
    ));
    parse.extend_from_slice(&1i16.to_be_bytes());
    parse.extend_from_slice(&20i32.to_be_bytes()); // int8
    raw.send(b'P', &parse);
    let mut bind = cstr("");
    bind.extend(cstr(""));
    bind.extend_from_slice(&0i16.to_be_bytes()); // parameter formats: text
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&1i32.to_be_bytes());
    bind.extend_from_slice(b"0");
    bind.extend_from_slice(&1i16.to_be_bytes()); // results: all binary
    bind.extend_from_slice(&1i16.to_be_bytes());
    raw.send(b'B', &bind);
    raw.send(b'D', b"P\0");
    let execute = |n: i32| {
        let mut e = cstr("");
        e.extend_from_slice(&n.to_be_bytes());
        e
    };
    raw.send(b'E', &execute(3));
    raw.send(b'H', b"");
    let mut kinds = Vec::new();
    while kinds.iter().filter(|k| **k == b's').count() < 1 {
        let m = raw.read().unwrap();
        if m.0 == b'D' {
            // Binary int8 volume: 8 bytes, positive.
            let fields = &m.1[2..];
            let len0 = i32::from_be_bytes(fields[0..4].try_into().unwrap()) as usize;
            let vol = &fields[4 + len0..];
            assert_eq!(i32::from_be_bytes(vol[0..4].try_into().unwrap()), 8);
            assert!(i64::from_be_bytes(vol[4..12].try_into().unwrap()) > 0);
        }
        kinds.push(m.0);
    }
    assert_eq!(kinds, b"12TDDDs");
    raw.send(b'E', &execute(2));
    raw.send(b'H', b"");
    let mut more = Vec::new();
    while !more.contains(&b's') {
        more.push(raw.read().unwrap().0);
    }
    assert_eq!(more, b"DDs");
    let running = |raw: &mut Raw| {
        raw.query("SHOW JOBS")
            .iter()
            .any(|m| m.0 == b'D' && String::from_utf8_lossy(&m.1).contains("volume > $1"))
    };
    let mut other = Raw::startup(&gw).0;
    assert!(
        running(&mut other),
        "the suspended portal's engine query runs"
    );
    raw.send(b'C', b"P\0");
    raw.send(b'S', b"");
    let msgs = raw.until_ready();
    assert_eq!(msgs.iter().map(|m| m.0).collect::<Vec<_>>(), b"3Z");
    // Closing the portal cancelled the engine query.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while running(&mut other) {
        assert!(
            std::time::Instant::now() < deadline,
            "engine query still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn malformed_packets_get_a_fatal_error_not_a_crash() {
    let gw = Gateway::start(&[]);
    let (mut raw, _, _) = Raw::startup(&gw);
    raw.send(b'!', b"garbage");
    let m = raw.read().expect("an error before closing");
    assert_eq!(m.0, b'E');
    assert_eq!(sqlstate(&m), "08P01");
    // The gateway is still serving others.
    let (mut other, _, _) = Raw::startup(&gw);
    assert_eq!(other.query("SELECT 1")[1].0, b'D');
    // A nonsense startup packet too.
    let mut raw = Raw::connect(&gw);
    raw.send_untyped(&[0, 9, 0, 0, 1, 2, 3]);
    let m = raw.read().expect("an error");
    assert_eq!(m.0, b'E');
}

#[test]
fn cancel_keys_must_match() {
    let gw = Gateway::start(&[]);
    let (mut raw, pid, secret) = Raw::startup(&gw);
    let mut body = b"COPY (SELECT symbol FROM trades EMIT CHANGES) TO STDOUT".to_vec();
    body.push(0);
    raw.send(b'Q', &body);
    let mut data = 0;
    while data < 3 {
        let m = raw.read().unwrap();
        if m.0 == b'd' {
            data += 1;
        }
    }
    // Each returns once the gateway has handled (and closed) the request.
    cancel(&gw, pid, secret.wrapping_add(1));
    cancel(&gw, pid + 1, secret);
    // Still streaming a second after wrong keys: rows sent after the
    // requests were handled, not only rows already buffered.
    let handled = std::time::Instant::now();
    while handled.elapsed() < Duration::from_secs(1) {
        let m = raw.read().expect("still streaming");
        assert_ne!(m.0, b'E', "a wrong key cancelled the query");
    }
    cancel(&gw, pid, secret);
    let msgs = raw.until_ready();
    let error = msgs.iter().find(|m| m.0 == b'E').expect("cancelled");
    assert_eq!(sqlstate(error), "57014");
    assert_eq!(msgs.last().unwrap().1, b"I");
}

fn parse_msg(name: &str, sql: &str, oids: &[i32]) -> Vec<u8> {
    let mut p = cstr(name);
    p.extend(cstr(sql));
    p.extend_from_slice(&(oids.len() as i16).to_be_bytes());
    for oid in oids {
        p.extend_from_slice(&oid.to_be_bytes());
    }
    p
}

fn kinds(msgs: &[Msg]) -> Vec<u8> {
    msgs.iter().map(|m| m.0).collect()
}

#[test]
fn named_statements_describe_error_recovery_reuse_and_deallocate() {
    let gw = Gateway::start(&[]);
    let (mut raw, _, _) = Raw::startup(&gw);
    // Describe of a statement: parameter types from the engine, the row
    // shape, nothing run.
    raw.send(
        b'P',
        &parse_msg(
            "s1",
            "SELECT symbol, volume FROM trades WHERE volume > $1",
            &[],
        ),
    );
    raw.send(b'D', b"Ss1\0");
    raw.send(b'S', b"");
    let msgs = raw.until_ready();
    assert_eq!(kinds(&msgs), b"1tTZ");
    let t = &msgs[1].1;
    assert_eq!(i16::from_be_bytes([t[0], t[1]]), 1);
    assert_eq!(i32::from_be_bytes(t[2..6].try_into().unwrap()), 20); // int8
                                                                     // A statement that returns no rows describes as NoData.
    raw.send(b'P', &parse_msg("s2", "SET application_name = 'x'", &[]));
    raw.send(b'D', b"Ss2\0");
    raw.send(b'S', b"");
    assert_eq!(kinds(&raw.until_ready()), b"1tnZ");

    // An error inside a batch discards everything up to Sync. (The engine
    // resolves relations when the statement is first described or run, so
    // Parse itself succeeds.)
    raw.send(b'P', &parse_msg("bad", "SELECT * FROM nope", &[]));
    raw.send(b'D', b"Sbad\0");
    raw.send(b'P', &parse_msg("s3", "SELECT 1", &[]));
    raw.send(b'S', b"");
    let msgs = raw.until_ready();
    assert_eq!(kinds(&msgs), b"1EZ");
    assert_eq!(sqlstate(&msgs[1]), "42P01");
    assert_eq!(msgs[2].1, b"I");
    raw.send(b'D', b"Ss3\0");
    raw.send(b'S', b"");
    assert_eq!(sqlstate(&raw.until_ready()[0]), "26000", "s3 was discarded");

    // A name in use is refused; after Close it can be reused.
    raw.send(b'P', &parse_msg("s1", "SELECT 2", &[]));
    raw.send(b'S', b"");
    assert_eq!(sqlstate(&raw.until_ready()[0]), "42P05");
    raw.send(b'C', b"Ss1\0");
    raw.send(b'P', &parse_msg("s1", "SELECT 2", &[]));
    raw.send(b'S', b"");
    assert_eq!(kinds(&raw.until_ready()), b"31Z");

    // DEALLOCATE one, then DEALLOCATE ALL / DISCARD ALL drop the rest.
    assert_eq!(kinds(&raw.query("DEALLOCATE s1")), b"CZ");
    raw.send(b'D', b"Ss1\0");
    raw.send(b'S', b"");
    assert_eq!(sqlstate(&raw.until_ready()[0]), "26000");
    assert_eq!(sqlstate(&raw.query("DEALLOCATE s1")[0]), "26000");
    raw.send(b'P', &parse_msg("s4", "SELECT 1", &[]));
    raw.send(b'S', b"");
    raw.until_ready();
    assert_eq!(kinds(&raw.query("DEALLOCATE ALL")), b"CZ");
    raw.send(b'D', b"Ss2\0");
    raw.send(b'S', b"");
    assert_eq!(sqlstate(&raw.until_ready()[0]), "26000");
    raw.send(b'P', &parse_msg("s5", "SELECT 1", &[]));
    raw.send(b'S', b"");
    raw.until_ready();
    assert_eq!(kinds(&raw.query("DISCARD ALL")), b"CZ");
    raw.send(b'D', b"Ss5\0");
    raw.send(b'S', b"");
    assert_eq!(sqlstate(&raw.until_ready()[0]), "26000");
}
