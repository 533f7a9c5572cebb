//! Real drivers against a real gateway: psycopg 3, psycopg2, asyncpg,
//! pgjdbc and node-postgres, each with typed parameters, an error with its
//! SQLSTATE, a bounded query and live streaming of an EMIT CHANGES query
//! with cancel (the programs under integration/drivers/ assert all that).

use velo_integration::{run_client, run_java_client, Gateway, DRIVERS_VENV};

#[test]
fn python_psycopg3_psycopg2_asyncpg() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    run_client(
        &gw,
        &format!("{DRIVERS_VENV}/python"),
        "python/drivers.py",
        "asyncpg ok",
    );
}

#[test]
fn java_pgjdbc() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    run_java_client(&gw, "DriverTest", "pgjdbc ok");
}

#[test]
fn node_postgres() {
    let gw = Gateway::start(&[]);
    gw.wait_for_trades(20);
    run_client(&gw, "node", "node/drivers.js", "node-postgres ok");
}
