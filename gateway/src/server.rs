//! The listener: accepts clients, hands each to its own task, and holds
//! what connections share (engine pool, cancel keys, users, limits).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admin::METRICS;
use crate::auth::{AuthMethod, Users};
use crate::cancel::CancelRegistry;
use crate::config::GatewayConfig;
use crate::engine_client::{EnginePool, EngineSource, PoolOptions};

pub struct Shared {
    pub pool: Arc<EnginePool>,
    pub catalog: Arc<crate::catalog::Catalog>,
    pub cancels: Arc<CancelRegistry>,
    pub auth: AuthMethod,
    pub users: Users,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub max_connections: usize,
    connections: AtomicUsize,
    draining: AtomicBool,
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

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Client sessions currently open.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// A gateway serving in the background.
pub struct RunningGateway {
    pub addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    _engine: Option<velo_engine::RunningNode>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningGateway {
    /// Graceful shutdown: report not ready, stop accepting, and wait up to
    /// `timeout` for open sessions to end.
    pub async fn drain(self, timeout: Duration) {
        self.shared.draining.store(true, Ordering::Relaxed);
        for listener in &self.listeners {
            listener.abort();
        }
        let open = self.shared.connections();
        tracing::info!(open, ?timeout, "draining");
        let deadline = tokio::time::Instant::now() + timeout;
        while self.shared.connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(left = self.shared.connections(), "drained");
    }
}

pub async fn start(config: GatewayConfig) -> anyhow::Result<RunningGateway> {
    config.validate()?;
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
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(crate::protocol::tls::acceptor(cert, key)?),
        _ => None,
    };
    let (source, engine) = match config.engine_source() {
        Some(source) => (source, None),
        None => {
            let node = velo_engine::start(velo_engine::NodeOptions {
                listen: "127.0.0.1:0".into(),
                demo: true,
                demo_rate: config.demo_rate,
                ..Default::default()
            })
            .await?;
            (
                EngineSource::Static(vec![node.addr.to_string()]),
                Some(node),
            )
        }
    };
    tracing::info!(?source, "engine nodes");
    let pool = EnginePool::new(
        source,
        PoolOptions {
            max_queries_per_node: config.max_queries_per_node,
            queue_limit: config.queue_limit,
            queue_timeout: std::time::Duration::from_millis(config.queue_timeout_ms),
            ..Default::default()
        },
    )
    .await?;
    let mut roles = users.names();
    if roles.is_empty() {
        // Trust mode: whoever connects; list the usual superuser name.
        roles.push("velo".into());
    }
    let catalog = crate::catalog::Catalog::new(pool.clone(), roles).await?;
    let shared = Arc::new(Shared {
        catalog,
        pool,
        cancels: Arc::default(),
        auth,
        users,
        tls,
        max_connections: config.max_connections,
        connections: AtomicUsize::new(0),
        draining: AtomicBool::new(false),
    });
    let mut addrs = Vec::new();
    let mut listeners = Vec::new();
    for listen in &config.listen {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
        addrs.push(listener.local_addr()?);
        let shared = shared.clone();
        listeners.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((socket, peer)) => {
                        METRICS.connections_accepted.inc();
                        tokio::spawn(crate::protocol::startup::serve_connection(
                            socket,
                            peer,
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
    let (admin_addr, _) = crate::admin::start(&config.admin_listen, shared.clone()).await?;
    Ok(RunningGateway {
        addrs,
        admin_addr,
        shared,
        _engine: engine,
        listeners,
    })
}
