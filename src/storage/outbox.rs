//! The outbox side of `messages`: queueing, claiming due messages (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, a single conditional `UPDATE` on SQLite, whose writers are serialised), recording
//! outcomes, reaping what a dead worker held, workers' heartbeats, and each channel's shared
//! send schedule.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamp};

use super::messages::MessageRow;
use super::prepared::fixed;
use super::schema::{channel_throttle, message_events, messages, workers};
use super::{DbConnection, new_public_id, now, on_backend};
use crate::domain::message::{MessageSource, MessageStatus};

/// A message to queue.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub channel_id: i64,
    pub contact_id: i64,
    pub to_address: &'a str,
    pub campaign_id: Option<i64>,
    pub template_id: Option<i64>,
    pub content_kind: &'a str,
    pub body: &'a str,
    /// `MessageContent` as JSON.
    pub content: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub requested_by: &'a str,
    pub resend_of: Option<i64>,
    /// When it may leave (now for immediate sends).
    pub not_before: NaiveDateTime,
    /// A fingerprint of the request it answers, so that a repeat of its idempotency key can
    /// be told apart from a different request under the same key.
    pub request_hash: Option<&'a str>,
    /// Where it came from, for the history.
    pub source: MessageSource,
}

/// A `messages` row as queued. An absent value is bound as NULL rather than written as
/// `DEFAULT` (the columns' defaults are NULL anyway), so the statement's text never varies and
/// it stays prepared: on PostgreSQL an unprepared insert is parsed and planned on every send.
#[derive(Insertable)]
#[diesel(table_name = messages, treat_none_as_default_value = false)]
struct QueuedRow<'a> {
    public_id: String,
    channel_id: i64,
    contact_id: i64,
    to_address: &'a str,
    campaign_id: Option<i64>,
    template_id: Option<i64>,
    content_kind: &'a str,
    body: &'a str,
    content: &'a str,
    status: &'static str,
    attempts: i32,
    next_attempt_at: NaiveDateTime,
    idempotency_key: Option<&'a str>,
    requested_by: &'a str,
    resend_of: Option<i64>,
    request_hash: Option<&'a str>,
    source: &'static str,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl<'a> QueuedRow<'a> {
    fn new(m: &NewMessage<'a>, at: NaiveDateTime, status: MessageStatus) -> Self {
        QueuedRow {
            public_id: new_public_id(),
            channel_id: m.channel_id,
            contact_id: m.contact_id,
            to_address: m.to_address,
            campaign_id: m.campaign_id,
            template_id: m.template_id,
            content_kind: m.content_kind,
            body: m.body,
            content: m.content,
            status: status.as_str(),
            attempts: 0,
            next_attempt_at: m.not_before,
            idempotency_key: m.idempotency_key,
            requested_by: m.requested_by,
            resend_of: m.resend_of,
            request_hash: m.request_hash,
            source: m.source.as_str(),
            created_at: at,
            updated_at: at,
        }
    }
}

/// Queues a message and records the first event of its timeline. A unique violation on the
/// idempotency key comes back as Diesel's error for the caller to answer with the first one.
pub fn enqueue(conn: &mut DbConnection, m: &NewMessage<'_>) -> QueryResult<MessageRow> {
    insert_as(conn, m, MessageStatus::Queued)
}

/// Writes a message that waits as `scheduled` until `m.not_before`, when [`promote_due`]
/// queues it; otherwise as [`enqueue`].
pub fn schedule(conn: &mut DbConnection, m: &NewMessage<'_>) -> QueryResult<MessageRow> {
    insert_as(conn, m, MessageStatus::Scheduled)
}

fn insert_as(
    conn: &mut DbConnection,
    m: &NewMessage<'_>,
    status: MessageStatus,
) -> QueryResult<MessageRow> {
    let at = now();
    if let DbConnection::Postgres(pg) = conn {
        return insert_with_event_pg(pg, &QueuedRow::new(m, at, status));
    }
    // The whole row comes back from the insert (a MultiConnection cannot say RETURNING of a
    // selection, hence once per backend).
    let message: MessageRow = super::on_backend!(conn, |c| diesel::insert_into(messages::table)
        .values(QueuedRow::new(m, at, status))
        .returning(MessageRow::as_returning())
        .get_result(c))?;
    super::messages::record_event(conn, message.id, status, "herald", m.requested_by, at)?;
    Ok(message)
}

/// PostgreSQL: the message and the first event of its timeline in one statement (one round
/// trip instead of two; the event's foreign key is checked at the statement's end, when the
/// message is there).
static INSERT_WITH_EVENT_PG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH m AS (INSERT INTO messages (public_id, channel_id, contact_id, to_address, \
           campaign_id, template_id, content_kind, body, content, status, attempts, \
           next_attempt_at, idempotency_key, requested_by, resend_of, request_hash, source, \
           created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
           $18, $19) \
         RETURNING {columns}), \
         e AS (INSERT INTO message_events (message_id, status, source, detail, occurred_at) \
           SELECT id, status, 'herald', requested_by, created_at FROM m) \
         SELECT {columns} FROM m",
        columns = super::messages::COLUMNS
    )
});

