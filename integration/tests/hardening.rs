//! Nothing one client sends can hurt another: hostile and unlucky input
//! sent for real to a gateway process, each test asserting the PostgreSQL
//! answer, that another session still answers promptly, and (where memory
//! is the attack) that the gateway's resident memory stays bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use velo_integration::raw::{cancel, cstr, sqlstate, startup_body, Msg, Raw};
use velo_integration::{hash_password, run_script, Gateway};

/// Memory a test's hostile client may add to the gateway, at most.
const RSS_BOUND_KIB: u64 = 24 * 1024;

/// Another session's `SELECT 1` answers within two seconds (a blocked gateway would take
/// many times that; the margin is for a loaded 2-core CI machine).
fn others_still_served(gw: &Gateway) {
    let started = Instant::now();
    let (mut other, _, _) = Raw::startup(gw);
    let reply = other.query("SELECT 1");
    assert!(reply.iter().any(|m| m.0 == b'D'), "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "another session waited {:?}",
        started.elapsed()
    );
}

/// The peak resident memory of the gateway over `window`, sampled.
fn peak_rss(gw: &Gateway, window: Duration) -> u64 {
    let end = Instant::now() + window;
    let mut peak = gw.rss_kib();
    while Instant::now() < end {
        peak = peak.max(gw.rss_kib());
        std::thread::sleep(Duration::from_millis(50));
    }
    peak
}

/// Reads until the server closes; the messages it sent first.
fn until_closed(raw: &mut Raw, within: Duration) -> Vec<Msg> {
    raw.s.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    while let Some(m) = raw.read() {
        out.push(m);
    }
    let mut byte = [0u8; 1];
    assert_eq!(
        raw.s.read(&mut byte).unwrap_or(0),
        0,
        "server closed the connection"
    );
    out
}

/// Connections the gateway has accepted, from its metrics.
fn accepted(gw: &Gateway) -> u64 {
    gw.metric("velo_gateway_connections_accepted_total") as u64
}

/// A gateway with password authentication (alice's password: secret);
/// the users file lives as long as the returned directory.
fn scram_gateway(args: &[&str]) -> (tempfile::TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, hash_password("alice", "scram", "secret") + "\n").unwrap();
    let mut all = vec!["--users", users.to_str().unwrap()];
    all.extend_from_slice(args);
    let gw = Gateway::start(&all);
    (dir, gw)
}

/// A connection that sent its startup packet and was asked for SCRAM.
fn sasl_started(gw: &Gateway, user: &str) -> Raw {
    let mut raw = Raw::connect(gw);
    raw.send_untyped(&startup_body(user));
    assert_eq!(raw.read().unwrap().0, b'R', "AuthenticationSASL");
    raw
}

fn error_code(msgs: &[Msg]) -> String {
    msgs.iter()
        .find(|m| m.0 == b'E')
        .map(sqlstate)
        .unwrap_or_default()
}

#[test]
fn silent_sockets_count_against_max_connections_and_time_out() {
    let gw = Gateway::start(&["--max-connections", "4", "--authentication-timeout", "1s"]);
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect((gw.host.as_str(), gw.port)).unwrap())
        .collect();
    // Counted once accepted (the kernel completes connects before that).
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted(&gw) < 4 {
        assert!(Instant::now() < deadline, "the gateway never accepted them");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every accepted socket counts: a fifth client is refused at once.
    let mut fifth = Raw::connect(&gw);
    fifth.send_untyped(&startup_body("alice"));
    let refused = until_closed(&mut fifth, Duration::from_secs(5));
    assert_eq!(error_code(&refused), "53300", "{refused:?}");
    // The silent ones are closed by authentication_timeout.
    for socket in &mut silent {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest);
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // Their slots are free again.
    others_still_served(&gw);
}

#[test]
fn a_stalled_login_is_cut_off_by_authentication_timeout() {
    let (_users, gw) = scram_gateway(&["--authentication-timeout", "1s"]);
    // AuthenticationSASL arrives; the client never answers.
    let mut raw = sasl_started(&gw, "alice");
    let msgs = until_closed(&mut raw, Duration::from_secs(10));
    assert_eq!(error_code(&msgs), "57014", "{msgs:?}");
}

