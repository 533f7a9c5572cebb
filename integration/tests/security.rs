//! The security of the front door, with real clients: a direct TLS start
//! (libpq 17 and later), SCRAM-SHA-256-PLUS channel binding (libpq 15 and 18) and
//! what a TLS-terminating man in the middle gets.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use velo_integration::{
    drivers_dir, hash_password, run_expecting, run_script, self_signed_certificate, Gateway, Proc,
    DRIVERS_VENV,
};

/// A gateway with TLS (a self-signed certificate) and one SCRAM user,
/// alice / `PASSWORD`, started with `extra` arguments too.
fn tls_gateway(dir: &Path, extra: &[&str]) -> Gateway {
    let (cert, key) = self_signed_certificate(dir, "localhost");
    let users = dir.join("users");
    std::fs::write(&users, hash_password("alice", "scram", PASSWORD)).unwrap();
    let mut args = vec![
        "--tls-cert-file".to_string(),
        cert.display().to_string(),
        "--tls-key-file".to_string(),
        key.display().to_string(),
        "--users-file".to_string(),
        users.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    Gateway::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

const PASSWORD: &str = "tls-pw-1";

fn tls_clients(args: &[&str]) -> Command {
    let mut cmd = Command::new(format!("{DRIVERS_VENV}/python"));
    cmd.arg(drivers_dir().join("python/tls_clients.py"))
        .args(args);
    cmd
}

/// psql (libpq 15) at 127.0.0.1:`port` as `user` with `password` and a
/// conninfo tail (sslmode, sslcert, channel_binding, ...): (logged in,
/// its output).
fn login(port: u16, user: &str, password: &str, options: &str) -> (bool, String) {
    let mut cmd = Command::new("psql");
    cmd.arg("-X")
        .arg(format!(
            "host=127.0.0.1 port={port} user={user} dbname=velostream connect_timeout=10 {options}"
        ))
        .env("PGPASSWORD", password);
    let out = run_script(cmd, "SELECT x FROM (VALUES ('logged-in')) AS t(x);\n");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("logged-in"), text)
}

/// alice with the right password and `options`.
fn psql_login(port: u16, options: &str) -> (bool, String) {
    login(port, "alice", PASSWORD, options)
}

/// alice with `password`, without TLS.
fn psql_password(gw: &Gateway, password: &str) -> (bool, String) {
    login(gw.port, "alice", password, "sslmode=disable")
}

#[test]
fn direct_tls_start_with_libpq_17_and_channel_binding() {
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path(), &[]);
    let port = gw.port.to_string();
    run_expecting(
        tls_clients(&["direct", &gw.host, &port, "alice", PASSWORD]),
        "direct over-tls ssl_in_use=True",
    );
}

#[test]
fn direct_tls_without_the_postgresql_alpn_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path(), &[]);
    let port = gw.port.to_string();
    // No ALPN: the handshake completes, then the connection closes
    // before any PostgreSQL message, as PostgreSQL 17 does.
    run_expecting(
        tls_clients(&["raw-hello", &gw.host, &port, "-"]),
        "closed without a reply",
    );
    // Another protocol's ALPN: the handshake itself fails.
    let out = run_expecting(
        tls_clients(&["raw-hello", &gw.host, &port, "http/1.1"]),
        "handshake refused",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no application protocol"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Counted as the gateway closes (after the client may have left).
    velo_integration::wait_until("both refusals counted", Duration::from_secs(10), || {
        gw.metric("velo_gateway_connections_rejected_total{reason=\"tls\"}") == 2.0
    });
    // The refusals left the gateway serving.
    let (ok, text) = psql_login(gw.port, "sslmode=require");
    assert!(ok, "{text}");
}