fn insert_with_event_pg(
    conn: &mut diesel::pg::PgConnection,
    row: &QueuedRow<'_>,
) -> QueryResult<MessageRow> {
    use diesel::sql_types::{Integer, Nullable};
    fixed(&INSERT_WITH_EVENT_PG)
        .bind::<Text, _>(&row.public_id)
        .bind::<BigInt, _>(row.channel_id)
        .bind::<BigInt, _>(row.contact_id)
        .bind::<Text, _>(row.to_address)
        .bind::<Nullable<BigInt>, _>(row.campaign_id)
        .bind::<Nullable<BigInt>, _>(row.template_id)
        .bind::<Text, _>(row.content_kind)
        .bind::<Text, _>(row.body)
        .bind::<Text, _>(row.content)
        .bind::<Text, _>(row.status)
        .bind::<Integer, _>(row.attempts)
        .bind::<Timestamp, _>(row.next_attempt_at)
        .bind::<Nullable<Text>, _>(row.idempotency_key)
        .bind::<Text, _>(row.requested_by)
        .bind::<Nullable<BigInt>, _>(row.resend_of)
        .bind::<Nullable<Text>, _>(row.request_hash)
        .bind::<Text, _>(row.source)
        .bind::<Timestamp, _>(row.created_at)
        .bind::<Timestamp, _>(row.updated_at)
        .get_result(conn)
}

/// A message that changed status in a background step: `(id, public id, contact id, channel
/// id)`.
pub type Moved = (i64, String, i64, i64);

/// Queues up to `limit` scheduled messages whose time has come, oldest first, and records the
/// step on each timeline. Safe to run in several workers at once: the update is conditional on
/// the status, so a message is promoted (and returned) once, and one cancelled meanwhile
/// stays cancelled.
pub fn promote_due(
    conn: &mut DbConnection,
    at: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Moved>> {
    let scheduled = MessageStatus::Scheduled.as_str();
    let due: Vec<i64> = messages::table
        // Literal, so both databases use the partial index `messages_scheduled`.
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "status = 'scheduled'",
        ))
        .filter(messages::next_attempt_at.le(at))
        .order((messages::next_attempt_at, messages::id))
        .select(messages::id)
        .limit(limit)
        .load(conn)?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let moved: Vec<Moved> = super::on_backend!(conn, |c| diesel::update(
        messages::table
            .filter(messages::id.eq_any(&due))
            .filter(messages::status.eq(scheduled))
    )
    .set((
        messages::status.eq(MessageStatus::Queued.as_str()),
        messages::updated_at.eq(at),
    ))
    .returning((
        messages::id,
        messages::public_id,
        messages::contact_id,
        messages::channel_id,
    ))
    .get_results(c))?;
    let events: Vec<_> = moved
        .iter()
        .map(|(id, ..)| {
            (
                message_events::message_id.eq(*id),
                message_events::status.eq(MessageStatus::Queued.as_str()),
                message_events::source.eq("herald"),
                message_events::detail.eq("Its scheduled time came."),
                message_events::occurred_at.eq(at),
            )
        })
        .collect();
    if !events.is_empty() {
        super::on_backend!(conn, |c| diesel::insert_into(message_events::table)
            .values(&events)
            .execute(c))?;
    }
    Ok(moved)
}

/// Withdraws a scheduled message before it goes: `false` when it is no longer scheduled (it
/// went, or was cancelled already). `detail` goes on its timeline (who cancelled it, or why).
pub fn cancel_scheduled(
    conn: &mut DbConnection,
    message_id: i64,
    detail: &str,
    at: NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(
        messages::table
            .find(message_id)
            .filter(messages::status.eq(MessageStatus::Scheduled.as_str())),
    )
    .set((
        messages::status.eq(MessageStatus::Cancelled.as_str()),
        messages::updated_at.eq(at),
    ))
    .execute(conn)?;
    if n == 1 {
        super::messages::record_event(
            conn,
            message_id,
            MessageStatus::Cancelled,
            "herald",
            detail,
            at,
        )?;
    }
    Ok(n == 1)
}

/// Rows per statement of [`enqueue_many`]: 18 values a message, well under SQLite's 32,766
/// bound values and PostgreSQL's 65,535.
const ENQUEUE_CHUNK: usize = 250;

