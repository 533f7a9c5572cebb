//! SCRAM-SHA-256 (RFC 5802/7677) as PostgreSQL does it, server side, and
//! SCRAM-SHA-256-PLUS with `tls-server-end-point` channel binding (RFC 5929)
//! over TLS.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

use crate::error::GatewayError;

pub use velo_proto::constant_time_eq;

pub const MECHANISM: &str = "SCRAM-SHA-256";
/// The channel-binding variant, offered over TLS only.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The only channel-binding type PostgreSQL (and so every client) uses.
const BINDING_TYPE: &str = "tls-server-end-point";
const DEFAULT_ITERATIONS: u32 = 4096;

/// SASLInitialResponse: mechanism name (C string), then the length of the
/// client-first message (-1 for none) and the message, exactly.
pub fn sasl_initial_response(body: &[u8]) -> Result<(&[u8], &[u8]), GatewayError> {
    let bad = || GatewayError::Protocol("malformed SASLInitialResponse message".into());
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

#[derive(Debug, Clone)]
/// What the users file stores for a SCRAM user (PostgreSQL's format):
/// enough to verify a proof, never the password.
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("system randomness");
    b
}

impl ScramVerifier {
    pub fn new(password: &str) -> Self {
        Self::with_salt(password, &random_bytes(16), DEFAULT_ITERATIONS)
    }

    pub fn with_salt(password: &str, salt: &[u8], iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iterations).expect("iterations > 0"),
            salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: digest::digest(&digest::SHA256, &client_key)
                .as_ref()
                .to_vec(),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(Self {
            iterations: iterations.parse().ok().filter(|&i| i > 0)?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok().filter(|k| k.len() == 32)?,
            server_key: B64.decode(server).ok().filter(|k| k.len() == 32)?,
        })
    }

    pub fn to_string_form(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }
}

/// One server-side exchange. For unknown users it runs with a random
/// verifier, so the client sees exactly what a wrong password gets.
pub struct ScramExchange {
    verifier: ScramVerifier,
    real_user: bool,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// What the client-final-message's `c=` must carry: the GS2 header,
    /// then the channel-binding data when the client binds.
    expected_binding: Vec<u8>,
}

impl ScramExchange {
    /// Handles client-first-message for the `mechanism` the client chose;
    /// returns the exchange and server-first-message. `server_end_point`:
    /// the connection's channel-binding data when it is TLS (and so
    /// SCRAM-SHA-256-PLUS was offered).
    /// `verifier`: the user's, or `None` for an unknown user, who is
    /// offered `mock_salt` and the default iteration count and does the
    /// same work as a wrong password (no key derivation here either way).
    pub fn start(
        verifier: Option<&ScramVerifier>,
        mock_salt: Vec<u8>,
        mechanism: &[u8],
        client_first: &[u8],
        server_end_point: Option<&[u8]>,
    ) -> Result<(Self, String), String> {
        let text = std::str::from_utf8(client_first).map_err(|_| "invalid SCRAM message")?;
        let mut parts = text.splitn(3, ',');
        let cbind = parts.next().unwrap_or("");
        let _authzid = parts.next().ok_or("invalid SCRAM message")?;
        let bare = parts.next().ok_or("invalid SCRAM message")?;
        let plus = match mechanism {
            m if m == MECHANISM.as_bytes() => false,
            m if m == MECHANISM_PLUS.as_bytes() && server_end_point.is_some() => true,
            _ => return Err("unsupported SASL mechanism".into()),
        };
        let binding = match (cbind, plus) {
            ("n", false) => None,
            // The client could bind but believes we cannot: over TLS that
            // is a downgrade by someone in between (RFC 5802 section 6).
            ("y", false) if server_end_point.is_none() => None,
            ("y", false) => return Err("channel binding downgrade".into()),
            (p, true) if p.strip_prefix("p=") == Some(BINDING_TYPE) => server_end_point,
            _ => return Err("channel binding does not match the SASL mechanism".into()),
        };
        let mut expected_binding = text.as_bytes()[..text.len() - bare.len()].to_vec();
        expected_binding.extend_from_slice(binding.unwrap_or_default());
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .ok_or("SCRAM client-first-message has no nonce")?;
        let nonce = format!("{client_nonce}{}", B64.encode(random_bytes(18)));
        let (verifier, real_user) = match verifier {
            Some(v) => (v.clone(), true),
            None => (
                ScramVerifier {
                    iterations: DEFAULT_ITERATIONS,
                    salt: mock_salt,
                    stored_key: vec![0; 32],
                    server_key: vec![0; 32],
                },
                false,
            ),
        };
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        Ok((
            Self {
                verifier,
                real_user,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
                expected_binding,
            },
            server_first,
        ))
    }