#[test]
fn channel_binding_logs_in_directly_and_fails_through_a_man_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path(), &[]);
    let (ok, text) = psql_login(gw.port, "sslmode=require channel_binding=require");
    assert!(ok, "libpq 15 with channel_binding=require: {text}");
    // pgjdbc 42.5 does not bind, and must log in with PLUS offered.
    let classes = tempfile::tempdir().unwrap();
    let status = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(drivers_dir().join("java/TlsLogin.java"))
        .status()
        .expect("javac");
    assert!(status.success());
    let mut java = Command::new("java");
    java.arg("-cp")
        .arg(format!(
            "{}:/usr/share/java/postgresql.jar",
            classes.path().display()
        ))
        .args([
            "TlsLogin",
            &gw.host,
            &gw.port.to_string(),
            "alice",
            PASSWORD,
        ]);
    run_expecting(java, "tls login jdbc-over-tls");

    // A TLS-terminating proxy with a certificate of its own: the client
    // binds its proof to the proxy's certificate, the gateway to its own.
    let (cert, key) = self_signed_certificate(dir.path(), "proxy");
    let proxy = Proc::spawn(tls_clients(&[
        "proxy",
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        &gw.host,
        &gw.port.to_string(),
    ]));
    let line = proxy
        .wait_line(Duration::from_secs(10), |l| {
            l.starts_with("proxy listening")
        })
        .expect("proxy starts");
    let proxy_port: u16 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let (ok, text) = psql_login(proxy_port, "sslmode=require channel_binding=disable");
    assert!(ok, "the proxy relays logins without binding: {text}");
    let (ok, text) = psql_login(proxy_port, "sslmode=require channel_binding=require");
    assert!(!ok, "{text}");
    assert!(
        text.contains("password authentication failed for user \"alice\""),
        "{text}"
    );
}

/// The audit log's lines, parsed (each line must be one JSON object).
fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn events<'a>(lines: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

/// psycopg with a parameter whose value must never reach the audit log.
fn parameterized_query(gw: &Gateway, secret: &str) {
    let program = format!(
        "import psycopg\n\
         with psycopg.connect(host='{}', port={}, user='alice', password='{PASSWORD}', \
         dbname='velostream', sslmode='require', connect_timeout=10) as c:\n    \
         print(c.execute('SELECT %s::text AS v', ['{secret}']).fetchone()[0])\n",
        gw.host, gw.port
    );
    let mut cmd = Command::new(format!("{DRIVERS_VENV}/python"));
    cmd.args(["-c", &program]);
    run_expecting(cmd, secret);
}

