//! Helpers for end-to-end tests: real `velo-engine` and `velo-gateway`
//! processes, real `psql`, and a real PostgreSQL 15 server to compare with.

pub mod fake_engine;
pub mod raw;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `target/<profile>/` — where the workspace's binaries are, unless
/// VELO_BIN_DIR names another folder (e.g. `target/release` to run a test
/// such as the full soak against optimized binaries).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VELO_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf()
}

pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (./integration/test-all.sh does)",
        path.display()
    );
    path
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    /// Lines of stdout not yet consumed.
    pub lines: mpsc::Receiver<String>,
    /// Everything written to stderr so far, and the thread reading it.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let buffer = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                buffer
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Self {
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_stderr(&self, timeout: Duration, needle: &str) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr.lock().unwrap().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Waits for a stdout line matching `pred`.
    pub fn wait_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return Some(line),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Sends `signal` (INT, TERM, KILL, STOP, CONT, HUP) to the process.
    pub fn signal(&self, signal: &str) {
        let number = match signal {
            "INT" => libc::SIGINT,
            "TERM" => libc::SIGTERM,
            "KILL" => libc::SIGKILL,
            "STOP" => libc::SIGSTOP,
            "CONT" => libc::SIGCONT,
            "HUP" => libc::SIGHUP,
            other => panic!("no such signal here: {other}"),
        };
        // SAFETY: kill(2) on our own child's pid; it has no memory effects.
        let _ = unsafe { libc::kill(self.child.id() as libc::pid_t, number) };
    }

    /// Ctrl+C, repeated until the process ends (a first one can land
    /// between two of psql's statements, where it only sets a flag), then
    /// as `finish`.
    pub fn interrupt(mut self, timeout: Duration) -> (Option<std::process::ExitStatus>, String) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            self.signal("INT");
            let next = Instant::now() + Duration::from_millis(500);
            while Instant::now() < next && !matches!(self.child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.finish(Duration::ZERO)
    }

    /// Waits for exit (killing after the timeout); returns stderr.
    pub fn finish(mut self, timeout: Duration) -> (Option<std::process::ExitStatus>, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The pipe ends with the process (killed or not).
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let err = self.stderr.lock().unwrap().clone();
        (status, err)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn address_from(line: &str, marker: &str) -> Option<String> {
    let rest = line.split(marker).nth(1)?;
    Some(rest.split_whitespace().next()?.to_string())
}

/// A `velo-engine --demo` process.
pub struct Engine {
    pub proc: Proc,
    pub addr: String,
    /// The bootstrap servers of the demo's Kafka (for tests that produce).
    pub kafka: String,
}

impl Engine {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_at("127.0.0.1:0", extra)
    }

    /// A node on a given address (to restart one where it was).
    pub fn start_at(listen: &str, extra: &[&str]) -> Self {
        let mut cmd = Command::new(binary("velo-engine"));
        cmd.args(["--listen", listen, "--demo", "--demo-rate", "500"])
            .args(extra)
            .env("RUST_LOG", "warn");
        let proc = Proc::spawn(cmd);
        let line = proc
            .wait_line(Duration::from_secs(30), |l| {
                l.contains("serving velostream.engine.v1 on")
            })
            .expect("engine prints its address");
        let addr = address_from(&line, " on ").expect("address");
        let line = proc
            .wait_line(Duration::from_secs(5), |l| {
                l.contains("Kafka bootstrap servers:")
            })
            .expect("engine prints its Kafka bootstrap servers");
        let kafka = address_from(&line, "servers: ").expect("bootstrap servers");
        Self { proc, addr, kafka }
    }
}

impl Engine {
    /// How many Kafka clients (consumers and producers, its demo's
    /// included) the node has: librdkafka runs one `rdk:main` thread each.
    pub fn kafka_clients(&self) -> usize {
        threads_named(self.proc.child.id(), "rdk:main")
    }

    /// The queries this node is running (its SHOW JOBS), asked over gRPC
    /// directly, not through a gateway.
    pub async fn jobs(&self) -> Vec<Job> {
        engine_jobs(&self.addr).await
    }
}

/// One running query of an engine node.
#[derive(Debug, Clone)]
pub struct Job {
    pub sql: String,
    pub rows_sent: i64,
}

/// The record batches of one `ExecuteQuery` response, as they arrive
/// (heartbeats, notices and the end skipped).
pub struct EngineBatches {
    stream: tonic::Streaming<velo_proto::v1::ExecuteQueryResponse>,
    decoder: arrow::ipc::reader::StreamDecoder,
    pending: arrow::buffer::Buffer,
}

impl EngineBatches {
    pub fn new(stream: tonic::Streaming<velo_proto::v1::ExecuteQueryResponse>) -> Self {
        Self {
            stream,
            decoder: arrow::ipc::reader::StreamDecoder::new(),
            pending: arrow::buffer::Buffer::from(Vec::<u8>::new()),
        }
    }

    /// The next batch; `None` once the stream has ended.
    pub async fn next(&mut self) -> anyhow::Result<Option<arrow::record_batch::RecordBatch>> {
        use velo_proto::v1::execute_query_response::Event;
        loop {
            while !self.pending.is_empty() {
                if let Some(batch) = self.decoder.decode(&mut self.pending)? {
                    return Ok(Some(batch));
                }
            }
            let Some(msg) = self.stream.message().await? else {
                return Ok(None);
            };
            self.pending = arrow::buffer::Buffer::from(match msg.event {
                Some(Event::Schema(s)) => s.arrow_ipc_schema,
                Some(Event::Batch(b)) => b.arrow_ipc,
                _ => continue,
            });
        }
    }
}

/// The queries the engine node at `addr` runs (but this SHOW JOBS).
pub async fn engine_jobs(addr: &str) -> Vec<Job> {
    use arrow::array::{Array, Int64Array, StringArray};
    use velo_proto::v1::ExecuteQueryRequest;
    let call = async {
        let mut client = velo_proto::EngineServiceClient::connect(format!("http://{addr}")).await?;
        let stream = client
            .execute_query(ExecuteQueryRequest {
                query_id: format!("jobs-{}", rand::random::<u64>()),
                sql: "SHOW JOBS".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut batches = EngineBatches::new(stream);
        let mut jobs = Vec::new();
        while let Some(batch) = batches.next().await? {
            let sql = batch.column_by_name("sql").expect("sql").clone();
            let sql = sql.as_any().downcast_ref::<StringArray>().expect("text");
            let rows = batch
                .column_by_name("rows_sent")
                .expect("rows_sent")
                .clone();
            let rows = rows.as_any().downcast_ref::<Int64Array>().expect("int8");
            jobs.extend(
                (0..sql.len())
                    .filter(|&i| sql.value(i) != "SHOW JOBS")
                    .map(|i| Job {
                        sql: sql.value(i).to_string(),
                        rows_sent: rows.value(i),
                    }),
            );
        }
        anyhow::Ok(jobs)
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("SHOW JOBS answers within 10 s")
        .expect("SHOW JOBS")
}

/// The value of one exposition line, e.g. `velo_gateway_rows_sent_total`
/// or `velo_gateway_queries_total{route="engine",sqlstate_class="42"}`
/// (labels in the order the exposition prints them). A series that is not
/// exported fails the test: it is never read as 0.
pub fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {series} is not exported"))
}

/// How many threads of process `pid` are named `name`.
pub fn threads_named(pid: u32, name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .count()
}

/// Waits up to `timeout` for `ok`, checking every 20 ms.
pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tokio-postgres client of `gw` (user alice), connected within 10 s.
pub async fn pg_client(gw: &Gateway) -> tokio_postgres::Client {
    pg_client_with_socket(gw).await.0
}

/// A client and the task that owns its socket (aborting the task closes
/// the socket, as a crashing client would).
pub async fn pg_client_with_socket(
    gw: &Gateway,
) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    connect_as(&gw.host, gw.port, "alice").await
}

/// A tokio-postgres client of any server (database `velostream`),
/// connected within 10 s, and the task that owns its socket.
pub async fn connect_as(
    host: &str,
    port: u16,
    user: &str,
) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let dsn = format!("host={host} port={port} user={user} dbname=velostream connect_timeout=10");
    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(&dsn, tokio_postgres::NoTls),
    )
    .await
    .expect("connects within 10 s")
    .expect("connects");
    let socket = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, socket)
}

