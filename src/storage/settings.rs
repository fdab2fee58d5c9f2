//! Instance-wide key/value settings (the generated secret key, one-time flags).

use diesel::prelude::*;

use super::schema::app_settings;
use super::{DbConnection, now, on_backend};

pub const SECRET_KEY: &str = "secret_key";
pub const SETUP_COMPLETED: &str = "setup_completed";
pub const SANDBOX_SEEDED: &str = "sandbox_seeded";

pub fn get(conn: &mut DbConnection, key: &str) -> QueryResult<Option<String>> {
    app_settings::table
        .find(key)
        .select(app_settings::value)
        .first(conn)
        .optional()
}

/// Inserts the setting unless it exists; true when this call inserted it. Safe against
/// concurrent callers (the primary key decides who wins), and inside a transaction: an
/// existing key is skipped by `ON CONFLICT DO NOTHING`, never raised as a unique violation,
/// which on PostgreSQL would abort the caller's whole transaction.
pub fn insert_if_absent(conn: &mut DbConnection, key: &str, value: &str) -> QueryResult<bool> {
    let row = (
        app_settings::key.eq(key),
        app_settings::value.eq(value),
        app_settings::updated_at.eq(now()),
    );
    let inserted = on_backend!(conn, |c| diesel::insert_into(app_settings::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(inserted > 0)
}

/// Returns the stored value, storing `make()` first when there is none.
pub fn get_or_insert_with(
    conn: &mut DbConnection,
    key: &str,
    make: impl FnOnce() -> String,
) -> QueryResult<String> {
    if let Some(v) = get(conn, key)? {
        return Ok(v);
    }
    insert_if_absent(conn, key, &make())?;
    get(conn, key)?.ok_or(diesel::result::Error::NotFound)
}

/// Stores a setting, replacing any value it had.
pub fn set(conn: &mut DbConnection, key: &str, value: &str) -> QueryResult<usize> {
    let row = (
        app_settings::key.eq(key),
        app_settings::value.eq(value),
        app_settings::updated_at.eq(now()),
    );
    on_backend!(conn, |c| diesel::insert_into(app_settings::table)
        .values(row)
        .on_conflict(app_settings::key)
        .do_update()
        .set((
            app_settings::value.eq(value),
            app_settings::updated_at.eq(now())
        ))
        .execute(c))
}