/// Queues many messages (a broadcast's batch) as [`enqueue`] queues one, each with the first
/// event of its timeline, in a few multi-row statements instead of two per message. Returns
/// how many were queued. A unique violation (a message already queued for a broadcast's
/// recipient) fails the whole call, as one [`enqueue`] would.
pub fn enqueue_many(conn: &mut DbConnection, batch: &[NewMessage<'_>]) -> QueryResult<usize> {
    let at = now();
    let mut queued = 0;
    for chunk in batch.chunks(ENQUEUE_CHUNK) {
        let rows: Vec<QueuedRow<'_>> = chunk
            .iter()
            .map(|m| QueuedRow::new(m, at, MessageStatus::Queued))
            .collect();
        // Neither database promises RETURNING in the order of the rows: each event takes
        // what it needs from the row that came back.
        let written: Vec<(i64, String)> =
            super::on_backend!(conn, |c| diesel::insert_into(messages::table)
                .values(&rows)
                .returning((messages::id, messages::requested_by))
                .get_results(c))?;
        let events: Vec<_> = written
            .iter()
            .map(|(id, requested_by)| {
                (
                    message_events::message_id.eq(*id),
                    message_events::status.eq(MessageStatus::Queued.as_str()),
                    message_events::source.eq("herald"),
                    message_events::detail.eq(requested_by.as_str()),
                    message_events::occurred_at.eq(at),
                )
            })
            .collect();
        super::on_backend!(conn, |c| diesel::insert_into(message_events::table)
            .values(&events)
            .execute(c))?;
        queued += written.len();
    }
    Ok(queued)
}

pub fn find_by_idempotency_key(
    conn: &mut DbConnection,
    key: &str,
) -> QueryResult<Option<MessageRow>> {
    messages::table
        .filter(messages::idempotency_key.eq(key))
        .select(MessageRow::as_select())
        .first(conn)
        .optional()
}

pub fn request_hash(conn: &mut DbConnection, message_id: i64) -> QueryResult<Option<String>> {
    messages::table
        .find(message_id)
        .select(messages::request_hash)
        .first(conn)
}

/// The claim of one kind of message: `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite
/// serialises writers, so its single conditional `UPDATE` is enough. `campaign` picks the
/// broadcasts' messages, otherwise single sends; each kind has its own ordered partial index
/// (`messages_queued_single`, `messages_queued_campaign`), whose predicate is written out
/// literally so that both databases use it.
fn claim_sql(postgres: bool, campaign: bool) -> String {
    let columns = super::messages::COLUMNS;
    let lock = if postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let kind = if campaign {
        "campaign_id IS NOT NULL"
    } else {
        "campaign_id IS NULL"
    };
    format!(
        "UPDATE messages SET status = 'sending', attempts = attempts + 1, lease_expires_at = $1, leased_by = $2, \
         updated_at = $3 WHERE id IN (SELECT id FROM messages WHERE channel_id = $4 AND status = 'queued' \
         AND {kind} AND next_attempt_at <= $3 ORDER BY next_attempt_at, id LIMIT $5{lock}) RETURNING {columns}"
    )
}

fn claim_kind(
    conn: &mut DbConnection,
    campaign: bool,
    channel_id: i64,
    worker_id: &str,
    limit: i64,
    lease_until: NaiveDateTime,
    at: NaiveDateTime,
) -> QueryResult<Vec<MessageRow>> {
    match conn {
        DbConnection::Sqlite(c) => fixed(&claim_sql(false, campaign))
            .bind::<Timestamp, _>(lease_until)
            .bind::<Text, _>(worker_id)
            .bind::<Timestamp, _>(at)
            .bind::<BigInt, _>(channel_id)
            .bind::<BigInt, _>(limit)
            .load(c),
        DbConnection::Postgres(c) => fixed(&claim_sql(true, campaign))
            .bind::<Timestamp, _>(lease_until)
            .bind::<Text, _>(worker_id)
            .bind::<Timestamp, _>(at)
            .bind::<BigInt, _>(channel_id)
            .bind::<BigInt, _>(limit)
            .load(c),
    }
}

/// Claims up to `limit` due messages of one channel for this worker: they become `sending`
/// with a lease. Two workers never get the same row. Single sends come first, oldest first,
/// and only the room they leave goes to broadcast messages: a single send never waits behind
/// a broadcast's queued messages, however many are due before it.
pub fn claim(
    conn: &mut DbConnection,
    channel_id: i64,
    worker_id: &str,
    limit: i64,
    lease_until: NaiveDateTime,
) -> QueryResult<Vec<MessageRow>> {
    let at = now();
    let mut rows = claim_kind(conn, false, channel_id, worker_id, limit, lease_until, at)?;
    let room = limit - rows.len() as i64;
    if room > 0 {
        rows.extend(claim_kind(
            conn,
            true,
            channel_id,
            worker_id,
            room,
            lease_until,
            at,
        )?);
    }
    rows.sort_by_key(|r| (r.campaign_id.is_some(), r.next_attempt_at, r.id));
    Ok(rows)
}

/// Where a claimed message goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider took it.
    Sent {
        provider_message_id: String,
        provider_status: Option<String>,
        /// The provider's answer as kept (`channels::payload`), for the timeline.
        payload: Option<String>,
    },
    /// Not taken, provably: queue again for `at`.
    Retry {
        at: NaiveDateTime,
        code: Option<String>,
        message: String,
        payload: Option<String>,
    },
    /// A definite refusal, or the retries ran out.
    Failed {
        code: Option<String>,
        message: String,
        payload: Option<String>,
    },
    /// It may have reached the provider; never resent automatically.
    Unknown {
        message: String,
        payload: Option<String>,
    },
    /// Not sent because the policy said no at send time (opt-out, window, template).
    Skipped { code: String, message: String },
    /// Never attempted (shutdown, or a per-recipient spacing): back to the queue as it was.
    Released { at: NaiveDateTime },
}

impl Outcome {
    pub fn status(&self) -> MessageStatus {
        match self {
            Outcome::Sent { .. } => MessageStatus::Sent,
            Outcome::Retry { .. } | Outcome::Released { .. } => MessageStatus::Queued,
            Outcome::Failed { .. } => MessageStatus::Failed,
            Outcome::Unknown { .. } => MessageStatus::Unknown,
            Outcome::Skipped { .. } => MessageStatus::Skipped,
        }
    }

    /// What the provider answered, as kept for the timeline (none when it was not asked).
    pub fn payload(&self) -> Option<&str> {
        match self {
            Outcome::Sent { payload, .. }
            | Outcome::Retry { payload, .. }
            | Outcome::Failed { payload, .. }
            | Outcome::Unknown { payload, .. } => payload.as_deref(),
            Outcome::Skipped { .. } | Outcome::Released { .. } => None,
        }
    }
}

/// The error code of a message the provider took under an id it had already given another
/// message (see [`record_outcome`]).
pub const DUPLICATE_PROVIDER_ID: &str = "duplicate_provider_id";

/// The public id of another message of the channel that holds this provider message id.
fn provider_id_holder(
    conn: &mut DbConnection,
    message: &MessageRow,
    provider_message_id: &str,
) -> QueryResult<Option<String>> {
    messages::table
        .filter(messages::channel_id.eq(message.channel_id))
        .filter(messages::provider_message_id.eq(provider_message_id))
        .filter(messages::id.ne(message.id))
        .select(messages::public_id)
        .first(conn)
        .optional()
}

