//! The listener: accepts clients, hands each to its own task, and holds
//! what connections share (engine pool, cancel keys, users, limits).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::auth::{AuthMethod, Users};
use crate::cancel::CancelRegistry;
use crate::config::GatewayConfig;
use crate::engine_client::{EnginePool, PoolOptions};

pub struct Shared {
    pub pool: Arc<EnginePool>,
    pub cancels: Arc<CancelRegistry>,
    pub auth: AuthMethod,
    pub users: Users,
    pub max_connections: usize,
    connections: AtomicUsize,
    pub auth_failures: AtomicU64,
}

/// Counts a connection for the connection limit while alive.
pub struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    pub fn admit(self: &Arc<Self>) -> Option<ConnectionGuard> {
        let n = self.connections.fetch_add(1, Ordering::Relaxed);
        let guard = ConnectionGuard(self.clone());
        (n < self.max_connections).then_some(guard)
    }

    pub fn metrics_auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// A gateway serving in the background.
pub struct RunningGateway {
    pub addrs: Vec<SocketAddr>,
    pub shared: Arc<Shared>,
    _engine: Option<velo_engine::RunningNode>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningGateway {
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

pub async fn start(config: GatewayConfig) -> anyhow::Result<RunningGateway> {
    let users = match &config.users_file {
        Some(path) => Users::load(path)?,
        None => Users::default(),
    };
    let auth = config.auth_method();
    let loopback_only = config.listen.iter().all(|a| {
        a.parse::<SocketAddr>()
            .map(|s| s.ip().is_loopback())
            .unwrap_or(a.starts_with("localhost:"))
    });
    if auth == AuthMethod::Trust && !loopback_only {
        anyhow::bail!(
            "refusing to listen on a non-loopback address ({}) without password authentication: pass --users FILE (see `velo-gateway hash-password`)",
            config.listen.join(", ")
        );
    }
    let (engines, engine) = if config.engines.is_empty() {
        let node = velo_engine::start(velo_engine::NodeOptions {
            listen: "127.0.0.1:0".into(),
            demo: true,
            demo_rate: config.demo_rate,
            ..Default::default()
        })
        .await?;
        (vec![node.addr.to_string()], Some(node))
    } else {
        (config.engines.clone(), None)
    };
    let pool = EnginePool::new(
        &engines,
        PoolOptions {
            max_queries_per_node: config.max_queries_per_node,
            queue_limit: config.queue_limit,
            queue_timeout: std::time::Duration::from_millis(config.queue_timeout_ms),
            ..Default::default()
        },
    )?;
    let shared = Arc::new(Shared {
        pool,
        cancels: Arc::default(),
        auth,
        users,
        max_connections: config.max_connections,
        connections: AtomicUsize::new(0),
        auth_failures: AtomicU64::new(0),
    });
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for listen in &config.listen {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
        addrs.push(listener.local_addr()?);
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((socket, peer)) => {
                        tracing::debug!(%peer, "connection");
                        tokio::spawn(crate::protocol::startup::serve_connection(
                            socket,
                            shared.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    tracing::info!(?engines, "engine nodes");
    Ok(RunningGateway {
        addrs,
        shared,
        _engine: engine,
        tasks,
    })
}
