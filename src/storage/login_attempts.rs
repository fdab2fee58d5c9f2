//! Failed password checks, kept in the database so that throttling holds across instances.
//! An attempt is counted and recorded in one transaction before the password is checked, so
//! parallel guesses cannot all pass the count before any of them is recorded.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::login_attempts;
use super::{DbConnection, write_transaction};

/// How many failures a key may have within `window`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_account: i64,
    pub per_address: i64,
    pub window: chrono::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted: the ids of the rows recorded for it (account first, then address).
    Admitted { ids: Vec<i64> },
    Throttled {
        retry_after_secs: u64,
        per_account: bool,
    },
}

/// Counts the failures of both keys and, when both are under their limit, records this attempt
/// against both, in one write transaction: BEGIN IMMEDIATE on SQLite; on PostgreSQL an
/// advisory lock per key held until commit, since a plain transaction there would let two
/// attempts count the same rows. A check that succeeds later removes its rows (`forget`).
pub fn admit(
    conn: &mut DbConnection,
    account_key: &str,
    address_key: &str,
    limits: Limits,
    at: NaiveDateTime,
) -> QueryResult<Admission> {
    // In a flood nearly every attempt is over a limit already: a plain read turns those away
    // without taking the write lock, which the rest of Herald needs meanwhile. (Counts only
    // fall when a sign-in succeeds or time passes, so this read refuses nobody the locked
    // count below would admit, but for such a race.)
    if let Some(throttled) = over_limit(conn, account_key, address_key, limits, at)? {
        return Ok(throttled);
    }
    write_transaction(conn, |conn| {
        lock(conn, &[account_key, address_key])?;
        if let Some(throttled) = over_limit(conn, account_key, address_key, limits, at)? {
            return Ok(throttled);
        }
        let mut ids = Vec::with_capacity(2);
        // One statement per key: a MultiConnection cannot batch inserts on SQLite.
        for key in [account_key, address_key] {
            ids.push(
                diesel::insert_into(login_attempts::table)
                    .values((
                        login_attempts::throttle_key.eq(key),
                        login_attempts::attempted_at.eq(at),
                    ))
                    .returning(login_attempts::id)
                    .get_result(conn)?,
            );
        }
        // Old rows go now and then: a day is far past any window.
        prune(conn, at - chrono::Duration::days(1))?;
        Ok(Admission::Admitted { ids })
    })
}

/// `Throttled` when either key has reached its limit within the window.
fn over_limit(
    conn: &mut DbConnection,
    account_key: &str,
    address_key: &str,
    limits: Limits,
    at: NaiveDateTime,
) -> QueryResult<Option<Admission>> {
    let since = at - limits.window;
    let retry = |oldest: Option<NaiveDateTime>| {
        let until = oldest.unwrap_or(at) + limits.window;
        u64::try_from((until - at).num_seconds().max(1)).unwrap_or(60)
    };
    let (account_failures, account_oldest) = failures_since(conn, account_key, since)?;
    if account_failures >= limits.per_account {
        return Ok(Some(Admission::Throttled {
            retry_after_secs: retry(account_oldest),
            per_account: true,
        }));
    }
    let (address_failures, address_oldest) = failures_since(conn, address_key, since)?;
    if address_failures >= limits.per_address {
        return Ok(Some(Admission::Throttled {
            retry_after_secs: retry(address_oldest),
            per_account: false,
        }));
    }
    Ok(None)
}

/// Serialises the bookkeeping of these keys until the transaction ends (PostgreSQL; SQLite's
/// BEGIN IMMEDIATE already serialises every writer). Keys are locked in one order, so two
/// attempts cannot wait on each other.
fn lock(conn: &mut DbConnection, keys: &[&str]) -> QueryResult<()> {
    if let DbConnection::Postgres(pg) = conn {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7243602))")
                .bind::<diesel::sql_types::Text, _>(key)
                .execute(pg)?;
        }
    }
    Ok(())
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

/// The password was right: the account's failures are forgiven, and this attempt no longer
/// counts against its address (people behind one office address sign in all day).
pub fn forget(conn: &mut DbConnection, account_key: &str, ids: &[i64]) -> QueryResult<usize> {
    let n =
        diesel::delete(login_attempts::table.filter(login_attempts::throttle_key.eq(account_key)))
            .execute(conn)?;
    Ok(n + withdraw(conn, ids)?)
}

/// The check never ran (Herald was too busy): the attempt does not count.
pub fn withdraw(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<usize> {
    diesel::delete(login_attempts::table.filter(login_attempts::id.eq_any(ids))).execute(conn)
}

pub fn prune(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(login_attempts::table.filter(login_attempts::attempted_at.lt(before)))
        .execute(conn)
}
