//! One client connection, start to finish: admission, the startup
//! negotiation (TLS, cancel requests), login, the session's first
//! ParameterStatus/BackendKeyData/ReadyForQuery, then the message loop.

mod login;
mod machine;
mod startup;
mod throttle;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pgwire::messages::startup::{
    Authentication, BackendKeyData, ParameterStatus, SecretKey, Startup,
};
use pgwire::messages::PgWireBackendMessage as B;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{field::Empty, Instrument};

use crate::audit::{Audit, ConnectionAttempt};
use crate::auth::rules::{Decision, Method, Rules};
use crate::auth::Users;
use crate::backend::Backend;
use crate::cancel::{session_id, CancelRegistry, Registration};
use crate::error::GatewayError;
use crate::metrics::METRICS;
use crate::pg::server_info::REPORTED;
use crate::session::{Login, Quotas, Session, Settings, UserCounts};
use crate::wire::tls::Tls;
use crate::wire::Connection;
use throttle::Throttle;
pub use throttle::ThrottleLimits;
use velo_pgproto::startup::command_line_options;

/// What every connection needs from the gateway: how to log clients in,
/// where their queries go, and the shared limits.
pub struct Frontend {
    pub backend: Backend,
    pub cancels: Arc<CancelRegistry>,
    /// Replaced whole on reload (SIGHUP); each connection logs in against
    /// the set current when it arrived.
    credentials: RwLock<Arc<Credentials>>,
    pub limits: Limits,
    pub quotas: Arc<Quotas>,
    /// Set when the gateway drains: new sessions are refused.
    pub draining: Arc<AtomicBool>,
    /// Cancelled when a drain runs out of time: every session still open
    /// ends with 57P01.
    pub shutdown: CancellationToken,
    pub audit: Audit,
    throttle: Throttle,
    connections: AtomicUsize,
    per_user: UserCounts,
}

/// What logging in checks: the users file, TLS, the rules.
pub struct Credentials {
    pub users: Users,
    /// `None`: no TLS (none configured, or `tls = disabled`).
    pub tls: Option<Tls>,
    /// Who logs in how (`tls = required` included).
    pub rules: Rules,
}