/// Writes one outcome of a message this worker holds. Returns false when the worker no longer
/// held it (its lease was reaped as `unknown`, or the message was deleted): then a `Sent` is
/// still recorded on a reaped message, moving it forward, because it proves what happened.
///
/// A provider id is unique per channel (status reports find their message by it). When the
/// provider answers with an id it already gave another message, that message keeps the id, so
/// its reports still reach it; this one is recorded `sent` (the provider took it) without the
/// id, and its error fields and timeline say which id came back and who holds it.
pub fn record_outcome(
    conn: &mut DbConnection,
    message: &MessageRow,
    worker_id: &str,
    outcome: &Outcome,
) -> QueryResult<bool> {
    let at = now();
    let held = messages::table
        .find(message.id)
        .filter(messages::status.eq(MessageStatus::Sending.as_str()))
        .filter(messages::leased_by.eq(worker_id));
    let release = || {
        (
            messages::lease_expires_at.eq(None::<NaiveDateTime>),
            messages::leased_by.eq(None::<String>),
            messages::updated_at.eq(at),
        )
    };
    let (updated, detail) = match outcome {
        Outcome::Sent {
            provider_message_id,
            provider_status,
            payload,
        } => {
            let (stored_id, code, note) =
                match provider_id_holder(conn, message, provider_message_id)? {
                    None => (Some(provider_message_id.as_str()), None, None),
                    Some(holder) => (
                        None,
                        Some(DUPLICATE_PROVIDER_ID),
                        Some(format!(
                            "The provider took this message but answered with the id \
                             {provider_message_id}, which it had already given to message \
                             {holder}: its status reports for that id go to that message, so \
                             this one's delivery cannot be followed."
                        )),
                    ),
                };
            let sent = || {
                (
                    release(),
                    messages::status.eq(MessageStatus::Sent.as_str()),
                    messages::provider_message_id.eq(stored_id),
                    messages::sent_at.eq(at),
                    messages::error_code.eq(code),
                    messages::error_message.eq(note.as_deref()),
                )
            };
            let n = diesel::update(held).set(sent()).execute(conn)?;
            // Reaped meanwhile: the send's answer still proves it left.
            let changed = if n == 0 {
                diesel::update(
                    messages::table
                        .find(message.id)
                        .filter(messages::status.eq(MessageStatus::Unknown.as_str())),
                )
                .set(sent())
                .execute(conn)?
            } else {
                n
            };
            if changed == 1 {
                let detail = match (&note, provider_status) {
                    (Some(note), _) => note.clone(),
                    (None, Some(s)) => format!("provider id {provider_message_id} ({s})"),
                    (None, None) => format!("provider id {provider_message_id}"),
                };
                super::messages::record_event_with_payload(
                    conn,
                    message.id,
                    MessageStatus::Sent,
                    "dispatcher",
                    &detail,
                    at,
                    payload.as_deref(),
                )?;
            }
            // Deleted meanwhile (or moved on): nothing left to record.
            return Ok(n == 1);
        }
        Outcome::Retry {
            at: when,
            code,
            message: text,
            ..
        } => (
            diesel::update(held)
                .set((
                    release(),
                    messages::status.eq(MessageStatus::Queued.as_str()),
                    messages::next_attempt_at.eq(when),
                    messages::error_code.eq(code),
                    messages::error_message.eq(text),
                ))
                .execute(conn)?,
            format!("will retry at {} UTC: {text}", when.format("%H:%M:%S")),
        ),
        Outcome::Failed {
            code,
            message: text,
            ..
        } => (
            diesel::update(held)
                .set((
                    release(),
                    messages::status.eq(MessageStatus::Failed.as_str()),
                    messages::failed_at.eq(at),
                    messages::error_code.eq(code),
                    messages::error_message.eq(text),
                ))
                .execute(conn)?,
            text.clone(),
        ),
        Outcome::Unknown { message: text, .. } => (
            diesel::update(held)
                .set((
                    release(),
                    messages::status.eq(MessageStatus::Unknown.as_str()),
                    messages::error_code.eq(Some("unknown")),
                    messages::error_message.eq(text),
                ))
                .execute(conn)?,
            text.clone(),
        ),
        Outcome::Skipped {
            code,
            message: text,
        } => (
            diesel::update(held)
                .set((
                    release(),
                    messages::status.eq(MessageStatus::Skipped.as_str()),
                    messages::error_code.eq(code),
                    messages::error_message.eq(text),
                ))
                .execute(conn)?,
            text.clone(),
        ),
        Outcome::Released { at: when } => {
            let n = diesel::update(held)
                .set((
                    release(),
                    messages::status.eq(MessageStatus::Queued.as_str()),
                    messages::next_attempt_at.eq(when),
                    messages::attempts.eq(messages::attempts - 1),
                ))
                .execute(conn)?;
            // Not a change anyone needs in the timeline.
            return Ok(n == 1);
        }
    };
    if updated == 1 {
        super::messages::record_event_with_payload(
            conn,
            message.id,
            outcome.status(),
            "dispatcher",
            &detail,
            at,
            outcome.payload(),
        )?;
    }
    Ok(updated == 1)
}

