//! Issue 19: what each `Idempotency-Key` created, per API key, for the creating POSTs that have
//! no key column of their own. Written inside the creation's transaction.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::idempotency_keys as k;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = k)]
pub struct StoredKey {
    pub route: String,
    pub fingerprint: String,
    pub status: i32,
    pub resource_kind: String,
    pub resource_id: String,
    pub created_at: NaiveDateTime,
}

pub struct NewKey<'a> {
    pub api_key_id: i64,
    pub key: &'a str,
    pub route: &'a str,
    pub fingerprint: &'a str,
    pub status: i32,
    pub resource_kind: &'a str,
    pub resource_id: &'a str,
}

/// Records the key (replacing the same key expired before `expired_before`); a key this API key
/// used already comes back as a unique violation.
pub fn insert(
    conn: &mut DbConnection,
    new: &NewKey<'_>,
    expired_before: NaiveDateTime,
) -> QueryResult<()> {
    diesel::delete(
        k::table
            .filter(k::api_key_id.eq(new.api_key_id))
            .filter(k::key.eq(new.key))
            .filter(k::created_at.lt(expired_before)),
    )
    .execute(conn)?;
    diesel::insert_into(k::table)
        .values((
            k::api_key_id.eq(new.api_key_id),
            k::key.eq(new.key),
            k::route.eq(new.route),
            k::fingerprint.eq(new.fingerprint),
            k::status.eq(new.status),
            k::resource_kind.eq(new.resource_kind),
            k::resource_id.eq(new.resource_id),
            k::created_at.eq(super::now()),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The key as `api_key_id` used it, if it was used since `since`.
pub fn find(
    conn: &mut DbConnection,
    api_key_id: i64,
    key: &str,
    since: NaiveDateTime,
) -> QueryResult<Option<StoredKey>> {
    k::table
        .filter(k::api_key_id.eq(api_key_id))
        .filter(k::key.eq(key))
        .filter(k::created_at.ge(since))
        .select(StoredKey::as_select())
        .first(conn)
        .optional()
}

/// Forgets keys used before `before`.
pub fn forget_before(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(k::table.filter(k::created_at.lt(before))).execute(conn)
}
