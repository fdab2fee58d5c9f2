//! Issue 19: `Idempotency-Key` on the API's creating POSTs, with the semantics of messages: the
//! same key with the same request answers with what the first one created (not a second one);
//! the same key with a different request is refused (`idempotency_key_reused`, 422).
//!
//! A use case that creates something takes an `Option<&IdempotencyKey>` and calls [`remember`]
//! inside its `write_transaction`, once it knows what it created: the key and the creation
//! commit or roll back together. Two identical requests at once both run; the second one's
//! [`remember`] hits the unique index on (API key, key) and rolls its whole creation back, and
//! the caller answers with what the first one created ([`Replay`]). Keys are kept 24 hours.

use std::sync::atomic::{AtomicI64, Ordering};

use sha2::{Digest, Sha256};

use super::{Change, ServiceError, ServiceResult, Services};
use crate::storage::{idempotency as store, is_unique_violation};

/// How long a key is remembered.
pub const KEEP_FOR: chrono::Duration = chrono::Duration::hours(24);
/// The code of a key used again for a different request (the one messages use).
pub const REUSED: &str = "idempotency_key_reused";
/// The code [`remember`] answers when a concurrent twin stored the key first.
pub const TAKEN: &str = "idempotency_key_taken";

/// A request's `Idempotency-Key`, scoped to the API key that sent it, with a fingerprint of the
/// request (SHA-256 of method, path and body).
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub api_key_id: i64,
    pub key: String,
    /// The route's pattern, for people reading the table.
    pub route: String,
    pub fingerprint: String,
    /// The status the creation answers with, replayed with it.
    pub status: u16,
}

impl IdempotencyKey {
    pub fn fingerprint_of(method: &str, path: &str, body: &[u8]) -> String {
        let mut hash = Sha256::new();
        hash.update(method.as_bytes());
        hash.update(b" ");
        hash.update(path.as_bytes());
        hash.update(b"\n");
        hash.update(body);
        crate::channels::wire::hex(&hash.finalize())
    }

    /// The same key answering with `status` (an upsert that updated rather than created).
    pub fn answered_with(&self, status: u16) -> Self {
        IdempotencyKey {
            status,
            ..self.clone()
        }
    }
}

/// What an earlier request with the key created: answer with this resource and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub status: u16,
    pub resource_kind: String,
    pub resource_id: String,
}

/// Records, inside the creation's transaction, that `key` created `kind` `id`. Nothing when
/// there is no key. A key stored meanwhile by a concurrent twin answers [`TAKEN`].
pub fn remember(
    change: &mut Change<'_>,
    key: Option<&IdempotencyKey>,
    kind: &str,
    id: &str,
) -> ServiceResult<()> {
    let Some(key) = key else {
        return Ok(());
    };
    let inserted = store::insert(
        change.conn,
        &store::NewKey {
            api_key_id: key.api_key_id,
            key: &key.key,
            route: &key.route,
            fingerprint: &key.fingerprint,
            status: i32::from(key.status),
            resource_kind: kind,
            resource_id: id,
        },
        crate::storage::now() - KEEP_FOR,
    );
    match inserted {
        Ok(()) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(ServiceError::conflict(
            TAKEN,
            "Another request with this idempotency key was being answered; repeat it to get its answer.",
        )),
        Err(e) => Err(e.into()),
    }
}

/// The clock's minute when expired keys were last swept by this process.
static SWEPT: AtomicI64 = AtomicI64::new(0);