#[test]
fn audit_log_records_connections_statements_and_disconnections_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    for detail in ["summary", "text"] {
        let audit = dir.path().join(format!("audit-{detail}.jsonl"));
        let audit_arg = audit.display().to_string();
        let gw = tls_gateway(
            dir.path(),
            &["--audit-log", &audit_arg, "--audit-statements", detail],
        );
        let mut psql = Command::new("psql");
        psql.arg("-X")
            .arg(format!(
                "host=127.0.0.1 port={} user=alice dbname=velostream connect_timeout=10 \
                 sslmode=require application_name=audit-test",
                gw.port
            ))
            .env("PGPASSWORD", PASSWORD);
        let out = run_script(
            psql,
            "SELECT x FROM (VALUES ('a'), ('b')) AS t(x);\nSELECT * FROM no_such_relation;\n",
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("a\nb"));
        let mut wrong = Command::new("psql");
        wrong
            .arg("-X")
            .arg(format!(
                "host=127.0.0.1 port={} user=alice dbname=velostream connect_timeout=10 \
                 sslmode=disable",
                gw.port
            ))
            .env("PGPASSWORD", "wrong-password-xyz");
        assert!(!run_script(wrong, "SELECT 1;\n").status.success());
        let secret = "secret-param-value-42";
        parameterized_query(&gw, secret);
        velo_integration::wait_until(
            "two disconnections audited",
            Duration::from_secs(10),
            || events(&audit_lines(&audit), "disconnection").len() == 2,
        );

        let raw = std::fs::read_to_string(&audit).unwrap();
        for never in [PASSWORD, "wrong-password-xyz", secret, "SCRAM", "p="] {
            assert!(!raw.contains(never), "{never:?} in the audit log:\n{raw}");
        }
        let lines = audit_lines(&audit);
        let connections = events(&lines, "connection");
        assert_eq!(connections.len(), 3, "{raw}");
        let first = connections[0];
        assert_eq!(first["outcome"], "success");
        assert_eq!(first["user"], "alice");
        assert_eq!(first["database"], "velostream");
        assert_eq!(first["application_name"], "audit-test");
        assert_eq!(first["auth_method"], "scram-sha-256-plus");
        assert!(
            first["tls"].as_str().unwrap().starts_with("TLSv1_3"),
            "{first}"
        );
        assert!(first["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        let failed = connections[1];
        assert_eq!(failed["outcome"], "failure");
        assert_eq!(failed["sqlstate"], "28P01");
        assert_eq!(failed["auth_method"], "scram-sha-256");
        assert!(failed["tls"].is_null(), "{failed}");

        let statements: Vec<_> = events(&lines, "statement")
            .into_iter()
            .filter(|s| s["pid"] == first["pid"])
            .collect();
        assert_eq!(statements.len(), 2, "{raw}");
        let rows = statements[0];
        assert_eq!(rows["route"], "engine");
        assert_eq!(rows["rows"], 2);
        assert_eq!(rows["sqlstate"], "00000");
        assert!(rows["query_id"].as_str().unwrap().starts_with("gw-"));
        assert!(rows["node"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert_eq!(statements[1]["sqlstate"], "42P01");
        let sql = &statements[0]["sql"];
        match detail {
            "summary" => assert!(sql.is_null(), "{raw}"),
            _ => assert_eq!(sql, "SELECT x FROM (VALUES ('a'), ('b')) AS t(x)"),
        }
        let driver = connections[2];
        let parameterized = events(&lines, "statement")
            .into_iter()
            .find(|s| s["pid"] == driver["pid"] && s["route"] == "engine")
            .expect("the driver's statement");
        if detail == "text" {
            assert_eq!(parameterized["sql"], "SELECT $1::text AS v");
        }
        let disconnection = events(&lines, "disconnection")[0];
        assert_eq!(disconnection["pid"], first["pid"]);
        assert!(disconnection["session_seconds"].as_f64().unwrap() > 0.0);

        // Rotation: the file is renamed, SIGHUP reopens the path.
        let rotated = dir.path().join(format!("audit-{detail}.jsonl.1"));
        std::fs::rename(&audit, &rotated).unwrap();
        gw.proc.signal("HUP");
        velo_integration::wait_until("the reload", Duration::from_secs(10), || {
            gw.metric("velo_gateway_reloads_total{outcome=\"success\"}") == 1.0
        });
        assert!(psql_password(&gw, PASSWORD).0);
        velo_integration::wait_until("lines in the new file", Duration::from_secs(10), || {
            events(&audit_lines(&audit), "disconnection").len() == 1
        });
        assert_eq!(events(&audit_lines(&rotated), "disconnection").len(), 2);
    }
}

#[test]
fn failed_logins_lock_the_address_out_for_a_while_and_spare_open_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, hash_password("alice", "scram", PASSWORD)).unwrap();
    let gw = Gateway::start(&[
        "--users-file",
        users.to_str().unwrap(),
        "--auth-failures-per-address",
        "3",
        "--auth-lockout",
        "3s",
    ]);
    // A session opened before the attack goes on through it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dsn = format!(
        "host=127.0.0.1 port={} user=alice password={PASSWORD} dbname=velostream connect_timeout=10",
        gw.port
    );
    let (client, connection) = rt
        .block_on(tokio_postgres::connect(&dsn, tokio_postgres::NoTls))
        .expect("connects");
    rt.spawn(connection);
    for _ in 0..3 {
        let (ok, text) = psql_password(&gw, "guess");
        assert!(
            !ok && text.contains("password authentication failed"),
            "{text}"
        );
    }
    let (ok, text) = psql_password(&gw, PASSWORD);
    assert!(!ok, "the right password is refused while locked: {text}");
    assert!(
        text.contains("too many failed login attempts from 127.0.0.1: try again in"),
        "{text}"
    );
    assert_eq!(gw.metric("velo_gateway_auth_lockouts_total"), 1.0);
    assert_eq!(
        gw.metric("velo_gateway_connections_rejected_total{reason=\"auth_lockout\"}"),
        1.0
    );
    let row = rt
        .block_on(client.query_one("SELECT 'still-here'::text", &[]))
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "still-here");
    // The lockout ends by itself.
    velo_integration::wait_until("the lockout ends", Duration::from_secs(10), || {
        psql_password(&gw, PASSWORD).0
    });
}

