//! psql end to end against a real gateway process and real engine nodes.

use std::time::Duration;

use velo_integration::{run_script, Engine, Gateway, Postgres, Proc};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn local_statements_sessions_and_transactions() {
    let gw = Gateway::start(&[]);
    let out = run_script(
        gw.psql("alice"),
        "SELECT 1;\n\
         SELECT current_database();\n\
         SELECT version();\n\
         SHOW server_version;\n\
         SET application_name = 'itest';\n\
         SHOW application_name;\n\
         SET TIME ZONE 'UTC';\n\
         SHOW TimeZone;\n\
         SHOW transaction isolation level;\n\
         RESET application_name;\n\
         SHOW application_name;\n\
         BEGIN;\n\
         BEGIN;\n\
         SELECT 2;\n\
         COMMIT;\n\
         SELECT 3; SELECT 4;\n\
         ;\n\
         -- ping\n\
         SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;\n\
         SHOW no_such_setting;\n\
         SELECT 5;\n",
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "1");
    assert_eq!(lines[1], "velostream");
    assert!(
        lines[2].starts_with("PostgreSQL 15") && lines[2].contains("velo-gateway"),
        "{lines:?}"
    );
    assert_eq!(lines[3], "15.0");
    assert_eq!(lines[4], "itest");
    assert_eq!(lines[5], "UTC");
    assert_eq!(lines[6], "read committed");
    assert_eq!(lines[7], "psql", "RESET returns to the startup value");
    assert!(
        lines.contains(&"2") && lines.contains(&"3") && lines.contains(&"4"),
        "{lines:?}"
    );
    assert_eq!(
        *lines.last().unwrap(),
        "5",
        "the session survives errors: {lines:?}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("there is already a transaction in progress"),
        "{err}"
    );
    assert!(
        err.contains("unrecognized configuration parameter \"no_such_setting\""),
        "{err}"
    );
    // Those two are all: the pool-reset line (CLOSE ALL, UNLISTEN *, RESET
    // ALL, ...) and everything else ran without an error or a warning.
    let complaints: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARNING"))
        .collect();
    assert_eq!(complaints.len(), 2, "{err}");
}

#[test]
fn engine_queries_types_and_errors_with_carets() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(3);
    let out = run_script(
        gw.psql("alice"),
        "SELECT symbol, price, volume FROM trades LIMIT 3;\n\
         SELECT COUNT(*) > 0 FROM \"public\".\"trades\";\n\
         SELECT symbol FROM trades WHERE AND volume > 1;\n\
         SELECT * FROM nope;\n\
         SELECT 1 + 1 AS two;\n",
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for l in &lines[..3] {
        let cols: Vec<&str> = l.split('|').collect();
        assert_eq!(cols.len(), 3, "{l}");
        let price = cols[1];
        assert!(
            price.contains('.') && price.split('.').nth(1).unwrap().len() == 2,
            "{price}"
        );
    }
    assert_eq!(lines[3], "t");
    assert_eq!(lines[4], "2");
    let err = stderr(&out);
    assert!(err.contains("ERROR:  syntax error"), "{err}");
    assert!(
        err.contains("LINE 1: SELECT symbol FROM trades WHERE AND volume > 1"),
        "{err}"
    );
    // The caret sits under `volume` (column 37 of the statement).
    let caret = err
        .lines()
        .skip_while(|l| !l.contains("WHERE AND volume"))
        .nth(1)
        .unwrap();
    assert_eq!(caret.find('^').unwrap(), "LINE 1: ".len() + 36, "{err}");
    assert!(err.contains("relation \"nope\" does not exist"), "{err}");
}