/// What the key created before, if it was used in the last 24 hours with the same request;
/// [`REUSED`] when it was used for a different one.
pub async fn replay(svc: &Services, key: &IdempotencyKey) -> ServiceResult<Option<Replay>> {
    let minute = chrono::Utc::now().timestamp() / 60;
    let sweep = SWEPT.swap(minute, Ordering::Relaxed) != minute;
    let (api_key_id, k) = (key.api_key_id, key.key.clone());
    let found = svc
        .read(move |conn| {
            let since = crate::storage::now() - KEEP_FOR;
            if sweep {
                store::forget_before(conn, since)?;
            }
            Ok(store::find(conn, api_key_id, &k, since)?)
        })
        .await?;
    let Some(found) = found else {
        return Ok(None);
    };
    if found.fingerprint != key.fingerprint {
        return Err(ServiceError::invalid(
            REUSED,
            format!(
                "This idempotency key was already used for a different request ({}); use a new key.",
                found.route
            ),
        ));
    }
    Ok(Some(Replay {
        status: u16::try_from(found.status).unwrap_or(200),
        resource_kind: found.resource_kind,
        resource_id: found.resource_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::Actor;
    use crate::domain::role::Role;
    use crate::service::{testing, write};
    use crate::storage::{api_keys, idempotency as store};

    fn key(api_key_id: i64, fingerprint: &str) -> IdempotencyKey {
        IdempotencyKey {
            api_key_id,
            key: "order-1".into(),
            route: "/api/v1/channels".into(),
            fingerprint: fingerprint.into(),
            status: 201,
        }
    }

    #[test]
    fn a_key_is_taken_once_until_it_expires() {
        let (_dir, db) = testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let api_key = api_keys::insert(
            &mut conn,
            &api_keys::NewApiKey {
                name: "Shop",
                role: Role::Admin,
                prefix: "hrld_x",
                key_hash: "hash",
                created_by: None,
                rate_limit_per_minute: None,
            },
        )
        .expect("key");
        let actor = Actor::system("idempotency test");
        let first = key(api_key.id, "a");
        write(&mut conn, &actor, |change| {
            remember(change, Some(&first), "channel", "ch_1")
        })
        .expect("first use");
        // A twin (or any second use) is refused inside its transaction, which rolls back.
        let err = write(&mut conn, &actor, |change| {
            remember(change, Some(&key(api_key.id, "a")), "channel", "ch_2")
        })
        .unwrap_err();
        assert!(
            matches!(err, ServiceError::Conflict { code: TAKEN, .. }),
            "{err:?}"
        );
        let since = crate::storage::now() - KEEP_FOR;
        let found = store::find(&mut conn, api_key.id, "order-1", since)
            .expect("find")
            .expect("kept");
        assert_eq!((found.resource_id.as_str(), found.status), ("ch_1", 201));
        // Without a key nothing is written.
        write(&mut conn, &actor, |change| {
            remember(change, None, "channel", "ch_3")
        })
        .expect("no key");

        // A day later the key is forgotten and may be used again.
        {
            use crate::storage::schema::idempotency_keys as k;
            use diesel::prelude::*;
            diesel::update(k::table)
                .set(k::created_at.eq(crate::storage::now() - chrono::Duration::hours(25)))
                .execute(&mut conn)
                .expect("age");
        }
        assert!(
            store::find(&mut conn, api_key.id, "order-1", since)
                .expect("find")
                .is_none()
        );
        write(&mut conn, &actor, |change| {
            remember(change, Some(&key(api_key.id, "b")), "channel", "ch_4")
        })
        .expect("reused after expiry");
    }

    #[test]
    fn the_fingerprint_covers_method_path_and_body() {
        let base = IdempotencyKey::fingerprint_of("POST", "/api/v1/contacts", b"{}");
        assert_eq!(
            base,
            IdempotencyKey::fingerprint_of("POST", "/api/v1/contacts", b"{}")
        );
        assert_ne!(
            base,
            IdempotencyKey::fingerprint_of("POST", "/api/v1/channels", b"{}")
        );
        assert_ne!(
            base,
            IdempotencyKey::fingerprint_of("PUT", "/api/v1/contacts", b"{}")
        );
        assert_ne!(
            base,
            IdempotencyKey::fingerprint_of("POST", "/api/v1/contacts", b"{ }")
        );
        assert_eq!(base.len(), 64);
    }
}
