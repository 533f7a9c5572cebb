//! TLS for client connections: when a certificate and key are configured,
//! SSLRequest is answered 'S' and the socket is wrapped before startup, and
//! a client may also start TLS directly (PostgreSQL 17's
//! `sslnegotiation=direct`), which must then name the "postgresql" ALPN.

use std::path::Path;
use std::sync::Arc;

use ring::digest;
use tokio_rustls::rustls::{self, pki_types::CertificateDer};
use tokio_rustls::TlsAcceptor;

/// The ALPN protocol name PostgreSQL registered.
pub const ALPN: &[u8] = b"postgresql";

/// The first byte of a TLS handshake record: a client that starts TLS
/// without an SSLRequest.
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// A loaded certificate and key, ready to accept connections.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// The `tls-server-end-point` channel-binding data (RFC 5929): the hash
    /// of our certificate. `None` when its signature algorithm names no
    /// hash we can use (Ed25519), so SCRAM-SHA-256-PLUS is not offered.
    pub server_end_point: Option<Arc<[u8]>>,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
}

fn certificates(file: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut read(file)?.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate", file.display());
    Ok(certs)
}

impl Tls {
    /// The certificate chain and key, and optionally the CA that client
    /// certificates are verified against (clients may then present one;
    /// one that does not verify fails the handshake).
    pub fn load(
        cert_file: &Path,
        key_file: &Path,
        client_ca: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let certs = certificates(cert_file)?;
        let key = rustls_pemfile::private_key(&mut read(key_file)?.as_slice())
            .map_err(|e| anyhow::anyhow!("{}: {e}", key_file.display()))?
            .ok_or_else(|| anyhow::anyhow!("{}: no private key", key_file.display()))?;
        let server_end_point = server_end_point(&certs[0]).map(Arc::from);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    provider,
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| anyhow::anyhow!("TLS certificate/key: {e}"))?;
        // A client offering other protocols only is refused in the
        // handshake; one offering none is accepted after an SSLRequest
        // (libpq before 17 sends no ALPN) but not on a direct TLS start.
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            server_end_point,
        })
    }
}

/// RFC 5929's `tls-server-end-point`: the certificate hashed with the hash
/// of its signature algorithm, SHA-256 when that is MD5 or SHA-1.
fn server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    let algorithm = match signature_algorithm(cert)? {
        // md5WithRSA, sha1WithRSA, ecdsa-with-SHA1, dsa-with-sha1 and the
        // SHA-256 family: SHA-256.
        oid if [
            &oids::MD5_RSA[..],
            &oids::SHA1_RSA,
            &oids::SHA1_ECDSA,
            &oids::SHA256_RSA,
            &oids::SHA256_ECDSA,
        ]
        .contains(&oid) =>
        {
            &digest::SHA256
        }
        oid if oid == oids::SHA384_RSA || oid == oids::SHA384_ECDSA => &digest::SHA384,
        oid if oid == oids::SHA512_RSA || oid == oids::SHA512_ECDSA => &digest::SHA512,
        _ => return None,
    };
    Some(digest::digest(algorithm, cert).as_ref().to_vec())
}

/// The common name (CN) of a certificate's subject, as text.
pub fn common_name(cert: &[u8]) -> Option<String> {
    const CN: [u8; 3] = [0x55, 0x04, 0x03];
    let (certificate, _) = der_element(cert, 0x30)?;
    let (tbs, _) = der_element(certificate, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_any(rest)?.2; // version
    }
    for _ in 0..4 {
        rest = der_any(rest)?.2; // serial, signature, issuer, validity
    }
    let (mut names, _) = der_element(rest, 0x30)?;
    while !names.is_empty() {
        let (set, after) = der_element(names, 0x31)?;
        names = after;
        let (attribute, _) = der_element(set, 0x30)?;
        let (oid, value) = der_element(attribute, 0x06)?;
        if oid == CN {
            let (tag, text, _) = der_any(value)?;
            // UTF8String, PrintableString, TeletexString, IA5String.
            return matches!(tag, 0x0c | 0x13 | 0x14 | 0x16)
                .then(|| String::from_utf8(text.to_vec()).ok())
                .flatten();
        }
    }
    None
}

