//! Argon2id password hashes. Hashing is deliberately slow, so callers run these functions on
//! a blocking thread (`spawn_blocking`), never on the async executor.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Hashes a password with Argon2id and a random salt, as a PHC string.
pub fn hash(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password failed: {e}"))
}

/// Checks a password against a stored PHC string. A malformed stored hash counts as a mismatch.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password, verified when the e-mail is unknown so that the answer takes
/// as long as for a real account and does not reveal which e-mails have one.
pub fn dummy_hash() -> anyhow::Result<String> {
    let random: [u8; 16] = rand::random();
    hash(&crate::auth::token::encode(&random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_salts_differ() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify("correct horse battery", &a));
        assert!(!verify("wrong horse battery", &a));
        assert!(!verify("anything", "not a phc string"));
    }
}
