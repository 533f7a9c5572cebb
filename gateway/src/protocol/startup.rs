//! From accept to ReadyForQuery: SSL requests start TLS when it is configured
//! (else, like GSSENC requests, they are refused with 'N'),
//! CancelRequests are routed to the registry, the StartupMessage is checked,
//! the client authenticates (trust, SCRAM-SHA-256 or MD5), and the session
//! gets its ParameterStatus, BackendKeyData and first ReadyForQuery. Then
//! the message loop runs until Terminate.

use std::net::SocketAddr;
use std::sync::Arc;

use pgwire::messages::response::ErrorResponse;
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey, Startup,
};
use pgwire::messages::{
    PgWireBackendMessage as B, PgWireFrontendMessage as F, SslNegotiationMetaMessage,
};
use tokio::net::TcpStream;
use tracing::{field::Empty, Instrument};

use crate::admin::metrics::ConnectionState;
use crate::admin::METRICS;
use crate::auth::scram::{ScramExchange, MECHANISM};
use crate::auth::{md5, AuthMethod, Secret};
use crate::error::GatewayError;
use crate::server::Shared;
use crate::session::{settings, Session, Settings};

use super::connection::Connection;

fn fatal(conn: &mut Connection, code: &str, message: &str) {
    conn.send(B::ErrorResponse(ErrorResponse::new(vec![
        (b'S', "FATAL".into()),
        (b'V', "FATAL".into()),
        (b'C', code.into()),
        (b'M', message.into()),
    ])));
}

/// One client connection from accept to close, inside a span that carries
/// who it is (never passwords or SCRAM data).
pub async fn serve_connection(socket: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let span = tracing::info_span!(
        "connection",
        client = %peer,
        user = Empty,
        database = Empty,
        application_name = Empty
    );
    serve(Connection::new(socket, peer), shared)
        .instrument(span)
        .await
}

async fn reject(conn: &mut Connection, reason: &str, code: &str, message: &str) {
    METRICS
        .connections_rejected
        .with_label_values(&[reason])
        .inc();
    fatal(conn, code, message);
    let _ = conn.flush().await;
}

async fn serve(mut conn: Connection, shared: Arc<Shared>) {
    let startup = match Box::pin(negotiate(&mut conn, &shared)).await {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!("protocol error before startup: {e}");
            reject(&mut conn, "protocol", e.sqlstate(), &e.to_string()).await;
            return;
        }
    };
    if shared.is_draining() {
        reject(
            &mut conn,
            "draining",
            "57P03",
            "the database system is shutting down",
        )
        .await;
        return;
    }
    let _guard = match shared.admit() {
        Some(g) => g,
        None => {
            reject(
                &mut conn,
                "max_connections",
                "53300",
                "sorry, too many clients already",
            )
            .await;
            return;
        }
    };
    let user = startup.parameters.get("user").cloned().unwrap_or_default();
    if user.is_empty() {
        fatal(
            &mut conn,
            "28000",
            "no PostgreSQL user name specified in startup packet",
        );
        let _ = conn.flush().await;
        return;
    }
    let database = startup
        .parameters
        .get("database")
        .filter(|d| !d.is_empty())
        .cloned()
        .unwrap_or_else(|| user.clone());
    let span = tracing::Span::current();
    span.record("user", user.as_str());
    span.record("database", database.as_str());
    if let Some(app) = startup.parameters.get("application_name") {
        span.record("application_name", app.as_str());
    }
    let method = match (shared.auth, shared.users.get(&user)) {
        (AuthMethod::Trust, _) => "trust",
        (_, Some(Secret::Md5(_))) => "md5",
        _ => "scram-sha-256",
    };
    let outcome = Box::pin(authenticate(&mut conn, &shared, &user)).await;
    METRICS
        .auth_attempts
        .with_label_values(&[
            method,
            if matches!(outcome, Ok(true)) {
                "success"
            } else {
                "failure"
            },
        ])
        .inc();
    match outcome {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(method, "authentication failed");
            let e = GatewayError::AuthFailed(user.clone());
            fatal(&mut conn, e.sqlstate(), &e.to_string());
            let _ = conn.flush().await;
            return;
        }
        Err(_) => return,
    }
    conn.send(B::Authentication(Authentication::Ok));
    let application_name = startup
        .parameters
        .get("application_name")
        .cloned()
        .unwrap_or_default();
    let mut settings = Settings::new(&user, &application_name, shared.auth == AuthMethod::Trust);
    for (k, v) in &startup.parameters {
        if !matches!(k.as_str(), "user" | "database" | "options" | "replication")
            && !k.starts_with("_pq_.")
        {
            settings.set_startup(k, v);
        }
    }
    for name in settings::REPORTED {
        if let Some((k, v)) = settings.entry(name) {
            conn.send(B::ParameterStatus(ParameterStatus::new(
                k.to_string(),
                v.to_string(),
            )));
        }
    }
    let registration = shared.cancels.register();
    conn.send(B::BackendKeyData(BackendKeyData::new(
        registration.pid,
        SecretKey::I32(registration.secret),
    )));
    let mut session = Session::new(
        user,
        database,
        settings,
        shared.pool.clone(),
        shared.catalog.clone(),
        registration.slot.clone(),
        registration.pid,
    );
    conn.send(session.ready_for_query());
    if conn.flush().await.is_err() {
        return;
    }
    message_loop(&mut conn, &mut session).await;
}