/// A `velo-gateway` process.
pub struct Gateway {
    pub proc: Proc,
    pub host: String,
    pub port: u16,
    /// host:port of the admin HTTP server.
    pub admin: String,
}

impl Gateway {
    pub fn start(args: &[&str]) -> Self {
        Self::try_start(args).expect("gateway starts")
    }

    pub fn try_start(args: &[&str]) -> Result<Self, String> {
        let mut cmd = Command::new(binary("velo-gateway"));
        cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--demo-rate", "500"])
            .args(args)
            .env("RUST_LOG", "warn");
        let proc = Proc::spawn(cmd);
        match proc.wait_line(Duration::from_secs(30), |l| l.contains("listening on")) {
            Some(line) => {
                let addr = address_from(&line, "listening on ").expect("address");
                let (host, port) = addr.rsplit_once(':').expect("host:port");
                let admin = proc
                    .wait_line(Duration::from_secs(10), |l| l.starts_with("admin:"))
                    .and_then(|l| address_from(&l, "http://"))
                    .expect("admin address");
                Ok(Self {
                    host: host.to_string(),
                    port: port.parse().expect("port"),
                    admin: admin.trim_end_matches("/metrics").to_string(),
                    proc,
                })
            }
            None => {
                let (_, stderr) = proc.finish(Duration::from_secs(5));
                Err(stderr)
            }
        }
    }

