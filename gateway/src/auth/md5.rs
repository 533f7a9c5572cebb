//! PostgreSQL's MD5 password scheme.

/// The stored form: hex(md5(password + user)), without the `md5` prefix.
pub fn stored_hash(user: &str, password: &str) -> String {
    format!("{:x}", ::md5::compute(format!("{password}{user}")))
}

/// What a client must answer for `salt`: `md5` + hex(md5(stored + salt)).
pub fn expected_response(stored: &str, salt: &[u8; 4]) -> String {
    let mut input = stored.as_bytes().to_vec();
    input.extend_from_slice(salt);
    format!("md5{:x}", ::md5::compute(input))
}

#[cfg(test)]
mod tests {
    /// Produced by PostgreSQL 15: `SET password_encryption = 'md5';
    /// CREATE ROLE alice PASSWORD 'secret'` then pg_authid.rolpassword.
    const ALICE_SECRET: &str = "4a0a68b43b6cd5cf266fa02f196e2371";

    #[test]
    fn stored_hash_matches_postgres() {
        assert_eq!(super::stored_hash("alice", "secret"), ALICE_SECRET);
    }

    #[test]
    fn salted_response_matches_postgres() {
        // SELECT 'md5' || md5(substr(rolpassword, 4) || 'abcd') on the same role.
        assert_eq!(
            super::expected_response(ALICE_SECRET, b"abcd"),
            "md5c90bcafc0a2b54511742383e34d5dc9d"
        );
    }
}
