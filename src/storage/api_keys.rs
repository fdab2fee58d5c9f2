//! API keys for the business's own systems. Only a SHA-256 hash of each key is stored.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{api_keys, users};
use super::{DbConnection, new_public_id, now};
use crate::domain::role::Role;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
struct ApiKeyRow {
    id: i64,
    public_id: String,
    name: String,
    role: String,
    prefix: String,
    created_by: Option<i64>,
    created_at: NaiveDateTime,
    last_used_at: Option<NaiveDateTime>,
    revoked_at: Option<NaiveDateTime>,
    rate_limit_per_minute: Option<i32>,
}

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: i64,
    pub public_id: String,
    pub name: String,
    pub role: Role,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    pub created_by: Option<i64>,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    /// Requests a minute this key may make; `None` follows the default, 0 is unlimited.
    pub rate_limit_per_minute: Option<i32>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = diesel::result::Error;

    fn try_from(r: ApiKeyRow) -> Result<Self, Self::Error> {
        let role = r
            .role
            .parse()
            .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
        Ok(ApiKey {
            id: r.id,
            public_id: r.public_id,
            name: r.name,
            role,
            prefix: r.prefix,
            created_by: r.created_by,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
            rate_limit_per_minute: r.rate_limit_per_minute,
        })
    }
}

pub struct NewApiKey<'a> {
    pub name: &'a str,
    pub role: Role,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub created_by: Option<i64>,
    pub rate_limit_per_minute: Option<i32>,
}

pub fn insert(conn: &mut DbConnection, new: &NewApiKey<'_>) -> QueryResult<ApiKey> {
    let row = diesel::insert_into(api_keys::table)
        .values((
            api_keys::public_id.eq(new_public_id()),
            api_keys::name.eq(new.name),
            api_keys::role.eq(new.role.as_str()),
            api_keys::prefix.eq(new.prefix),
            api_keys::key_hash.eq(new.key_hash),
            api_keys::created_by.eq(new.created_by),
            api_keys::created_at.eq(now()),
            api_keys::rate_limit_per_minute.eq(new.rate_limit_per_minute),
        ))
        .returning((
            api_keys::id,
            api_keys::public_id,
            api_keys::name,
            api_keys::role,
            api_keys::prefix,
            api_keys::created_by,
            api_keys::created_at,
            api_keys::last_used_at,
            api_keys::revoked_at,
            api_keys::rate_limit_per_minute,
        ))
        .get_result::<ApiKeyRow>(conn)?;
    ApiKey::try_from(row)
}

/// The key with this hash, if it exists and is not revoked.
pub fn find_active_by_hash(conn: &mut DbConnection, key_hash: &str) -> QueryResult<Option<ApiKey>> {
    api_keys::table
        .filter(api_keys::key_hash.eq(key_hash))
        .filter(api_keys::revoked_at.is_null())
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()?
        .map(ApiKey::try_from)
        .transpose()
}

pub fn find_by_public_id(conn: &mut DbConnection, public_id: &str) -> QueryResult<Option<ApiKey>> {
    api_keys::table
        .filter(api_keys::public_id.eq(public_id))
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()?
        .map(ApiKey::try_from)
        .transpose()
}

/// Records a use, at most once a minute per key, so busy clients do not turn every API call
/// into a write.
pub fn touch(conn: &mut DbConnection, id: i64, at: NaiveDateTime) -> QueryResult<usize> {
    let stale = at - chrono::Duration::seconds(60);
    diesel::update(
        api_keys::table.find(id).filter(
            api_keys::last_used_at
                .is_null()
                .or(api_keys::last_used_at.lt(stale)),
        ),
    )
    .set(api_keys::last_used_at.eq(at))
    .execute(conn)
}

/// Every key with the name of whoever created it; active keys first, newest first.
pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<(ApiKey, Option<String>)>> {
    let rows: Vec<(ApiKeyRow, Option<String>)> = api_keys::table
        .left_join(users::table)
        .select((ApiKeyRow::as_select(), users::name.nullable()))
        .order((api_keys::revoked_at.is_not_null(), api_keys::id.desc()))
        .load(conn)?;
    rows.into_iter()
        .map(|(row, creator)| Ok((ApiKey::try_from(row)?, creator)))
        .collect()
}

/// Revokes the key; false when it was already revoked or does not exist.
pub fn revoke(conn: &mut DbConnection, id: i64) -> QueryResult<bool> {
    let n = diesel::update(
        api_keys::table
            .find(id)
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(now()))
    .execute(conn)?;
    Ok(n == 1)
}

// --- Issue 19: per-key rate limits ---

/// Sets the key's own limit (`None`: the default applies); false when there is no such key.
pub fn set_rate_limit(
    conn: &mut DbConnection,
    id: i64,
    per_minute: Option<i32>,
) -> QueryResult<bool> {
    let n = diesel::update(api_keys::table.find(id))
        .set(api_keys::rate_limit_per_minute.eq(per_minute))
        .execute(conn)?;
    Ok(n == 1)
}
