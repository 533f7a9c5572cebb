//! PgBouncer (transaction pooling) in front of the gateway, with pgbench
//! running a parameterized script through it over the extended protocol.

use std::process::Command;
use std::time::Duration;

use velo_integration::{free_port, psql_command, run_script, Gateway, Proc};

#[test]
fn pgbench_extended_protocol_through_pgbouncer() {
    let gw = Gateway::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ini = dir.path().join("pgbouncer.ini");
    std::fs::write(dir.path().join("userlist.txt"), "\"alice\" \"\"\n").unwrap();
    std::fs::write(
        &ini,
        format!(
            "[databases]\n\
             velostream = host=127.0.0.1 port={gw_port} dbname=velostream\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = transaction\n\
             default_pool_size = 4\n\
             max_client_conn = 100\n\
             ignore_startup_parameters = extra_float_digits\n",
            gw_port = gw.port,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    // PgBouncer will not run as root; -u drops to the postgres account.
    let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
    let mut cmd = Command::new("/usr/sbin/pgbouncer");
    if Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout
        .starts_with(b"0")
    {
        cmd.args(["-u", "postgres"]);
    }
    cmd.arg(&ini);
    let _bouncer = Proc::spawn(cmd);
    // Ready when a query gets through.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = run_script(
            psql_command("127.0.0.1", port, "alice", "velostream"),
            "SELECT 1;",
        );
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pgbouncer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let script = dir.path().join("bench.sql");
    std::fs::write(
        &script,
        "\\set v random(1, 900)\nSELECT symbol, price FROM trades WHERE volume > :v LIMIT 1;\n",
    )
    .unwrap();
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "extended",
            "-c",
            "4",
            "-j",
            "2",
            "-t",
            "25",
            "-h",
            "127.0.0.1",
            "-U",
            "alice",
        ])
        .arg("-p")
        .arg(port.to_string())
        .arg("-f")
        .arg(&script)
        .arg("velostream")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("number of transactions actually processed: 100/100"),
        "{stdout}"
    );
    assert!(
        stdout.contains("number of failed transactions: 0"),
        "{stdout}"
    );
}