/// Messages left `sending` by a worker that died (its heartbeat stopped) or whose lease ran
/// out become `unknown`: they may have reached the provider, so they are never resent on their
/// own. Returns `(id, public id, contact id, channel id)` of each.
pub fn reap(
    conn: &mut DbConnection,
    now_at: NaiveDateTime,
    dead_before: NaiveDateTime,
) -> QueryResult<Vec<(i64, String, i64, i64)>> {
    // A handful of rows (workers are forgotten a day after they stop).
    let workers: Vec<(String, NaiveDateTime, Option<NaiveDateTime>)> = workers::table
        .select((workers::id, workers::heartbeat_at, workers::stopped_at))
        .load(conn)?;
    let (dead, alive): (Vec<_>, Vec<_>) = workers
        .into_iter()
        .partition(|(_, heartbeat, stopped)| *heartbeat < dead_before || stopped.is_some());
    let dead: Vec<String> = dead.into_iter().map(|w| w.0).collect();
    let alive: Vec<String> = alive.into_iter().map(|w| w.0).collect();
    let stuck: Vec<(i64, String, i64, i64, Option<String>)> = messages::table
        // Literal, so both databases use the partial index `messages_leased` (every sending
        // message holds a lease).
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "status = 'sending' AND lease_expires_at IS NOT NULL",
        ))
        .filter(
            messages::lease_expires_at
                .lt(now_at)
                .or(messages::leased_by.eq_any(&dead))
                .or(messages::leased_by.is_null()),
        )
        .select((
            messages::id,
            messages::public_id,
            messages::contact_id,
            messages::channel_id,
            messages::leased_by,
        ))
        .limit(5000)
        .load(conn)?;
    let mut out = Vec::with_capacity(stuck.len());
    for (id, public_id, contact_id, channel_id, holder) in stuck {
        // Say what is known: its worker stopped, or its worker lives but the outcome was never
        // written (it kept failing until the lease ran out).
        let stopped = holder.as_ref().is_none_or(|h| !alive.contains(h));
        let text = if stopped {
            "The worker sending this message stopped before the provider's answer was recorded: \
             it may or may not have been sent. Herald does not resend it on its own; an admin can."
        } else {
            "The outcome of this send was not recorded before its lease ran out (the database did \
             not take it): it may or may not have been sent. Herald does not resend it on its own; \
             an admin can."
        };
        let n = diesel::update(
            messages::table
                .find(id)
                .filter(messages::status.eq(MessageStatus::Sending.as_str()))
                .filter(
                    messages::leased_by
                        .eq(holder.clone())
                        .or(messages::leased_by.is_null()),
                ),
        )
        .set((
            messages::status.eq(MessageStatus::Unknown.as_str()),
            messages::error_code.eq(Some("unknown")),
            messages::error_message.eq(text),
            messages::lease_expires_at.eq(None::<NaiveDateTime>),
            messages::leased_by.eq(None::<String>),
            messages::updated_at.eq(now_at),
        ))
        .execute(conn)?;
        if n == 1 {
            super::messages::record_event(
                conn,
                id,
                MessageStatus::Unknown,
                "dispatcher",
                text,
                now_at,
            )?;
            out.push((id, public_id, contact_id, channel_id));
        }
    }
    Ok(out)
}

/// When each of these contacts last got a message on this channel after `since` (through the
/// per-contact index: a contact has few messages).
pub fn recent_sends(
    conn: &mut DbConnection,
    channel_id: i64,
    contact_ids: &[i64],
    since: NaiveDateTime,
) -> QueryResult<HashMap<i64, NaiveDateTime>> {
    let mut out = HashMap::new();
    if let DbConnection::Postgres(c) = conn {
        // One look-up per contact. Given the whole list in one condition, PostgreSQL now and
        // then misjudged how many rows match (its statistics lag behind a busy queue) and read
        // the whole table instead: a quarter of this look-up's time in the benchmark, and
        // hopeless on a table of millions.
        #[derive(QueryableByName)]
        struct LastSend {
            #[diesel(sql_type = BigInt)]
            contact_id: i64,
            #[diesel(sql_type = Timestamp)]
            last: NaiveDateTime,
        }
        let rows: Vec<LastSend> = fixed(
            "SELECT v.id AS contact_id, l.last FROM unnest($3::bigint[]) AS v(id) CROSS JOIN LATERAL \
             (SELECT max(m.sent_at) AS last FROM messages m WHERE m.contact_id = v.id \
             AND m.channel_id = $1 AND m.sent_at > $2) AS l WHERE l.last IS NOT NULL",
        )
        .bind::<BigInt, _>(channel_id)
        .bind::<Timestamp, _>(since)
        .bind::<Array<BigInt>, _>(contact_ids)
        .load(c)?;
        out.extend(rows.into_iter().map(|r| (r.contact_id, r.last)));
        return Ok(out);
    }
    for chunk in contact_ids.chunks(500) {
        // The channel is checked here, not in SQL: given it, SQLite (which keeps no
        // statistics) walked the channel's whole history through an index on the channel
        // instead of each contact's few rows, and a million-message drain crawled.
        let rows: Vec<(i64, i64, Option<NaiveDateTime>)> = messages::table
            .filter(messages::contact_id.eq_any(chunk))
            .filter(messages::sent_at.gt(since))
            .select((
                messages::contact_id,
                messages::channel_id,
                messages::sent_at,
            ))
            .load(conn)?;
        for (contact, channel, at) in rows {
            if channel != channel_id {
                continue;
            }
            if let Some(at) = at {
                let e = out.entry(contact).or_insert(at);
                if at > *e {
                    *e = at;
                }
            }
        }
    }
    Ok(out)
}

