//! Password authentication against a users file: SCRAM-SHA-256 verifiers
//! (PostgreSQL's format) or MD5 hashes, never plaintext.

pub mod md5;
pub mod scram;
pub mod users;

pub use users::{Secret, Users};

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