    /// Verifies client-final-message; returns server-final-message on success.
    pub fn finish(&self, client_final: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(client_final).ok()?;
        let (without_proof, proof) = text.rsplit_once(",p=")?;
        let mut channel_binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(c) = attr.strip_prefix("c=") {
                channel_binding = Some(c);
            } else if let Some(r) = attr.strip_prefix("r=") {
                nonce = Some(r);
            }
        }
        if nonce? != self.nonce || B64.decode(channel_binding?).ok()? != self.expected_binding {
            return None;
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let proof = B64.decode(proof).ok()?;
        if proof.len() != signature.len() {
            return None;
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let stored = digest::digest(&digest::SHA256, &client_key);
        let ok = constant_time_eq(stored.as_ref(), &self.verifier.stored_key);
        if !ok || !self.real_user {
            return None;
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Some(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_round_trips_through_its_text_form() {
        let v = ScramVerifier::new("secret");
        let parsed = ScramVerifier::parse(&v.to_string_form()).unwrap();
        assert_eq!(parsed.stored_key, v.stored_key);
        assert!(ScramVerifier::parse("plaintext").is_none());
    }

    #[test]
    fn rfc7677_example() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = ScramVerifier::with_salt("pencil", &salt, 4096);
        let client_first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let (mut ex, _) =
            ScramExchange::start(Some(&v), Vec::new(), b"SCRAM-SHA-256", client_first, None)
                .unwrap();
        // Pin the server nonce to the RFC's.
        ex.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        ex.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", ex.nonce);
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            ex.finish(client_final).as_deref(),
            Some("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        );
        let tampered = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert!(ex.finish(tampered).is_none());
    }

    /// A client's side of the exchange, as libpq computes it.
    fn client_final(
        password: &str,
        client_first: &str,
        server_first: &str,
        binding: &[u8],
    ) -> String {
        let attrs = |m: &str, k: &str| {
            m.split(',')
                .find_map(|a| a.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        let salt = B64.decode(attrs(server_first, "s=")).unwrap();
        let iterations = attrs(server_first, "i=").parse().unwrap();
        let v = ScramVerifier::with_salt(password, &salt, iterations);
        let bare = client_first.splitn(3, ',').nth(2).unwrap();
        let without_proof = format!("c={},r={}", B64.encode(binding), attrs(server_first, "r="));
        let auth = format!("{bare},{server_first},{without_proof}");
        // ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage); the
        // verifier keeps StoredKey only, so derive ClientKey again.
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iterations).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        let signature = hmac_sha256(&v.stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn channel_binding_ties_the_proof_to_the_servers_certificate() {
        let v = ScramVerifier::new("pencil");
        let ours = [1u8; 32];
        let login = |mechanism: &str, cbind: &str, seen_by_client: &[u8]| {
            let first = format!("{cbind},,n=,r=clientnonce");
            let (ex, server_first) = ScramExchange::start(
                Some(&v),
                Vec::new(),
                mechanism.as_bytes(),
                first.as_bytes(),
                Some(&ours),
            )?;
            let mut binding = format!("{cbind},,").into_bytes();
            if cbind.starts_with('p') {
                binding.extend_from_slice(seen_by_client);
            }
            let last = client_final("pencil", &first, &server_first, &binding);
            ex.finish(last.as_bytes())
                .ok_or("proof rejected".to_string())
        };
        let plus = "p=tls-server-end-point";
        assert!(login(MECHANISM_PLUS, plus, &ours).is_ok());
        // A proxy re-encrypting with its own certificate: the client binds
        // to that certificate's hash.
        assert!(login(MECHANISM_PLUS, plus, &[2u8; 32]).is_err());
        assert!(login(MECHANISM, "n", &[]).is_ok());
        assert!(login(MECHANISM, "y", &[]).is_err(), "downgrade over TLS");
        assert!(login(MECHANISM, plus, &ours).is_err());
        assert!(login(MECHANISM_PLUS, "n", &[]).is_err());
        assert!(login(MECHANISM_PLUS, "p=tls-unique", &ours).is_err());
        // Without TLS, PLUS is not offered and "y" is fine.
        let first = "y,,n=,r=abc";
        assert!(ScramExchange::start(
            Some(&v),
            vec![],
            MECHANISM.as_bytes(),
            first.as_bytes(),
            None
        )
        .is_ok());
        assert!(ScramExchange::start(
            Some(&v),
            vec![],
            MECHANISM_PLUS.as_bytes(),
            b"p=tls-server-end-point,,n=,r=abc",
            None
        )
        .is_err());
    }

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
            for (mechanism, end_point) in
                [(MECHANISM, None), (MECHANISM_PLUS, Some(&[7u8; 32][..]))]
            {
                let start = ScramExchange::start(
                    None,
                    vec![1; 16],
                    mechanism.as_bytes(),
                    &input,
                    end_point,
                );
                if let Ok((exchange, _)) = start {
                    assert!(exchange.finish(&input).is_none());
                }
            }
        }
    }
}
