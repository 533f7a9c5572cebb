//! Password authentication against a users file: SCRAM-SHA-256 verifiers
//! (PostgreSQL's format) or MD5 hashes, never plaintext.

pub mod md5;
pub mod rules;
pub mod users;

pub use users::{Secret, Users};
pub use velo_pgproto::scram::{self, constant_time_eq};

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
