//! Real drivers against a real gateway: psycopg 3, psycopg2, asyncpg,
//! pgjdbc and node-postgres, each with typed parameters, an error with its
//! SQLSTATE, a bounded query and live streaming of an EMIT CHANGES query
//! with cancel (the programs under integration/drivers/ assert all that).

use std::path::PathBuf;
use std::process::Command;

use velo_integration::Gateway;

fn drivers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("drivers")
}

fn run(mut cmd: Command, expect: &str) {
    let out = cmd.output().expect("driver program runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(expect),
        "{expect} failed:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn python_psycopg3_psycopg2_asyncpg() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    let mut cmd = Command::new("python3");
    cmd.arg(drivers_dir().join("python/drivers.py"))
        .arg(&gw.host)
        .arg(gw.port.to_string());
    run(cmd, "asyncpg ok");
}

#[test]
fn java_pgjdbc() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    let classes = tempfile::tempdir().unwrap();
    let jar = "/usr/share/java/postgresql.jar";
    let status = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(drivers_dir().join("java/DriverTest.java"))
        .status()
        .expect("javac");
    assert!(status.success());
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!("{}:{jar}", classes.path().display()))
        .arg("DriverTest")
        .arg(&gw.host)
        .arg(gw.port.to_string());
    run(cmd, "pgjdbc ok");
}

#[test]
fn node_postgres() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    let mut cmd = Command::new("node");
    cmd.arg(drivers_dir().join("node/drivers.js"))
        .arg(&gw.host)
        .arg(gw.port.to_string());
    run(cmd, "node-postgres ok");
}
