//! Server-side sessions: the cookie carries a random session token, the database keeps its
//! SHA-256 hash, whose user it is and until when it holds. Signing out deletes the row;
//! disabling an account or changing its password revokes its rows, so every instance sees the
//! session end on its next request. Secrets shown once (a new API key, a temporary password)
//! are kept sealed beside the session that may see them, and deleted as they are shown.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::{session_reveals, sessions, users};
use super::users::{User, UserRow};

/// How often a session's `last_seen_at` is written at most: a write per request would be waste.
const TOUCH_EVERY_SECS: i64 = 60;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

/// Starts a session for `user_id`; `token_hash` is the hash of the token the cookie carries.
pub fn create(
    conn: &mut DbConnection,
    user_id: i64,
    token_hash: &str,
    at: NaiveDateTime,
    expires_at: NaiveDateTime,
) -> QueryResult<Session> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::token_hash.eq(token_hash),
            sessions::user_id.eq(user_id),
            sessions::created_at.eq(at),
            sessions::last_seen_at.eq(at),
            sessions::expires_at.eq(expires_at),
        ))
        .returning((
            sessions::id,
            sessions::user_id,
            sessions::created_at,
            sessions::last_seen_at,
            sessions::expires_at,
            sessions::revoked_at,
        ))
        .get_result(conn)
}

/// The session with this token hash and its person, in one query (run on every page request).
pub fn find_with_user(
    conn: &mut DbConnection,
    token_hash: &str,
) -> QueryResult<Option<(Session, User)>> {
    let row = sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .select((Session::as_select(), UserRow::as_select()))
        .first::<(Session, UserRow)>(conn)
        .optional()?;
    row.map(|(s, u)| Ok((s, User::try_from(u)?))).transpose()
}

/// Records that the session was used, at most once a minute.
pub fn touch(conn: &mut DbConnection, session: &Session, at: NaiveDateTime) -> QueryResult<usize> {
    if (at - session.last_seen_at).num_seconds() < TOUCH_EVERY_SECS {
        return Ok(0);
    }
    super::write_transaction(conn, |conn| {
        diesel::update(sessions::table.find(session.id))
            .set(sessions::last_seen_at.eq(at))
            .execute(conn)
    })
}

/// Signing out: the session is gone, with the secrets it had yet to see.
pub fn delete(conn: &mut DbConnection, token_hash: &str) -> QueryResult<usize> {
    let ids = sessions::table
        .filter(sessions::token_hash.eq(token_hash))
        .select(sessions::id);
    diesel::delete(session_reveals::table.filter(session_reveals::session_id.eq_any(ids)))
        .execute(conn)?;
    diesel::delete(sessions::table.filter(sessions::token_hash.eq(token_hash))).execute(conn)
}

/// Ends every session of a person, except `keep` (the one changing its own password).
pub fn revoke_for_user(
    conn: &mut DbConnection,
    user_id: i64,
    keep: Option<i64>,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    let others = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::id.ne(keep.unwrap_or(-1)));
    diesel::delete(
        session_reveals::table
            .filter(session_reveals::session_id.eq_any(others.select(sessions::id))),
    )
    .execute(conn)?;
    diesel::update(others.filter(sessions::revoked_at.is_null()))
        .set(sessions::revoked_at.eq(at))
        .execute(conn)
}

/// Deletes sessions that have expired (revoked ones are kept until then, so their holder is
/// told why they were signed out), and secrets nobody came back for.
pub fn prune(conn: &mut DbConnection, at: NaiveDateTime) -> QueryResult<usize> {
    let expired = sessions::table
        .filter(sessions::expires_at.lt(at))
        .select(sessions::id);
    diesel::delete(
        session_reveals::table.filter(
            session_reveals::expires_at
                .lt(at)
                .or(session_reveals::session_id.eq_any(expired)),
        ),
    )
    .execute(conn)?;
    diesel::delete(sessions::table.filter(sessions::expires_at.lt(at))).execute(conn)
}

/// Keeps a sealed secret for this session to see once on `page`, until `expires_at`.
pub fn add_reveal(
    conn: &mut DbConnection,
    session_id: i64,
    page: &str,
    sealed: &str,
    at: NaiveDateTime,
    expires_at: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::delete(session_reveals::table.filter(session_reveals::expires_at.lt(at)))
        .execute(conn)?;
    diesel::insert_into(session_reveals::table)
        .values((
            session_reveals::session_id.eq(session_id),
            session_reveals::page.eq(page),
            session_reveals::sealed.eq(sealed),
            session_reveals::created_at.eq(at),
            session_reveals::expires_at.eq(expires_at),
        ))
        .execute(conn)
}

/// Takes the newest unexpired secret kept for this session and page, deleting every one kept
/// there in the same statement: a second look (a replayed request, another tab) finds nothing.
pub fn take_reveal(
    conn: &mut DbConnection,
    session_id: i64,
    page: &str,
    at: NaiveDateTime,
) -> QueryResult<Option<String>> {
    let taken: Vec<(i64, String, NaiveDateTime)> = diesel::delete(
        session_reveals::table
            .filter(session_reveals::session_id.eq(session_id))
            .filter(session_reveals::page.eq(page)),
    )
    .returning((
        session_reveals::id,
        session_reveals::sealed,
        session_reveals::expires_at,
    ))
    .get_results(conn)?;
    Ok(taken
        .into_iter()
        .filter(|(_, _, expires_at)| *expires_at > at)
        .max_by_key(|(id, _, _)| *id)
        .map(|(_, sealed, _)| sealed))
}
