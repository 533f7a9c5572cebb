//! Starting a node: catalog from config (+ demo), the cluster's command topic
//! replayed, gRPC service with health, graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, ServerTlsConfig};
use velo_proto::{EngineServiceServer, RequireToken, MAX_MESSAGE_BYTES};

use crate::catalog::{Catalog, DEFAULT_PRIVATE_SCANS};
use crate::catalog_log::{self, CatalogLog};
use crate::config::ConfigFile;
use crate::demo::{self, Demo};
use crate::service::EngineNode;

/// Queries a node runs at once. A query tailing a topic live costs the node
/// about 100 KiB (measured with 500), so the default allows about 1 GiB.
pub const DEFAULT_MAX_CONCURRENT_QUERIES: usize = 10_000;

/// Each query's request arrives as one small HTTP/2 DATA frame, and the
/// HTTP/2 server closes a connection whose small frames not yet read by the
/// node pass a budget of half the connection window (a defence against
/// floods of tiny frames). At hyper's default window of 1 MiB, about 3,000
/// queries opened at once by one gateway (restarted under its clients)
/// closed the connection and failed every query on it. At 64 MiB the
/// budget holds over 100,000 requests, ten times the default admission
/// limit; the window also bounds request bytes a client may send unread.
const CONNECTION_WINDOW: u32 = 64 << 20;

/// MiB of parsed files kept on a node.
pub const DEFAULT_FILE_CACHE_MIB: usize = crate::file_cache::DEFAULT_FILE_CACHE_BYTES >> 20;

/// MiB of decoded rows kept per topic for snapshots.
pub const DEFAULT_SNAPSHOT_MEMORY_MIB: usize = crate::kafka::DEFAULT_RETAINED_BYTES >> 20;

#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Address to listen on; port 0 picks a free one.
    pub listen: String,
    pub kafka_bootstrap: Option<String>,
    pub config_file: Option<PathBuf>,
    pub max_concurrent_queries: usize,
    /// Queries reading with a Kafka consumer of their own (snapshots,
    /// replays from the earliest offset) at once; more wait. Queries
    /// tailing from the live position share one consumer per topic and do
    /// not count.
    pub max_private_scans: usize,
    /// Memory, in MiB, for each topic's decoded copy that snapshots read
    /// instead of the broker; 0: snapshots always read the broker.
    pub snapshot_memory_mib: usize,
    /// Memory, in MiB, for files kept parsed between queries; 0: every
    /// query parses the files it reads.
    pub file_cache_mib: usize,
    /// The cluster's catalog command topic (`_velo_catalog` unless given);
    /// empty: a node-local catalog. Unused without Kafka.
    pub catalog_topic: Option<String>,
    /// Serve the demo's `trades` stream. Without Kafka bootstrap servers
    /// (here or in the config file) the node starts the in-process Kafka with
    /// the `trades` generator; with them it joins that Kafka (another demo
    /// node's) and only declares the stream.
    pub demo: bool,
    /// Demo events per second.
    pub demo_rate: u32,
    /// PEM certificate chain and key: the node serves gRPC over TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Calls must carry `authorization: Bearer <token>` (the health
    /// service excepted, for probes).
    pub token: Option<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            kafka_bootstrap: None,
            config_file: None,
            max_concurrent_queries: DEFAULT_MAX_CONCURRENT_QUERIES,
            max_private_scans: DEFAULT_PRIVATE_SCANS,
            snapshot_memory_mib: DEFAULT_SNAPSHOT_MEMORY_MIB,
            file_cache_mib: DEFAULT_FILE_CACHE_MIB,
            catalog_topic: None,
            demo: false,
            demo_rate: 1000,
            tls: None,
            token: None,
        }
    }
}

/// A node serving in the background; stops when dropped or `shutdown`.
pub struct RunningNode {
    pub addr: SocketAddr,
    pub kafka_bootstrap: Option<String>,
    /// The catalog command topic the node follows; `None`: node-local views.
    pub catalog_topic: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    demo: Option<Demo>,
}

