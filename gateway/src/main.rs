use std::io::Read;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use velo_gateway::GatewayConfig;

/// PostgreSQL wire-protocol gateway for Velostream streaming SQL.
///
/// Settings come from the TOML file given by --config, then
/// VELO_GATEWAY_<KEY> environment variables, then flags (last wins).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML config file (keys as in `--print-config`).
    #[arg(long, env = "VELO_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Address(es) to listen on, comma separated.
    #[arg(long, env = "VELO_GATEWAY_LISTEN", value_delimiter = ',')]
    listen: Vec<String>,
    /// Admin HTTP address (/metrics, /healthz, /readyz).
    #[arg(long, env = "VELO_GATEWAY_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// Engine nodes host:port, comma separated; none runs the embedded demo engine.
    #[arg(
        long = "engine",
        alias = "engines",
        env = "VELO_GATEWAY_ENGINES",
        value_delimiter = ','
    )]
    engines: Vec<String>,
    /// host:port whose DNS records are the engine nodes (re-resolved periodically).
    #[arg(long, env = "VELO_GATEWAY_ENGINE_DNS")]
    engine_dns: Option<String>,
    #[arg(long, env = "VELO_GATEWAY_ENGINE_DNS_REFRESH_SECS")]
    engine_dns_refresh_secs: Option<u64>,
    /// Users file (user:SCRAM verifier or user:md5hash per line).
    #[arg(long = "users-file", alias = "users", env = "VELO_GATEWAY_USERS_FILE")]
    users_file: Option<PathBuf>,
    /// trust or password.
    #[arg(long, env = "VELO_GATEWAY_AUTH")]
    auth: Option<String>,
    #[arg(long, env = "VELO_GATEWAY_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    #[arg(long, env = "VELO_GATEWAY_MAX_CONNECTIONS_PER_USER")]
    max_connections_per_user: Option<usize>,
    #[arg(long, env = "VELO_GATEWAY_MAX_QUERIES_PER_USER")]
    max_queries_per_user: Option<usize>,
    #[arg(long, env = "VELO_GATEWAY_MAX_QUERIES_PER_SESSION")]
    max_queries_per_session: Option<usize>,
    /// Largest protocol message after login, in bytes.
    #[arg(long, env = "VELO_GATEWAY_MAX_MESSAGE_SIZE")]
    max_message_size: Option<usize>,
    /// Silence after which an engine node is taken as failed (e.g. 5s).
    #[arg(long, env = "VELO_GATEWAY_ENGINE_HEARTBEAT_TIMEOUT")]
    engine_heartbeat_timeout: Option<String>,
    /// How often engine nodes' health is checked (e.g. 2s).
    #[arg(long, env = "VELO_GATEWAY_ENGINE_HEALTH_INTERVAL")]
    engine_health_interval: Option<String>,
    /// Time to finish login (e.g. 60s).
    #[arg(long, env = "VELO_GATEWAY_AUTHENTICATION_TIMEOUT")]
    authentication_timeout: Option<String>,
    /// Default statement_timeout of every session (e.g. 30s; 0 is off).
    #[arg(long, env = "VELO_GATEWAY_STATEMENT_TIMEOUT")]
    statement_timeout: Option<String>,
    #[arg(long, env = "VELO_GATEWAY_IDLE_IN_TRANSACTION_SESSION_TIMEOUT")]
    idle_in_transaction_session_timeout: Option<String>,
    #[arg(long, env = "VELO_GATEWAY_IDLE_SESSION_TIMEOUT")]
    idle_session_timeout: Option<String>,
    #[arg(long, env = "VELO_GATEWAY_MAX_QUERIES_PER_NODE")]
    max_queries_per_node: Option<usize>,
    #[arg(long, env = "VELO_GATEWAY_QUEUE_LIMIT")]
    queue_limit: Option<usize>,
    #[arg(long, env = "VELO_GATEWAY_QUEUE_TIMEOUT_MS")]
    queue_timeout_ms: Option<u64>,
    #[arg(long, env = "VELO_GATEWAY_DRAIN_TIMEOUT_SECS")]
    drain_timeout_secs: Option<u64>,
    /// text or json.
    #[arg(long, env = "VELO_GATEWAY_LOG_FORMAT")]
    log_format: Option<String>,
    #[arg(long, env = "VELO_GATEWAY_CONNECTION_RATE_PER_ADDRESS")]
    connection_rate_per_address: Option<u32>,
    #[arg(long, env = "VELO_GATEWAY_AUTH_FAILURES_PER_ADDRESS")]
    auth_failures_per_address: Option<u32>,
    #[arg(long, env = "VELO_GATEWAY_AUTH_FAILURES_PER_USER")]
    auth_failures_per_user: Option<u32>,
    /// How long failed logins count, and a lockout lasts (e.g. 60s).
    #[arg(long, env = "VELO_GATEWAY_AUTH_LOCKOUT")]
    auth_lockout: Option<String>,
    #[arg(long, env = "VELO_GATEWAY_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    #[arg(long, env = "VELO_GATEWAY_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// disabled, allowed or required.
    #[arg(long, env = "VELO_GATEWAY_TLS")]
    tls: Option<String>,
    /// CA (PEM) for client certificates.
    #[arg(long, env = "VELO_GATEWAY_TLS_CLIENT_CA_FILE")]
    tls_client_ca_file: Option<PathBuf>,
    /// Users who see every user's queries (repeatable).
    #[arg(
        long = "admin-user",
        env = "VELO_GATEWAY_ADMIN_USERS",
        value_delimiter = ','
    )]
    admin_users: Vec<String>,
    /// A file with the bearer token /metrics requires.
    #[arg(long, env = "VELO_GATEWAY_METRICS_TOKEN_FILE")]
    metrics_token_file: Option<PathBuf>,
    /// CA (PEM) that engine nodes' TLS certificates are verified against;
    /// enables TLS to engine nodes.
    #[arg(long, env = "VELO_GATEWAY_ENGINE_TLS_CA_FILE")]
    engine_tls_ca_file: Option<PathBuf>,
    /// The name engine certificates must carry (default: each node's host).
    #[arg(long, env = "VELO_GATEWAY_ENGINE_TLS_SERVER_NAME")]
    engine_tls_server_name: Option<String>,
    /// A file with the token engine nodes require.
    #[arg(long, env = "VELO_GATEWAY_ENGINE_TOKEN_FILE")]
    engine_token_file: Option<PathBuf>,
    /// Audit log: a file, or "stdout".
    #[arg(long, env = "VELO_GATEWAY_AUDIT_LOG")]
    audit_log: Option<String>,
    /// none, summary or text.
    #[arg(long, env = "VELO_GATEWAY_AUDIT_STATEMENTS")]
    audit_statements: Option<String>,
    /// Events per second of the embedded demo market.
    #[arg(long, env = "VELO_GATEWAY_DEMO_RATE")]
    demo_rate: Option<u32>,
}

