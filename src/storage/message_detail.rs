//! Issue 18: what the message detail page reads beyond the message row (its timeline with the
//! providers' payloads, whether retention purged it, the template version it used), and what
//! retention writes (purging bodies and payloads in small batches).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{inbound_messages, message_events, messages};
use super::{DbConnection, now};

/// One entry of a message's timeline.
#[derive(Debug, Clone, Queryable)]
pub struct EventRow {
    pub status: String,
    pub source: String,
    pub detail: String,
    pub occurred_at: NaiveDateTime,
    /// What the provider said (redacted when it was written); `None` when it said nothing
    /// or retention purged it.
    pub payload: Option<String>,
}

/// A message's timeline, oldest first, with the payloads.
pub fn timeline(conn: &mut DbConnection, message_id: i64) -> QueryResult<Vec<EventRow>> {
    message_events::table
        .filter(message_events::message_id.eq(message_id))
        .select((
            message_events::status,
            message_events::source,
            message_events::detail,
            message_events::occurred_at,
            message_events::payload,
        ))
        .order(message_events::id)
        .load(conn)
}

/// When retention purged the message's content, and under how many days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub at: NaiveDateTime,
    pub after_days: i32,
}

/// Whether retention purged this message's content.
pub fn purged(conn: &mut DbConnection, message_id: i64) -> QueryResult<Option<Purged>> {
    let row: Option<(Option<NaiveDateTime>, Option<i32>)> = messages::table
        .find(message_id)
        .select((messages::purged_at, messages::purged_after_days))
        .first(conn)
        .optional()?;
    Ok(row.and_then(|(at, days)| {
        at.map(|at| Purged {
            at,
            after_days: days.unwrap_or(0),
        })
    }))
}

// ---------------------------------------------------------------------------------------------
// Retention

/// What one batch of retention purged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedBatch {
    pub messages: usize,
    pub inbound: usize,
    pub payloads: usize,
    /// Where the next batch starts (the last id looked at), per table.
    pub messages_after: i64,
    pub inbound_after: i64,
    /// Nothing older than the cut-off is left after this batch.
    pub done: bool,
}

/// `(id, created at, purged at)` of a row retention walks past.
type WalkedRow = (i64, NaiveDateTime, Option<NaiveDateTime>);

/// Of rows read in id order, the ids to purge (older than the cut-off, not purged yet), moving
/// `after` past the old ones; true when the walk is done (it met a newer row or the end).
fn walk(
    rows: &[WalkedRow],
    cutoff: NaiveDateTime,
    limit: i64,
    after: &mut i64,
) -> (Vec<i64>, bool) {
    let old: Vec<&WalkedRow> = rows
        .iter()
        .take_while(|(_, created, _)| *created < cutoff)
        .collect();
    if let Some((last, _, _)) = old.last() {
        *after = *last;
    }
    let done = old.len() < rows.len() || (rows.len() as i64) < limit;
    let ids = old
        .iter()
        .filter(|(_, _, purged)| purged.is_none())
        .map(|(id, _, _)| *id)
        .collect();
    (ids, done)
}

/// Purges up to `limit` messages and `limit` inbound messages created before `cutoff`, walking
/// each table by id from the ids given (so no batch reads the rows an earlier one passed).
/// Messages lose their body and content (`purged_at` and the days say why) and their events
/// their payloads; inbound messages lose their body. Statuses, times, provider ids, error codes
/// and every count stay as they were. Ids grow with creation time, so the walk stops at the
/// first row newer than the cut-off.
pub fn purge_batch(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    days: i32,
    messages_after: i64,
    inbound_after: i64,
    limit: i64,
) -> QueryResult<PurgedBatch> {
    let at = now();
    let mut batch = PurgedBatch {
        messages_after,
        inbound_after,
        ..PurgedBatch::default()
    };
    // Messages: the next ids in order, with their age and whether they were purged already.
    let rows: Vec<WalkedRow> = messages::table
        .filter(messages::id.gt(messages_after))
        .order(messages::id)
        .select((messages::id, messages::created_at, messages::purged_at))
        .limit(limit)
        .load(conn)?;
    let (ids, messages_done) = walk(&rows, cutoff, limit, &mut batch.messages_after);
    if !ids.is_empty() {
        batch.messages = diesel::update(
            messages::table
                .filter(messages::id.eq_any(&ids))
                .filter(messages::purged_at.is_null()),
        )
        .set((
            messages::body.eq(""),
            messages::content.eq("{}"),
            messages::purged_at.eq(Some(at)),
            messages::purged_after_days.eq(Some(days)),
        ))
        .execute(conn)?;
        batch.payloads = diesel::update(
            message_events::table
                .filter(message_events::message_id.eq_any(&ids))
                .filter(message_events::payload.is_not_null()),
        )
        .set(message_events::payload.eq(None::<String>))
        .execute(conn)?;
    }
    // Inbound messages, the same way.
    let rows: Vec<WalkedRow> = inbound_messages::table
        .filter(inbound_messages::id.gt(inbound_after))
        .order(inbound_messages::id)
        .select((
            inbound_messages::id,
            inbound_messages::created_at,
            inbound_messages::purged_at,
        ))
        .limit(limit)
        .load(conn)?;
    let (ids, inbound_done) = walk(&rows, cutoff, limit, &mut batch.inbound_after);
    if !ids.is_empty() {
        batch.inbound = diesel::update(
            inbound_messages::table
                .filter(inbound_messages::id.eq_any(&ids))
                .filter(inbound_messages::purged_at.is_null()),
        )
        .set((
            inbound_messages::body.eq(""),
            inbound_messages::purged_at.eq(Some(at)),
        ))
        .execute(conn)?;
    }
    batch.done = messages_done && inbound_done;
    Ok(batch)
}
