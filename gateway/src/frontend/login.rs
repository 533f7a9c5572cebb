//! Authentication over the wire, by the method the rules chose: trust, a
//! client certificate, or a password (SCRAM-SHA-256[-PLUS], or MD5 for
//! users the users file stores with an MD5 hash).

use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage as B, PgWireFrontendMessage as F};

use crate::auth::rules::Method;
use crate::auth::scram::{sasl_initial_response, ScramExchange, MECHANISM, MECHANISM_PLUS};
use crate::auth::{constant_time_eq, md5, Secret, Users};
use crate::error::GatewayError;
use crate::wire::Connection;

/// The method a user logs in with (a metrics label).
pub fn method_name(method: Method, users: &Users, user: &str) -> &'static str {
    match (method, users.get(user)) {
        (Method::Trust, _) => "trust",
        (Method::Cert, _) => "cert",
        (Method::Reject, _) => "reject",
        (Method::Password, Some(Secret::Md5(_))) => "md5",
        _ => "scram-sha-256",
    }
}

/// Runs the configured exchange: the method that logged the user in, or
/// `None` for a wrong password or an unknown user (indistinguishable to
/// the client).
pub async fn authenticate(
    conn: &mut Connection,
    method: Method,
    users: &Users,
    user: &str,
) -> Result<Option<&'static str>, GatewayError> {
    let secret = match method {
        Method::Trust => return Ok(Some("trust")),
        Method::Reject => return Ok(None),
        Method::Cert => {
            let name = conn.client_certificate_name();
            return Ok((name.as_deref() == Some(user)).then_some("cert"));
        }
        // SCRAM only: an MD5-stored user is as good as unknown.
        Method::Scram => users.get(user).filter(|s| matches!(s, Secret::Scram(_))),
        Method::Password => users.get(user),
    };
    if let Some(Secret::Md5(stored)) = secret {
        let salt: [u8; 4] = rand::random();
        conn.send(B::Authentication(Authentication::MD5Password(
            salt.to_vec(),
        )));
        let body = password_message(conn, "a password message").await?;
        let password = body
            .strip_suffix(&[0])
            .ok_or_else(|| malformed("password"))?;
        let expected = md5::expected_response(stored, &salt);
        return Ok(constant_time_eq(password, expected.as_bytes()).then_some("md5"));
    }
    let verifier = match secret {
        Some(Secret::Scram(v)) => Some(v),
        _ => None,
    };
    // Over TLS, SCRAM-SHA-256-PLUS first, as PostgreSQL lists them.
    let end_point = conn.server_end_point();
    let mut mechanisms = Vec::with_capacity(2);
    if end_point.is_some() {
        mechanisms.push(MECHANISM_PLUS.into());
    }
    mechanisms.push(MECHANISM.into());
    conn.send(B::Authentication(Authentication::SASL(mechanisms)));
    let body = password_message(conn, "SASLInitialResponse").await?;
    let (mechanism, data) = sasl_initial_response(&body)?;
    let start = ScramExchange::start(
        verifier,
        users.mock_salt(user),
        mechanism,
        data,
        end_point.as_deref(),
    );
    let Ok((exchange, server_first)) = start else {
        return Ok(None);
    };
    let used = if mechanism == MECHANISM_PLUS.as_bytes() {
        "scram-sha-256-plus"
    } else {
        "scram-sha-256"
    };
    conn.send(B::Authentication(Authentication::SASLContinue(
        server_first.into_bytes().into(),
    )));
    let response = password_message(conn, "SASLResponse").await?;
    match exchange.finish(&response) {
        Some(server_final) => {
            conn.send(B::Authentication(Authentication::SASLFinal(
                server_final.into_bytes().into(),
            )));
            Ok(Some(used))
        }
        None => Ok(None),
    }
}

fn malformed(what: &str) -> GatewayError {
    GatewayError::Protocol(format!("malformed {what} message"))
}

/// Flushes what the client must answer, then reads its answer: the body
/// of a password-family message, or a protocol error naming what was
/// expected. (Its framing was checked by the connection; its contents are
/// parsed here, with every length checked.)
async fn password_message(conn: &mut Connection, expected: &str) -> Result<Vec<u8>, GatewayError> {
    conn.flush()
        .await
        .map_err(|e| GatewayError::Protocol(e.to_string()))?;
    match conn.read_message().await? {
        Some(F::PasswordMessageFamily(PasswordMessageFamily::Raw(body))) => Ok(body.to_vec()),
        _ => Err(GatewayError::Protocol(format!("expected {expected}"))),
    }
}
