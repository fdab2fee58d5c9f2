//! Issue 19: the shared request counters of the API's per-key rate limits (PostgreSQL, where
//! several instances share one budget). One row per key and fixed window.

use diesel::prelude::*;
use diesel::upsert::excluded;

use super::DbConnection;
use super::schema::api_rate_windows as w;

/// Counts `hits` more requests by key `api_key_id` in the window starting at `window_start`
/// (Unix seconds) and answers the window's total, in one statement: concurrent instances never
/// lose a count.
pub fn hit(
    conn: &mut DbConnection,
    api_key_id: i64,
    window_start: i64,
    hits: i32,
) -> QueryResult<i32> {
    let row = (
        w::api_key_id.eq(api_key_id),
        w::window_start.eq(window_start),
        w::hits.eq(hits),
    );
    super::on_backend!(conn, |c| diesel::insert_into(w::table)
        .values(row)
        .on_conflict((w::api_key_id, w::window_start))
        .do_update()
        .set(w::hits.eq(w::hits + excluded(w::hits)))
        .returning(w::hits)
        .get_result(c))
}

/// Forgets windows that started before `before` (Unix seconds).
pub fn forget_before(conn: &mut DbConnection, before: i64) -> QueryResult<usize> {
    diesel::delete(w::table.filter(w::window_start.lt(before))).execute(conn)
}