/// Waits until the demo stream holds at least `n` events.
/// Waits until the engine lists a running query containing `needle`.
fn wait_for_job(gw: &Gateway, needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = run_script(gw.psql("alice"), "SHOW JOBS;");
        if stdout(&out)
            .lines()
            .any(|l| l.contains(needle) && !l.contains("SHOW JOBS"))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "query never started: {}",
            stdout(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn text_output_matches_postgresql_15() {
    let pg = Postgres::start();
    let gw = Gateway::start(&[]);
    let query = "SELECT true, false, CAST(42 AS BIGINT), CAST(-7 AS INTEGER), \
        CAST(1.5 AS DOUBLE PRECISION), CAST(0.1 AS DOUBLE PRECISION), CAST(1e20 AS DOUBLE PRECISION), \
        CAST(0.00001 AS DOUBLE PRECISION), CAST(123456.789 AS DOUBLE PRECISION), \
        CAST('NaN' AS DOUBLE PRECISION), CAST('-Infinity' AS DOUBLE PRECISION), \
        CAST(123.45 AS NUMERIC(10,2)), CAST(-0.005 AS NUMERIC(10,3)), CAST(7 AS NUMERIC(10,2)), \
        DATE '2024-02-29', TIMESTAMP '2024-01-02 03:04:05.12', TIMESTAMP '2024-01-02 03:04:05', \
        TIMESTAMP '1999-12-31 23:59:59.999999', \
        INTERVAL '1 year 2 months 3 days 4 hours 5 minutes 6.5 seconds', INTERVAL '3 days', \
        ARRAY[1, 2, 3], ARRAY['a b', 'c', 'x,y'], decode('deadbeef', 'hex'), CAST(NULL AS TEXT), 'plain text';\n";
    let ours = run_script(gw.psql("alice"), query);
    let theirs = run_script(pg.psql(), query);
    assert!(stderr(&theirs).is_empty(), "postgres: {}", stderr(&theirs));
    assert!(stderr(&ours).is_empty(), "gateway: {}", stderr(&ours));
    let ours: Vec<String> = stdout(&ours)
        .trim()
        .split('|')
        .map(str::to_string)
        .collect();
    let theirs: Vec<String> = stdout(&theirs)
        .trim()
        .split('|')
        .map(str::to_string)
        .collect();
    assert_eq!(ours.len(), theirs.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "column {i}: gateway {a:?} vs postgres {b:?}");
    }
}

/// Statements the gateway parses itself, with words PostgreSQL's grammar
/// does not allow after them: the same errors, at the same carets, as
/// PostgreSQL 15 gives (the gateway used to ignore what followed). And
/// Metabase's reset of impersonation, `SET ROLE NONE`, succeeds as there.
#[test]
fn locally_parsed_statements_refuse_trailing_words_as_postgresql_does() {
    let pg = Postgres::start();
    let gw = Gateway::start(&[]);
    let script = "COPY (SELECT 1) TO STDOUT garbage words;\n\
                  COPY (SELECT 1) TO STDOUT (bogus);\n\
                  COPY (SELECT 1) TO STDOUT (FORMAT csv) extra;\n\
                  BEGIN garbage;\n\
                  COMMIT AND;\n\
                  ROLLBACK garbage;\n\
                  DISCARD garbage;\n\
                  LISTEN a b;\n\
                  RESET a b;\n\
                  SHOW a b;\n\
                  CLOSE a b;\n\
                  SET ROLE NONE;\n\
                  RESET ROLE;\n";
    let ours = run_script(gw.psql("alice"), script);
    let theirs = run_script(pg.psql(), script);
    assert_eq!(
        stderr(&theirs).matches("ERROR:").count(),
        11,
        "{}",
        stderr(&theirs)
    );
    assert_eq!(stderr(&ours), stderr(&theirs));
    assert_eq!(stdout(&ours), stdout(&theirs));
}

/// Functions the current tool releases call in their catalog queries
/// (dbt's `pg_is_other_temp_schema`, SQLAlchemy's `*_is_visible`,
/// asyncpg's `quote_literal`, DBeaver's `pg_total_relation_size` of a
/// name): the same answers as PostgreSQL 15.
#[test]
fn catalog_functions_of_current_tools_answer_as_postgresql_does() {
    let pg = Postgres::start();
    let gw = Gateway::start(&[]);
    // One call a statement: each must be routed to the catalog on its own.
    let script = "SELECT quote_literal('it''s');\n\
                  SELECT quote_literal(E'a\\\\b');\n\
                  SELECT quote_literal(NULL::text);\n\
                  SELECT quote_ident('Ab c');\n\
                  SELECT quote_ident('abc');\n\
                  SELECT format('%L', E'x\\\\y');\n\
                  SELECT pg_is_other_temp_schema(2200);\n\
                  SELECT pg_collation_is_visible(100);\n\
                  SELECT pg_ts_config_is_visible(3748);\n\
                  SELECT pg_total_relation_size('pg_catalog.pg_am') >= 0;\n\
                  SELECT pg_get_constraintdef(0, true) IS NULL;\n";
    let ours = run_script(gw.psql("alice"), script);
    let theirs = run_script(pg.psql(), script);
    assert!(stderr(&theirs).is_empty(), "postgres: {}", stderr(&theirs));
    assert!(stderr(&ours).is_empty(), "gateway: {}", stderr(&ours));
    assert_eq!(
        stdout(&theirs).trim(),
        "'it''s'\nE'a\\\\b'\n\n\"Ab c\"\nabc\nE'x\\\\y'\nf\nt\nt\nt\nt",
        "the reference itself"
    );
    assert_eq!(stdout(&ours), stdout(&theirs));
}

/// Starts psql on a continuous statement and returns it once `lines` rows
/// have arrived.
fn watch(gw: &Gateway, args: &[&str], sql: &str, lines: usize) -> Proc {
    let mut cmd = gw.psql("alice");
    cmd.args(["-A", "-t"]).args(args).args(["-c", sql]);
    let psql = Proc::spawn(cmd);
    for i in 0..lines {
        assert!(
            psql.wait_line(Duration::from_secs(20), |l| !l.is_empty())
                .is_some(),
            "only {i} rows arrived live"
        );
    }
    psql
}

fn assert_cancelled(psql: Proc) {
    // Ctrl+C: psql sends a CancelRequest.
    let (status, err) = psql.interrupt(Duration::from_secs(10));
    assert!(status.is_some(), "psql did not end after Ctrl+C");
    assert!(
        err.contains("canceling statement due to user request"),
        "{err}"
    );
}

#[test]
fn copy_streams_live_and_ctrl_c_cancels() {
    let gw = Gateway::start(&[]);
    let psql = watch(
        &gw,
        &[],
        "COPY (SELECT symbol, AVG(price) AS avg_price FROM kafka://trades GROUP BY symbol EMIT CHANGES) TO STDOUT",
        10,
    );
    assert_cancelled(psql);
    let psql = watch(
        &gw,
        &[],
        "COPY (SELECT symbol, price FROM trades EMIT CHANGES) TO STDOUT WITH (FORMAT csv, HEADER)",
        5,
    );
    assert_cancelled(psql);
    // The gateway is still fine afterwards.
    let out = run_script(gw.psql("alice"), "SELECT 1;");
    assert_eq!(stdout(&out).trim(), "1");
}

#[test]
fn fetch_count_cursors_stream_live_and_ctrl_c_cancels() {
    let gw = Gateway::start(&[]);
    // Rows arrive live, FETCH_COUNT rows at a time.
    let psql = watch(
        &gw,
        &["-v", "FETCH_COUNT=5"],
        "SELECT symbol, price FROM trades EMIT CHANGES",
        12,
    );
    psql.signal("INT");
    let (status, err) = psql.finish(Duration::from_secs(10));
    assert!(
        status.is_some() && err.contains("Cancel request sent"),
        "{err}"
    );
    // Ctrl+C while a FETCH is waiting for rows cancels that FETCH.
    let mut cmd = gw.psql("alice");
    cmd.args([
        "-v",
        "FETCH_COUNT=5",
        "-c",
        "SELECT symbol, volume FROM trades WHERE volume = -1 EMIT CHANGES",
    ]);
    let psql = Proc::spawn(cmd);
    wait_for_job(&gw, "volume = -1");
    assert_cancelled(psql);
    let out = run_script(
        gw.psql("alice"),
        "BEGIN;\n\
         DECLARE c NO SCROLL CURSOR FOR SELECT symbol FROM trades EMIT CHANGES;\n\
         FETCH FORWARD 3 FROM c;\n\
         FETCH 2 c;\n\
         CLOSE c;\n\
         COMMIT;\n\
         DECLARE d CURSOR FOR SELECT 1;\n",
    );
    let lines: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(stderr(&out).contains("DECLARE CURSOR can only be used in transaction blocks"));
}

#[test]
fn plain_select_of_continuous_query_gets_a_notice_and_cancels() {
    let gw = Gateway::start(&[]);
    let mut cmd = gw.psql("alice");
    cmd.args(["-c", "SELECT symbol FROM trades EMIT CHANGES"]);
    let psql = Proc::spawn(cmd);
    // psql holds rows but prints the notice as it arrives; Ctrl+C ends it.
    // (The engine lists the job before the gateway has its schema, so a
    // cancel then would come before the notice.)
    assert!(
        psql.wait_stderr(Duration::from_secs(20), "NOTICE:"),
        "no notice"
    );
    psql.signal("INT");
    let (status, err) = psql.finish(Duration::from_secs(10));
    assert!(status.is_some());
    assert!(err.contains("NOTICE:  this is a continuous query"), "{err}");
    assert!(err.contains("COPY (query) TO STDOUT"), "{err}");
    assert!(
        err.contains("canceling statement due to user request"),
        "{err}"
    );
}

#[test]
fn password_auth_scram_and_md5() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let hash = |user: &str, method: &str| velo_integration::hash_password(user, method, "s3cret");
    let alice = hash("alice", "scram");
    let bob = hash("bob", "md5");
    assert!(alice.starts_with("alice:SCRAM-SHA-256$4096:") && !alice.contains("s3cret"));
    assert!(bob.starts_with("bob:md5"));
    std::fs::write(&users, format!("{alice}{bob}")).unwrap();
    let gw = Gateway::start(&["--users", users.to_str().unwrap()]);
    let login = |user: &str, password: &str| {
        let mut cmd = gw.psql(user);
        cmd.env("PGPASSWORD", password);
        run_script(cmd, "SELECT current_user;")
    };
    let ok = login("alice", "s3cret");
    assert_eq!(stdout(&ok).trim(), "alice", "{}", stderr(&ok));
    let ok = login("bob", "s3cret");
    assert_eq!(stdout(&ok).trim(), "bob", "{}", stderr(&ok));
    let wrong = login("alice", "nope");
    assert!(
        stderr(&wrong).contains("password authentication failed for user \"alice\""),
        "{}",
        stderr(&wrong)
    );
    let unknown = login("mallory", "s3cret");
    assert!(stderr(&unknown).contains("password authentication failed for user \"mallory\""));
    // Trust on a non-loopback address is refused at startup.
    let refused = Gateway::try_start(&["--listen", "0.0.0.0:0"])
        .err()
        .expect("must refuse");
    assert!(
        refused.contains("refusing to listen on a non-loopback address"),
        "{refused}"
    );
}

