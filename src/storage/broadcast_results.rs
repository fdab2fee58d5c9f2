//! Issue 18: what became of a broadcast. Replies attributed to it (recorded on the recipient
//! row when the reply arrives), its failures grouped by reason and code, the per-recipient
//! table with its filters (keyset pages), and the contacts a follow-up ("Send again to...")
//! freezes.
//!
//! A recipient's status here is its message's status once it has a message (the first one:
//! resends are not counted), else its own (pending, skipped, cancelled, expired).

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};

use super::prepared::fixed;
use super::schema::{broadcast_recipients, broadcasts};
use super::{DbConnection, on_backend, settings};
use crate::domain::broadcast::SendAgainTo;

/// The setting: a reply counts for a broadcast within this many hours after delivery.
pub const REPLY_WINDOW_KEY: &str = "broadcasts.reply_window_hours";
/// The reply window when the setting is not set (hours).
pub const DEFAULT_REPLY_WINDOW_HOURS: i64 = 72;

/// The reply window in hours (the setting, else the default; 1 to 720).
pub fn reply_window_hours(conn: &mut DbConnection) -> QueryResult<i64> {
    Ok(settings::get(conn, REPLY_WINDOW_KEY)?
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|n| (1..=24 * 30).contains(n))
        .unwrap_or(DEFAULT_REPLY_WINDOW_HOURS))
}

#[derive(QueryableByName)]
struct Attributed {
    #[diesel(sql_type = BigInt)]
    broadcast_id: i64,
}

/// Attributes an inbound message (from `contact_id` on `channel_id` at `received_at`) to the
/// broadcast whose message to that contact on that channel it answers: the latest one sent
/// before it and delivered (or, while its delivery report is still to come, sent) within the
/// reply window before it. Only the recipient's first reply counts: a later one changes
/// nothing (an earlier one arriving late takes its place). Returns the broadcast's id.
pub fn attribute_reply(
    conn: &mut DbConnection,
    contact_id: i64,
    channel_id: i64,
    received_at: NaiveDateTime,
) -> QueryResult<Option<i64>> {
    let window = Duration::hours(reply_window_hours(conn)?);
    // Found through the (contact_id, created_at) index: a contact has few messages.
    let sql = "SELECT m.campaign_id AS broadcast_id FROM messages m \
               WHERE m.contact_id = $1 AND m.channel_id = $2 AND m.campaign_id IS NOT NULL \
               AND m.resend_of IS NULL AND m.status IN ('sent', 'delivered', 'read') \
               AND m.sent_at <= $3 AND COALESCE(m.delivered_at, m.read_at, m.sent_at) >= $4 \
               ORDER BY m.sent_at DESC, m.id DESC LIMIT 1";
    let since = received_at - window;
    let found: Vec<Attributed> = on_backend!(conn, |c| fixed(sql)
        .bind::<BigInt, _>(contact_id)
        .bind::<BigInt, _>(channel_id)
        .bind::<Timestamp, _>(received_at)
        .bind::<Timestamp, _>(since)
        .load(c))?;
    let Some(broadcast_id) = found.first().map(|a| a.broadcast_id) else {
        return Ok(None);
    };
    diesel::update(
        broadcast_recipients::table
            .filter(broadcast_recipients::broadcast_id.eq(broadcast_id))
            .filter(broadcast_recipients::contact_id.eq(contact_id))
            .filter(
                broadcast_recipients::replied_at
                    .is_null()
                    .or(broadcast_recipients::replied_at.gt(received_at)),
            ),
    )
    .set(broadcast_recipients::replied_at.eq(received_at))
    .execute(conn)?;
    Ok(Some(broadcast_id))
}

/// The broadcast's recipients with an attributed reply, from their partial index. `id > 0`
/// (always true) makes that index, `(broadcast_id, id) WHERE replied_at IS NOT NULL`, the one
/// that matches the most: with the broadcast alone, SQLite took `(broadcast_id, id)` of every
/// recipient and looked each row up (6 ms for 100,000 recipients, on every count).
pub fn replied(conn: &mut DbConnection, broadcast_id: i64) -> QueryResult<i64> {
    broadcast_recipients::table
        .filter(broadcast_recipients::broadcast_id.eq(broadcast_id))
        .filter(broadcast_recipients::id.gt(0))
        .filter(broadcast_recipients::replied_at.is_not_null())
        .count()
        .get_result(conn)
}

