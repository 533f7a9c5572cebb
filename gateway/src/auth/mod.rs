//! Password authentication against a users file: SCRAM-SHA-256 verifiers
//! (PostgreSQL's format) or MD5 hashes, never plaintext.

pub mod md5;
pub mod scram;
pub mod users;

pub use users::{Secret, Users};

/// A users-file secret for `password`: a SCRAM-SHA-256 verifier with a
/// fresh salt (what `velo-gateway hash-password` prints).
pub fn scram_users_file_secret(password: &str) -> String {
    scram::ScramVerifier::new(password).to_string_form()
}

/// A users-file secret in PostgreSQL's MD5 form (`md5` + hash), for old
/// clients.
pub fn md5_users_file_secret(user: &str, password: &str) -> String {
    format!("md5{}", md5::stored_hash(user, password))
}

/// How clients must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No password (allowed only when every listen address is loopback).
    Trust,
    /// SCRAM-SHA-256, falling back to MD5 for users stored with an MD5 hash.
    Password,
}

/// Compares secrets without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
