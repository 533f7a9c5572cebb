//! The engine client: one tonic channel per engine node, health-checked with
//! grpc.health.v1, least-outstanding-requests balancing over healthy nodes,
//! admission control (a per-node query limit and a bounded wait queue), and
//! retry on another node only before the first row. The node set is fixed
//! or comes from a DNS name (a Kubernetes headless Service) re-resolved
//! periodically.

mod stream;

pub use stream::{CancelHandle, QueryStream, ResultSchema, StreamEvent};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use velo_proto::v1::{
    CancelSessionRequest, DescribeQueryRequest, DescribeQueryResponse, ExecuteQueryRequest,
    ListRelationsRequest, ListRelationsResponse,
};
use velo_proto::{EngineClient, EngineServiceClient, SendToken, MAX_MESSAGE_BYTES};

use crate::error::GatewayError;
use crate::metrics::METRICS;

/// Nodes a query is offered to before it fails.
const MAX_ATTEMPTS: usize = 2;
/// The random pause before the retry, in milliseconds.
const RETRY_PAUSE_MS: (u64, u64) = (10, 60);
/// CancelSession broadcasts in flight at once.
const MAX_SESSION_CANCELS: usize = 64;
/// Unary engine calls (Describe, ListRelations) wait at most this long.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the engine nodes are.
#[derive(Debug, Clone)]
pub enum EngineSource {
    /// A fixed list of `host:port`.
    Static(Vec<String>),
    /// Every address `host:port` resolves to, re-resolved every `refresh`.
    Dns { name: String, refresh: Duration },
}

/// Bytes of one query's rows the gateway takes from its node ahead of the
/// client: what a client that stops reading costs here.
const STREAM_WINDOW: u32 = 256 * 1024;
/// HTTP/2's largest window, 2 GiB: room for 8,191 stalled streams.
const CONNECTION_WINDOW: u32 = (1 << 31) - 1;

/// Admission control and health checking.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Queries one node runs at once, as seen from this gateway.
    pub max_queries_per_node: usize,
    /// Queries that may wait for a free slot before new ones are refused.
    pub queue_limit: usize,
    /// How long a query waits for a slot.
    pub queue_timeout: Duration,
    pub health_interval: Duration,
    /// A running query's node that sends nothing for this long has failed.
    pub heartbeat_timeout: Duration,
    /// TLS to the nodes and the token they require.
    pub security: EngineSecurity,
}

/// How the gateway proves itself to engine nodes and checks them.
#[derive(Debug, Clone, Default)]
pub struct EngineSecurity {
    /// Verify each node's certificate against a CA, as a given name (or
    /// the node's own host).
    pub tls: Option<ClientTlsConfig>,
    pub token: SendToken,
}

impl EngineSecurity {
    /// From a PEM CA file, a server name and a token.
    pub fn new(
        ca_file: Option<&std::path::Path>,
        server_name: Option<String>,
        token: Option<&str>,
    ) -> anyhow::Result<Self> {
        let tls = match ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("engine_tls_ca_file {}: {e}", path.display()))?;
                let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
                Some(match server_name {
                    Some(name) => config.domain_name(name),
                    None => config,
                })
            }
            None => None,
        };
        let token = SendToken::new(token).map_err(anyhow::Error::msg)?;
        Ok(Self { tls, token })
    }
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_queries_per_node: 5_000,
            queue_limit: 256,
            queue_timeout: Duration::from_secs(10),
            health_interval: Duration::from_secs(2),
            heartbeat_timeout: Duration::from_secs(5),
            security: EngineSecurity::default(),
        }
    }
}

struct Node {
    addr: String,
    client: EngineClient,
    health: tonic_health::pb::health_client::HealthClient<Channel>,
    healthy: AtomicBool,
    outstanding: AtomicUsize,
    slots: Arc<Semaphore>,
}

