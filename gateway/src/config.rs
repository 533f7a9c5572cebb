//! Gateway configuration: flags and environment (see `main.rs`), optionally
//! a TOML file with the same keys.

use std::path::PathBuf;

use serde::Deserialize;

use crate::auth::AuthMethod;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Addresses to accept PostgreSQL clients on.
    pub listen: Vec<String>,
    /// Engine nodes (`host:port`); empty runs the embedded demo engine.
    pub engines: Vec<String>,
    /// Users file with SCRAM verifiers / MD5 hashes; enables password auth.
    pub users_file: Option<PathBuf>,
    /// `trust` or `password`; default: password when a users file is given.
    pub auth: Option<String>,
    pub max_connections: usize,
    pub max_queries_per_node: usize,
    pub queue_limit: usize,
    pub queue_timeout_ms: u64,
    /// Events per second of the embedded demo generator.
    pub demo_rate: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: vec!["127.0.0.1:5433".into()],
            engines: Vec::new(),
            users_file: None,
            auth: None,
            max_connections: 1000,
            max_queries_per_node: 32,
            queue_limit: 256,
            queue_timeout_ms: 10_000,
            demo_rate: 1000,
        }
    }
}

impl GatewayConfig {
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))
    }

    pub fn auth_method(&self) -> AuthMethod {
        match self.auth.as_deref() {
            Some("trust") => AuthMethod::Trust,
            Some(_) => AuthMethod::Password,
            None if self.users_file.is_some() => AuthMethod::Password,
            None => AuthMethod::Trust,
        }
    }
}