/// SSL/GSSENC refusals, cancel requests, protocol version; returns the
/// StartupMessage, or `None` when the connection is done (cancel, EOF).
async fn negotiate(
    conn: &mut Connection,
    shared: &Shared,
) -> Result<Option<Startup>, GatewayError> {
    loop {
        match conn.read_message().await? {
            Some(F::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_)))
                if shared.tls.is_some() && !conn.is_tls() =>
            {
                let acceptor = shared.tls.as_ref().expect("checked");
                conn.start_tls(acceptor).await?;
            }
            Some(F::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_)))
            | Some(F::SslNegotiation(SslNegotiationMetaMessage::PostgresGss(_))) => {
                conn.send_raw(b"N");
                conn.flush()
                    .await
                    .map_err(|e| GatewayError::Protocol(e.to_string()))?;
            }
            Some(F::SslNegotiation(SslNegotiationMetaMessage::None)) => {
                conn.decode.awaiting_frontend_ssl = false;
            }
            Some(F::CancelRequest(c)) => {
                let found = shared.cancels.cancel(c.pid, &c.secret_key);
                METRICS
                    .cancel_requests
                    .with_label_values(&[if found { "matched" } else { "unmatched" }])
                    .inc();
                tracing::info!(pid = c.pid, found, "cancel request");
                return Ok(None);
            }
            Some(F::Startup(s)) => {
                conn.decode.awaiting_frontend_startup = false;
                if s.protocol_number_major != 3 {
                    return Err(GatewayError::Protocol(format!(
                        "unsupported frontend protocol {}.{}: server supports 3.0",
                        s.protocol_number_major, s.protocol_number_minor
                    )));
                }
                let options: Vec<String> = s
                    .parameters
                    .keys()
                    .filter(|k| k.starts_with("_pq_."))
                    .cloned()
                    .collect();
                if s.protocol_number_minor > 0 || !options.is_empty() {
                    conn.send(B::NegotiateProtocolVersion(NegotiateProtocolVersion::new(
                        0, options,
                    )));
                }
                return Ok(Some(s));
            }
            Some(other) => {
                return Err(GatewayError::Protocol(format!(
                    "unexpected message before startup: {other:?}"
                )))
            }
            None => return Ok(None),
        }
    }
}