impl Args {
    /// File (or defaults), then environment and flags on top.
    fn config(&self) -> anyhow::Result<GatewayConfig> {
        let mut c = match &self.config {
            Some(path) => GatewayConfig::load(path)?,
            None => GatewayConfig::default(),
        };
        fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *slot = v.clone();
            }
        }
        if !self.listen.is_empty() {
            c.listen = self.listen.clone();
        }
        if !self.engines.is_empty() {
            c.engines = self.engines.clone();
        }
        if !self.admin_users.is_empty() {
            c.admin_users = self.admin_users.clone();
        }
        set(&mut c.admin_listen, &self.admin_listen);
        c.engine_dns = self.engine_dns.clone().or(c.engine_dns);
        set(
            &mut c.engine_dns_refresh_secs,
            &self.engine_dns_refresh_secs,
        );
        c.users_file = self.users_file.clone().or(c.users_file);
        c.auth = self.auth.clone().or(c.auth);
        set(&mut c.max_connections, &self.max_connections);
        set(
            &mut c.max_connections_per_user,
            &self.max_connections_per_user,
        );
        set(&mut c.max_queries_per_user, &self.max_queries_per_user);
        set(
            &mut c.max_queries_per_session,
            &self.max_queries_per_session,
        );
        set(&mut c.max_message_size, &self.max_message_size);
        set(&mut c.authentication_timeout, &self.authentication_timeout);
        set(
            &mut c.engine_heartbeat_timeout,
            &self.engine_heartbeat_timeout,
        );
        set(&mut c.engine_health_interval, &self.engine_health_interval);
        set(&mut c.statement_timeout, &self.statement_timeout);
        set(
            &mut c.idle_in_transaction_session_timeout,
            &self.idle_in_transaction_session_timeout,
        );
        set(&mut c.idle_session_timeout, &self.idle_session_timeout);
        set(&mut c.max_queries_per_node, &self.max_queries_per_node);
        set(&mut c.queue_limit, &self.queue_limit);
        set(&mut c.queue_timeout_ms, &self.queue_timeout_ms);
        set(&mut c.drain_timeout_secs, &self.drain_timeout_secs);
        set(&mut c.log_format, &self.log_format);
        set(
            &mut c.connection_rate_per_address,
            &self.connection_rate_per_address,
        );
        set(
            &mut c.auth_failures_per_address,
            &self.auth_failures_per_address,
        );
        set(&mut c.auth_failures_per_user, &self.auth_failures_per_user);
        set(&mut c.auth_lockout, &self.auth_lockout);
        c.tls_cert_file = self.tls_cert_file.clone().or(c.tls_cert_file);
        c.tls_key_file = self.tls_key_file.clone().or(c.tls_key_file);
        set(&mut c.tls, &self.tls);
        c.tls_client_ca_file = self.tls_client_ca_file.clone().or(c.tls_client_ca_file);
        c.metrics_token_file = self.metrics_token_file.clone().or(c.metrics_token_file);
        c.engine_tls_ca_file = self.engine_tls_ca_file.clone().or(c.engine_tls_ca_file);
        c.engine_tls_server_name = self
            .engine_tls_server_name
            .clone()
            .or(c.engine_tls_server_name);
        c.engine_token_file = self.engine_token_file.clone().or(c.engine_token_file);
        c.audit_log = self.audit_log.clone().or(c.audit_log);
        set(&mut c.audit_statements, &self.audit_statements);
        set(&mut c.demo_rate, &self.demo_rate);
        c.validate()?;
        Ok(c)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a users-file line for a password read from stdin.
    HashPassword {
        /// The user name.
        #[arg(long)]
        user: String,
        /// scram (default) or md5.
        #[arg(long, default_value = "scram")]
        method: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::HashPassword { user, method }) = &args.command {
        return hash_password(user, method);
    }
    let config = args.config()?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    init_logging(&config.log_format);
    let drain_timeout = std::time::Duration::from_secs(config.drain_timeout_secs);
    let embedded = config.embedded_engine();
    let reload_config = config.clone();
    let gateway = velo_gateway::start(config).await?;
    let addr = gateway.addrs[0];
    println!("velo-gateway listening on {} (database velostream)", addr);
    if embedded {
        println!("embedded engine with the demo `trades` stream");
    }
    println!(
        "connect:   psql -h {} -p {} -d velostream",
        addr.ip(),
        addr.port()
    );
    println!(
        "try:       COPY (SELECT symbol, AVG(price) AS avg_price FROM kafka://trades GROUP BY symbol EMIT CHANGES) TO STDOUT;"
    );
    println!("admin:     http://{}/metrics", gateway.admin_addr);
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => match gateway.reload(&reload_config) {
                Ok(()) => tracing::info!("reloaded the users file and TLS certificates"),
                Err(e) => tracing::error!("reload failed, keeping the previous ones: {e:#}"),
            },
        }
    }
    gateway.drain(drain_timeout).await;
    Ok(())
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rdkafka=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        builder.init();
    }
}

fn hash_password(user: &str, method: &str) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    let secret = match method {
        "scram" => velo_gateway::scram_users_file_secret(password),
        "md5" => velo_gateway::md5_users_file_secret(user, password),
        other => anyhow::bail!("unknown method {other}: scram or md5"),
    };
    println!("{user}:{secret}");
    Ok(())
}
