//! The systems under test, all on loopback: PostgreSQL 15 (SCRAM), PgBouncer
//! in front of it (SCRAM, transaction pooling), one engine node (demo Kafka
//! for the live-stream test) and the gateway in front of it (SCRAM users
//! file), both built with the `production` profile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use velo_integration::{free_port, Postgres, Proc};

pub const USER: &str = "bench";
pub const PASSWORD: &str = "bench-password";
/// Connection limit for every system: the idle-connection test opens 10,000.
pub const MAX_CLIENTS: usize = 12_000;

pub struct Target {
    pub name: &'static str,
    pub port: u16,
    pub user: &'static str,
    pub dbname: &'static str,
    pub pid: u32,
}

impl Target {
    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={} password={PASSWORD} dbname={}",
            self.port, self.user, self.dbname
        )
    }
}

pub struct Systems {
    pub postgres: Target,
    pub pgbouncer: Target,
    pub gateway: Target,
    /// The gateway's admin address (/metrics).
    pub gateway_admin: String,
    pub engine_addr: String,
    pub engine_pid: u32,
    pub kafka_bootstrap: String,
    pub csv: PathBuf,
    _pg: Postgres,
    _procs: Vec<Proc>,
    _dir: tempfile::TempDir,
}

/// The cargo profile the gateway and engine under test are built with:
/// `production` unless `BENCH_PROFILE` names another (`release`, to see
/// what the default run's shorter build costs).
pub fn profile() -> String {
    std::env::var("BENCH_PROFILE").unwrap_or_else(|_| "production".into())
}

fn built(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/{}/{name}", profile()))
}

/// Runs `program` with its open-file limit raised to the hard limit (10,000
/// clients need more than the usual 1,024).
fn with_fd_limit(program: &Path) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("ulimit -n \"$(ulimit -Hn)\" && exec \"$@\"")
        .arg("bash")
        .arg(program);
    cmd
}

/// Raises this process's open-file limit to its hard limit.
pub fn raise_own_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls get a valid pointer to an rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn psql(pg: &Postgres, sql: &str) {
    let mut cmd = pg.psql();
    cmd.env("PGPASSWORD", PASSWORD);
    velo_integration::run_sql(cmd, sql);
}

/// The 1,000,000-row file (symbol, price, volume, ts, id), written once.
fn write_csv(path: &Path, rows: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let symbols = [
        "AAPL", "TSLA", "NVDA", "MSFT", "AMZN", "GOOGL", "META", "NFLX",
    ];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "symbol,price,volume,ts,id")?;
    let mut x: u64 = 7;
    for i in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let cents = 10_000 + x % 40_000;
        let micros = i as u64 * 1371;
        let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
        writeln!(
            out,
            "{},{}.{:02},{},2026-01-01 {:02}:{:02}:{:02}.{:06},{}",
            symbols[i % 8],
            cents / 100,
            cents % 100,
            1 + x % 1000,
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            frac,
            i
        )?;
    }
    Ok(())
}

fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "port {port} never opened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub fn start(rows: usize) -> anyhow::Result<Systems> {
    let dir = tempfile::tempdir()?;
    let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
    let csv = dir.path().join("trades.csv");
    write_csv(&csv, rows)?;
    eprintln!("wrote {rows} rows to {}", csv.display());

    let pg = Postgres::start_with_password(Some(PASSWORD));
    psql(
        &pg,
        &format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"),
    );
    psql(&pg, &format!("CREATE DATABASE {USER} OWNER {USER}"));
    let load = pg
        .psql()
        .env("PGPASSWORD", PASSWORD)
        .args(["-d", USER, "-v", "ON_ERROR_STOP=1"])
        .arg("-c")
        .arg("CREATE TABLE trades (symbol text, price numeric(12,2), volume bigint, ts timestamp, id bigint)")
        .arg("-c")
        .arg(format!("\\copy trades FROM '{}' WITH (FORMAT csv, HEADER)", csv.display()))
        .arg("-c")
        .arg(format!("ALTER TABLE trades OWNER TO {USER}"))
        .arg("-c")
        .arg("VACUUM ANALYZE trades")
        .output()?;
    anyhow::ensure!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let pg_pid = pg.pid();

    let mut procs = Vec::new();
    // PgBouncer: SCRAM to clients and to PostgreSQL, transaction pooling.
    let bouncer_port = free_port();
    std::fs::write(
        dir.path().join("userlist.txt"),
        format!("\"{USER}\" \"{PASSWORD}\"\n"),
    )?;
    std::fs::write(
        dir.path().join("pgbouncer.ini"),
        format!(
            "[databases]\n{USER} = host=127.0.0.1 port={} dbname={USER}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {bouncer_port}\n\
             unix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {}/userlist.txt\n\
             pool_mode = transaction\ndefault_pool_size = 64\nmax_client_conn = {MAX_CLIENTS}\n\
             max_prepared_statements = 100\nignore_startup_parameters = extra_float_digits\n\
             logfile = {}/pgbouncer.log\nlog_connections = 0\nlog_disconnections = 0\n",
            pg.port,
            dir.path().display(),
            dir.path().display()
        ),
    )?;
    let _ = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(dir.path())
        .status();
    let mut bouncer = with_fd_limit(Path::new("/opt/pgbouncer-1.24/bin/pgbouncer"));
    bouncer
        .args(["-u", "postgres"])
        .arg(dir.path().join("pgbouncer.ini"));
    let bouncer = Proc::spawn(bouncer);
    let bouncer_pid = bouncer.child.id();
    procs.push(bouncer);

    let mut engine = Command::new(built("velo-engine"));
    engine
        .args(["--listen", "127.0.0.1:0", "--demo", "--demo-rate", "100"])
        .env("RUST_LOG", "warn");
    let engine = Proc::spawn(engine);
    let line = engine
        .wait_line(Duration::from_secs(60), |l| {
            l.contains("serving velostream")
        })
        .ok_or_else(|| anyhow::anyhow!("engine did not start"))?;
    let engine_addr = line.rsplit(' ').next().unwrap_or_default().to_string();
    let line = engine
        .wait_line(Duration::from_secs(10), |l| l.contains("Kafka bootstrap"))
        .ok_or_else(|| anyhow::anyhow!("engine printed no bootstrap"))?;
    let kafka_bootstrap = line.rsplit(' ').next().unwrap_or_default().to_string();
    let engine_pid = engine.child.id();
    procs.push(engine);

    let users = dir.path().join("users");
    std::fs::write(
        &users,
        velo_integration::hash_password_with(&built("velo-gateway"), USER, "scram", PASSWORD),
    )?;
    let gateway_port = free_port();
    let gateway_admin = format!("127.0.0.1:{}", free_port());
    let mut gateway = with_fd_limit(&built("velo-gateway"));
    gateway
        .args(["--listen", &format!("127.0.0.1:{gateway_port}")])
        .args(["--admin-listen", &gateway_admin, "--engine", &engine_addr])
        .args(["--max-connections", &MAX_CLIENTS.to_string()])
        .args(["--max-queries-per-node", &MAX_CLIENTS.to_string()])
        .args(["--queue-limit", "20000"])
        .arg("--users-file")
        .arg(&users)
        .env("RUST_LOG", "warn");
    let gateway = Proc::spawn(gateway);
    gateway
        .wait_line(Duration::from_secs(30), |l| l.contains("listening on"))
        .ok_or_else(|| anyhow::anyhow!("gateway did not start"))?;
    let gateway_pid = gateway.child.id();
    procs.push(gateway);
    wait_for_port(bouncer_port)?;

    Ok(Systems {
        postgres: Target {
            name: "postgresql",
            port: pg.port,
            user: USER,
            dbname: USER,
            pid: pg_pid,
        },
        pgbouncer: Target {
            name: "pgbouncer",
            port: bouncer_port,
            user: USER,
            dbname: USER,
            pid: bouncer_pid,
        },
        gateway: Target {
            name: "gateway",
            port: gateway_port,
            user: USER,
            dbname: "velostream",
            pid: gateway_pid,
        },
        gateway_admin,
        engine_addr,
        engine_pid,
        kafka_bootstrap,
        csv,
        _pg: pg,
        _procs: procs,
        _dir: dir,
    })
}
