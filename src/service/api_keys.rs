//! API keys: created with a role (the key itself shown once, stored only as a hash) and revoked.

use std::time::Duration;

use super::reveals::{Reveal, RevealOn};
use super::{Change, FieldProblems, ServiceError, ServiceResult, Services};
use crate::auth::token;
use crate::domain::audit::Actor;
use crate::domain::role::Role;
use crate::domain::user::DisplayName;
use crate::storage::api_keys;

/// How long a key that authenticated is trusted without asking the database again. A key
/// revoked in this process stops working at once (the cache is emptied); one revoked by
/// another process sharing the database stops working here within this time.
pub const KEY_FRESH_FOR: Duration = Duration::from_secs(2);
/// How often a key's `last_used_at` is brought up to date while it is in use.
const TOUCH_EVERY_SECS: i64 = 60;
/// Keys remembered at most (there are few; this bounds memory whatever happens).
const MAX_CACHED_KEYS: usize = 1024;

/// Keys that authenticated recently, by the hash of their secret, so that a busy client's
/// requests do not each read the database (and on SQLite wait for it).
pub type KeyCache = super::fresh::Fresh<api_keys::ApiKey>;

/// An empty [`KeyCache`].
pub fn key_cache() -> KeyCache {
    KeyCache::new(KEY_FRESH_FOR, MAX_CACHED_KEYS)
}

/// The active key whose secret this is, or `None`. Answered from [`KeyCache`] while fresh;
/// otherwise read from the database, which also records the use (at most once a minute per
/// key, so that busy clients do not turn every API call into a write).
pub async fn authenticate(svc: &Services, secret: &str) -> ServiceResult<Option<api_keys::ApiKey>> {
    let hash = token::hash_api_key(secret);
    if let Some(key) = svc.api_key_cache.fresh(&hash) {
        return Ok(Some(key));
    }
    let generation = svc.api_key_cache.generation();
    let lookup = hash.clone();
    let found = svc
        .db
        .run(move |conn| {
            let now = crate::storage::now();
            let found = api_keys::find_active_by_hash(conn, &lookup)?;
            if let Some(key) = &found
                && key
                    .last_used_at
                    .is_none_or(|t| t < now - chrono::Duration::seconds(TOUCH_EVERY_SECS))
            {
                api_keys::touch(conn, key.id, now)?;
            }
            Ok::<_, ServiceError>(found)
        })
        .await?;
    if let Some(key) = &found {
        svc.api_key_cache.keep(hash, key.clone(), generation);
    }
    Ok(found)
}

/// Every key, revoked ones too, as the API keys page lists them.
pub async fn list(svc: &Services) -> ServiceResult<Vec<(api_keys::ApiKey, Option<String>)>> {
    svc.read(|conn| Ok(api_keys::list(conn)?)).await
}

/// Creates a key named `name` with `role`; the key waits beside the admin's session
/// `session_id` to be shown once. Field problems come back as `invalid_api_key`.
pub async fn create(
    svc: &Services,
    actor: Actor,
    created_by: Option<i64>,
    session_id: i64,
    name: &str,
    role: &str,
    rate_limit: &str,
) -> ServiceResult<(DisplayName, Role)> {
    let mut problems = FieldProblems::new();
    let name = problems.check("name", DisplayName::parse(name));
    let role = problems.check("role", role.parse::<Role>().map_err(|e| e.to_string()));
    let rate_limit = problems.check("rate_limit", super::rate_limits::parse_limit(rate_limit));
    let (Some(name), Some(role), Some(rate_limit_per_minute)) = (name, role, rate_limit) else {
        return Err(ServiceError::invalid_fields("invalid_api_key", problems));
    };
    let new = token::new_api_key();
    let reveal = Reveal::new(
        format!("API key \"{}\"", name.as_str()),
        new.secret.clone(),
        "Copy it now: Herald stores only a hash and cannot show it again. Send it in the header Authorization: Bearer <key>.",
    )
    .seal(&svc.keys)?;
    let key_name = name.clone();
    svc.write(actor, move |change| {
        let key = NewKey {
            name: &key_name,
            role,
            token: &new,
            created_by,
            rate_limit_per_minute,
        };
        key.record(change)?;
        reveal.keep(change.conn, session_id, RevealOn::ApiKeys)?;
        Ok(())
    })
    .await?;
    Ok((name, role))
}

/// A key being created, by the page or the command line.
pub struct NewKey<'a> {
    pub name: &'a DisplayName,
    pub role: Role,
    pub token: &'a token::NewApiKey,
    pub created_by: Option<i64>,
    /// The key's own limit (requests a minute); `None` follows the default.
    pub rate_limit_per_minute: Option<i32>,
}

impl NewKey<'_> {
    /// Stores the key (its hash) with its audit entry, inside `change`.
    pub fn record(&self, change: &mut Change<'_>) -> ServiceResult<api_keys::ApiKey> {
        let key = api_keys::insert(
            change.conn,
            &api_keys::NewApiKey {
                name: self.name.as_str(),
                role: self.role,
                prefix: &self.token.prefix,
                key_hash: &self.token.hash,
                created_by: self.created_by,
                rate_limit_per_minute: self.rate_limit_per_minute,
            },
        )?;
        change.audit(
            "api_key.created",
            "api_key",
            Some(&key.public_id),
            serde_json::json!({"name": key.name, "role": self.role.as_str(), "prefix": key.prefix, "rate_limit_per_minute": self.rate_limit_per_minute}),
        )?;
        Ok(key)
    }
}

/// Revokes the key `public_id`; `false` when it was revoked already (nothing is recorded then).
pub async fn revoke(
    svc: &Services,
    actor: Actor,
    public_id: String,
) -> ServiceResult<(api_keys::ApiKey, bool)> {
    let done = svc
        .write(actor, move |change| {
            let key = api_keys::find_by_public_id(change.conn, &public_id)?
                .ok_or_else(|| ServiceError::not_found("This API key"))?;
            let revoked = api_keys::revoke(change.conn, key.id)?;
            if revoked {
                change.audit(
                    "api_key.revoked",
                    "api_key",
                    Some(&key.public_id),
                    serde_json::json!({"name": key.name}),
                )?;
            }
            Ok((key, revoked))
        })
        .await;
    // Whatever happened, the next request with any key asks the database again.
    svc.api_key_cache.clear();
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> api_keys::ApiKey {
        api_keys::ApiKey {
            id: 1,
            public_id: "k".into(),
            name: name.into(),
            role: Role::Admin,
            prefix: "hrld_abc".into(),
            created_by: None,
            created_at: crate::storage::now(),
            last_used_at: None,
            revoked_at: None,
            rate_limit_per_minute: None,
        }
    }

    #[test]
    fn a_key_read_before_the_cache_was_emptied_is_not_kept() {
        let cache = key_cache();
        let before = cache.generation();
        cache.keep("h1".into(), key("kept"), before);
        assert_eq!(cache.fresh("h1").map(|k| k.name), Some("kept".into()));
        // A revocation empties the cache while another request is reading the key.
        let reading = cache.generation();
        cache.clear();
        assert!(cache.fresh("h1").is_none());
        cache.keep("h1".into(), key("stale"), reading);
        assert!(cache.fresh("h1").is_none(), "the stale read was kept");
        cache.keep("h1".into(), key("fresh"), cache.generation());
        assert_eq!(cache.fresh("h1").map(|k| k.name), Some("fresh".into()));
    }
}