#[test]
fn connection_attempts_over_the_rate_of_an_address_are_refused() {
    let gw = Gateway::start(&["--connection-rate-per-address", "3"]);
    let mut codes = Vec::new();
    for _ in 0..12 {
        let mut raw = velo_integration::raw::Raw::connect(&gw);
        raw.send_untyped(&velo_integration::raw::startup_body("alice"));
        let msgs = raw.until_ready();
        codes.push(match msgs.iter().find(|m| m.0 == b'E') {
            Some(e) => velo_integration::raw::sqlstate(e),
            None => "ok".to_string(),
        });
    }
    assert_eq!(codes[0], "ok", "{codes:?}");
    assert!(codes.iter().all(|c| c == "ok" || c == "53300"), "{codes:?}");
    let refused = codes.iter().filter(|c| *c == "53300").count();
    assert!(refused >= 1, "{codes:?}");
    assert_eq!(
        gw.metric("velo_gateway_connections_rejected_total{reason=\"connection_rate\"}"),
        refused as f64
    );
}

#[test]
fn metrics_need_the_bearer_token_when_one_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, "s3cret-scrape-token\n").unwrap();
    let gw = Gateway::start(&["--metrics-token-file", token_file.to_str().unwrap()]);
    let get = |headers: &str| {
        velo_integration::http_get_with(&gw.admin, "/metrics", headers).expect("GET /metrics")
    };
    let (status, body) = get("");
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("velo_gateway_"));
    assert_eq!(get("Authorization: Bearer wrong-token\r\n").0, 401);
    assert_eq!(get("Authorization: Basic czNjcmV0\r\n").0, 401);
    let (status, body) = get("Authorization: Bearer s3cret-scrape-token\r\n");
    assert_eq!(status, 200);
    assert!(
        body.contains("velo_gateway_connections_accepted_total"),
        "{body}"
    );
    // The probes stay open: the kubelet sends no credentials.
    let (status, _) = velo_integration::http_get(&gw.admin, "/healthz").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn users_see_only_their_own_queries_unless_they_are_admins() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let lines: String = ["alice", "bob", "carol"]
        .iter()
        .map(|u| hash_password(u, "scram", PASSWORD))
        .collect();
    std::fs::write(&users, lines).unwrap();
    let gw = Gateway::start(&[
        "--users-file",
        users.to_str().unwrap(),
        "--admin-user",
        "carol",
    ]);
    let psql_as = |user: &str| {
        let mut cmd = velo_integration::psql_command(&gw.host, gw.port, user, "velostream");
        cmd.env("PGPASSWORD", PASSWORD);
        cmd
    };
    let jobs_of = |user: &str| {
        let out = run_script(psql_as(user), "SHOW JOBS;\n");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut live = psql_as("alice");
    live.args([
        "-c",
        "COPY (SELECT symbol FROM trades WHERE symbol <> 'alices-own-query' EMIT CHANGES) TO STDOUT",
    ]);
    let _live = Proc::spawn(live);
    velo_integration::wait_until("alice sees her query", Duration::from_secs(20), || {
        jobs_of("alice").contains("alices-own-query")
    });
    let bob = jobs_of("bob");
    assert!(!bob.contains("alices-own-query"), "{bob}");
    let carol = jobs_of("carol");
    let row = carol
        .lines()
        .find(|l| l.contains("alices-own-query"))
        .unwrap_or_else(|| panic!("the admin sees every query: {carol}"));
    assert!(
        row.ends_with("|alice"),
        "user_name is the last column: {row}"
    );
}

