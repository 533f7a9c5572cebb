//! TLS for client connections: when a certificate and key are configured,
//! SSLRequest is answered 'S' and the socket is wrapped before startup.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::{self, pki_types::CertificateDer};
use tokio_rustls::TlsAcceptor;

pub fn acceptor(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsAcceptor> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()));
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut read(cert_file)?.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("{}: {e}", cert_file.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate", cert_file.display());
    let key = rustls_pemfile::private_key(&mut read(key_file)?.as_slice())
        .map_err(|e| anyhow::anyhow!("{}: {e}", key_file.display()))?
        .ok_or_else(|| anyhow::anyhow!("{}: no private key", key_file.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| anyhow::anyhow!("TLS certificate/key: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
