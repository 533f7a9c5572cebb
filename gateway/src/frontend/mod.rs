//! One client connection, start to finish: admission, the startup
//! negotiation (TLS, cancel requests), login, the session's first
//! ParameterStatus/BackendKeyData/ReadyForQuery, then the message loop.

mod login;
mod machine;
mod startup;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use pgwire::messages::startup::{
    Authentication, BackendKeyData, ParameterStatus, SecretKey, Startup,
};
use pgwire::messages::PgWireBackendMessage as B;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{field::Empty, Instrument};

use crate::auth::{AuthMethod, Users};
use crate::backend::Backend;
use crate::cancel::CancelRegistry;
use crate::error::GatewayError;
use crate::metrics::METRICS;
use crate::pg::server_info::REPORTED;
use crate::session::{Login, Session, Settings};
use crate::wire::Connection;

/// What every connection needs from the gateway: how to log clients in,
/// where their queries go, and the shared limits.
pub struct Frontend {
    pub backend: Backend,
    pub cancels: Arc<CancelRegistry>,
    pub auth: AuthMethod,
    pub users: Users,
    pub tls: Option<TlsAcceptor>,
    pub max_connections: usize,
    /// Set when the gateway drains: new sessions are refused.
    pub draining: Arc<AtomicBool>,
    connections: AtomicUsize,
}

/// Counts a connection against `max_connections` while it lives.
struct ConnectionGuard(Arc<Frontend>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Frontend {
    pub fn new(
        backend: Backend,
        auth: AuthMethod,
        users: Users,
        tls: Option<TlsAcceptor>,
        max_connections: usize,
    ) -> Self {
        Self {
            backend,
            cancels: Arc::default(),
            auth,
            users,
            tls,
            max_connections,
            draining: Arc::default(),
            connections: AtomicUsize::new(0),
        }
    }

    fn admit(self: &Arc<Self>) -> Option<ConnectionGuard> {
        let n = self.connections.fetch_add(1, Ordering::Relaxed);
        let guard = ConnectionGuard(self.clone());
        (n < self.max_connections).then_some(guard)
    }

    /// Client sessions currently open.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// One client connection from accept to close, inside a span that carries
/// who it is (never passwords or SCRAM data).
pub async fn serve_connection(socket: TcpStream, peer: SocketAddr, frontend: Arc<Frontend>) {
    let span = tracing::info_span!(
        "connection",
        client = %peer,
        user = Empty,
        database = Empty,
        application_name = Empty
    );
    serve(Connection::new(socket), frontend)
        .instrument(span)
        .await
}

/// Sends a FATAL error and counts the refusal.
async fn reject(conn: &mut Connection, reason: &str, e: GatewayError) {
    METRICS
        .connections_rejected
        .with_label_values(&[reason])
        .inc();
    let mut response = e.response();
    response.severity = crate::pg::Severity::Fatal;
    conn.send(response.into_message());
    let _ = conn.flush().await;
}

async fn serve(mut conn: Connection, frontend: Arc<Frontend>) {
    let startup = match Box::pin(startup::negotiate(
        &mut conn,
        frontend.tls.as_ref(),
        &frontend.cancels,
    ))
    .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!("protocol error before startup: {e}");
            return reject(&mut conn, "protocol", e).await;
        }
    };
    if frontend.draining.load(Ordering::Relaxed) {
        return reject(&mut conn, "draining", GatewayError::ShuttingDown).await;
    }
    let Some(_guard) = frontend.admit() else {
        return reject(
            &mut conn,
            "max_connections",
            GatewayError::TooManyConnections,
        )
        .await;
    };
    let Some(mut login) = Box::pin(log_in(&mut conn, &frontend, &startup)).await else {
        return;
    };
    let registration = frontend.cancels.register();
    conn.send(B::BackendKeyData(BackendKeyData::new(
        registration.pid,
        SecretKey::I32(registration.secret),
    )));
    login.pid = registration.pid;
    let mut session = Session::new(login, frontend.backend.clone(), registration.slot.clone());
    conn.send(session.ready_for_query());
    if conn.flush().await.is_err() {
        return;
    }
    machine::run(&mut conn, &mut session).await;
}

/// Authenticates the startup packet's user and sends AuthenticationOk and
/// the reported settings; `None` when login failed (already answered).
async fn log_in(conn: &mut Connection, frontend: &Frontend, startup: &Startup) -> Option<Login> {
    let parameter = |name: &str| startup.parameters.get(name).filter(|v| !v.is_empty());
    let Some(user) = parameter("user").cloned() else {
        let e = GatewayError::InvalidAuthorization(
            "no PostgreSQL user name specified in startup packet".into(),
        );
        conn.send(e.response().into_message());
        let _ = conn.flush().await;
        return None;
    };
    let database = parameter("database")
        .cloned()
        .unwrap_or_else(|| user.clone());
    let span = tracing::Span::current();
    span.record("user", user.as_str());
    span.record("database", database.as_str());
    if let Some(app) = parameter("application_name") {
        span.record("application_name", app.as_str());
    }
    let method = login::method_name(frontend.auth, &frontend.users, &user);
    let outcome = login::authenticate(conn, frontend.auth, &frontend.users, &user).await;
    let succeeded = matches!(outcome, Ok(true));
    METRICS
        .auth_attempts
        .with_label_values(&[method, if succeeded { "success" } else { "failure" }])
        .inc();
    match outcome {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(method, "authentication failed");
            conn.send(GatewayError::AuthFailed(user).response().into_message());
            let _ = conn.flush().await;
            return None;
        }
        Err(_) => return None,
    }
    conn.send(B::Authentication(Authentication::Ok));
    let application_name = parameter("application_name").map_or("", String::as_str);
    let mut settings = Settings::new(&user, application_name, frontend.auth == AuthMethod::Trust);
    for (k, v) in &startup.parameters {
        if !matches!(k.as_str(), "user" | "database" | "options" | "replication")
            && !k.starts_with("_pq_.")
        {
            settings.set_startup(k, v);
        }
    }
    for name in REPORTED {
        if let Some((k, v)) = settings.entry(name) {
            conn.send(B::ParameterStatus(ParameterStatus::new(k.into(), v.into())));
        }
    }
    Some(Login {
        user,
        database,
        settings,
        pid: 0, // assigned with the cancel key
    })
}