#[test]
fn two_engine_nodes_balance_admit_and_fail_over() {
    let a = Engine::start(&[]);
    let b = Engine::start(&[]);
    let engines = format!("{},{}", a.addr, b.addr);
    let gw = Gateway::start(&[
        "--engine",
        &engines,
        "--max-queries-per-node",
        "1",
        "--queue-timeout-ms",
        "500",
    ]);
    // Two continuous queries: one per node (least outstanding).
    let verbose = ["-v", "VERBOSITY=verbose"];
    let q1 = watch(
        &gw,
        &verbose,
        "COPY (SELECT symbol FROM trades EMIT CHANGES) TO STDOUT",
        3,
    );
    let q2 = watch(
        &gw,
        &verbose,
        "COPY (SELECT symbol FROM trades EMIT CHANGES) TO STDOUT",
        3,
    );
    // A third waits for a slot, then gets a clear 53300.
    let busy = run_script(gw.psql("alice"), "\\set VERBOSITY verbose\nSELECT 1 + 1;");
    let err = stderr(&busy);
    assert!(
        err.contains("53300") && err.contains("too many queries"),
        "{err}"
    );
    // Kill node A: the stream it served fails with 58030, not a hang.
    let mut a = a;
    let _ = a.proc.child.kill();
    let mut streams = vec![q1, q2];
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let ended = loop {
        if let Some(i) = streams
            .iter_mut()
            .position(|p| matches!(p.child.try_wait(), Ok(Some(_))))
        {
            break i;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no stream ended after its node died"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_, err) = streams.swap_remove(ended).finish(Duration::from_secs(1));
    assert!(err.contains("58030"), "{err}");
    drop(streams);
    // New queries reach the surviving node (retry before the first row).
    for _ in 0..3 {
        let out = run_script(gw.psql("alice"), "SELECT 40 + 2;");
        assert_eq!(stdout(&out).trim(), "42", "{}", stderr(&out));
    }
    drop(b);
}

/// timestamptz values print in the session's TimeZone with its offset,
/// in rows and in COPY, and TIMESTAMPTZ literals are instants: the same
/// text as PostgreSQL 15.
#[test]
fn timestamptz_prints_in_the_session_time_zone_as_postgresql_does() {
    let pg = Postgres::start();
    let gw = Gateway::start(&[]);
    let script = "SET TimeZone = 'Europe/Berlin';\n\
                  SELECT TIMESTAMPTZ '2026-01-01 12:00:00+00' AS a, TIMESTAMPTZ '2026-07-01 12:00:00.5+00' AS b;\n\
                  SET TimeZone = 'Asia/Kolkata';\n\
                  SELECT TIMESTAMPTZ '2026-07-01 12:00:00+00' AS c;\n\
                  COPY (SELECT TIMESTAMPTZ '2026-07-01 12:00:00+00') TO STDOUT;\n\
                  SET TIME ZONE 'America/St_Johns';\n\
                  SELECT CAST('2026-01-01 12:00:00+00' AS TIMESTAMPTZ) AS d;\n\
                  SET TimeZone = 'utc';\n\
                  SELECT TIMESTAMPTZ '2026-01-01 12:00:00+00' AS e;\n";
    let ours = run_script(gw.psql("alice"), script);
    let theirs = run_script(pg.psql(), script);
    assert!(stderr(&theirs).is_empty(), "postgres: {}", stderr(&theirs));
    assert!(stderr(&ours).is_empty(), "gateway: {}", stderr(&ours));
    assert!(
        stdout(&theirs).contains("2026-07-01 17:30:00+05:30"),
        "the reference itself: {}",
        stdout(&theirs)
    );
    assert_eq!(stdout(&ours), stdout(&theirs));
}