#[test]
fn oversized_messages_before_login_end_the_connection_at_once() {
    let gw = Gateway::start(&[]);
    let before = gw.rss_kib();
    // A startup packet claiming a gigabyte: refused from its header.
    let mut raw = Raw::connect(&gw);
    raw.s.write_all(&0x4000_0000i32.to_be_bytes()).unwrap();
    let msgs = until_closed(&mut raw, Duration::from_secs(5));
    assert_eq!(error_code(&msgs), "08P01", "{msgs:?}");
    // A password message claiming a gigabyte during SCRAM, likewise.
    let (_users, locked) = scram_gateway(&[]);
    let mut raw = sasl_started(&locked, "alice");
    raw.s.write_all(b"p").unwrap();
    raw.s.write_all(&0x4000_0000i32.to_be_bytes()).unwrap();
    let msgs = until_closed(&mut raw, Duration::from_secs(5));
    assert_eq!(error_code(&msgs), "08P01", "{msgs:?}");
    assert!(gw.rss_kib() < before + RSS_BOUND_KIB);
    others_still_served(&gw);
}

#[test]
fn an_oversized_query_is_54000_and_the_connection_goes_on() {
    let gw = Gateway::start(&["--max-message-size", "65536"]);
    let (mut raw, _, _) = Raw::startup(&gw);
    let huge = format!("SELECT '{}'", "x".repeat(1 << 20));
    let msgs = raw.query(&huge);
    assert_eq!(
        error_code(&msgs),
        "54000",
        "{:?}",
        msgs.iter().map(|m| m.0).collect::<Vec<_>>()
    );
    assert_eq!(msgs.last().unwrap().1, b"I");
    // In an extended batch it is skipped until Sync, like any error.
    let mut parse = cstr("");
    parse.extend(cstr(&huge));
    parse.extend_from_slice(&0i16.to_be_bytes());
    raw.send(b'P', &parse);
    raw.send(b'B', b"\0\0\0\0\0\0\0\0");
    raw.send(b'E', b"\0\0\0\0\0");
    raw.send(b'S', b"");
    let msgs = raw.until_ready();
    assert_eq!(msgs.iter().map(|m| m.0).collect::<Vec<_>>(), b"EZ");
    assert_eq!(sqlstate(&msgs[0]), "54000");
    assert!(raw.query("SELECT 1").iter().any(|m| m.0 == b'D'));
}

#[test]
fn a_length_that_does_not_match_its_message_is_08p01() {
    let gw = Gateway::start(&[]);
    let (mut raw, _, _) = Raw::startup(&gw);
    // Sync carries no body; four extra bytes would be read as the start of
    // the next message by a lenient decoder (message smuggling).
    raw.send(b'S', b"Q\0\0\0");
    let msgs = until_closed(&mut raw, Duration::from_secs(5));
    assert_eq!(error_code(&msgs), "08P01", "{msgs:?}");
    // A SASLInitialResponse whose inner length lies, before login.
    let (_users, locked) = scram_gateway(&[]);
    let mut raw = sasl_started(&locked, "alice");
    let mut body = cstr("SCRAM-SHA-256");
    body.extend_from_slice(&1000i32.to_be_bytes());
    body.extend_from_slice(b"n,,n=,r=abc");
    raw.send(b'p', &body);
    let msgs = until_closed(&mut raw, Duration::from_secs(5));
    assert_eq!(error_code(&msgs), "08P01", "{msgs:?}");
    others_still_served(&gw);
}

