//! Keys derived from the one master secret (`HERALD_SECRET_KEY`), each for one purpose.

use hkdf::Hkdf;
use sha2::Sha256;

/// The master secret must carry at least this many bytes.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Clone)]
pub struct Keys {
    /// Signs and encrypts the session cookie.
    pub cookie: actix_web::cookie::Key,
    /// Encrypts channel secrets at rest.
    pub channel_secrets: [u8; 32],
    /// Encrypts secrets kept server-side until they are shown once (`storage::sessions`).
    pub reveals: [u8; 32],
    /// Encrypts the signing secrets of status-callback endpoints at rest.
    pub webhook_secrets: [u8; 32],
}

impl Keys {
    pub fn derive(master: &str) -> anyhow::Result<Self> {
        if master.len() < MIN_SECRET_LEN {
            anyhow::bail!(
                "HERALD_SECRET_KEY must be at least {MIN_SECRET_LEN} characters long (it has {})",
                master.len()
            );
        }
        let hk = Hkdf::<Sha256>::new(Some(b"herald"), master.as_bytes());
        let mut cookie = [0u8; 64];
        let mut channel_secrets = [0u8; 32];
        let mut reveals = [0u8; 32];
        let mut webhook_secrets = [0u8; 32];
        hk.expand(b"session cookie", &mut cookie)
            .map_err(|_| anyhow::anyhow!("deriving the cookie key failed"))?;
        hk.expand(b"channel secrets", &mut channel_secrets)
            .map_err(|_| anyhow::anyhow!("deriving the channel secrets key failed"))?;
        hk.expand(b"shown-once secrets", &mut reveals)
            .map_err(|_| anyhow::anyhow!("deriving the shown-once secrets key failed"))?;
        hk.expand(b"webhook endpoint secrets", &mut webhook_secrets)
            .map_err(|_| anyhow::anyhow!("deriving the webhook secrets key failed"))?;
        Ok(Keys {
            cookie: actix_web::cookie::Key::from(&cookie),
            channel_secrets,
            reveals,
            webhook_secrets,
        })
    }

    /// A fresh random master secret, for the first start without `HERALD_SECRET_KEY`.
    pub fn generate_master() -> String {
        let bytes: [u8; 48] = rand::random();
        crate::auth::token::encode(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_stable_and_purpose_bound() {
        let master = "0123456789abcdef0123456789abcdef";
        let a = Keys::derive(master).unwrap();
        let b = Keys::derive(master).unwrap();
        assert_eq!(a.channel_secrets, b.channel_secrets);
        assert_eq!(a.cookie.master(), b.cookie.master());
        assert_ne!(&a.cookie.master()[..32], &a.channel_secrets[..]);
        assert_ne!(a.reveals, a.channel_secrets);
        let other = Keys::derive("another secret of enough length!!").unwrap();
        assert_ne!(a.channel_secrets, other.channel_secrets);
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Keys::derive("short").is_err());
        assert!(Keys::generate_master().len() >= MIN_SECRET_LEN);
    }
}
