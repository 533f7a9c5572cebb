//! The users file: one `user:secret` per line, `#` comments. A secret is a
//! SCRAM verifier (`SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey`) or an
//! MD5 hash (`md5` + hex of md5(password + user)), as `velo-gateway
//! hash-password` prints them.

use std::collections::HashMap;
use std::path::Path;

use super::scram::ScramVerifier;

/// A user's stored secret, which decides the login exchange.
#[derive(Debug, Clone)]
pub enum Secret {
    Scram(ScramVerifier),
    Md5(String),
}

/// The users file, loaded at start: user name → secret.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_name: HashMap<String, Secret>,
    /// Keys the mock salts of unknown users: derived from the file, so
    /// every replica sharing it answers an unknown name the same way, and
    /// no one without the file can tell a mock salt from a real one.
    mock_key: Vec<u8>,
    /// Users who see every user's queries (`admin_users`).
    admins: Vec<String>,
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
        let mock_key = ring::digest::digest(
            &ring::digest::SHA256,
            &[b"velo-gateway scram mock salt\0", text.as_bytes()].concat(),
        )
        .as_ref()
        .to_vec();
        Ok(Self {
            by_name,
            mock_key,
            admins: Vec::new(),
        })
    }

    /// Marks `admins` as users who see every user's queries.
    pub fn with_admins(mut self, admins: &[String]) -> Self {
        self.admins = admins.to_vec();
        self
    }

    pub fn is_admin(&self, user: &str) -> bool {
        self.admins.iter().any(|a| a == user)
    }

    /// The salt SCRAM offers for a user who does not exist: the same for
    /// the same name on every attempt (as PostgreSQL's mock salt), so a
    /// client cannot tell unknown users from wrong passwords.
    pub fn mock_salt(&self, user: &str) -> Vec<u8> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.mock_key);
        ring::hmac::sign(&key, user.as_bytes()).as_ref()[..16].to_vec()
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
