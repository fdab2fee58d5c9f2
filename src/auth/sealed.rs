//! Channel secrets at rest: sealed with XChaCha20-Poly1305 under the key derived from
//! `HERALD_SECRET_KEY` (a fresh random nonce per value), stored as base64 of nonce + ciphertext.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the stored secrets cannot be read: were they saved under another HERALD_SECRET_KEY?")]
    Undecryptable,
    #[error("sealing the secrets failed")]
    Seal,
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&(*key).into())
}

pub fn seal(key: &[u8; 32], plaintext: &str) -> Result<String, SealError> {
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let nonce = XNonce::from(nonce_bytes);
    let ciphertext = cipher(key)
        .encrypt(&nonce, plaintext.as_bytes())
        .map_err(|_| SealError::Seal)?;
    let mut out = nonce_bytes.to_vec();
    out.extend(ciphertext);
    Ok(STANDARD.encode(out))
}

pub fn open(key: &[u8; 32], sealed: &str) -> Result<String, SealError> {
    let raw = STANDARD
        .decode(sealed.trim())
        .map_err(|_| SealError::Undecryptable)?;
    if raw.len() <= NONCE_LEN {
        return Err(SealError::Undecryptable);
    }
    let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
    let nonce_bytes: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Undecryptable)?;
    let plaintext = cipher(key)
        .decrypt(&XNonce::from(nonce_bytes), ciphertext)
        .map_err(|_| SealError::Undecryptable)?;
    String::from_utf8(plaintext).map_err(|_| SealError::Undecryptable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_the_same_key_only() {
        let key = [7u8; 32];
        let a = seal(&key, "{\"auth_token\":\"s3cret\"}").unwrap();
        let b = seal(&key, "{\"auth_token\":\"s3cret\"}").unwrap();
        assert_ne!(a, b, "a fresh nonce each time");
        assert!(!a.contains("s3cret"));
        assert_eq!(open(&key, &a).unwrap(), "{\"auth_token\":\"s3cret\"}");
        assert_eq!(open(&[8u8; 32], &a), Err(SealError::Undecryptable));
        assert_eq!(open(&key, "not base64!"), Err(SealError::Undecryptable));
        let mut tampered = STANDARD.decode(&a).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            open(&key, &STANDARD.encode(tampered)),
            Err(SealError::Undecryptable)
        );
    }
}
