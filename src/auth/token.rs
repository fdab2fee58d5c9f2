//! Random tokens: API keys and session ids (both stored as SHA-256 hashes) and CSRF tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const API_KEY_PREFIX: &str = "hrld_";
/// How many characters of a key (after `hrld_`) are kept in clear to recognise it in lists.
const VISIBLE_CHARS: usize = 8;

pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// 32 random bytes, URL-safe base64.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    encode(&bytes)
}

/// A new API key: the secret shown once, and what is stored.
pub struct NewApiKey {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

pub fn new_api_key() -> NewApiKey {
    let secret = format!("{API_KEY_PREFIX}{}", random_token());
    let prefix = secret[..API_KEY_PREFIX.len() + VISIBLE_CHARS].to_owned();
    let hash = hash_api_key(&secret);
    NewApiKey {
        secret,
        prefix,
        hash,
    }
}

/// API keys carry 256 random bits, so a fast hash is enough (no password stretching needed);
/// lookups go by this hash, so the comparison never touches the secret itself.
pub fn hash_api_key(secret: &str) -> String {
    hash_token(secret.trim())
}

/// SHA-256 of a random token, as hex: what the database keeps of API keys and session ids, so
/// a copy of the database opens no session and calls no API.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two tokens in constant time.
pub fn tokens_match(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// A readable random password for admin resets (shown once): 4 groups of 5 characters.
pub fn readable_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes: [u8; 20] = rand::random();
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    chars
        .chunks(5)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_prefixed_unique_and_hashed() {
        let a = new_api_key();
        let b = new_api_key();
        assert!(a.secret.starts_with("hrld_"));
        assert_eq!(a.prefix.len(), 13);
        assert!(a.secret.starts_with(&a.prefix));
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.hash, hash_api_key(&a.secret));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.secret));
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
        assert!(!tokens_match("", ""));
    }

    #[test]
    fn readable_passwords_meet_the_policy() {
        let p = readable_password();
        assert_eq!(p.len(), 23);
        assert!(crate::domain::user::NewPassword::parse(&p, None).is_ok());
    }
}