/// What one connection may do, from the configuration.
pub struct Limits {
    /// Sockets at once, counted from accept.
    pub max_connections: usize,
    /// Sessions of one user at once (0: no limit).
    pub max_connections_per_user: usize,
    /// The largest message after login.
    pub max_message_size: usize,
    /// From accept to the end of login.
    pub authentication_timeout: Duration,
    /// Settings every session starts from.
    pub session_defaults: Vec<(&'static str, String)>,
    /// Connection attempts and failed logins per address and user.
    pub throttle: ThrottleLimits,
}

/// Why a connection is refused: a metrics label and the FATAL error.
type Refusal = (&'static str, GatewayError);

/// An accepted socket, counted against `max_connections` while it lives.
struct Admitted(Arc<Frontend>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A logged-in session of one user, counted while it lives.
struct UserSession {
    frontend: Arc<Frontend>,
    user: String,
}

impl Drop for UserSession {
    fn drop(&mut self) {
        self.frontend.per_user.remove(&self.user);
    }
}

impl Frontend {
    pub fn new(
        backend: Backend,
        credentials: Credentials,
        limits: Limits,
        quotas: Arc<Quotas>,
        audit: Audit,
    ) -> Self {
        Self {
            backend,
            cancels: Arc::default(),
            credentials: RwLock::new(Arc::new(credentials)),
            throttle: Throttle::new(limits.throttle.clone()),
            limits,
            quotas,
            draining: Arc::default(),
            shutdown: CancellationToken::new(),
            audit,
            connections: AtomicUsize::new(0),
            per_user: UserCounts::default(),
        }
    }

    /// Counts a socket, and says why it is to be refused, if it is: over
    /// `max_connections`, or a client address over its rate or locked out.
    fn admit(self: &Arc<Self>, client: SocketAddr) -> (Admitted, Option<Refusal>) {
        let n = self.connections.fetch_add(1, Ordering::Relaxed);
        let admitted = Admitted(self.clone());
        if n >= self.limits.max_connections {
            return (
                admitted,
                Some(("max_connections", GatewayError::TooManyConnections)),
            );
        }
        (admitted, self.throttle.connection(client.ip()).err())
    }

    fn admit_user(self: &Arc<Self>, user: &str) -> Option<UserSession> {
        let limit = self.limits.max_connections_per_user;
        self.per_user.try_add(user, limit).then(|| UserSession {
            frontend: self.clone(),
            user: user.to_string(),
        })
    }

    /// The credentials new connections log in against.
    fn credentials(&self) -> Arc<Credentials> {
        self.credentials
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// New connections log in against `credentials`; sessions already
    /// open are not touched.
    pub fn reload(&self, credentials: Credentials) {
        *self.credentials.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(credentials);
    }

    /// Client connections currently open (logged in or not).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// How long a connection over `max_connections` may take to send its
/// startup packet before it is closed (it is only told it is refused).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP keepalive on client sockets: a peer that vanished without a FIN is
/// noticed in about two minutes instead of never.
fn keepalive(socket: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10));
    if let Err(e) = socket2::SockRef::from(socket).set_tcp_keepalive(&keepalive) {
        tracing::debug!("TCP keepalive: {e}");
    }
}

/// One client connection from accept to close. Login runs in a boxed
/// future that is freed when it ends, and the logged-in session keeps
/// only what it needs, so an idle client's task stays small (see
/// `machine::run` for the idle wait).
pub async fn serve_connection(socket: TcpStream, peer: SocketAddr, frontend: Arc<Frontend>) {
    keepalive(&socket);
    let started = std::time::Instant::now();
    let Some(logged_in) = Box::pin(log_in_phase(Connection::new(socket), peer, &frontend)).await
    else {
        return;
    };
    let LoggedIn {
        mut conn,
        login,
        mut attempt,
        // Held to the end: it counts the connection against its user's limit.
        user: _user,
    } = logged_in;
    let span = tracing::debug_span!(
        "connection",
        client = %peer,
        user = %login.user,
        database = %login.database,
        application_name = login.settings.get("application_name").unwrap_or_default()
    );
    // The registration lives as long as the session: dropping it retires
    // the cancel key.
    let (mut session, _registration) =
        start_session(&mut conn, &frontend, login, attempt.as_deref_mut());
    async {
        if conn.flush().await.is_ok() {
            machine::run(&mut conn, &mut session).await;
        }
    }
    .instrument(span)
    .await;
    if let (Some(audit), Some(attempt)) = (&frontend.audit, &attempt) {
        audit.disconnection(attempt, started.elapsed());
    }
}

/// A client that logged in.
struct LoggedIn {
    conn: Connection,
    login: Login,
    /// For the audit log's disconnection line; `None` when there is no
    /// audit log.
    attempt: Option<Box<ConnectionAttempt>>,
    user: UserSession,
}

/// Sends a FATAL error and counts the refusal.
async fn reject(
    conn: &mut Connection,
    attempt: &mut ConnectionAttempt,
    reason: &str,
    e: GatewayError,
) {
    METRICS
        .connections_rejected
        .with_label_values(&[reason])
        .inc();
    attempt.failed(e.sqlstate());
    send_fatal(conn, &e).await;
}

/// Sends `e` as FATAL, whatever its usual severity: the connection ends
/// after it.
async fn send_fatal(conn: &mut Connection, e: &GatewayError) {
    let mut response = e.response();
    response.severity = crate::pg::Severity::Fatal;
    conn.send(response.into_message());
    let _ = conn.flush().await;
}

/// The handshake runs inside an info-level span that carries who the
/// client is (never passwords or SCRAM data), so a failed login or a
/// cancel request is logged with it. The logged-in session's span is at
/// debug level: a span the log filter keeps costs an idle connection about
/// 600 bytes of formatted fields for its whole life. A connection that
/// does not log in is written to the audit log here.
async fn log_in_phase(
    mut conn: Connection,
    peer: SocketAddr,
    frontend: &Arc<Frontend>,
) -> Option<LoggedIn> {
    let mut attempt = ConnectionAttempt::new(peer);
    let login_span = tracing::info_span!(
        "connection",
        client = %peer,
        user = Empty,
        database = Empty,
        application_name = Empty
    );
    let logged_in = log_in_within_deadline(&mut conn, frontend, &mut attempt)
        .instrument(login_span)
        .await;
    let Some((login, user)) = logged_in else {
        if let Some(audit) = &frontend.audit {
            audit.connection(&attempt);
        }
        return None;
    };
    attempt.outcome = "success";
    Some(LoggedIn {
        conn,
        login,
        attempt: frontend.audit.is_some().then(|| Box::new(attempt)),
        user,
    })
}

/// The handshake under its deadline (`authentication_timeout`, or a short
/// one for a connection over `max_connections`, which is only refused).
async fn log_in_within_deadline(
    conn: &mut Connection,
    frontend: &Arc<Frontend>,
    attempt: &mut ConnectionAttempt,
) -> Option<(Login, UserSession)> {
    let (_admitted, refusal) = frontend.admit(attempt.client);
    let deadline = if refusal.is_some() {
        REFUSAL_TIMEOUT
    } else {
        frontend.limits.authentication_timeout
    };
    match tokio::time::timeout(deadline, handshake(conn, frontend, refusal, attempt)).await {
        Ok(logged_in) => logged_in,
        Err(_) => {
            let e = GatewayError::AuthenticationTimeout;
            reject(conn, attempt, "authentication_timeout", e).await;
            None
        }
    }
}

/// A logged-in session: its cancel key, its first ReadyForQuery (sent
/// with the next flush), and the audit log's connection line.
fn start_session(
    conn: &mut Connection,
    frontend: &Frontend,
    mut login: Login,
    attempt: Option<&mut ConnectionAttempt>,
) -> (Session, Registration) {
    conn.logged_in(frontend.limits.max_message_size);
    let registration = frontend.cancels.register();
    conn.send(B::BackendKeyData(BackendKeyData::new(
        registration.pid,
        SecretKey::I32(registration.secret),
    )));
    login.pid = registration.pid;
    login.session_id = session_id(registration.pid, registration.secret);
    if let (Some(audit), Some(attempt)) = (&frontend.audit, attempt) {
        attempt.pid = Some(registration.pid);
        audit.connection(attempt);
    }
    let session = Session::new(
        login,
        frontend.backend.clone(),
        registration.slot.clone(),
        frontend.quotas.clone(),
        frontend.shutdown.clone(),
        frontend.audit.clone(),
    );
    conn.send(session.ready_for_query());
    (session, registration)
}

/// From the first byte to a logged-in user, or `None` when the connection
/// is done (answered, refused, or a cancel request).
async fn handshake(
    conn: &mut Connection,
    frontend: &Arc<Frontend>,
    refusal: Option<Refusal>,
    attempt: &mut ConnectionAttempt,
) -> Option<(Login, UserSession)> {
    let credentials = frontend.credentials();
    let startup = match startup::negotiate(
        conn,
        credentials.tls.as_ref(),
        &frontend.cancels,
        &frontend.backend,
    )
    .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            tracing::debug!("protocol error before startup: {e}");
            reject(conn, attempt, "protocol", e).await;
            return None;
        }
    };
    attempt.tls = conn.tls_description();
    if frontend.draining.load(Ordering::Relaxed) {
        reject(conn, attempt, "draining", GatewayError::ShuttingDown).await;
        return None;
    }
    if let Some((reason, e)) = refusal {
        reject(conn, attempt, reason, e).await;
        return None;
    }
    let login = log_in(conn, frontend, &credentials, &startup, attempt).await?;
    let Some(user_session) = frontend.admit_user(&login.user) else {
        let e = GatewayError::TooManyConnectionsForRole(login.user.clone());
        reject(conn, attempt, "max_connections_per_user", e).await;
        return None;
    };
    Some((login, user_session))
}

/// Authenticates the startup packet's user and sends AuthenticationOk and
/// the reported settings; `None` when login failed (already answered).
async fn log_in(
    conn: &mut Connection,
    frontend: &Frontend,
    credentials: &Credentials,
    startup: &Startup,
    attempt: &mut ConnectionAttempt,
) -> Option<Login> {
    let parameter = |name: &str| startup.parameters.get(name).filter(|v| !v.is_empty());
    let Some(user) = parameter("user").cloned() else {
        let e = GatewayError::InvalidAuthorization(
            "no PostgreSQL user name specified in startup packet".into(),
        );
        attempt.failed(e.sqlstate());
        send_fatal(conn, &e).await;
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
    attempt.user = Some(user.clone());
    attempt.database = Some(database.clone());
    attempt.application_name = parameter("application_name").cloned();
    let client = attempt.client.ip();
    let method = match credentials
        .rules
        .decide(&user, &database, client, conn.is_tls())
    {
        Decision::Authenticate(method) => method,
        Decision::Refuse(message) => {
            let e = GatewayError::InvalidAuthorization(message);
            reject(conn, attempt, "rules", e).await;
            return None;
        }
    };
    let users = &credentials.users;
    let label = login::method_name(method, users, &user);
    attempt.auth_method = Some(label);
    if let Err((reason, e)) = frontend.throttle.login(&user) {
        reject(conn, attempt, reason, e).await;
        return None;
    }
    let outcome = login::authenticate(conn, method, users, &user).await;
    let succeeded = matches!(outcome, Ok(Some(_)));
    METRICS
        .auth_attempts
        .with_label_values(&[label, if succeeded { "success" } else { "failure" }])
        .inc();
    match outcome {
        Ok(Some(used)) => attempt.auth_method = Some(used),
        Ok(None) => {
            tracing::info!(method = label, "authentication failed");
            frontend.throttle.failed(attempt.client.ip(), &user);
            let e = if method == Method::Cert {
                GatewayError::InvalidAuthorization(format!(
                    "certificate authentication failed for user \"{user}\""
                ))
            } else {
                GatewayError::AuthFailed(user)
            };
            attempt.failed(e.sqlstate());
            send_fatal(conn, &e).await;
            return None;
        }
        Err(GatewayError::ClientGone) => return None,
        Err(e) => {
            reject(conn, attempt, "protocol", e).await;
            return None;
        }
    }
    conn.send(B::Authentication(Authentication::Ok));
    let application_name = parameter("application_name").map_or("", String::as_str);
    let admin = users.is_admin(&user);
    let superuser = admin || method == Method::Trust;
    let mut settings = Settings::new(&user, application_name, superuser);
    for (name, value) in &frontend.limits.session_defaults {
        settings.set_startup(name, value);
    }
    for (k, v) in command_line_options(parameter("options").map_or("", String::as_str)) {
        settings.set_startup(&k, &v);
    }
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
        admin,
        user,
        database,
        settings,
        pid: 0, // assigned with the cancel key
        session_id: String::new(),
    })
}