#[test]
fn replies_a_client_does_not_read_stay_bounded() {
    let gw = Gateway::start(&[]);
    let (mut raw, _, _) = Raw::startup(&gw);
    // A wide statement: every Describe answers with a large RowDescription.
    let columns: Vec<String> = (0..60)
        .map(|i| format!("{i} AS column_number_{i:03}"))
        .collect();
    let mut parse = cstr("wide");
    parse.extend(cstr(&format!("SELECT {}", columns.join(", "))));
    parse.extend_from_slice(&0i16.to_be_bytes());
    raw.send(b'P', &parse);
    let before = gw.rss_kib();
    let mut describes = Vec::new();
    for _ in 0..20_000 {
        describes.extend_from_slice(b"D");
        describes.extend_from_slice(&10i32.to_be_bytes());
        describes.extend_from_slice(b"Swide\0");
    }
    // Written from a thread: it may block once the gateway stops reading.
    let mut writer = raw.s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&describes);
    });
    let peak = peak_rss(&gw, Duration::from_secs(2));
    assert!(
        peak < before + RSS_BOUND_KIB,
        "gateway grew from {before} KiB to {peak} KiB"
    );
    others_still_served(&gw);
    drop(raw);
    sender.join().unwrap();
}

#[test]
fn bytes_flooded_during_a_query_are_not_read_ahead() {
    let gw = Gateway::start(&[]);
    let (mut raw, pid, secret) = Raw::startup(&gw);
    raw.send(
        b'Q',
        &cstr("SELECT symbol FROM trades WHERE volume < 0 EMIT CHANGES"),
    );
    // RowDescription: the query runs (and sends nothing: no row matches).
    while raw.read().expect("reply").0 != b'T' {}
    let before = gw.rss_kib();
    let mut writer = raw.s.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let flooder = std::thread::spawn(move || {
        let junk = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            if writer.write_all(&junk).is_err() {
                break;
            }
        }
    });
    let peak = peak_rss(&gw, Duration::from_secs(2));
    assert!(
        peak < before + RSS_BOUND_KIB,
        "gateway grew from {before} KiB to {peak} KiB"
    );
    others_still_served(&gw);
    cancel(&gw, pid, secret);
    drop(raw);
    flooder.join().unwrap();
}

#[test]
fn deeply_nested_statements_are_54001() {
    let gw = Gateway::start(&[]);
    let (mut raw, _, _) = Raw::startup(&gw);
    let before = gw.rss_kib();
    let deep = format!("SELECT {}1{}", "(".repeat(1_000_000), ")".repeat(1_000_000));
    let msgs = raw.query(&deep);
    assert_eq!(error_code(&msgs), "54001");
    assert!(raw.query("SELECT 1").iter().any(|m| m.0 == b'D'));
    assert!(gw.rss_kib() < before + RSS_BOUND_KIB);
}

