//! Failed sign-in attempts, kept in the database so that throttling holds across instances.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::login_attempts;

pub fn record_failure(
    conn: &mut DbConnection,
    keys: &[&str],
    at: NaiveDateTime,
) -> QueryResult<usize> {
    // One statement per key: a MultiConnection cannot batch inserts on SQLite.
    let mut n = 0;
    for key in keys {
        n += diesel::insert_into(login_attempts::table)
            .values((
                login_attempts::throttle_key.eq(*key),
                login_attempts::attempted_at.eq(at),
            ))
            .execute(conn)?;
    }
    Ok(n)
}

/// How many failures this key has since `since`, and the oldest of them.
pub fn failures_since(
    conn: &mut DbConnection,
    key: &str,
    since: NaiveDateTime,
) -> QueryResult<(i64, Option<NaiveDateTime>)> {
    login_attempts::table
        .filter(login_attempts::throttle_key.eq(key))
        .filter(login_attempts::attempted_at.ge(since))
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::min(login_attempts::attempted_at),
        ))
        .first(conn)
}

pub fn clear(conn: &mut DbConnection, key: &str) -> QueryResult<usize> {
    diesel::delete(login_attempts::table.filter(login_attempts::throttle_key.eq(key))).execute(conn)
}

pub fn prune(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(login_attempts::table.filter(login_attempts::attempted_at.lt(before)))
        .execute(conn)
}
