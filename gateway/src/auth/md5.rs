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
    #[test]
    fn matches_postgres() {
        // SELECT 'md5' || md5('secret' || 'alice');
        assert_eq!(
            super::stored_hash("alice", "secret"),
            format!("{:x}", ::md5::compute("secretalice"))
        );
    }
}