/// How many messages wait, per channel.
pub fn queue_depth(conn: &mut DbConnection) -> QueryResult<Vec<(i64, i64)>> {
    // Literal, so both databases use the partial indexes `messages_queued_single` and
    // `messages_queued_campaign`: every queued message is in exactly one of them.
    let mut depth: std::collections::BTreeMap<i64, i64> = Default::default();
    for kind in ["campaign_id IS NULL", "campaign_id IS NOT NULL"] {
        let rows: Vec<(i64, i64)> = messages::table
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
                "status = 'queued' AND {kind}"
            )))
            .group_by(messages::channel_id)
            .select((messages::channel_id, diesel::dsl::count_star()))
            .load(conn)?;
        for (channel, n) in rows {
            *depth.entry(channel).or_default() += n;
        }
    }
    Ok(depth.into_iter().collect())
}

pub fn register_worker(
    conn: &mut DbConnection,
    id: &str,
    host: &str,
    pid: i64,
) -> QueryResult<usize> {
    let at = now();
    diesel::insert_into(workers::table)
        .values((
            workers::id.eq(id),
            workers::host.eq(host),
            workers::pid.eq(pid),
            workers::started_at.eq(at),
            workers::heartbeat_at.eq(at),
        ))
        .execute(conn)
}

pub fn heartbeat(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::update(workers::table.find(id))
        .set(workers::heartbeat_at.eq(now()))
        .execute(conn)
}

pub fn worker_stopped(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::update(workers::table.find(id))
        .set(workers::stopped_at.eq(Some(now())))
        .execute(conn)
}

/// Forgets workers gone for a day (their messages were reaped long ago).
pub fn prune_workers(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(workers::table.filter(workers::heartbeat_at.lt(before))).execute(conn)
}

/// Makes the channel's schedule row unless it exists.
fn throttle_row(conn: &mut DbConnection, channel_id: i64) -> QueryResult<()> {
    on_backend!(conn, |c| diesel::insert_into(channel_throttle::table)
        .values((
            channel_throttle::channel_id.eq(channel_id),
            channel_throttle::next_slot_us.eq(0i64),
            channel_throttle::paused_until_us.eq(0i64),
        ))
        .on_conflict_do_nothing()
        .execute(c))
    .map(drop)
}

/// Reserves `count` consecutive send slots, `interval_us` apart, on the channel's shared
/// schedule, and returns the first slot's time (µs since the epoch). One statement under the
/// schedule row's lock: the start is worked out from the row as stored when the lock is held
/// (PostgreSQL re-reads a row a concurrent update changed; SQLite has one writer), so slots
/// are never handed out twice and the channel's rate holds however many workers send. The
/// row is made the first time a channel sends.
pub fn reserve_slots(
    conn: &mut DbConnection,
    channel_id: i64,
    count: i64,
    interval_us: i64,
    now_us: i64,
) -> QueryResult<i64> {
    let span = count * interval_us;
    if let Some(start) = reserve(conn, channel_id, span, now_us)? {
        return Ok(start);
    }
    throttle_row(conn, channel_id)?;
    reserve(conn, channel_id, span, now_us)?.ok_or(diesel::result::Error::NotFound)
}

/// Moves the channel's schedule `span` µs past the later of its next slot, `now_us` and its
/// pause; the start of what was reserved, or `None` when the channel has no schedule row yet.
fn reserve(
    conn: &mut DbConnection,
    channel_id: i64,
    span: i64,
    now_us: i64,
) -> QueryResult<Option<i64>> {
    #[derive(QueryableByName)]
    struct Start {
        #[diesel(sql_type = BigInt)]
        start: i64,
    }
    // SQLite's many-argument max() is PostgreSQL's GREATEST.
    const PG: &str = "UPDATE channel_throttle SET next_slot_us = GREATEST(next_slot_us, $2, paused_until_us) + $3 \
         WHERE channel_id = $1 RETURNING next_slot_us - $3 AS start";
    // The same, committed without waiting for the WAL flush: a slot is worth nothing after a
    // crash (the sends it was for are in memory), so waiting for the disk only delays sends.
    // Losing one in a database crash lets at most the WAL writer's delay (200 ms) of the
    // channel's sends go out again at its rate beside the ones after it.
    const PG_QUICK: &str = "UPDATE channel_throttle SET next_slot_us = GREATEST(next_slot_us, $2, paused_until_us) + $3 \
         FROM (SELECT set_config('synchronous_commit', 'off', true)) AS quick \
         WHERE channel_id = $1 RETURNING next_slot_us - $3 AS start";
    const SQLITE: &str = "UPDATE channel_throttle SET next_slot_us = max(next_slot_us, $2, paused_until_us) + $3 \
         WHERE channel_id = $1 RETURNING next_slot_us - $3 AS start";
    let sql = match conn {
        DbConnection::Sqlite(_) => SQLITE,
        // Only a statement of its own: inside a transaction the setting would last until that
        // transaction's commit and take its durability with it.
        DbConnection::Postgres(c) => {
            use diesel::connection::{AnsiTransactionManager, TransactionManager};
            match AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth() {
                Ok(None) => PG_QUICK,
                _ => PG,
            }
        }
    };
    let start: Option<Start> = on_backend!(conn, |c| fixed(sql)
        .bind::<BigInt, _>(channel_id)
        .bind::<BigInt, _>(now_us)
        .bind::<BigInt, _>(span)
        .get_result(c)
        .optional())?;
    Ok(start.map(|s| s.start))
}

/// The provider said to slow down: no slot before `until_us`.
pub fn pause_channel(
    conn: &mut DbConnection,
    channel_id: i64,
    until_us: i64,
) -> QueryResult<usize> {
    throttle_row(conn, channel_id)?;
    diesel::update(
        channel_throttle::table
            .find(channel_id)
            .filter(channel_throttle::paused_until_us.lt(until_us)),
    )
    .set(channel_throttle::paused_until_us.eq(until_us))
    .execute(conn)
}

