//! The top: builds the parts from the configuration (engine pool, catalog,
//! frontend), runs the accept loops, starts the admin server, and drains
//! on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::admin::{self, Readiness};
use crate::audit::{AuditLog, StatementDetail};
use crate::auth::rules::{Method, Rules};
use crate::auth::Users;
use crate::backend::{Backend, Catalog, EnginePool, EngineSecurity, EngineSource, PoolOptions};
use crate::config::GatewayConfig;
use crate::frontend::{serve_connection, Credentials, Frontend, Limits, ThrottleLimits};
use crate::metrics::METRICS;
use crate::session::Quotas;
use crate::wire::tls::Tls;

/// After a drain's timeout, how long sessions get to send their 57P01
/// (a flush already under way may take two seconds to finish first).
const TERMINATE_GRACE: Duration = Duration::from_secs(3);

/// A gateway serving in the background (dropping it does not stop it;
/// `drain` does).
pub struct RunningGateway {
    /// The PostgreSQL listen addresses, as bound.
    pub addrs: Vec<SocketAddr>,
    /// The admin HTTP address, as bound.
    pub admin_addr: SocketAddr,
    frontend: Arc<Frontend>,
    connections: TaskTracker,
    listeners: Vec<JoinHandle<()>>,
    _engine: Option<velo_engine::RunningNode>,
}

impl RunningGateway {
    /// Graceful shutdown: report not ready, stop accepting, and wait up to
    /// `timeout` for open connections to end; then end the rest (streams,
    /// idle sessions) with 57P01 and give them a moment to say so.
    pub async fn drain(self, timeout: Duration) {
        self.frontend.draining.store(true, Ordering::Relaxed);
        for listener in &self.listeners {
            listener.abort();
        }
        self.connections.close();
        tracing::info!(open = self.connections.len(), ?timeout, "draining");
        if tokio::time::timeout(timeout, self.connections.wait())
            .await
            .is_err()
        {
            tracing::info!(
                left = self.connections.len(),
                "drain timeout: terminating sessions"
            );
            self.frontend.shutdown.cancel();
            let _ = tokio::time::timeout(TERMINATE_GRACE, self.connections.wait()).await;
        }
        tracing::info!(left = self.connections.len(), "drained");
    }

    /// Client sessions currently open.
    pub fn connections(&self) -> usize {
        self.frontend.connections()
    }

    /// Reads the users file, the TLS certificate and key and the client CA
    /// again, and reopens the audit log file (SIGHUP): new connections use
    /// them, open sessions go on.
    pub fn reload(&self, config: &GatewayConfig) -> anyhow::Result<()> {
        let loaded = credentials(config).and_then(|c| {
            if let Some(audit) = &self.frontend.audit {
                audit.reopen()?;
            }
            Ok(c)
        });
        let outcome = if loaded.is_ok() { "success" } else { "failure" };
        METRICS.reloads.with_label_values(&[outcome]).inc();
        self.frontend.reload(loaded?);
        Ok(())
    }
}

/// The users file, TLS and the login rules, as the configuration names
/// them.
fn credentials(config: &GatewayConfig) -> anyhow::Result<Credentials> {
    let users = match &config.users_file {
        Some(path) => Users::load(path)?,
        None => Users::default(),
    }
    .with_admins(&config.admin_users);
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) if config.tls != "disabled" => {
            Some(Tls::load(cert, key, config.tls_client_ca_file.as_deref())?)
        }
        _ => None,
    };
    Ok(Credentials {
        users,
        tls,
        rules: login_rules(config)?.requiring_tls(config.tls == "required"),
    })
}

/// The configured rules, or one for everyone from `auth`.
fn login_rules(config: &GatewayConfig) -> anyhow::Result<Rules> {
    if config.rules.is_empty() {
        let method = if config.requires_password() {
            Method::Password
        } else {
            Method::Trust
        };
        return Ok(Rules::everyone(method));
    }
    Rules::new(&config.rules)
}

/// Where the engine nodes are; `None`: run the embedded demo engine.
fn engine_source(config: &GatewayConfig) -> Option<EngineSource> {
    if let Some(name) = &config.engine_dns {
        return Some(EngineSource::Dns {
            name: name.clone(),
            refresh: Duration::from_secs(config.engine_dns_refresh_secs),
        });
    }
    (!config.engines.is_empty()).then(|| EngineSource::Static(config.engines.clone()))
}

