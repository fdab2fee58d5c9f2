//! Webhook receipts: which provider events were already applied, so a provider's retries (for
//! days, in any order) change nothing the second time.

use diesel::prelude::*;

use super::schema::webhook_receipts;
use super::{DbConnection, now, on_backend};

/// Records the event; true the first time, false when it was seen before.
pub fn first_time(conn: &mut DbConnection, channel_id: i64, event_id: &str) -> QueryResult<bool> {
    let row = (
        webhook_receipts::channel_id.eq(channel_id),
        webhook_receipts::event_id.eq(event_id),
        webhook_receipts::received_at.eq(now()),
    );
    let inserted = on_backend!(conn, |c| diesel::insert_into(webhook_receipts::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(inserted == 1)
}

/// Forgets receipts older than providers retry (Meta retries for up to 7 days).
pub fn prune(conn: &mut DbConnection, before: chrono::NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(webhook_receipts::table.filter(webhook_receipts::received_at.lt(before)))
        .execute(conn)
}

/// A status report for a message Herald cannot match yet.
#[derive(Debug, Clone, Queryable)]
pub struct EarlyStatus {
    pub id: i64,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub error_class: Option<String>,
    pub occurred_at: chrono::NaiveDateTime,
    /// The webhook's words about the message, kept for its timeline (issue 18).
    pub payload: Option<String>,
}

pub struct NewEarlyStatus<'a> {
    pub channel_id: i64,
    pub provider_message_id: &'a str,
    pub status: &'a str,
    pub error_code: Option<&'a str>,
    pub error_message: Option<&'a str>,
    pub error_class: Option<&'a str>,
    pub occurred_at: chrono::NaiveDateTime,
    pub payload: Option<&'a str>,
}

pub fn keep_early_status(conn: &mut DbConnection, s: &NewEarlyStatus<'_>) -> QueryResult<usize> {
    use super::schema::early_statuses as es;
    diesel::insert_into(es::table)
        .values((
            es::channel_id.eq(s.channel_id),
            es::provider_message_id.eq(s.provider_message_id),
            es::status.eq(s.status),
            es::error_code.eq(s.error_code),
            es::error_message.eq(s.error_message),
            es::error_class.eq(s.error_class),
            es::occurred_at.eq(s.occurred_at),
            es::received_at.eq(now()),
            es::payload.eq(s.payload),
        ))
        .execute(conn)
}

/// Takes (reads and deletes) the early reports for a message, oldest first.
pub fn take_early_statuses(
    conn: &mut DbConnection,
    channel_id: i64,
    provider_message_id: &str,
) -> QueryResult<Vec<EarlyStatus>> {
    use super::schema::early_statuses as es;
    let rows: Vec<EarlyStatus> = es::table
        .filter(es::channel_id.eq(channel_id))
        .filter(es::provider_message_id.eq(provider_message_id))
        .select((
            es::id,
            es::status,
            es::error_code,
            es::error_message,
            es::error_class,
            es::occurred_at,
            es::payload,
        ))
        .order(es::occurred_at)
        .load(conn)?;
    if !rows.is_empty() {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        diesel::delete(es::table.filter(es::id.eq_any(ids))).execute(conn)?;
    }
    Ok(rows)
}

pub fn prune_early_statuses(
    conn: &mut DbConnection,
    before: chrono::NaiveDateTime,
) -> QueryResult<usize> {
    use super::schema::early_statuses as es;
    diesel::delete(es::table.filter(es::received_at.lt(before))).execute(conn)
}

/// Which of these provider ids have early reports waiting (usually none: one query per batch).
pub fn early_statuses_for(
    conn: &mut DbConnection,
    channel_id: i64,
    provider_ids: &[&str],
) -> QueryResult<Vec<String>> {
    use super::schema::early_statuses as es;
    let mut out = Vec::new();
    for chunk in provider_ids.chunks(500) {
        out.extend(
            es::table
                .filter(es::channel_id.eq(channel_id))
                .filter(es::provider_message_id.eq_any(chunk))
                .select(es::provider_message_id)
                .distinct()
                .load::<String>(conn)?,
        );
    }
    Ok(out)
}

/// Early reports older than `before`, as `(channel id, provider message id)`: the sweep looks
/// for their messages (on PostgreSQL a report can be saved just after the send's own check).
pub fn early_status_keys(
    conn: &mut DbConnection,
    before: chrono::NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<(i64, String)>> {
    use super::schema::early_statuses as es;
    es::table
        .filter(es::received_at.lt(before))
        .select((es::channel_id, es::provider_message_id))
        .distinct()
        .limit(limit)
        .load(conn)
}