/// Runs the configured exchange; `Ok(false)` means wrong password or
/// unknown user (indistinguishable to the client).
async fn authenticate(
    conn: &mut Connection,
    shared: &Shared,
    user: &str,
) -> Result<bool, GatewayError> {
    if shared.auth == AuthMethod::Trust {
        return Ok(true);
    }
    let secret = shared.users.get(user);
    let flush = |e: std::io::Error| GatewayError::Protocol(e.to_string());
    match secret {
        Some(Secret::Md5(stored)) => {
            let salt: [u8; 4] = rand::random();
            conn.send(B::Authentication(Authentication::MD5Password(
                salt.to_vec(),
            )));
            conn.flush().await.map_err(flush)?;
            let Some(F::PasswordMessageFamily(msg)) = conn.read_message().await? else {
                return Err(GatewayError::Protocol("expected a password message".into()));
            };
            let password = msg
                .into_password()
                .map_err(|e| GatewayError::Protocol(e.to_string()))?;
            let expected = md5::expected_response(stored, &salt);
            Ok(crate::auth::constant_time_eq(
                password.password.as_bytes(),
                expected.as_bytes(),
            ))
        }
        _ => {
            let verifier = match secret {
                Some(Secret::Scram(v)) => Some(v),
                _ => None,
            };
            conn.send(B::Authentication(Authentication::SASL(vec![
                MECHANISM.into()
            ])));
            conn.flush().await.map_err(flush)?;
            let Some(F::PasswordMessageFamily(msg)) = conn.read_message().await? else {
                return Err(GatewayError::Protocol(
                    "expected SASLInitialResponse".into(),
                ));
            };
            let initial = msg
                .into_sasl_initial_response()
                .map_err(|e| GatewayError::Protocol(e.to_string()))?;
            if initial.auth_method != MECHANISM {
                return Ok(false);
            }
            let data = initial.data.unwrap_or_default();
            let (exchange, server_first) = match ScramExchange::start(verifier, &data) {
                Ok(x) => x,
                Err(_) => return Ok(false),
            };
            conn.send(B::Authentication(Authentication::SASLContinue(
                server_first.into_bytes().into(),
            )));
            conn.flush().await.map_err(flush)?;
            let Some(F::PasswordMessageFamily(msg)) = conn.read_message().await? else {
                return Err(GatewayError::Protocol("expected SASLResponse".into()));
            };
            let response = msg
                .into_sasl_response()
                .map_err(|e| GatewayError::Protocol(e.to_string()))?;
            match exchange.finish(&response.data) {
                Some(server_final) => {
                    conn.send(B::Authentication(Authentication::SASLFinal(
                        server_final.into_bytes().into(),
                    )));
                    Ok(true)
                }
                None => Ok(false),
            }
        }
    }
}

async fn message_loop(conn: &mut Connection, session: &mut Session) {
    // After an error in an extended-protocol batch, skip until Sync.
    let mut skipping = false;
    let mut state = ConnectionState::idle();
    loop {
        state.set_active(false);
        let msg = match conn.read_message().await {
            Ok(Some(msg)) => msg,
            Ok(None) => return,
            Err(e) => {
                fatal(conn, e.sqlstate(), &e.to_string());
                let _ = conn.flush().await;
                return;
            }
        };
        let extended = matches!(
            msg,
            F::Parse(_) | F::Bind(_) | F::Describe(_) | F::Execute(_) | F::Close(_)
        );
        if extended && skipping {
            continue;
        }
        state.set_active(true);
        let outcome: Result<(), GatewayError> = match msg {
            // Statement work is boxed: an idle connection's task then holds
            // only the small loop state, not the largest statement future.
            F::Query(q) => {
                skipping = false;
                if Box::pin(session.simple_query(conn, &q.query))
                    .await
                    .is_err()
                {
                    return;
                }
                Ok(())
            }
            F::Terminate(_) => return,
            F::Sync(_) => {
                skipping = false;
                session.sync();
                conn.send(session.ready_for_query());
                if conn.flush().await.is_err() {
                    return;
                }
                Ok(())
            }
            F::Flush(_) => {
                if conn.flush().await.is_err() {
                    return;
                }
                Ok(())
            }
            F::Parse(m) => session.parse(conn, m),
            F::Bind(m) => Box::pin(session.bind(conn, m)).await,
            F::Describe(m) => Box::pin(session.describe(conn, m)).await,
            F::Execute(m) => Box::pin(session.execute(conn, m)).await,
            F::Close(m) => {
                session.close(conn, m);
                Ok(())
            }
            F::CopyData(_) | F::CopyDone(_) | F::CopyFail(_) => Ok(()),
            other => Err(GatewayError::Protocol(format!(
                "unexpected message {other:?}"
            ))),
        };
        if let Err(e) = outcome {
            if matches!(&e, GatewayError::Protocol(m) if m == "client gone") {
                return;
            }
            session.extended_error(conn, &e);
            skipping = extended;
            if !extended {
                conn.send(session.ready_for_query());
            }
            if conn.flush().await.is_err() {
                return;
            }
        }
    }
}
