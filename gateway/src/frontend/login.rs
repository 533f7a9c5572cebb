//! Authentication over the wire: trust, SCRAM-SHA-256 or MD5, as the
//! users file stores each user's secret (see `auth`).

use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
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
        let body = password_message(conn, "a password message").await?;
        let password = body
            .strip_suffix(&[0])
            .ok_or_else(|| malformed("password"))?;
        let expected = md5::expected_response(stored, &salt);
        return Ok(constant_time_eq(password, expected.as_bytes()));
    }
    let verifier = match secret {
        Some(Secret::Scram(v)) => Some(v),
        _ => None,
    };
    conn.send(B::Authentication(Authentication::SASL(vec![
        MECHANISM.into()
    ])));
    let body = password_message(conn, "SASLInitialResponse").await?;
    let (mechanism, data) = sasl_initial_response(&body)?;
    if mechanism != MECHANISM.as_bytes() {
        return Ok(false);
    }
    let Ok((exchange, server_first)) = ScramExchange::start(verifier, users.mock_salt(user), data)
    else {
        return Ok(false);
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
            Ok(true)
        }
        None => Ok(false),
    }
}

fn malformed(what: &str) -> GatewayError {
    GatewayError::Protocol(format!("malformed {what} message"))
}

/// SASLInitialResponse: mechanism name (C string), then the length of the
/// client-first message (-1 for none) and the message, exactly.
fn sasl_initial_response(body: &[u8]) -> Result<(&[u8], &[u8]), GatewayError> {
    let bad = || malformed("SASLInitialResponse");
    let nul = body.iter().position(|&b| b == 0).ok_or_else(bad)?;
    let (mechanism, rest) = (&body[..nul], &body[nul + 1..]);
    let length: [u8; 4] = rest
        .get(..4)
        .ok_or_else(bad)?
        .try_into()
        .map_err(|_| bad())?;
    let data = &rest[4..];
    match i32::from_be_bytes(length) {
        -1 if data.is_empty() => Ok((mechanism, data)),
        n if usize::try_from(n).is_ok_and(|n| n == data.len()) => Ok((mechanism, data)),
        _ => Err(bad()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_initial_responses_are_parsed_from_exactly_their_bytes() {
        let mut ok = b"SCRAM-SHA-256\0".to_vec();
        ok.extend_from_slice(&3i32.to_be_bytes());
        ok.extend_from_slice(b"abc");
        assert_eq!(
            sasl_initial_response(&ok).unwrap(),
            (&b"SCRAM-SHA-256"[..], &b"abc"[..])
        );
        let mut lying = b"SCRAM-SHA-256\0".to_vec();
        lying.extend_from_slice(&1000i32.to_be_bytes());
        lying.extend_from_slice(b"abc");
        assert!(sasl_initial_response(&lying).is_err());
        assert!(sasl_initial_response(b"SCRAM").is_err());
        assert!(sasl_initial_response(b"SCRAM\0\0\0").is_err());
    }

    #[test]
    fn hostile_sasl_messages_are_protocol_errors() {
        let mut seed = b"SCRAM-SHA-256\0".to_vec();
        seed.extend_from_slice(&11i32.to_be_bytes());
        seed.extend_from_slice(b"n,,n=,r=abc");
        for input in crate::mutate::mutations(&[&seed], 20_000) {
            match sasl_initial_response(&input) {
                Ok((mechanism, data)) => assert!(mechanism.len() + data.len() < input.len()),
                Err(e) => assert_eq!(e.sqlstate(), "08P01"),
            }
            // The SCRAM exchange takes whatever the client sent as its
            // first and final messages without panicking.
            if let Ok((exchange, _)) = ScramExchange::start(None, vec![1; 16], &input) {
                assert!(exchange.finish(&input).is_none());
            }
        }
    }
}