#[test]
fn statement_timeout_from_set_options_and_config() {
    // Gateway-wide default.
    let gw = Gateway::start(&[
        "--statement-timeout",
        "300ms",
        "--max-queries-per-node",
        "1",
    ]);
    let (mut raw, _, _) = Raw::startup(&gw);
    let endless = "COPY (SELECT symbol FROM trades WHERE volume < 0 EMIT CHANGES) TO STDOUT";
    let started = Instant::now();
    let msgs = raw.query(endless);
    let error = msgs.iter().find(|m| m.0 == b'E').expect("an error");
    assert_eq!(sqlstate(error), "57014");
    assert!(String::from_utf8_lossy(&error.1).contains("statement timeout"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The engine slot is free again (one slot per node here).
    assert!(raw
        .query("SET statement_timeout = 0; SELECT symbol FROM trades EMIT CHANGES LIMIT 1")
        .iter()
        .any(|m| m.0 == b'D'));
    // SET, and a bad value.
    let msgs = raw.query("SET statement_timeout = 'soon'");
    assert_eq!(error_code(&msgs), "22023");
    let msgs = raw.query(&format!("SET statement_timeout = '200ms'; {endless}"));
    assert_eq!(error_code(&msgs), "57014");
    // The startup packet's options (libpq's PGOPTIONS).
    let mut cmd = gw.psql("alice");
    cmd.env("PGOPTIONS", "-c statement_timeout=250");
    let out = run_script(cmd, &format!("SHOW statement_timeout;\n{endless};\n"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("250"), "{stdout}");
    assert!(
        stderr.contains("canceling statement due to statement timeout"),
        "{stderr}"
    );
}

#[test]
fn idle_sessions_and_idle_transactions_are_closed() {
    let gw = Gateway::start(&[]);
    let (mut raw, _, _) = Raw::startup(&gw);
    raw.query("SET idle_session_timeout = '300ms'");
    let msgs = until_closed(&mut raw, Duration::from_secs(5));
    assert_eq!(error_code(&msgs), "57P05", "{msgs:?}");
    let (mut raw, _, _) = Raw::startup(&gw);
    raw.query("BEGIN; SET idle_in_transaction_session_timeout = '300ms'");
    let msgs = until_closed(&mut raw, Duration::from_secs(5));
    assert_eq!(error_code(&msgs), "25P03", "{msgs:?}");
    // Neither applies while a statement runs or by default.
    others_still_served(&gw);
}

#[test]
fn per_user_and_per_session_bounds() {
    let gw = Gateway::start(&[
        "--max-connections-per-user",
        "2",
        "--max-queries-per-session",
        "2",
        "--max-queries-per-user",
        "3",
    ]);
    let (mut first, _, _) = Raw::startup(&gw);
    let (mut second, _, _) = Raw::startup(&gw);
    let mut third = Raw::connect(&gw);
    third.send_untyped(&startup_body("alice"));
    let msgs = until_closed(&mut third, Duration::from_secs(5));
    assert_eq!(error_code(&msgs), "53300", "{msgs:?}");
    let error = msgs.iter().find(|m| m.0 == b'E').unwrap();
    assert!(String::from_utf8_lossy(&error.1).contains("too many connections for role"));
    let declare = |n: u32| {
        format!("DECLARE c{n} CURSOR WITH HOLD FOR SELECT symbol FROM trades EMIT CHANGES")
    };
    for n in 0..2 {
        assert_eq!(error_code(&first.query(&declare(n))), "");
    }
    assert_eq!(error_code(&first.query(&declare(2))), "53300");
    // The user's third query, in the other session, is the last one.
    assert_eq!(error_code(&second.query(&declare(0))), "");
    assert_eq!(error_code(&second.query(&declare(1))), "53300");
    // Closing a cursor gives its place back.
    assert_eq!(error_code(&first.query("CLOSE c0")), "");
    assert_eq!(error_code(&second.query(&declare(1))), "");
}

#[test]
fn cancel_reaches_a_query_whose_client_stopped_reading() {
    let gw = Gateway::start(&["--max-queries-per-node", "1"]);
    let (mut stalled, pid, secret) = Raw::startup(&gw);
    stalled.send(
        b'Q',
        &cstr("COPY (SELECT * FROM generate_series(1, 100000000)) TO STDOUT"),
    );
    assert_eq!(stalled.read().unwrap().0, b'H');
    // The client reads nothing more: once its socket buffer stops filling,
    // the gateway's writes are blocked. A cancel must still free the slot.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let unread = unread_bytes(&stalled.s);
        if unread > 16 << 10 && unread == last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client's buffer never filled"
        );
        last = unread;
    }
    let mut other = Raw::startup(&gw).0;
    cancel(&gw, pid, secret);
    let started = Instant::now();
    let msgs = other.query("SELECT symbol FROM trades EMIT CHANGES LIMIT 1");
    assert_eq!(error_code(&msgs), "", "{msgs:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Bytes waiting in a socket's receive buffer.
fn unread_bytes(socket: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer we pass.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD");
    n as usize
}

/// SCRAM server-first for `user`: (salt, iterations).
fn scram_first(gw: &Gateway, user: &str) -> (String, String, Raw) {
    let mut raw = sasl_started(gw, user);
    let mut body = cstr("SCRAM-SHA-256");
    let first = b"n,,n=,r=clientnonce";
    body.extend_from_slice(&(first.len() as i32).to_be_bytes());
    body.extend_from_slice(first);
    raw.send(b'p', &body);
    let (kind, reply) = raw.read().unwrap();
    assert_eq!(kind, b'R');
    let text = String::from_utf8_lossy(&reply[4..]).into_owned();
    let field = |k: &str| {
        text.split(',')
            .find_map(|f| f.strip_prefix(k))
            .unwrap()
            .to_string()
    };
    (field("s="), field("i="), raw)
}

#[test]
fn scram_does_not_tell_unknown_users_from_wrong_passwords() {
    let (_users, gw) = scram_gateway(&[]);
    let (salt1, iterations1, _) = scram_first(&gw, "ghost");
    let (salt2, iterations2, _) = scram_first(&gw, "ghost");
    let (_, real_iterations, _) = scram_first(&gw, "alice");
    assert_eq!(salt1, salt2, "the same fake salt on every attempt");
    assert_eq!(iterations1, iterations2);
    assert_eq!(iterations1, real_iterations);
    let (other_salt, _, _) = scram_first(&gw, "phantom");
    assert_ne!(salt1, other_salt, "fake salts differ per user");
    // Both end in 28P01 with a proof that cannot be right.
    for user in ["ghost", "alice"] {
        let (_, _, mut raw) = scram_first(&gw, user);
        raw.send(b'p', b"c=biws,r=clientnonce,p=AAAA");
        let msgs = until_closed(&mut raw, Duration::from_secs(5));
        assert_eq!(error_code(&msgs), "28P01", "{user}: {msgs:?}");
    }
}

#[test]
fn the_admin_server_drops_slow_requests() {
    let gw = Gateway::start(&[]);
    let mut slow = TcpStream::connect(&gw.admin).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "closed after {:?}",
        started.elapsed()
    );
    let (status, _) = velo_integration::http_get(&gw.admin, "/healthz").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn catalog_statements_are_bounded_in_rows_memory_and_time() {
    let gw = Gateway::start(&[]);
    let (mut raw, _, _) = Raw::startup(&gw);
    let before = gw.rss_kib();
    // Hundreds of millions of rows: refused past the row bound.
    let msgs = raw.query(
        "SELECT a.oid FROM pg_catalog.pg_type a, pg_catalog.pg_type b, pg_catalog.pg_type c",
    );
    assert_eq!(error_code(&msgs), "54000", "{msgs:?}");
    assert!(gw.rss_kib() < before + 4 * RSS_BOUND_KIB);
    // Long work with no rows to show: statement_timeout stops it.
    let started = Instant::now();
    let msgs = raw.query(
        "SET statement_timeout = '300ms'; \
         SELECT count(*) FROM pg_catalog.pg_type a, pg_catalog.pg_type b, pg_catalog.pg_type c \
         WHERE a.oid + b.oid + c.oid > 0",
    );
    assert_eq!(error_code(&msgs), "57014", "{msgs:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    others_still_served(&gw);
}

#[test]
fn client_sockets_have_tcp_keepalive() {
    let gw = Gateway::start(&[]);
    let (_session, _, _) = Raw::startup(&gw);
    // ss shows a keepalive timer on the gateway's end of the connection.
    let out = Command::new("ss")
        .args(["-tnoH", "state", "established"])
        .arg(format!("( sport = :{} )", gw.port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("timer:(keepalive"), "{text}");
}

/// CPU time (user + system) of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parens.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Sets a process's soft limit on open files (the hard one stays).
fn set_descriptor_limit(pid: u32, limit: usize) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}:")])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn out_of_descriptors_the_accept_loop_backs_off_and_recovers() {
    let engine = velo_integration::Engine::start(&[]);
    let gw = Gateway::start(&["--engine", &engine.addr]);
    let pid = gw.pid();
    others_still_served(&gw);
    let window = Duration::from_secs(2);
    let quiet = {
        let before = cpu_ticks(pid);
        std::thread::sleep(window);
        cpu_ticks(pid) - before
    };
    // No descriptor left for a new socket: connections wait in the
    // listen backlog and every accept fails (EMFILE).
    set_descriptor_limit(pid, open_descriptors(pid));
    let waiting: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect((gw.host.as_str(), gw.port)).unwrap())
        .collect();
    let starved = {
        let before = cpu_ticks(pid);
        std::thread::sleep(window);
        cpu_ticks(pid) - before
    };
    // Spinning would cost a whole core: 200 ticks in 2 s at 100 Hz.
    assert!(
        starved < quiet + 40,
        "{starved} ticks out of descriptors, {quiet} quiet"
    );
    set_descriptor_limit(pid, 1024);
    drop(waiting);
    others_still_served(&gw);
}
