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

// --- Issue 18: retention ---

/// Purge message bodies and raw payloads after this many days (absent: never).
pub const RETENTION_DAYS: &str = "retention_days";
/// When a retention run last started (RFC 3339), claimed by compare-and-set so that one
/// process among several runs it.
pub const RETENTION_LAST_RUN: &str = "retention_last_run";
/// Where retention's walk of `messages` and `inbound_messages` goes on from (ids).
pub const RETENTION_MESSAGES_AFTER: &str = "retention_messages_after";
pub const RETENTION_INBOUND_AFTER: &str = "retention_inbound_after";
/// What the retention run under way has purged so far (JSON), kept in each batch's
/// transaction so that a run cut short by a crash is still audited by the next one.
pub const RETENTION_RUN_TALLY: &str = "retention_run_tally";

/// Sets `key` to `value` only if it still holds `expected` (absent when `None`); true when
/// this call changed it. Two processes claiming the same run: exactly one wins.
pub fn compare_and_set(
    conn: &mut DbConnection,
    key: &str,
    expected: Option<&str>,
    value: &str,
) -> QueryResult<bool> {
    match expected {
        None => insert_if_absent(conn, key, value),
        Some(old) => {
            let changed = diesel::update(
                app_settings::table
                    .filter(app_settings::key.eq(key))
                    .filter(app_settings::value.eq(old)),
            )
            .set((
                app_settings::value.eq(value),
                app_settings::updated_at.eq(now()),
            ))
            .execute(conn)?;
            Ok(changed == 1)
        }
    }
}

/// Forgets a setting.
pub fn remove(conn: &mut DbConnection, key: &str) -> QueryResult<usize> {
    diesel::delete(app_settings::table.find(key)).execute(conn)
}
// --- end issue 18 ---