// ---------------------------------------------------------------------------------------------
// Failures

/// Where a group of failures lives: messages (in the history) or recipients never sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureSource {
    Message,
    Recipient,
}

/// Failures of one kind: a message status and provider code, or a recipient state and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup {
    pub source: FailureSource,
    pub status: String,
    /// The provider's error code (messages) or the exclusion's code (recipients).
    pub code: Option<String>,
    /// One of the group's texts (messages).
    pub message: Option<String>,
    pub count: i64,
}

#[derive(QueryableByName)]
struct GroupRow {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    code: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    message: Option<String>,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Statuses of a message that did not reach its recipient.
pub const UNREACHED: [&str; 5] = ["failed", "unknown", "skipped", "cancelled", "expired"];

/// The broadcast's failures, most frequent first: its messages that did not reach their
/// recipient by status and provider code, then its recipients never sent to by state and
/// reason.
pub fn failure_groups(
    conn: &mut DbConnection,
    broadcast_id: i64,
) -> QueryResult<Vec<FailureGroup>> {
    // From the (campaign_id, status) index: only the unreached messages' rows are read.
    let messages = "SELECT status, error_code AS code, min(error_message) AS message, count(*) AS n \
                    FROM messages WHERE campaign_id = $1 AND resend_of IS NULL \
                    AND status IN ('failed', 'unknown', 'skipped', 'cancelled', 'expired') \
                    GROUP BY status, error_code ORDER BY n DESC, status, code LIMIT 100";
    let recipients = "SELECT status, reason AS code, NULL AS message, count(*) AS n \
                      FROM broadcast_recipients WHERE broadcast_id = $1 \
                      AND status IN ('skipped', 'cancelled', 'expired') \
                      GROUP BY status, reason ORDER BY n DESC, status, code LIMIT 100";
    let mut out = Vec::new();
    for (sql, source) in [
        (messages, FailureSource::Message),
        (recipients, FailureSource::Recipient),
    ] {
        let rows: Vec<GroupRow> =
            on_backend!(conn, |c| fixed(sql).bind::<BigInt, _>(broadcast_id).load(c))?;
        out.extend(rows.into_iter().map(|r| FailureGroup {
            source,
            status: r.status,
            code: r.code,
            message: r.message,
            count: r.n,
        }));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The per-recipient table

/// What the recipient table filters on (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientFilter {
    /// The recipient's status (its message's once it has one).
    pub status: Option<String>,
    /// A skipped recipient's reason or a message's provider error code.
    pub reason: Option<String>,
    /// With (true) or without (false) an attributed reply.
    pub replied: Option<bool>,
}

/// One row of the table.
#[derive(Debug, Clone, QueryableByName)]
pub struct ResultRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub contact_id: i64,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub error_code: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub error_message: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub message_public_id: Option<String>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    pub status_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    pub replied_at: Option<NaiveDateTime>,
}

/// A page of recipients matching `filter`, in frozen order after `after` (keyset on the
/// recipient's id), `limit + 1` rows at most (one more tells there is another page). The
/// message is found through the unique (campaign, contact) index, one look-up per recipient.
/// Unused filters are written as `$n IS NULL`, so that the text is the same for every filter.
pub fn recipients_page(
    conn: &mut DbConnection,
    broadcast_id: i64,
    filter: &RecipientFilter,
    after: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<ResultRow>> {
    let sql = "SELECT r.id AS id, r.contact_id AS contact_id, COALESCE(m.status, r.status) AS status, \
               r.reason AS reason, m.error_code AS error_code, m.error_message AS error_message, \
               m.public_id AS message_public_id, \
               COALESCE(m.read_at, m.delivered_at, m.failed_at, m.sent_at, m.updated_at) AS status_at, \
               r.replied_at AS replied_at \
               FROM broadcast_recipients r LEFT JOIN messages m ON m.campaign_id = r.broadcast_id \
               AND m.contact_id = r.contact_id AND m.resend_of IS NULL \
               WHERE r.broadcast_id = $1 AND r.id > $2 \
               AND ($3 IS NULL OR COALESCE(m.status, r.status) = $3) \
               AND ($4 IS NULL OR r.reason = $4 OR m.error_code = $4) \
               AND ($5 IS NULL OR ($5 = 1 AND r.replied_at IS NOT NULL) OR ($5 = 0 AND r.replied_at IS NULL)) \
               ORDER BY r.id LIMIT $6";
    let replied: Option<i64> = filter.replied.map(i64::from);
    let after = after.unwrap_or(0);
    let status = filter.status.clone();
    let reason = filter.reason.clone();
    on_backend!(conn, |c| fixed(sql)
        .bind::<BigInt, _>(broadcast_id)
        .bind::<BigInt, _>(after)
        .bind::<Nullable<Text>, _>(status.clone())
        .bind::<Nullable<Text>, _>(reason.clone())
        .bind::<Nullable<BigInt>, _>(replied)
        .bind::<BigInt, _>(limit + 1)
        .load(c))
}

// ---------------------------------------------------------------------------------------------
// Follow-ups ("Send again to...")

#[derive(QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The statuses of the messages of the broadcast's recipients with an attributed reply (from
/// the partial index of replied recipients: few rows). On SQLite `r.id > 0` picks that index
/// (see [`replied`]): without it SQLite started from every message of the broadcast, 46 ms for
/// 100,000. PostgreSQL keeps the plain form: with it, its plan for the page went from 22 to
/// 359 ms (p50) during a broadcast of 47,835.
pub fn replied_by_status(
    conn: &mut DbConnection,
    broadcast_id: i64,
) -> QueryResult<Vec<(String, i64)>> {
    let pick = match conn {
        DbConnection::Sqlite(_) => " AND r.id > 0",
        DbConnection::Postgres(_) => "",
    };
    let sql = format!(
        "SELECT m.status AS status, count(*) AS n FROM broadcast_recipients r \
         JOIN messages m ON m.campaign_id = r.broadcast_id AND m.contact_id = r.contact_id \
         AND m.resend_of IS NULL \
         WHERE r.broadcast_id = $1{pick} AND r.replied_at IS NOT NULL GROUP BY m.status"
    );
    let rows: Vec<StatusCount> = on_backend!(conn, |c| fixed(&sql)
        .bind::<BigInt, _>(broadcast_id)
        .load(c))?;
    Ok(rows.into_iter().map(|r| (r.status, r.n)).collect())
}

/// Freezes a follow-up's audience: the first broadcast's recipients that `to` chooses, now, in
/// one `INSERT ... SELECT`. Returns how many contacts.
pub fn freeze_follow_up(
    conn: &mut DbConnection,
    follow_up_id: i64,
    first_id: i64,
    to: SendAgainTo,
) -> QueryResult<usize> {
    let replied = match to {
        SendAgainTo::Replied => " AND r.replied_at IS NOT NULL",
        SendAgainTo::NotReplied => " AND r.replied_at IS NULL",
        _ => "",
    };
    let statuses = to
        .statuses()
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    // The statuses are this program's constants, never a person's text.
    let sql = format!(
        "INSERT INTO broadcast_follow_up_contacts (broadcast_id, contact_id) \
         SELECT $1, r.contact_id FROM broadcast_recipients r JOIN messages m \
         ON m.campaign_id = r.broadcast_id AND m.contact_id = r.contact_id AND m.resend_of IS NULL \
         WHERE r.broadcast_id = $2 AND m.status IN ({statuses}){replied}"
    );
    on_backend!(conn, |c| fixed(&sql)
        .bind::<BigInt, _>(follow_up_id)
        .bind::<BigInt, _>(first_id)
        .execute(c))
}

/// Links a follow-up to the broadcast it follows up.
pub fn set_follow_up_of(conn: &mut DbConnection, id: i64, first_id: i64) -> QueryResult<usize> {
    diesel::update(broadcasts::table.find(id))
        .set(broadcasts::follow_up_of.eq(first_id))
        .execute(conn)
}

/// The follow-ups of a broadcast, oldest first: (public id, name, state).
pub fn follow_ups(
    conn: &mut DbConnection,
    broadcast_id: i64,
) -> QueryResult<Vec<(String, String, String)>> {
    broadcasts::table
        .filter(broadcasts::follow_up_of.eq(broadcast_id))
        .order(broadcasts::id.asc())
        .limit(100)
        .select((broadcasts::public_id, broadcasts::name, broadcasts::state))
        .load(conn)
}
