//! Operating the gateway: Prometheus metrics (checked by promtool), health
//! and readiness, draining on SIGTERM, DNS discovery of engine nodes, the
//! configuration model, JSON logs, and TLS.

use std::process::Command;
use std::time::{Duration, Instant};

use velo_integration::{
    binary, hash_password, http_get, metric, psql_command, run_script, self_signed_certificate,
    wait_until, Engine, Gateway, Proc,
};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn metrics_move_with_traffic_and_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, hash_password("alice", "scram", "pw1")).unwrap();
    let gw = Gateway::start(&["--users", users.to_str().unwrap()]);
    let (status, before) = http_get(&gw.admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        metric(&before, "velo_gateway_build_info{version=\"0.1.0\"}"),
        1.0
    );

    let mut ok = gw.psql("alice");
    ok.env("PGPASSWORD", "pw1");
    let out = run_script(
        ok,
        "SELECT 1;\nSELECT x FROM (VALUES (1), (2), (3), (4), (5)) AS t(x);\nSELECT * FROM nope;\n",
    );
    assert_eq!(stdout(&out).lines().count(), 6, "{}", stdout(&out));
    let mut bad = gw.psql("alice");
    bad.env("PGPASSWORD", "wrong");
    assert!(!run_script(bad, "SELECT 1;").status.success());

    let (_, body) = http_get(&gw.admin, "/metrics").unwrap();
    let q = |route: &str, class: &str| {
        metric(
            &body,
            &format!("velo_gateway_queries_total{{route=\"{route}\",sqlstate_class=\"{class}\"}}"),
        )
    };
    assert_eq!(q("local", "00"), 1.0, "{body}");
    assert_eq!(q("engine", "00"), 1.0, "{body}");
    assert_eq!(q("engine", "42"), 1.0, "{body}");
    assert_eq!(
        metric(
            &body,
            "velo_gateway_auth_attempts_total{method=\"scram-sha-256\",outcome=\"success\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &body,
            "velo_gateway_auth_attempts_total{method=\"scram-sha-256\",outcome=\"failure\"}"
        ),
        1.0
    );
    assert_eq!(metric(&body, "velo_gateway_rows_sent_total"), 6.0);
    assert!(metric(&body, "velo_gateway_bytes_sent_total") > 100.0);
    assert!(metric(&body, "velo_gateway_connections_accepted_total") >= 2.0);
    assert_eq!(
        metric(
            &body,
            "velo_gateway_query_first_row_seconds_count{route=\"engine\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &body,
            "velo_gateway_query_duration_seconds_count{route=\"engine\"}"
        ),
        2.0
    );
    // The one engine batch: its transit from the node, and its time here.
    assert_eq!(
        metric(&body, "velo_gateway_engine_batch_transit_seconds_count"),
        1.0
    );
    assert_eq!(
        metric(&body, "velo_gateway_batch_in_gateway_seconds_count"),
        1.0
    );
    assert!(body.lines().any(
        |l| l.starts_with("velo_gateway_engine_node_up{node=\"127.0.0.1:") && l.ends_with(" 1")
    ));
    assert_eq!(metric(&body, "velo_gateway_streaming_queries"), 0.0);

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (integration/setup.sh installs prometheus)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn readiness_follows_engine_health_and_draining() {
    let engine = Engine::start(&[]);
    let gw = Gateway::start(&["--engine", &engine.addr, "--drain-timeout-secs", "30"]);
    assert_eq!(
        http_get(&gw.admin, "/healthz").unwrap(),
        (200, "ok\n".into())
    );
    wait_until("ready", Duration::from_secs(10), || {
        http_get(&gw.admin, "/readyz").unwrap().0 == 200
    });
    drop(engine);
    wait_until("not ready without engines", Duration::from_secs(10), || {
        http_get(&gw.admin, "/readyz").unwrap() == (503, "no healthy engine node\n".into())
    });
    assert_eq!(http_get(&gw.admin, "/healthz").unwrap().0, 200);

    // SIGTERM with a session open: not ready, no new clients, and the
    // process exits once that session ends (well before the timeout).
    // psql waiting on its (open) stdin holds an idle session.
    let mut session = Command::new("psql")
        .args(["-X", "-q", "-h", &gw.host, "-p", &gw.port.to_string()])
        .args(["-U", "alice", "-d", "velostream"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("session open", Duration::from_secs(10), || {
        let (_, body) = http_get(&gw.admin, "/metrics").unwrap();
        metric(&body, "velo_gateway_client_connections{state=\"idle\"}") == 1.0
    });
    gw.proc.signal("TERM");
    wait_until("draining", Duration::from_secs(10), || {
        http_get(&gw.admin, "/readyz").is_ok_and(|r| r == (503, "draining\n".into()))
    });
    let refused = run_script(
        psql_command(&gw.host, gw.port, "alice", "velostream"),
        "SELECT 1;",
    );
    assert!(!refused.status.success());
    let started = Instant::now();
    drop(session.stdin.take()); // psql exits at end of input
    session.wait().unwrap();
    let Gateway { proc, .. } = gw;
    let (status, _) = proc.finish(Duration::from_secs(20));
    assert!(status.is_some(), "gateway exits after the last session");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn engine_nodes_found_through_dns() {
    let engine = Engine::start(&[]);
    let port = engine.addr.rsplit_once(':').unwrap().1;
    // `localhost` resolves through the system resolver (/etc/hosts).
    let name = format!("localhost:{port}");
    let gw = Gateway::start(&["--engine-dns", &name, "--engine-dns-refresh-secs", "1"]);
    let out = run_script(
        gw.psql("alice"),
        "SELECT COUNT(*) FROM (VALUES (1), (2)) AS t(x);",
    );
    assert_eq!(
        stdout(&out).trim(),
        "2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("node up", Duration::from_secs(10), || {
        let (_, body) = http_get(&gw.admin, "/metrics").unwrap();
        metric(
            &body,
            &format!("velo_gateway_engine_node_up{{node=\"127.0.0.1:{port}\"}}"),
        ) == 1.0
    });
    assert_eq!(http_get(&gw.admin, "/readyz").unwrap().0, 200);
}

#[test]
fn configuration_file_env_and_flags_layer_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        "listen = [\"127.0.0.1:6000\"]\nqueue_limit = 7\nmax_connections = 50\nlog_format = \"json\"\n",
    )
    .unwrap();
    let out = Command::new(binary("velo-gateway"))
        .arg("--config")
        .arg(&file)
        .args(["--max-connections", "60", "--print-config"])
        .env("VELO_GATEWAY_QUEUE_LIMIT", "9")
        .env("VELO_GATEWAY_ADMIN_LISTEN", "127.0.0.1:9999")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = stdout(&out);
    for line in [
        "listen = [\"127.0.0.1:6000\"]",
        "queue_limit = 9",
        "max_connections = 60",
        "admin_listen = \"127.0.0.1:9999\"",
        "log_format = \"json\"",
        "drain_timeout_secs = 30",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line} in\n{printed}");
    }

    // The engine node follows the same style: env under flags, --print-config.
    let engine = Command::new(binary("velo-engine"))
        .args(["--print-config", "--demo-rate", "7"])
        .env("VELO_ENGINE_MAX_CONCURRENT_QUERIES", "5")
        .env("VELO_ENGINE_DEMO_RATE", "9")
        .output()
        .unwrap();
    let printed = stdout(&engine);
    assert!(
        printed.contains("max_concurrent_queries = 5\n"),
        "{printed}"
    );
    assert!(printed.contains("demo_rate = 7\n"), "{printed}");

    let fails = |args: &[&str], toml: &str, needle: &str| {
        std::fs::write(&file, toml).unwrap();
        let out = Command::new(binary("velo-gateway"))
            .arg("--config")
            .arg(&file)
            .args(args)
            .arg("--print-config")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{needle}: {err}"
        );
    };
    fails(&[], "listen_port = 5\n", "unknown field `listen_port`");
    fails(
        &["--log-format", "xml"],
        "",
        "log_format: \"xml\" is not one of text, json",
    );
    fails(
        &[],
        "tls_cert_file = \"/nonexistent.crt\"\n",
        "tls_cert_file and tls_key_file go together",
    );
    fails(
        &["--engine", "127.0.0.1:1", "--engine-dns", "engines:50051"],
        "",
        "engines and engine_dns are alternatives",
    );
}

