use std::io::Read;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use velo_gateway::auth::scram::ScramVerifier;
use velo_gateway::GatewayConfig;

/// PostgreSQL wire-protocol gateway for Velostream streaming SQL.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML config file (flags override it).
    #[arg(long, env = "VELO_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Address(es) to listen on, comma separated.
    #[arg(long, env = "VELO_GATEWAY_LISTEN", value_delimiter = ',')]
    listen: Vec<String>,
    /// Engine nodes host:port, comma separated; none runs the embedded demo engine.
    #[arg(long, env = "VELO_GATEWAY_ENGINES", value_delimiter = ',')]
    engine: Vec<String>,
    /// Users file (user:SCRAM verifier or user:md5hash per line).
    #[arg(long, env = "VELO_GATEWAY_USERS")]
    users: Option<PathBuf>,
    /// trust or password.
    #[arg(long, env = "VELO_GATEWAY_AUTH")]
    auth: Option<String>,
    #[arg(long, env = "VELO_GATEWAY_MAX_QUERIES_PER_NODE")]
    max_queries_per_node: Option<usize>,
    #[arg(long, env = "VELO_GATEWAY_QUEUE_LIMIT")]
    queue_limit: Option<usize>,
    #[arg(long, env = "VELO_GATEWAY_QUEUE_TIMEOUT_MS")]
    queue_timeout_ms: Option<u64>,
    /// Events per second of the embedded demo market.
    #[arg(long, env = "VELO_GATEWAY_DEMO_RATE")]
    demo_rate: Option<u32>,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(Command::HashPassword { user, method }) = &args.command {
        let mut password = String::new();
        std::io::stdin().read_to_string(&mut password)?;
        let password = password.trim_end_matches(['\n', '\r']);
        anyhow::ensure!(!password.is_empty(), "no password on stdin");
        let secret = match method.as_str() {
            "scram" => ScramVerifier::new(password).to_string_form(),
            "md5" => format!(
                "md5{}",
                velo_gateway::auth::md5::stored_hash(user, password)
            ),
            other => anyhow::bail!("unknown method {other}: scram or md5"),
        };
        println!("{user}:{secret}");
        return Ok(());
    }
    let mut config = match &args.config {
        Some(path) => GatewayConfig::load(path)?,
        None => GatewayConfig::default(),
    };
    if !args.listen.is_empty() {
        config.listen = args.listen.clone();
    }
    if !args.engine.is_empty() {
        config.engines = args.engine.clone();
    }
    config.users_file = args.users.clone().or(config.users_file);
    config.auth = args.auth.clone().or(config.auth);
    config.max_queries_per_node = args
        .max_queries_per_node
        .unwrap_or(config.max_queries_per_node);
    config.queue_limit = args.queue_limit.unwrap_or(config.queue_limit);
    config.queue_timeout_ms = args.queue_timeout_ms.unwrap_or(config.queue_timeout_ms);
    config.demo_rate = args.demo_rate.unwrap_or(config.demo_rate);
    let embedded = config.engines.is_empty();
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
    tokio::select! {
        _ = gateway.wait() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