#[test]
fn the_engine_contract_runs_over_tls_with_a_shared_token() {
    let dir = tempfile::tempdir().unwrap();
    let test_ca = velo_integration::TestCa::new(dir.path());
    let (cert, key) = test_ca.server();
    let ca = test_ca.cert.clone();
    let token_file = dir.path().join("engine-token");
    std::fs::write(&token_file, "engine-shared-token\n").unwrap();
    let engine = velo_integration::Engine::start(&[
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    let addr = engine.addr.clone();

    let gateway_with = |extra: &[&str]| {
        let mut args = vec![
            "--engine",
            addr.as_str(),
            "--engine-tls-ca-file",
            ca.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Gateway::start(&args)
    };
    let sql = "SELECT x FROM (VALUES ('over-tls')) AS t(x);\n";
    let gw = gateway_with(&["--engine-token-file", token_file.to_str().unwrap()]);
    let out = run_script(gw.psql("alice"), sql);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "over-tls",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the token the node refuses the gateway's queries, clearly.
    let no_token = gateway_with(&[]);
    let out = run_script(no_token.psql("alice"), sql);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing or wrong engine token"), "{stderr}");

    // Plaintext gRPC does not reach it; TLS without the token is refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
        use velo_proto::v1::ExecuteQueryRequest;
        let show_jobs = || ExecuteQueryRequest {
            query_id: "probe".into(),
            sql: "SHOW JOBS".into(),
            ..Default::default()
        };
        let plain = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5));
        let plain = tokio::time::timeout(Duration::from_secs(10), plain.connect()).await;
        if let Ok(Ok(channel)) = plain {
            let mut client = velo_proto::EngineServiceClient::new(channel);
            let call =
                tokio::time::timeout(Duration::from_secs(10), client.execute_query(show_jobs()));
            assert!(!matches!(call.await, Ok(Ok(_))), "plaintext call answered");
        }
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(&ca).unwrap()))
            .domain_name("localhost");
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .expect("TLS connects");
        let mut client = velo_proto::EngineServiceClient::new(channel);
        let status = client.execute_query(show_jobs()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    });
}

#[test]
fn tls_required_refuses_plain_connections_as_pg_hba_does() {
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path(), &["--tls", "required"]);
    let (ok, text) = login(gw.port, "alice", PASSWORD, "sslmode=disable");
    assert!(!ok);
    assert!(
        text.contains(
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"alice\", database \"velostream\", no encryption"
        ),
        "{text}"
    );
    let (ok, text) = login(gw.port, "alice", PASSWORD, "sslmode=require");
    assert!(ok, "{text}");
}

#[test]
fn rules_choose_the_method_and_certificates_log_users_in_by_their_common_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = velo_integration::TestCa::new(dir.path());
    let (cert, key) = ca.server();
    let users = dir.path().join("users");
    let lines: String = [
        hash_password("alice", "scram", PASSWORD),
        hash_password("oldclient", "md5", PASSWORD),
        hash_password("mallory", "scram", PASSWORD),
    ]
    .concat();
    std::fs::write(&users, lines).unwrap();
    let config = dir.path().join("gateway.toml");
    let path = |p: &Path| p.display().to_string();
    std::fs::write(
        &config,
        format!(
            r#"users_file = "{}"
tls_cert_file = "{}"
tls_key_file = "{}"
tls_client_ca_file = "{}"

[[rules]]
users = ["mallory"]
method = "reject"

[[rules]]
users = ["reporting"]
tls = "required"
method = "cert"

[[rules]]
users = ["oldclient"]
method = "scram"

[[rules]]
addresses = ["127.0.0.0/8", "::1"]
method = "password"
"#,
            path(&users),
            path(&cert),
            path(&key),
            path(&ca.cert),
        ),
    )
    .unwrap();
    let gw = Gateway::start(&["--config", config.to_str().unwrap()]);

    let (ok, text) = login(gw.port, "alice", PASSWORD, "sslmode=disable");
    assert!(ok, "password rule: {text}");
    let (ok, text) = login(gw.port, "mallory", PASSWORD, "sslmode=disable");
    assert!(!ok);
    assert!(
        text.contains("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"mallory\""),
        "{text}"
    );
    // An MD5-stored user on a SCRAM-only rule cannot log in.
    let (ok, text) = login(gw.port, "oldclient", PASSWORD, "sslmode=disable");
    assert!(
        !ok && text.contains("password authentication failed"),
        "{text}"
    );

    // Certificates: the common name is the user; no password is asked.
    let (reporting_cert, reporting_key) = ca.client("reporting");
    let with_cert = |cert: &Path, key: &Path| {
        format!(
            "sslmode=require sslcert={} sslkey={}",
            cert.display(),
            key.display()
        )
    };
    let (ok, text) = login(
        gw.port,
        "reporting",
        "no-password",
        &with_cert(&reporting_cert, &reporting_key),
    );
    assert!(ok, "cert rule: {text}");
    let (alice_cert, alice_key) = ca.client("alice");
    let (ok, text) = login(
        gw.port,
        "reporting",
        "",
        &with_cert(&alice_cert, &alice_key),
    );
    assert!(!ok);
    assert!(
        text.contains("certificate authentication failed for user \"reporting\""),
        "{text}"
    );
    let (ok, text) = login(gw.port, "reporting", "", "sslmode=require");
    assert!(
        !ok && text.contains("certificate authentication failed"),
        "{text}"
    );
    // Without TLS the cert rule does not match (pg_hba.conf's hostssl):
    // the next rule asks for a password.
    let (ok, text) = login(gw.port, "reporting", "wrong", "sslmode=disable");
    assert!(
        !ok && text.contains("password authentication failed for user \"reporting\""),
        "{text}"
    );
}