    /// Waits until the demo `trades` stream holds at least `n` events
    /// (trust-auth gateways with the demo engine).
    pub fn wait_for_trades(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = run_script(self.psql("alice"), "SELECT COUNT(*) FROM trades;");
            let count = String::from_utf8_lossy(&out.stdout).trim().parse::<u64>();
            if count.is_ok_and(|c| c >= n) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no demo events: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One series of the gateway's /metrics (see `metric`).
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = http_get(&self.admin, "/metrics").expect("/metrics");
        metric(&body, series)
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// The gateway's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// A psql command against this gateway (no psqlrc, unaligned output).
    pub fn psql(&self, user: &str) -> Command {
        psql_command(&self.host, self.port, user, "velostream")
    }
}

pub fn psql_command(host: &str, port: u16, user: &str, db: &str) -> Command {
    let mut cmd = Command::new("stdbuf");
    cmd.args([
        "-oL",
        "-eL",
        "psql",
        "-X",
        "-h",
        host,
        "-p",
        &port.to_string(),
        "-U",
        user,
        "-d",
        db,
    ])
    .env("PGCONNECT_TIMEOUT", "10")
    .env_remove("PGPASSWORD")
    .env_remove("PGSERVICE");
    cmd
}

/// Runs one statement with `cmd` (a psql command line), stopping at the
/// first error; panics with psql's message if it fails.
pub fn run_sql(mut cmd: Command, sql: &str) {
    let out = cmd
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs psql to completion with a script on stdin.
pub fn run_script(mut cmd: Command, script: &str) -> Output {
    use std::io::Write;
    cmd.args(["-q", "-A", "-t", "-v", "ON_ERROR_STOP=0", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("psql");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script");
    child.wait_with_output().expect("psql output")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A throwaway PostgreSQL 15 server.
pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Postgres {
    pub fn start() -> Self {
        Self::start_with_password(None)
    }

    /// With a password, user `postgres` logs in with SCRAM-SHA-256 (else trust).
    pub fn start_with_password(password: Option<&str>) -> Self {
        let bin = ["/usr/lib/postgresql/15/bin", "/usr/local/bin"]
            .iter()
            .map(PathBuf::from)
            .find(|d| d.join("initdb").exists())
            .expect("PostgreSQL 15 server binaries (integration/setup.sh installs them)");
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let as_postgres = |args: &[&str], program: &str| {
            // initdb refuses to run as root: use the postgres account when we are root.
            let mut cmd = if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join(program));
                c
            } else {
                Command::new(bin.join(program))
            };
            cmd.args(args);
            cmd
        };
        let pwfile = dir.path().join("pwfile");
        let mut init_args = vec![
            "-D".to_string(),
            data.to_string_lossy().into_owned(),
            "-U".into(),
            "postgres".into(),
            "--no-sync".into(),
        ];
        match password {
            Some(pw) => {
                std::fs::write(&pwfile, pw).expect("pwfile");
                init_args.extend([
                    "-A".into(),
                    "scram-sha-256".into(),
                    format!("--pwfile={}", pwfile.display()),
                ]);
            }
            None => init_args.extend(["-A".into(), "trust".into()]),
        }
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres", &dir.path().to_string_lossy()])
                .status();
        }
        let init_args: Vec<&str> = init_args.iter().map(String::as_str).collect();
        let out = as_postgres(&init_args, "initdb").output().expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            dir.path().display()
        );
        let out = as_postgres(
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &opts,
                "-l",
                &dir.path().join("log").to_string_lossy(),
                "-w",
                "start",
            ],
            "pg_ctl",
        )
        .output()
        .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { port, dir, bin }
    }

