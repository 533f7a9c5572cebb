//! PgBouncer (transaction pooling, `max_prepared_statements` on) in front of
//! the gateway: pgbench with parameterized scripts over the extended and the
//! prepared protocol, and pgjdbc's server-side prepared statements.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use velo_integration::{free_port, psql_command, run_script, Gateway, Proc};

/// PgBouncer 1.21+ is needed for `max_prepared_statements`; the setup script
/// builds it from Debian's source archive since Debian 12 ships 1.18.
const PGBOUNCER: &str = "/opt/pgbouncer-1.24/bin/pgbouncer";

struct Bouncer {
    port: u16,
    dir: tempfile::TempDir,
    _proc: Proc,
}

fn start_pgbouncer(gw: &Gateway) -> Bouncer {
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
             default_pool_size = 2\n\
             max_client_conn = 100\n\
             max_prepared_statements = 100\n\
             ignore_startup_parameters = extra_float_digits\n",
            gw_port = gw.port,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    // PgBouncer will not run as root; -u drops to the postgres account.
    let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
    let mut cmd = Command::new(PGBOUNCER);
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
    let proc = Proc::spawn(cmd);
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
    Bouncer {
        port,
        dir,
        _proc: proc,
    }
}

fn pgbench(bouncer: &Bouncer, mode: &str, script: &Path) {
    let out = Command::new("pgbench")
        .args(["-n", "-M", mode, "-c", "4", "-j", "2", "-t", "25"])
        .args(["-h", "127.0.0.1", "-U", "alice"])
        .arg("-p")
        .arg(bouncer.port.to_string())
        .arg("-f")
        .arg(script)
        .arg("velostream")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench -M {mode}: {stdout}\n{}",
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

#[test]
fn pgbench_extended_and_prepared_through_pgbouncer() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    let bouncer = start_pgbouncer(&gw);
    let script = bouncer.dir.path().join("bench.sql");
    std::fs::write(
        &script,
        "\\set v random(1, 900)\nSELECT symbol, price FROM trades WHERE volume > :v LIMIT 1;\n",
    )
    .unwrap();
    pgbench(&bouncer, "extended", &script);
    // Named statements prepared once per client, executed on whichever
    // gateway connection the transaction gets.
    pgbench(&bouncer, "prepared", &script);
}

#[test]
fn jdbc_server_side_prepares_survive_transaction_pooling() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    let bouncer = start_pgbouncer(&gw);
    let drivers = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("drivers/java");
    let classes = tempfile::tempdir().unwrap();
    let status = Command::new("javac")
        .arg("-cp")
        .arg("/usr/share/java/postgresql.jar")
        .arg("-d")
        .arg(classes.path())
        .arg(drivers.join("PooledPrepareTest.java"))
        .status()
        .expect("javac");
    assert!(status.success());
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!(
            "{}:/usr/share/java/postgresql.jar",
            classes.path().display()
        ))
        .arg("PooledPrepareTest")
        .arg("127.0.0.1")
        .arg(bouncer.port.to_string())
        .output()
        .expect("java");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("pooled prepare ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