#[test]
fn sighup_reloads_users_and_certificates_and_open_sessions_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (old_cert, old_key) = self_signed_certificate(dir.path(), "localhost");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(&old_cert, &cert).unwrap();
    std::fs::copy(&old_key, &key).unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, hash_password("alice", "scram", PASSWORD)).unwrap();
    let gw = Gateway::start(&[
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--users-file",
        users.to_str().unwrap(),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dsn = format!(
        "host=127.0.0.1 port={} user=alice password={PASSWORD} dbname=velostream connect_timeout=10",
        gw.port
    );
    let (session, connection) = rt
        .block_on(tokio_postgres::connect(&dsn, tokio_postgres::NoTls))
        .expect("connects");
    rt.spawn(connection);

    let ca = velo_integration::TestCa::new(&dir.path().join("ca"));
    let verified = format!("sslmode=verify-ca sslrootcert={}", ca.cert.display());
    assert!(
        !login(gw.port, "alice", PASSWORD, &verified).0,
        "the old certificate is not the CA's"
    );
    assert!(!login(gw.port, "bob", "bob-pw", "sslmode=disable").0);

    let (new_cert, new_key) = ca.server();
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let both = [
        hash_password("alice", "scram", PASSWORD),
        hash_password("bob", "scram", "bob-pw"),
    ]
    .concat();
    std::fs::write(&users, both).unwrap();
    gw.proc.signal("HUP");
    let reloads = |outcome: &str| {
        gw.metric(&format!(
            "velo_gateway_reloads_total{{outcome=\"{outcome}\"}}"
        ))
    };
    velo_integration::wait_until("the reload", Duration::from_secs(10), || {
        reloads("success") == 1.0
    });
    let (ok, text) = login(gw.port, "bob", "bob-pw", "sslmode=disable");
    assert!(ok, "the new users file is read: {text}");
    let (ok, text) = login(gw.port, "alice", PASSWORD, &verified);
    assert!(ok, "the new certificate is served: {text}");
    let row = rt
        .block_on(session.query_one("SELECT 'still-here'::text", &[]))
        .expect("the session opened before the reload goes on");
    assert_eq!(row.get::<_, String>(0), "still-here");

    // A reload that fails keeps what was loaded.
    std::fs::write(&users, "bob:plaintext-password\n").unwrap();
    gw.proc.signal("HUP");
    velo_integration::wait_until("the failed reload", Duration::from_secs(10), || {
        reloads("failure") == 1.0
    });
    let (ok, text) = login(gw.port, "bob", "bob-pw", "sslmode=disable");
    assert!(ok, "{text}");
}