/// DER encodings of the signature algorithm OIDs (contents only).
mod oids {
    pub const MD5_RSA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04];
    pub const SHA1_RSA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
    pub const SHA256_RSA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    pub const SHA384_RSA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    pub const SHA512_RSA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    pub const SHA1_ECDSA: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    pub const SHA256_ECDSA: [u8; 8] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    pub const SHA384_ECDSA: [u8; 8] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    pub const SHA512_ECDSA: [u8; 8] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
}

/// The OID of `Certificate.signatureAlgorithm`: the certificate is
/// SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, ... }, ... }.
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = der_element(cert, 0x30)?;
    let (_, after_tbs) = der_element(certificate, 0x30)?;
    let (algorithm, _) = der_element(after_tbs, 0x30)?;
    let (oid, _) = der_element(algorithm, 0x06)?;
    Some(oid)
}

/// Splits one DER element with tag `tag` off `input`: (its contents, the
/// rest).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = der_any(input)?;
    (found == tag).then_some((contents, rest))
}

/// Splits one DER element off `input`: (tag, contents, the rest).
fn der_any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let (len, rest) = if len < 0x80 {
        (len as usize, rest)
    } else {
        let n = (len & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| {
        let (contents, rest) = rest.split_at(len);
        (tag, contents, rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate made by `openssl req -x509 -newkey ec -pkeyopt
    /// ec_paramgen_curve:prime256v1 -subj /CN=localhost` (ecdsa-with-SHA256),
    /// and its SHA-256 as `openssl x509 -outform der | sha256sum` printed it.
    const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBfTCCASOgAwIBAgIUJRpck/QGmzGezwVVl8nIzqAU7E0wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MB4XDTI2MTIwMjEzMDkzMloXDTM2MTEyOTEz
MDkzMlowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEdsp2xl3OyKq9LtpMX9JxtBzOn7DRbXPWmS+uj4T1Hw7VKyf+D2GG85kI
hHpm+QN6HBX8GH6NDcOaURYWIpWUX6NTMFEwHQYDVR0OBBYEFJdQJ8/pIR/Fbg85
R4DbmpJ34U6YMB8GA1UdIwQYMBaAFJdQJ8/pIR/Fbg85R4DbmpJ34U6YMA8GA1Ud
EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgcaGIxt1vhULqKEamaaUqPXRz
5/M3G/61eFpUBv81dD8CIQCHlcj+3jApHHn3hWCXX4xmNUCdOcMOr+sGac28jcua
/g==
-----END CERTIFICATE-----
";

    #[test]
    fn end_point_is_the_certificate_hashed_with_its_signature_hash() {
        let cert = rustls_pemfile::certs(&mut CERT_PEM.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(signature_algorithm(&cert), Some(&oids::SHA256_ECDSA[..]));
        let hex: String = server_end_point(&cert)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, EXPECTED_SHA256);
    }

    const EXPECTED_SHA256: &str =
        "9b764e1c5d84eb6b7fbae4b5302051946fc479fac0a31ff0ba4bf29a1e904793";

    #[test]
    fn common_name_is_read_from_the_subject() {
        let cert = rustls_pemfile::certs(&mut CERT_PEM.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(common_name(&cert).as_deref(), Some("localhost"));
        for len in 0..cert.len() {
            assert!(common_name(&cert[..len]).is_none());
        }
    }

    #[test]
    fn truncated_certificates_have_no_end_point() {
        let cert = rustls_pemfile::certs(&mut CERT_PEM.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        for len in 0..cert.len() {
            assert!(server_end_point(&cert[..len]).is_none());
        }
    }
}