impl RunningNode {
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(demo) = self.demo.take() {
            let _ = tokio::task::spawn_blocking(move || drop(demo)).await;
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// How long a starting node may take to replay the catalog command topic.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn start(options: NodeOptions) -> anyhow::Result<RunningNode> {
    let file = match &options.config_file {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let listen = if options.listen.is_empty() {
        file.listen
            .clone()
            .unwrap_or_else(|| NodeOptions::default().listen)
    } else {
        options.listen.clone()
    };
    let max_concurrent = file
        .max_concurrent_queries
        .unwrap_or(options.max_concurrent_queries)
        .max(1);
    let mut streams = file.streams.clone();
    let explicit_bootstrap = options
        .kafka_bootstrap
        .clone()
        .or(file.kafka_bootstrap.clone());
    let catalog_topic = options
        .catalog_topic
        .clone()
        .or(file.catalog_topic.clone())
        .unwrap_or_else(|| catalog_log::DEFAULT_TOPIC.into());
    let demo = if options.demo && explicit_bootstrap.is_none() {
        let rate = options.demo_rate;
        let topics = [catalog_topic.clone()]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect();
        Some(tokio::task::spawn_blocking(move || Demo::start(rate, topics)).await??)
    } else {
        None
    };
    if options.demo && !streams.iter().any(|s| s.name == demo::TOPIC) {
        streams.insert(0, demo::trades_stream());
    }
    let bootstrap =
        explicit_bootstrap.or_else(|| demo.as_ref().map(|d| d.bootstrap_servers().to_string()));
    for s in &streams {
        s.schema()
            .map_err(|e| anyhow::anyhow!("stream {}: {e}", s.name))?;
    }
    let max_private_scans = file.max_private_scans.unwrap_or(options.max_private_scans);
    let snapshot_memory_mib = file
        .snapshot_memory_mib
        .unwrap_or(options.snapshot_memory_mib);
    let file_cache_mib = file.file_cache_mib.unwrap_or(options.file_cache_mib);
    let catalog = Arc::new(
        Catalog::new(bootstrap.clone(), streams, file.tables.clone())
            .with_private_scans(max_private_scans)
            .with_retained_bytes(snapshot_memory_mib << 20)
            .with_file_cache_bytes(file_cache_mib << 20),
    );
    let catalog_topic = Some(catalog_topic).filter(|t| !t.is_empty() && bootstrap.is_some());
    let ddl = match (&bootstrap, &catalog_topic) {
        (Some(bootstrap), Some(topic)) => {
            CatalogLog::kafka(catalog, bootstrap, topic, REPLAY_TIMEOUT).await?
        }
        _ => CatalogLog::local(catalog),
    };
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let node = EngineNode::new(ddl, max_concurrent, format!("velo-engine@{addr}"));
    let service = InterceptedService::new(
        EngineServiceServer::new(node)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        RequireToken::new(options.token.as_deref()),
    );
    let mut server =
        tonic::transport::Server::builder().initial_connection_window_size(CONNECTION_WINDOW);
    if let Some((cert, key)) = &options.tls {
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()));
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        server = server
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| anyhow::anyhow!("TLS certificate/key: {e}"))?;
    }
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<EngineServiceServer<EngineNode>>()
        .await;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // `tcp_nodelay` applies only to sockets tonic accepts itself, not
        // to an incoming stream it is given: set it on each accepted socket,
        // or small responses wait for Nagle against the caller's delayed ACK.
        let incoming = TcpListenerStream::new(listener).map(|socket| {
            if let Ok(socket) = &socket {
                let _ = socket.set_nodelay(true);
            }
            socket
        });
        let result = server
            .add_service(health_service)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!("engine server stopped: {e}");
        }
    });
    Ok(RunningNode {
        addr,
        kafka_bootstrap: bootstrap,
        catalog_topic,
        stop: Some(stop),
        task: Some(task),
        demo,
    })
}