/// Starts the gateway: every listener bound and serving when it returns.
pub async fn start(config: GatewayConfig) -> anyhow::Result<RunningGateway> {
    config.validate()?;
    let credentials = credentials(&config)?;
    let loopback_only = config.listen.iter().all(|a| {
        a.parse::<SocketAddr>()
            .map(|s| s.ip().is_loopback())
            .unwrap_or(a.starts_with("localhost:"))
    });
    if config.rules.is_empty() && !config.requires_password() && !loopback_only {
        anyhow::bail!(
            "refusing to listen on a non-loopback address ({}) without password authentication: pass --users FILE (see `velo-gateway hash-password`)",
            config.listen.join(", ")
        );
    }
    let metrics_token = config.metrics_token()?;
    let (source, engine) = match engine_source(&config) {
        Some(source) => (source, None),
        None => {
            let node = velo_engine::start(velo_engine::NodeOptions {
                listen: "127.0.0.1:0".into(),
                demo: true,
                demo_rate: config.demo_rate,
                // The gateway's limit governs; the node's own is never the
                // tighter one (a cancelled query may still be ending there
                // when the gateway's slot is already free).
                max_concurrent_queries: config
                    .max_queries_per_node
                    .saturating_mul(2)
                    .max(velo_engine::DEFAULT_MAX_CONCURRENT_QUERIES),
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
            queue_timeout: Duration::from_millis(config.queue_timeout_ms),
            heartbeat_timeout: config
                .engine_heartbeat_timeout()
                .expect("validated engine_heartbeat_timeout"),
            health_interval: config
                .engine_health_interval()
                .expect("validated engine_health_interval"),
            security: EngineSecurity::new(
                config.engine_tls_ca_file.as_deref(),
                config.engine_tls_server_name.clone(),
                config.engine_token()?.as_deref(),
            )?,
        },
    )
    .await?;
    let mut roles = credentials.users.names();
    if roles.is_empty() {
        // Trust mode: whoever connects; list the usual superuser name.
        roles.push("velo".into());
    }
    let catalog = Catalog::new(pool.clone(), roles).await?;
    let limits = Limits {
        max_connections: config.max_connections,
        max_connections_per_user: config.max_connections_per_user,
        max_message_size: config.max_message_size,
        authentication_timeout: config
            .authentication_timeout()
            .expect("validated authentication_timeout"),
        session_defaults: config
            .session_defaults()
            .iter()
            .map(|(name, value)| (*name, value.to_string()))
            .collect(),
        throttle: ThrottleLimits {
            connection_rate_per_address: config.connection_rate_per_address,
            auth_failures_per_address: config.auth_failures_per_address,
            auth_failures_per_user: config.auth_failures_per_user,
            lockout: config.auth_lockout().expect("validated auth_lockout"),
        },
    };
    let quotas = Quotas::new(config.max_queries_per_session, config.max_queries_per_user);
    let audit = match &config.audit_log {
        Some(destination) => {
            let statements = StatementDetail::parse(&config.audit_statements)
                .expect("validated audit_statements");
            Some(Arc::new(AuditLog::open(destination, statements)?))
        }
        None => None,
    };
    let frontend = Arc::new(Frontend::new(
        Backend::new(pool.clone(), catalog),
        credentials,
        limits,
        Arc::new(quotas),
        audit,
    ));
    let connections = TaskTracker::new();
    let mut addrs = Vec::new();
    let mut listeners = Vec::new();
    for listen in &config.listen {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
        addrs.push(listener.local_addr()?);
        listeners.push(tokio::spawn(accept_loop(
            listener,
            frontend.clone(),
            connections.clone(),
        )));
    }
    let readiness = Readiness {
        draining: frontend.draining.clone(),
        healthy_nodes: Arc::new(move || pool.healthy_nodes()),
    };
    let (admin_addr, _) = admin::start(&config.admin_listen, readiness, metrics_token).await?;
    Ok(RunningGateway {
        addrs,
        admin_addr,
        frontend,
        connections,
        listeners,
        _engine: engine,
    })
}

/// Accepts clients forever, each on its own task. Accept errors (out of
/// descriptors, say) back off instead of spinning.
async fn accept_loop(listener: TcpListener, frontend: Arc<Frontend>, connections: TaskTracker) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                METRICS.connections_accepted.inc();
                connections.spawn(serve_connection(socket, peer, frontend.clone()));
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