    pub fn psql(&self) -> Command {
        psql_command("127.0.0.1", self.port, "postgres", "postgres")
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd
            .args(["-D", &data.to_string_lossy(), "-m", "immediate", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// A users-file line from `velo-gateway hash-password` (method scram or md5).
pub fn hash_password(user: &str, method: &str, password: &str) -> String {
    hash_password_with(&binary("velo-gateway"), user, method, password)
}

/// The same with a given `velo-gateway` binary.
pub fn hash_password_with(gateway: &Path, user: &str, method: &str, password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(gateway)
        .args(["hash-password", "--user", user, "--method", method])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("velo-gateway hash-password");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "hash-password failed");
    String::from_utf8(out.stdout).unwrap()
}

/// A self-signed certificate for `cn` (ECDSA P-256, signed with SHA-256)
/// made by openssl in `dir`: (certificate file, key file).
pub fn self_signed_certificate(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl req");
    (cert, key)
}

/// A certificate authority for tests, made by openssl in a directory: it
/// signs server certificates (for `localhost` and 127.0.0.1) and client
/// certificates (for a common name).
pub struct TestCa {
    dir: PathBuf,
    pub cert: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("CA directory");
        let ca = Self {
            dir: dir.to_path_buf(),
            cert: dir.join("ca.crt"),
        };
        ca.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        ca
    }

    fn openssl(&self, args: &[&str]) {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    }

    /// A certificate for `cn` signed by this CA, with `extensions` (an
    /// openssl extension file's lines): (certificate, key).
    fn sign(&self, name: &str, cn: &str, extensions: &str) -> (PathBuf, PathBuf) {
        let (csr, key, cert, ext) = (
            format!("{name}.csr"),
            format!("{name}.key"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        std::fs::write(self.dir.join(&ext), extensions).unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ]);
        let key_path = self.dir.join(&key);
        // libpq refuses a client key others may read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        (self.dir.join(cert), key_path)
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> (PathBuf, PathBuf) {
        self.sign(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
    }

    /// A client certificate whose common name is `cn`.
    pub fn client(&self, cn: &str) -> (PathBuf, PathBuf) {
        self.sign(
            &format!("client-{cn}"),
            cn,
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
    }
}

/// A plain HTTP/1.1 GET: (status code, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_get_with(addr, path, "")
}

/// The same with extra header lines (each ending in \r\n).
pub fn http_get_with(addr: &str, path: &str, headers: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Resident memory of a process, in KiB (VmRSS of /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The virtual environment integration/setup.sh creates for the Python
/// drivers (psycopg, psycopg2, asyncpg).
pub const DRIVERS_VENV: &str = "/opt/velo-drivers/bin";

/// The virtual environment integration/setup.sh creates for the tools that
/// read the catalog (dbt, SQLAlchemy, pandas, pgcli) and kubernetes-validate.
pub const TOOLS_VENV: &str = "/opt/velo-tools/bin";
/// The current SQLAlchemy release, beside the tools' 2.0 (setup.sh).
pub const SQLALCHEMY_2_1_VENV: &str = "/opt/velo-sqlalchemy-2.1/bin";

/// The client programs under integration/drivers/.
pub fn drivers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("drivers")
}

/// Runs `interpreter drivers/<program> HOST PORT` against `gw` and asserts
/// it succeeds and prints `expect` (its last line when every check passed).
pub fn run_client(gw: &Gateway, interpreter: &str, program: &str, expect: &str) {
    let mut cmd = Command::new(interpreter);
    cmd.arg(drivers_dir().join(program))
        .arg(&gw.host)
        .arg(gw.port.to_string());
    run_expecting(cmd, expect);
}

/// Compiles drivers/java/<class>.java and runs it against `gw` with pgjdbc
/// (Debian's jar), as `run_client`.
pub fn run_java_client(gw: &Gateway, class: &str, expect: &str) {
    let classes = tempfile::tempdir().expect("tempdir");
    let status = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(drivers_dir().join(format!("java/{class}.java")))
        .status()
        .expect("javac");
    assert!(status.success(), "javac {class}");
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!(
            "{}:/usr/share/java/postgresql.jar",
            classes.path().display()
        ))
        .arg(class)
        .arg(&gw.host)
        .arg(gw.port.to_string());
    run_expecting(cmd, expect);
}

/// Runs `cmd` to completion; it must succeed and print `expect`.
pub fn run_expecting(mut cmd: Command, expect: &str) -> Output {
    let out = cmd.output().expect("program runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(expect),
        "{expect:?} missing:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    out
}
