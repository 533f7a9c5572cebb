//! The security of the front door, with real clients: a direct TLS start
//! (libpq 17), SCRAM-SHA-256-PLUS channel binding (libpq 15 and 17) and
//! what a TLS-terminating man in the middle gets.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use velo_integration::{
    drivers_dir, hash_password, run_expecting, run_script, self_signed_certificate, Gateway, Proc,
    DRIVERS_VENV,
};

/// A gateway with TLS and one SCRAM user, alice / `PASSWORD`.
fn tls_gateway(dir: &Path) -> Gateway {
    let (cert, key) = self_signed_certificate(dir, "localhost");
    let users = dir.join("users");
    std::fs::write(&users, hash_password("alice", "scram", PASSWORD)).unwrap();
    Gateway::start(&[
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--users-file",
        users.to_str().unwrap(),
    ])
}

const PASSWORD: &str = "tls-pw-1";

fn tls_clients(args: &[&str]) -> Command {
    let mut cmd = Command::new(format!("{DRIVERS_VENV}/python"));
    cmd.arg(drivers_dir().join("python/tls_clients.py"))
        .args(args);
    cmd
}

/// psql (libpq 15) at `host:port` as alice with `conninfo` options.
fn psql_login(port: u16, options: &str) -> (bool, String) {
    let mut cmd = Command::new("psql");
    cmd.arg("-X")
        .arg(format!(
            "host=127.0.0.1 port={port} user=alice dbname=velostream connect_timeout=10 {options}"
        ))
        .env("PGPASSWORD", PASSWORD);
    let out = run_script(cmd, "SELECT x FROM (VALUES ('logged-in')) AS t(x);\n");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("logged-in"), text)
}

#[test]
fn direct_tls_start_with_libpq_17_and_channel_binding() {
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path());
    let port = gw.port.to_string();
    run_expecting(
        tls_clients(&["direct", &gw.host, &port, "alice", PASSWORD]),
        "direct over-tls ssl_in_use=True",
    );
}

#[test]
fn direct_tls_without_the_postgresql_alpn_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path());
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
    assert_eq!(
        gw.metric("velo_gateway_connections_rejected_total{reason=\"tls\"}"),
        2.0
    );
    // The refusals left the gateway serving.
    let (ok, text) = psql_login(gw.port, "sslmode=require");
    assert!(ok, "{text}");
}

#[test]
fn channel_binding_logs_in_directly_and_fails_through_a_man_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let gw = tls_gateway(dir.path());
    let (ok, text) = psql_login(gw.port, "sslmode=require channel_binding=require");
    assert!(ok, "libpq 15 with channel_binding=require: {text}");

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
