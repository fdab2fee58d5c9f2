//! Messages: the outbox and the send history at once. This file holds what reads messages and
//! what provider reports do to them; queueing and claiming live with the dispatcher's storage.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{message_events, messages};
use super::{DbConnection, now};
use crate::domain::message::{MessageStatus, ProviderStatus, apply_provider_status};

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: i64,
    pub public_id: String,
    pub channel_id: i64,
    pub contact_id: i64,
    pub to_address: String,
    pub campaign_id: Option<i64>,
    pub template_id: Option<i64>,
    pub content_kind: String,
    pub body: String,
    pub content: String,
    pub status: String,
    pub provider_message_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub lease_expires_at: Option<NaiveDateTime>,
    pub idempotency_key: Option<String>,
    pub requested_by: String,
    pub resend_of: Option<i64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub sent_at: Option<NaiveDateTime>,
    pub delivered_at: Option<NaiveDateTime>,
    pub read_at: Option<NaiveDateTime>,
    pub failed_at: Option<NaiveDateTime>,
    pub leased_by: Option<String>,
    /// Where it came from (`MessageSource`): person, api or broadcast.
    pub source: String,
}

/// `MessageRow`'s columns, for statements written out in SQL (the claim, the history).
pub const COLUMNS: &str = "id, public_id, channel_id, contact_id, to_address, campaign_id, template_id, \
                           content_kind, body, content, status, provider_message_id, error_code, \
                           error_message, attempts, next_attempt_at, lease_expires_at, idempotency_key, \
                           requested_by, resend_of, created_at, updated_at, sent_at, delivered_at, \
                           read_at, failed_at, leased_by, source";

impl MessageRow {
    pub fn status(&self) -> MessageStatus {
        MessageStatus::parse(&self.status).unwrap_or(MessageStatus::Unknown)
    }
}

pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<MessageRow>> {
    messages::table
        .find(id)
        .select(MessageRow::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_public_id(
    conn: &mut DbConnection,
    public_id: &str,
) -> QueryResult<Option<MessageRow>> {
    messages::table
        .filter(messages::public_id.eq(public_id))
        .select(MessageRow::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_provider_id(
    conn: &mut DbConnection,
    channel_id: i64,
    provider_message_id: &str,
) -> QueryResult<Option<MessageRow>> {
    messages::table
        .filter(messages::channel_id.eq(channel_id))
        .filter(messages::provider_message_id.eq(provider_message_id))
        .select(MessageRow::as_select())
        .first(conn)
        .optional()
}

/// Appends to a message's timeline.
pub fn record_event(
    conn: &mut DbConnection,
    message_id: i64,
    status: MessageStatus,
    source: &str,
    detail: &str,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    record_event_with_payload(conn, message_id, status, source, detail, at, None)
}

/// Appends to a message's timeline with what the provider said (its answer to the send, or
/// the part of a webhook about this message), already redacted (`channels::payload`).
pub fn record_event_with_payload(
    conn: &mut DbConnection,
    message_id: i64,
    status: MessageStatus,
    source: &str,
    detail: &str,
    at: NaiveDateTime,
    payload: Option<&str>,
) -> QueryResult<usize> {
    diesel::insert_into(message_events::table)
        .values((
            message_events::message_id.eq(message_id),
            message_events::status.eq(status.as_str()),
            message_events::source.eq(source),
            message_events::detail.eq(detail),
            message_events::occurred_at.eq(at),
            message_events::payload.eq(payload),
        ))
        .execute(conn)
}

/// What a provider's error says about a failed message.
pub struct FailureDetail<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// Applies a provider's status report: statuses only move forward, whatever order reports come
/// in (the rule is `domain::message`'s). Returns the new status when it changed. The row is
/// updated only if it still has the status read, so two reports racing cannot step back.
pub fn apply_provider_report(
    conn: &mut DbConnection,
    message: &MessageRow,
    incoming: ProviderStatus,
    at: NaiveDateTime,
    failure: Option<FailureDetail<'_>>,
    payload: Option<&str>,
) -> QueryResult<Option<MessageStatus>> {
    let current = message.status();
    let Some(next) = apply_provider_status(current, incoming) else {
        return Ok(None);
    };
    let stamp = Some(at);
    let changed = {
        let target = messages::table
            .find(message.id)
            .filter(messages::status.eq(current.as_str()));
        let base = (
            messages::status.eq(next.as_str()),
            messages::updated_at.eq(now()),
        );
        match next {
            MessageStatus::Sent => diesel::update(target)
                .set((base, messages::sent_at.eq(message.sent_at.or(stamp))))
                .execute(conn)?,
            MessageStatus::Delivered => diesel::update(target)
                .set((
                    base,
                    messages::delivered_at.eq(stamp),
                    messages::sent_at.eq(message.sent_at.or(stamp)),
                ))
                .execute(conn)?,
            MessageStatus::Read => diesel::update(target)
                .set((
                    base,
                    messages::read_at.eq(stamp),
                    messages::delivered_at.eq(message.delivered_at.or(stamp)),
                    messages::sent_at.eq(message.sent_at.or(stamp)),
                ))
                .execute(conn)?,
            MessageStatus::Failed => diesel::update(target)
                .set((
                    base,
                    messages::failed_at.eq(stamp),
                    messages::error_code.eq(failure.as_ref().map(|f| f.code)),
                    messages::error_message.eq(failure.as_ref().map(|f| f.message)),
                ))
                .execute(conn)?,
            _ => diesel::update(target).set(base).execute(conn)?,
        }
    };
    if changed == 0 {
        // Someone else moved it meanwhile; their update wins and this report is stale.
        return Ok(None);
    }
    let detail = failure
        .map(|f| format!("{} ({})", f.message, f.code))
        .unwrap_or_default();
    record_event_with_payload(conn, message.id, next, "provider", &detail, at, payload)?;
    Ok(Some(next))
}

/// A message's timeline, oldest first.
pub fn events(
    conn: &mut DbConnection,
    message_id: i64,
) -> QueryResult<Vec<(String, String, String, NaiveDateTime)>> {
    Ok(super::message_detail::timeline(conn, message_id)?
        .into_iter()
        .map(|e| (e.status, e.source, e.detail, e.occurred_at))
        .collect())
}