/// Why a message was not resent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResendRefusal {
    /// Only `failed` and `unknown` messages are resent.
    Status(MessageStatus),
    /// It was resent already, as this message (resend that one if it failed too).
    AlreadyResent { public_id: String },
    /// Retention removed its content after this many days: there is nothing left to send.
    Purged { days: i32 },
}

/// A new message that sends a failed or unknown one again, linked to it; the old one keeps
/// its outcome. A message is resent at most once (a unique index holds that when two people
/// click at once).
pub fn resend(
    conn: &mut DbConnection,
    original: &MessageRow,
    requested_by: &str,
    source: MessageSource,
) -> QueryResult<Result<MessageRow, ResendRefusal>> {
    if !original.status().may_resend() {
        return Ok(Err(ResendRefusal::Status(original.status())));
    }
    if let Some(public_id) = resent_as(conn, original.id)? {
        return Ok(Err(ResendRefusal::AlreadyResent { public_id }));
    }
    if let Some(purged) = super::message_detail::purged(conn, original.id)? {
        return Ok(Err(ResendRefusal::Purged {
            days: purged.after_days,
        }));
    }
    // In a savepoint: when two resends collide, the loser's unique violation must not abort
    // the caller's transaction (PostgreSQL would refuse the look-up that follows).
    let queued = conn.transaction(|conn| {
        enqueue(
            conn,
            &NewMessage {
                channel_id: original.channel_id,
                contact_id: original.contact_id,
                to_address: &original.to_address,
                campaign_id: original.campaign_id,
                template_id: original.template_id,
                content_kind: &original.content_kind,
                body: &original.body,
                content: &original.content,
                idempotency_key: None,
                requested_by,
                resend_of: Some(original.id),
                not_before: now(),
                request_hash: None,
                source,
            },
        )
    });
    match queued {
        Ok(m) => Ok(Ok(m)),
        Err(e) if super::is_unique_violation(&e) => match resent_as(conn, original.id)? {
            Some(public_id) => Ok(Err(ResendRefusal::AlreadyResent { public_id })),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// The public id of the message that resent this one, if any.
pub fn resent_as(conn: &mut DbConnection, message_id: i64) -> QueryResult<Option<String>> {
    messages::table
        .filter(messages::resend_of.eq(message_id))
        .select(messages::public_id)
        .first(conn)
        .optional()
}

/// Events of many messages at once are not needed: `messages::events` reads one timeline.
pub fn events_count(conn: &mut DbConnection, message_id: i64) -> QueryResult<i64> {
    message_events::table
        .filter(message_events::message_id.eq(message_id))
        .count()
        .get_result(conn)
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// [`mark_sent_batch`]'s statement. `$1` the time, `$2` the worker, then the batch: two arrays
/// on PostgreSQL, a JSON array of `[id, provider id]` on SQLite. On SQLite the status and the
/// lease are compared through a unary `+`, which keeps them off the indexes: otherwise the
/// planner walks every message in `sending` (the history's status index) and scans the batch's
/// JSON once for each, instead of looking each row of the batch up by its id (measured: half
/// of the dispatcher's CPU at 5,000 messages a second went there).
fn mark_sent_sql(postgres: bool) -> String {
    let (batch, keep) = if postgres {
        ("unnest($3::bigint[], $4::text[]) AS v(id, pid)", "")
    } else {
        (
            "(SELECT value ->> 0 AS id, value ->> 1 AS pid FROM json_each($3)) AS v",
            "+",
        )
    };
    format!(
        "UPDATE messages SET status = 'sent', provider_message_id = v.pid, sent_at = $1, \
         updated_at = $1, lease_expires_at = NULL, leased_by = NULL, error_code = NULL, \
         error_message = NULL FROM {batch} \
         WHERE messages.id = v.id AND {keep}messages.status = 'sending' AND {keep}messages.leased_by = $2 \
         AND NOT EXISTS (SELECT 1 FROM messages AS holder WHERE holder.channel_id = messages.channel_id \
         AND holder.provider_message_id = v.pid) RETURNING messages.id"
    )
}

/// Records many successful sends at once: each message this worker holds becomes `sent` with
/// its provider id. Returns the ids updated; the others need `record_outcome`: they were no
/// longer held (reaped meanwhile), or their provider id is taken (by another message, or by
/// an earlier row of this batch: a provider repeating an id), which the statement leaves to
/// `record_outcome` rather than failing on the unique index and taking the batch with it.
/// One statement of fixed text whatever the batch size (the rows travel as arrays on
/// PostgreSQL and as a JSON array on SQLite), so it is prepared once per connection
/// ([`fixed`]); a `VALUES` list made each batch size a new statement to parse and plan.
pub fn mark_sent_batch(
    conn: &mut DbConnection,
    worker_id: &str,
    sent: &[(i64, &str)],
    at: NaiveDateTime,
) -> QueryResult<Vec<i64>> {
    // Within one statement the index would only see a repeat once it failed: keep the first.
    let mut seen = std::collections::HashSet::with_capacity(sent.len());
    let sent: Vec<(i64, &str)> = sent
        .iter()
        .copied()
        .filter(|(_, pid)| seen.insert(*pid))
        .collect();
    if sent.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<IdRow> = match conn {
        DbConnection::Postgres(c) => {
            let (ids, pids): (Vec<i64>, Vec<&str>) = sent.iter().copied().unzip();
            fixed(&mark_sent_sql(true))
                .bind::<Timestamp, _>(at)
                .bind::<Text, _>(worker_id)
                .bind::<Array<BigInt>, _>(ids)
                .bind::<Array<Text>, _>(pids)
                .load(c)?
        }
        DbConnection::Sqlite(c) => fixed(&mark_sent_sql(false))
            .bind::<Timestamp, _>(at)
            .bind::<Text, _>(worker_id)
            .bind::<Text, _>(json_rows(&sent))
            .load(c)?,
    };
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Rows as a JSON array of arrays, for SQLite's `json_each`.
fn json_rows<T: serde::Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).unwrap_or_else(|_| "[]".into())
}

/// One entry of [`record_events_batch`]: message id, status, detail, and the provider's
/// answer as kept (issue 18).
pub type TimelineEntry = (i64, MessageStatus, String, Option<String>);

/// Appends many timeline entries at once, in one statement of fixed text (see
/// [`mark_sent_batch`]).
pub fn record_events_batch(
    conn: &mut DbConnection,
    source: &str,
    entries: &[TimelineEntry],
    at: NaiveDateTime,
) -> QueryResult<usize> {
    if entries.is_empty() {
        return Ok(0);
    }
    const INSERT: &str =
        "INSERT INTO message_events (message_id, status, source, detail, occurred_at, payload)";
    match conn {
        DbConnection::Postgres(c) => {
            let ids: Vec<i64> = entries.iter().map(|e| e.0).collect();
            let statuses: Vec<&str> = entries.iter().map(|e| e.1.as_str()).collect();
            let details: Vec<&str> = entries.iter().map(|e| e.2.as_str()).collect();
            let payloads: Vec<Option<&str>> = entries.iter().map(|e| e.3.as_deref()).collect();
            fixed(&format!(
                "{INSERT} SELECT id, status, $1, detail, $2, payload \
                 FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[]) \
                 AS v(id, status, detail, payload)"
            ))
            .bind::<Text, _>(source)
            .bind::<Timestamp, _>(at)
            .bind::<Array<BigInt>, _>(ids)
            .bind::<Array<Text>, _>(statuses)
            .bind::<Array<Text>, _>(details)
            .bind::<Array<diesel::sql_types::Nullable<Text>>, _>(payloads)
            .execute(c)
        }
        DbConnection::Sqlite(c) => {
            let rows: Vec<(i64, &str, &str, Option<&str>)> = entries
                .iter()
                .map(|(id, status, detail, payload)| {
                    (*id, status.as_str(), detail.as_str(), payload.as_deref())
                })
                .collect();
            fixed(&format!(
                "{INSERT} SELECT value ->> 0, value ->> 1, $1, value ->> 2, $2, value ->> 3 \
                 FROM json_each($3)"
            ))
            .bind::<Text, _>(source)
            .bind::<Timestamp, _>(at)
            .bind::<Text, _>(json_rows(&rows))
            .execute(c)
        }
    }
}

/// A broadcast's window-aware message goes out as its free text (the recipient's window is
/// open): the message records what was sent.
pub fn sent_as_text(
    conn: &mut DbConnection,
    id: i64,
    body: &str,
    content: &str,
) -> QueryResult<usize> {
    diesel::update(messages::table.find(id))
        .set((
            messages::content_kind.eq("text"),
            messages::body.eq(body),
            messages::content.eq(content),
        ))
        .execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_slots_never_overlap_and_wait_for_a_pause() {
        let (_dir, db) = crate::service::testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let channel = crate::storage::channels::seed_sandbox(&mut conn).expect("channels")[0].id;
        // The first reservation makes the row and starts now.
        assert_eq!(reserve_slots(&mut conn, channel, 3, 100, 1_000), Ok(1_000));
        // The next starts where the last ended, even when "now" is earlier.
        assert_eq!(reserve_slots(&mut conn, channel, 2, 100, 1_050), Ok(1_300));
        // Idle time is not saved up: a later "now" starts later.
        assert_eq!(reserve_slots(&mut conn, channel, 1, 100, 9_000), Ok(9_000));
        // A pause holds every slot until it ends.
        assert_eq!(pause_channel(&mut conn, channel, 20_000), Ok(1));
        assert_eq!(reserve_slots(&mut conn, channel, 1, 100, 9_500), Ok(20_000));
        assert_eq!(reserve_slots(&mut conn, channel, 1, 100, 9_500), Ok(20_100));
    }

    #[derive(QueryableByName)]
    struct PlanRow {
        #[diesel(sql_type = Text)]
        detail: String,
    }

    /// SQLite looks each sent row of the batch up by its id, whatever the statistics say about
    /// the messages in `sending` (with them on the status index it scanned the whole batch
    /// once per message in flight).
    #[test]
    fn a_sent_batch_looks_its_messages_up_by_id_on_sqlite() {
        let (_dir, db) = crate::service::testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let DbConnection::Sqlite(c) = &mut *conn else {
            panic!("a SQLite database")
        };
        // Statistics that make the status index look selective, as a busy queue's do.
        diesel::sql_query("ANALYZE").execute(c).expect("analyze");
        let plan: Vec<PlanRow> =
            diesel::sql_query(format!("EXPLAIN QUERY PLAN {}", mark_sent_sql(false)))
                .load(c)
                .expect("plan");
        let plan: Vec<&str> = plan.iter().map(|r| r.detail.as_str()).collect();
        assert!(
            plan.iter()
                .any(|d| d.starts_with("SEARCH messages USING INTEGER PRIMARY KEY")),
            "{plan:?}"
        );
        assert!(
            plan.iter().all(|d| !d.contains("messages_history_status")),
            "{plan:?}"
        );
    }
}
