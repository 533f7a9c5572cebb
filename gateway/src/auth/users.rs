//! The users file: one `user:secret` per line, `#` comments. A secret is a
//! SCRAM verifier (`SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey`) or an
//! MD5 hash (`md5` + hex of md5(password + user)), as `velo-gateway
//! hash-password` prints them.

use std::collections::HashMap;
use std::path::Path;

use super::scram::ScramVerifier;

#[derive(Debug, Clone)]
/// A user's stored secret, which decides the login exchange.
pub enum Secret {
    Scram(ScramVerifier),
    Md5(String),
}

#[derive(Debug, Clone, Default)]
/// The users file, loaded at start: user name → secret.
pub struct Users {
    by_name: HashMap<String, Secret>,
}

impl Users {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading users file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("users file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut by_name = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, secret) = line
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("line {}: expected user:secret", n + 1))?;
            let secret = if let Some(hash) = secret.strip_prefix("md5") {
                anyhow::ensure!(
                    hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
                    "line {}: malformed md5 hash",
                    n + 1
                );
                Secret::Md5(hash.to_ascii_lowercase())
            } else {
                Secret::Scram(ScramVerifier::parse(secret).ok_or_else(|| {
                    anyhow::anyhow!(
                        "line {}: malformed SCRAM verifier (plaintext passwords are not accepted)",
                        n + 1
                    )
                })?)
            };
            by_name.insert(user.to_string(), secret);
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, user: &str) -> Option<&Secret> {
        self.by_name.get(user)
    }

    /// User names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }
}
