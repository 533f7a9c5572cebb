//! Before the StartupMessage: SSLRequest starts TLS when it is configured
//! (else, like GSSENCRequest, it is refused with 'N'), so does a TLS
//! handshake sent at once (a direct TLS start), a CancelRequest is routed
//! to the registry, and the protocol version is checked.

use pgwire::messages::startup::{NegotiateProtocolVersion, Startup};
use pgwire::messages::{
    PgWireBackendMessage as B, PgWireFrontendMessage as F, SslNegotiationMetaMessage as Ssl,
};

use crate::backend::Backend;
use crate::cancel::{session_id, CancelRegistry};
use crate::error::GatewayError;
use crate::metrics::METRICS;
use crate::wire::tls::Tls;
use crate::wire::Connection;

/// Returns the StartupMessage, or `None` when the connection is done
/// (a cancel request, or the client left).
pub async fn negotiate(
    conn: &mut Connection,
    tls: Option<&Tls>,
    cancels: &CancelRegistry,
    backend: &Backend,
) -> Result<Option<Startup>, GatewayError> {
    if let Some(tls) = tls {
        if conn.starts_with_tls_handshake().await {
            if let Err(e) = conn.start_direct_tls(tls).await {
                // As PostgreSQL: logged, and the connection closed without
                // a reply (the client may not speak our protocol at all).
                tracing::info!("{e}");
                METRICS
                    .connections_rejected
                    .with_label_values(&["tls"])
                    .inc();
                return Ok(None);
            }
        }
    }
    loop {
        match conn.read_message().await? {
            Some(F::SslNegotiation(Ssl::PostgresSsl(_))) if tls.is_some() && !conn.is_tls() => {
                conn.start_tls(tls.expect("checked")).await?;
            }
            Some(F::SslNegotiation(Ssl::PostgresSsl(_)))
            | Some(F::SslNegotiation(Ssl::PostgresGss(_))) => {
                conn.send_raw(b"N");
                conn.flush()
                    .await
                    .map_err(|e| GatewayError::Protocol(e.to_string()))?;
            }
            Some(F::SslNegotiation(Ssl::None)) => conn.ssl_negotiated(),
            Some(F::CancelRequest(c)) => {
                let found = cancels.cancel(c.pid, &c.secret_key);
                METRICS
                    .cancel_requests
                    .with_label_values(&[if found { "matched" } else { "unmatched" }])
                    .inc();
                tracing::info!(pid = c.pid, found, "cancel request");
                if let (false, Some(secret)) = (found, c.secret_key.as_i32()) {
                    // Perhaps a session on another replica: its engine
                    // queries carry this id.
                    backend.cancel_session(session_id(c.pid, secret));
                }
                return Ok(None);
            }
            Some(F::Startup(s)) => {
                conn.startup_done();
                if s.protocol_number_major != 3 {
                    return Err(GatewayError::Protocol(format!(
                        "unsupported frontend protocol {}.{}: server supports 3.0",
                        s.protocol_number_major, s.protocol_number_minor
                    )));
                }
                // Protocol 3.x options we do not know are named back.
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
