use clap::Parser;
use velo_engine::NodeOptions;

/// The reference Velostream engine node (velostream.engine.v1 over gRPC).
///
/// Every flag has a VELO_ENGINE_<FLAG> environment variable; flags win.
#[derive(Parser, Debug, serde::Serialize)]
#[command(version)]
struct Args {
    /// Print the effective settings as TOML and exit.
    #[arg(long)]
    #[serde(skip)]
    print_config: bool,
    /// Address to serve gRPC on.
    #[arg(long, env = "VELO_ENGINE_LISTEN", default_value = "127.0.0.1:50051")]
    listen: String,
    /// Kafka bootstrap servers for `kafka://topic` sources and the catalog
    /// command topic.
    #[arg(long, env = "VELO_ENGINE_KAFKA_BOOTSTRAP")]
    kafka_bootstrap: Option<String>,
    /// Compacted Kafka topic holding the cluster's views (created if
    /// missing); every node with the same Kafka and topic shares them.
    /// Empty: views are this node's own. [default: _velo_catalog]
    #[arg(long, env = "VELO_ENGINE_CATALOG_TOPIC")]
    catalog_topic: Option<String>,
    /// TOML file declaring named streams and tables.
    #[arg(long, env = "VELO_ENGINE_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Queries beyond this are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "VELO_ENGINE_MAX_CONCURRENT_QUERIES", default_value_t = velo_engine::DEFAULT_MAX_CONCURRENT_QUERIES)]
    max_concurrent_queries: usize,
    /// Queries with a Kafka consumer of their own (snapshots, replays from
    /// the earliest offset) at once; more wait. Live tails share one
    /// consumer per topic and do not count.
    #[arg(long, env = "VELO_ENGINE_MAX_PRIVATE_SCANS", default_value_t = velo_engine::DEFAULT_PRIVATE_SCANS)]
    max_private_scans: usize,
    /// MiB of memory per topic for a decoded copy of it that snapshots read
    /// instead of the broker; 0: snapshots always read the broker.
    #[arg(long, env = "VELO_ENGINE_SNAPSHOT_MEMORY_MIB", default_value_t = velo_engine::DEFAULT_SNAPSHOT_MEMORY_MIB)]
    snapshot_memory_mib: usize,
    /// MiB of memory for files (file:// URIs, configured tables) kept
    /// parsed between queries; 0: every query parses the files it reads.
    #[arg(long, env = "VELO_ENGINE_FILE_CACHE_MIB", default_value_t = velo_engine::DEFAULT_FILE_CACHE_MIB)]
    file_cache_mib: usize,
    /// Serve the demo's `trades` stream: start an in-process Kafka with a
    /// synthetic `trades` topic, or, with --kafka-bootstrap (another demo
    /// node's), join that Kafka instead.
    #[arg(long, env = "VELO_ENGINE_DEMO")]
    demo: bool,
    /// Demo events per second.
    #[arg(long, env = "VELO_ENGINE_DEMO_RATE", default_value_t = 1000)]
    demo_rate: u32,
    /// PEM certificate chain: serve gRPC over TLS (with --tls-key-file).
    #[arg(long, env = "VELO_ENGINE_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<std::path::PathBuf>,
    #[arg(long, env = "VELO_ENGINE_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<std::path::PathBuf>,
    /// A file holding the token every call must carry as
    /// `authorization: Bearer <token>` (gateways: engine_token_file).
    #[arg(long, env = "VELO_ENGINE_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Log lines as JSON objects instead of text.
    #[arg(long, env = "VELO_ENGINE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_config {
        print!("{}", toml::to_string(&args)?);
        return Ok(());
    }
    let logs = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,rdkafka=warn".into()),
    );
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let token = args
        .token_file
        .as_deref()
        .map(velo_proto::read_token_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let node = velo_engine::start(NodeOptions {
        listen: args.listen,
        kafka_bootstrap: args.kafka_bootstrap,
        config_file: args.config,
        max_concurrent_queries: args.max_concurrent_queries,
        max_private_scans: args.max_private_scans,
        snapshot_memory_mib: args.snapshot_memory_mib,
        file_cache_mib: args.file_cache_mib,
        catalog_topic: args.catalog_topic,
        demo: args.demo,
        demo_rate: args.demo_rate,
        tls: args.tls_cert_file.zip(args.tls_key_file),
        token,
    })
    .await?;
    println!("velo-engine serving velostream.engine.v1 on {}", node.addr);
    if let Some(b) = &node.kafka_bootstrap {
        println!("Kafka bootstrap servers: {b}");
    }
    match &node.catalog_topic {
        Some(topic) => println!("Views: shared through the catalog topic {topic}"),
        None => println!("Views: this node's own (no catalog topic)"),
    }
    tokio::signal::ctrl_c().await?;
    node.shutdown().await;
    Ok(())
}