impl Node {
    /// Takes the node out of rotation until its next health check passes
    /// (a stream broke, or it went silent).
    fn failed(&self, why: &str) {
        METRICS
            .engine_node_up
            .with_label_values(&[&self.addr])
            .set(0);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(node = %self.addr, "engine node failed: {why}");
        }
    }

    fn new(addr: &str, options: &PoolOptions) -> anyhow::Result<Arc<Self>> {
        let tls = &options.security.tls;
        let uri = match (addr.contains("://"), tls) {
            (true, _) => addr.to_string(),
            (false, None) => format!("http://{addr}"),
            (false, Some(_)) => format!("https://{addr}"),
        };
        let mut endpoint = Endpoint::from_shared(uri)?;
        if let Some(config) = tls {
            endpoint = endpoint.tls_config(config.clone())?;
        }
        let channel = endpoint
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            // Every query of this gateway on the node is a stream of one
            // HTTP/2 connection. Rows a client has not read yet stay in its
            // stream's window; the connection's window must never run out
            // before the streams' do, or clients that stop reading would
            // stall every other query on the node.
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .connect_lazy();
        Ok(Arc::new(Node {
            addr: addr.to_string(),
            client: EngineServiceClient::with_interceptor(
                channel.clone(),
                options.security.token.clone(),
            )
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
            health: tonic_health::pb::health_client::HealthClient::new(channel),
            healthy: AtomicBool::new(true),
            outstanding: AtomicUsize::new(0),
            slots: Arc::new(Semaphore::new(options.max_queries_per_node.max(1))),
        }))
    }
}

/// Every engine node this gateway knows, with its health and its free
/// query slots; shared by all sessions.
pub struct EnginePool {
    nodes: RwLock<Vec<Arc<Node>>>,
    source: EngineSource,
    options: PoolOptions,
    waiting: Semaphore,
    released: Arc<Notify>,
    /// Bounds the CancelSession broadcasts in flight.
    session_cancels: Arc<Semaphore>,
}

/// A node slot held for the life of a query.
pub(super) struct Slot {
    node: Arc<Node>,
    _permit: OwnedSemaphorePermit,
    released: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.node.outstanding.fetch_sub(1, Ordering::Relaxed);
        METRICS
            .engine_inflight
            .with_label_values(&[&self.node.addr])
            .dec();
        self.released.notify_waiters();
    }
}

fn unavailable(node: &str, detail: impl std::fmt::Display) -> GatewayError {
    GatewayError::EngineUnavailable(format!("engine node {node} is unavailable: {detail}"))
}

impl EnginePool {
    /// Creates channels (connected lazily) and starts health checking (and
    /// DNS refreshing).
    pub async fn new(source: EngineSource, options: PoolOptions) -> anyhow::Result<Arc<Self>> {
        let nodes = match &source {
            EngineSource::Static(addrs) => {
                anyhow::ensure!(!addrs.is_empty(), "no engine nodes configured");
                addrs
                    .iter()
                    .map(|a| Node::new(a, &options))
                    .collect::<anyhow::Result<Vec<_>>>()?
            }
            // An unresolvable name at start is not fatal: the node set fills
            // in when it resolves (until then /readyz says not ready).
            EngineSource::Dns { .. } => Vec::new(),
        };
        let pool = Arc::new(Self {
            nodes: RwLock::new(nodes),
            source,
            waiting: Semaphore::new(options.queue_limit),
            options,
            released: Arc::new(Notify::new()),
            session_cancels: Arc::new(Semaphore::new(MAX_SESSION_CANCELS)),
        });
        pool.refresh_dns().await;
        let weak = Arc::downgrade(&pool);
        tokio::spawn(async move {
            let mut last_refresh = Instant::now();
            loop {
                let Some(pool) = weak.upgrade() else { return };
                if let EngineSource::Dns { refresh, .. } = &pool.source {
                    if last_refresh.elapsed() >= *refresh {
                        pool.refresh_dns().await;
                        last_refresh = Instant::now();
                    }
                }
                pool.check_health().await;
                let interval = match &pool.source {
                    EngineSource::Dns { refresh, .. } => pool.options.health_interval.min(*refresh),
                    EngineSource::Static(_) => pool.options.health_interval,
                };
                drop(pool);
                tokio::time::sleep(interval).await;
            }
        });
        Ok(pool)
    }

    fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.read().expect("engine nodes").clone()
    }

    /// Nodes that passed their last health check.
    pub fn healthy_nodes(&self) -> usize {
        self.nodes()
            .iter()
            .filter(|n| n.healthy.load(Ordering::Relaxed))
            .count()
    }

    /// Re-resolves the DNS name and adopts its addresses: new ones get a
    /// channel, vanished ones are dropped (queries running there finish).
    async fn refresh_dns(&self) {
        let EngineSource::Dns { name, .. } = &self.source else {
            return;
        };
        let mut addrs: Vec<String> = match tokio::net::lookup_host(name.as_str()).await {
            Ok(found) => found.map(|a| a.to_string()).collect(),
            Err(e) => {
                tracing::warn!(%name, "resolving engine nodes: {e}");
                return;
            }
        };
        addrs.sort();
        addrs.dedup();
        let current = self.nodes();
        if addrs.is_empty() || current.iter().map(|n| &n.addr).eq(addrs.iter()) {
            return;
        }
        let mut next = Vec::new();
        for addr in &addrs {
            match current.iter().find(|n| &n.addr == addr) {
                Some(node) => next.push(node.clone()),
                None => match Node::new(addr, &self.options) {
                    Ok(node) => next.push(node),
                    Err(e) => tracing::warn!(%addr, "engine node: {e}"),
                },
            }
        }
        for gone in current.iter().filter(|n| !addrs.contains(&n.addr)) {
            METRICS.forget_node(&gone.addr);
        }
        tracing::info!(%name, nodes = ?addrs, "engine nodes resolved");
        *self.nodes.write().expect("engine nodes") = next;
    }

    async fn check_health(&self) {
        let nodes = self.nodes();
        let checks = nodes.iter().map(|node| async move {
            let mut health = node.health.clone();
            let ok = tokio::time::timeout(
                Duration::from_secs(1),
                health.check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                }),
            )
            .await
            .ok()
            .and_then(|r| r.ok())
            .is_some_and(|r| {
                r.into_inner().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            });
            METRICS
                .engine_node_up
                .with_label_values(&[&node.addr])
                .set(ok as i64);
            let was = node.healthy.swap(ok, Ordering::Relaxed);
            if was != ok {
                tracing::warn!(node = %node.addr, healthy = ok, "engine node health changed");
            }
        });
        futures::future::join_all(checks).await;
    }

    /// Healthy nodes first, fewest outstanding queries first.
    fn candidates(&self, exclude: &[String]) -> Vec<Arc<Node>> {
        let mut nodes: Vec<_> = self
            .nodes()
            .into_iter()
            .filter(|n| !exclude.contains(&n.addr))
            .collect();
        nodes.sort_by_key(|n| {
            (
                !n.healthy.load(Ordering::Relaxed),
                n.outstanding.load(Ordering::Relaxed),
            )
        });
        nodes
    }

    /// Waits (bounded) for a slot on the least-loaded node not in `exclude`.
    async fn acquire(&self, exclude: &[String]) -> Result<Slot, GatewayError> {
        let node_count = self.nodes.read().expect("engine nodes").len();
        let too_busy = || {
            METRICS
                .admission_rejections
                .with_label_values(&["queue_full"])
                .inc();
            GatewayError::TooBusy(format!(
                "too many queries: all {node_count} engine node(s) are running their limit of {} queries and the wait queue is full",
                self.options.max_queries_per_node
            ))
        };
        let _waiting = self.waiting.try_acquire().map_err(|_| too_busy())?;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.options.queue_timeout;
        loop {
            let notified = self.released.notified();
            let candidates = self.candidates(exclude);
            if candidates.is_empty() {
                return Err(GatewayError::EngineUnavailable(
                    "no engine node is available".into(),
                ));
            }
            for node in candidates {
                if let Ok(permit) = node.slots.clone().try_acquire_owned() {
                    node.outstanding.fetch_add(1, Ordering::Relaxed);
                    METRICS
                        .engine_inflight
                        .with_label_values(&[&node.addr])
                        .inc();
                    METRICS
                        .admission_wait
                        .observe(started.elapsed().as_secs_f64());
                    return Ok(Slot {
                        node,
                        _permit: permit,
                        released: self.released.clone(),
                    });
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                METRICS
                    .admission_rejections
                    .with_label_values(&["timeout"])
                    .inc();
                return Err(GatewayError::TooBusy(format!(
                    "too many queries: waited {:?} for one of {node_count} engine node(s) to have fewer than {} running queries",
                    self.options.queue_timeout,
                    self.options.max_queries_per_node
                )));
            }
        }
    }

    /// Starts a query. A node that fails before its first event (a
    /// transport error, or RESOURCE_EXHAUSTED) is retried once on another
    /// node after a short random pause; never a query the engine answered
    /// with an error, and never more than once, so a statement that brings
    /// a node down cannot take every node with it.
    pub async fn execute(&self, request: ExecuteQueryRequest) -> Result<QueryStream, GatewayError> {
        let mut tried = Vec::new();
        let mut last_error = None;
        let started = Instant::now();
        let node_count = self.nodes.read().expect("engine nodes").len();
        while tried.len() < node_count.clamp(1, MAX_ATTEMPTS) {
            if !tried.is_empty() {
                let jitter = rand::random_range(RETRY_PAUSE_MS.0..RETRY_PAUSE_MS.1);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            let slot = match self.acquire(&tried).await {
                Ok(slot) => slot,
                Err(e) => return Err(last_error.unwrap_or(e)),
            };
            let node = slot.node.clone();
            tried.push(node.addr.clone());
            let mut client = node.client.clone();
            // Until its first event a node gets the unary deadline: planning
            // sends no heartbeats.
            let first = tokio::time::timeout(RPC_TIMEOUT, async {
                let mut stream = client.execute_query(request.clone()).await?.into_inner();
                let first = stream.message().await?;
                Ok::<_, tonic::Status>((stream, first))
            });
            match first.await {
                Ok(Ok((stream, Some(msg)))) => {
                    return Ok(QueryStream::new(
                        request.query_id.clone(),
                        stream,
                        msg.event,
                        slot,
                        started,
                        self.options.heartbeat_timeout,
                    ))
                }
                Ok(Ok((_, None))) => {
                    last_error = Some(unavailable(&node.addr, "stream ended before any event"))
                }
                Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => {
                    last_error = Some(GatewayError::TooBusy(status.message().to_string()));
                }
                Ok(Err(status)) => {
                    node.failed(status.message());
                    last_error = Some(unavailable(&node.addr, status.message()));
                }
                Err(_) => {
                    node.failed("no answer to ExecuteQuery");
                    last_error = Some(unavailable(
                        &node.addr,
                        format!("no answer within {RPC_TIMEOUT:?}"),
                    ));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            GatewayError::EngineUnavailable("no engine node is available".into())
        }))
    }

    /// Sends CancelSession to every node, in the background. Unmatched
    /// cancel keys cost engine calls, so only so many are in flight; past
    /// that a request is dropped (as a lost CancelRequest would be).
    pub fn cancel_session(&self, session_id: String) {
        let Ok(permit) = self.session_cancels.clone().try_acquire_owned() else {
            tracing::warn!("too many session cancels in flight; dropping one");
            return;
        };
        let nodes = self.nodes();
        tokio::spawn(async move {
            let calls = nodes.iter().map(|node| {
                let mut client = node.client.clone();
                let request = CancelSessionRequest {
                    session_id: session_id.clone(),
                };
                async move {
                    match tokio::time::timeout(RPC_TIMEOUT, client.cancel_session(request)).await {
                        Ok(Ok(r)) => r.into_inner().cancelled,
                        _ => 0,
                    }
                }
            });
            let cancelled: u32 = futures::future::join_all(calls).await.into_iter().sum();
            tracing::info!(cancelled, "session cancel sent to engine nodes");
            drop(permit);
        });
    }

    fn any_client(&self) -> Result<EngineClient, GatewayError> {
        self.candidates(&[])
            .first()
            .map(|n| n.client.clone())
            .ok_or_else(|| GatewayError::EngineUnavailable("no engine node is available".into()))
    }

    /// Parameter types and result schema of a statement (with a deadline).
    pub async fn describe(
        &self,
        request: DescribeQueryRequest,
    ) -> Result<DescribeQueryResponse, GatewayError> {
        let mut client = self.any_client()?;
        let call = client.describe_query(request);
        match tokio::time::timeout(RPC_TIMEOUT, call).await {
            Ok(result) => result
                .map(|r| r.into_inner())
                .map_err(|s| unavailable("", s.message())),
            Err(_) => Err(unavailable("", "DescribeQuery timed out")),
        }
    }

    /// The engine's relations, unless its catalog version is `known_version`
    /// (with a deadline).
    pub async fn list_relations(
        &self,
        known_version: u64,
    ) -> Result<ListRelationsResponse, GatewayError> {
        let mut client = self.any_client()?;
        let call = client.list_relations(ListRelationsRequest {
            known_catalog_version: known_version,
        });
        match tokio::time::timeout(RPC_TIMEOUT, call).await {
            Ok(result) => result
                .map(|r| r.into_inner())
                .map_err(|s| unavailable("", s.message())),
            Err(_) => Err(unavailable("", "ListRelations timed out")),
        }
    }
}