#[test]
fn json_logs_carry_the_session_and_never_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, hash_password("carol", "scram", "hunter2-secret")).unwrap();
    let mut cmd = Command::new(binary("velo-gateway"));
    cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--log-format", "json", "--demo-rate", "200"])
        .arg("--users")
        .arg(&users)
        .env("RUST_LOG", "velo_gateway=debug");
    let proc = Proc::spawn(cmd);
    let line = proc
        .wait_line(Duration::from_secs(30), |l| l.contains("listening on"))
        .expect("gateway starts");
    let port = line
        .rsplit(':')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let mut good = psql_command("127.0.0.1", port.parse().unwrap(), "carol", "velostream");
    good.env("PGPASSWORD", "hunter2-secret")
        .env("PGAPPNAME", "ops-test");
    assert!(run_script(good, "SELECT * FROM nope;").status.code() == Some(0));
    let mut bad = psql_command("127.0.0.1", port.parse().unwrap(), "carol", "velostream");
    bad.env("PGPASSWORD", "hunter2-wrong");
    assert!(!run_script(bad, "SELECT 1;").status.success());
    let (_, stderr) = proc.finish(Duration::from_millis(500));
    assert!(!stderr.contains("hunter2"), "a password reached the log");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let failed = events
        .iter()
        .find(|e| e["fields"]["message"] == "statement failed")
        .expect("the failed statement is logged");
    assert_eq!(failed["fields"]["code"], "42P01");
    let spans = failed["spans"].as_array().unwrap();
    assert_eq!(spans[0]["name"], "connection");
    assert_eq!(spans[0]["user"], "carol");
    assert_eq!(spans[0]["application_name"], "ops-test");
    assert!(spans[0]["client"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(spans[1]["name"], "query");
    assert!(spans[1]["query_id"].as_str().unwrap().starts_with("gw-"));
    assert!(events
        .iter()
        .any(|e| e["fields"]["message"] == "authentication failed"));
}

#[test]
fn tls_when_a_certificate_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_certificate(dir.path(), "localhost");
    let gw = Gateway::start(&[
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
    ]);
    let mut tls = gw.psql("alice");
    tls.env("PGSSLMODE", "require");
    let out = run_script(
        tls,
        "\\conninfo\nSELECT x FROM (VALUES ('from-the'), ('engine')) AS t(x);\n",
    );
    let text = stdout(&out);
    assert!(
        text.contains("SSL connection (protocol: TLSv1.3"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("\nfrom-the\nengine\n"), "{text}");
    let mut plain = gw.psql("alice");
    plain.env("PGSSLMODE", "disable");
    assert_eq!(stdout(&run_script(plain, "SELECT 1;")).trim(), "1");
}
