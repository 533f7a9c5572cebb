//! Authentication over the wire: trust, SCRAM-SHA-256 or MD5, as the
//! users file stores each user's secret (see `auth`).

use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage as B, PgWireFrontendMessage as F};

use crate::auth::scram::{ScramExchange, MECHANISM};
use crate::auth::{constant_time_eq, md5, AuthMethod, Secret, Users};
use crate::error::GatewayError;
use crate::wire::Connection;

/// The method a user logs in with (a metrics label).
pub fn method_name(auth: AuthMethod, users: &Users, user: &str) -> &'static str {
    match (auth, users.get(user)) {
        (AuthMethod::Trust, _) => "trust",
        (_, Some(Secret::Md5(_))) => "md5",
        _ => "scram-sha-256",
    }
}

/// Runs the configured exchange; `Ok(false)` means wrong password or
/// unknown user (indistinguishable to the client).
pub async fn authenticate(
    conn: &mut Connection,
    auth: AuthMethod,
    users: &Users,
    user: &str,
) -> Result<bool, GatewayError> {
    if auth == AuthMethod::Trust {
        return Ok(true);
    }
    let secret = users.get(user);
    if let Some(Secret::Md5(stored)) = secret {
        let salt: [u8; 4] = rand::random();
        conn.send(B::Authentication(Authentication::MD5Password(
            salt.to_vec(),
        )));
        let password = password_message(conn, "a password message")
            .await?
            .into_password()
            .map_err(|e| GatewayError::Protocol(e.to_string()))?;
        let expected = md5::expected_response(stored, &salt);
        return Ok(constant_time_eq(
            password.password.as_bytes(),
            expected.as_bytes(),
        ));
    }
    let verifier = match secret {
        Some(Secret::Scram(v)) => Some(v),
        _ => None,
    };
    conn.send(B::Authentication(Authentication::SASL(vec![
        MECHANISM.into()
    ])));
    let initial = password_message(conn, "SASLInitialResponse")
        .await?
        .into_sasl_initial_response()
        .map_err(|e| GatewayError::Protocol(e.to_string()))?;
    if initial.auth_method != MECHANISM {
        return Ok(false);
    }
    let data = initial.data.unwrap_or_default();
    let Ok((exchange, server_first)) = ScramExchange::start(verifier, &data) else {
        return Ok(false);
    };
    conn.send(B::Authentication(Authentication::SASLContinue(
        server_first.into_bytes().into(),
    )));
    let response = password_message(conn, "SASLResponse")
        .await?
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

/// Flushes what the client must answer, then reads its answer: a message
/// of the password family, or a protocol error naming what was expected.
async fn password_message(
    conn: &mut Connection,
    expected: &str,
) -> Result<pgwire::messages::startup::PasswordMessageFamily, GatewayError> {
    conn.flush()
        .await
        .map_err(|e| GatewayError::Protocol(e.to_string()))?;
    match conn.read_message().await? {
        Some(F::PasswordMessageFamily(msg)) => Ok(msg),
        _ => Err(GatewayError::Protocol(format!("expected {expected}"))),
    }
}
