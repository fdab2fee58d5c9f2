//! Consent per contact and kind of channel: the current state, and a history of changes.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{consent_events, contact_consents};
use super::{DbConnection, now, on_backend};
use crate::domain::channel::ChannelKind;
use crate::domain::consent::{ConsentSource, ConsentStatus};

#[derive(Debug, Clone)]
pub struct Consent {
    pub kind: ChannelKind,
    pub status: ConsentStatus,
    pub source: ConsentSource,
    pub detail: String,
    pub changed_at: NaiveDateTime,
}

#[derive(Queryable)]
struct ConsentRow {
    channel_kind: String,
    status: String,
    source: String,
    detail: String,
    changed_at: NaiveDateTime,
}

impl ConsentRow {
    fn into_consent(self) -> Option<Consent> {
        Some(Consent {
            kind: self.channel_kind.parse().ok()?,
            status: self.status.parse().ok()?,
            source: ConsentSource::parse(&self.source),
            detail: self.detail,
            changed_at: self.changed_at,
        })
    }
}

/// A contact's consent, per kind of channel that has a record.
pub fn of_contact(
    conn: &mut DbConnection,
    contact_id: i64,
) -> QueryResult<BTreeMap<&'static str, Consent>> {
    let rows: Vec<ConsentRow> = contact_consents::table
        .filter(contact_consents::contact_id.eq(contact_id))
        .select((
            contact_consents::channel_kind,
            contact_consents::status,
            contact_consents::source,
            contact_consents::detail,
            contact_consents::changed_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(ConsentRow::into_consent)
        .map(|c| (c.kind.as_str(), c))
        .collect())
}

/// The consent status for one contact and kind (`None`: nothing recorded).
pub fn status(
    conn: &mut DbConnection,
    contact_id: i64,
    kind: ChannelKind,
) -> QueryResult<Option<ConsentStatus>> {
    let s: Option<String> = contact_consents::table
        .filter(contact_consents::contact_id.eq(contact_id))
        .filter(contact_consents::channel_kind.eq(kind.as_str()))
        .select(contact_consents::status)
        .first(conn)
        .optional()?;
    Ok(s.and_then(|s| s.parse().ok()))
}

/// Opted-out kinds for many contacts at once (for list pages).
pub fn opted_out_kinds(
    conn: &mut DbConnection,
    contact_ids: &[i64],
) -> QueryResult<Vec<(i64, String)>> {
    let mut out = Vec::new();
    for chunk in contact_ids.chunks(500) {
        out.extend(
            contact_consents::table
                .filter(contact_consents::contact_id.eq_any(chunk))
                .filter(contact_consents::status.eq("opted_out"))
                .select((contact_consents::contact_id, contact_consents::channel_kind))
                .load::<(i64, String)>(conn)?,
        );
    }
    Ok(out)
}

/// Records a consent change and its history entry. Returns false when nothing changed (the
/// status was already that).
pub fn set(
    conn: &mut DbConnection,
    contact_id: i64,
    kind: ChannelKind,
    status: ConsentStatus,
    source: ConsentSource,
    detail: &str,
    actor_label: &str,
) -> QueryResult<bool> {
    let current = self::status(conn, contact_id, kind)?;
    if current == Some(status) {
        return Ok(false);
    }
    let at = now();
    let row = (
        contact_consents::contact_id.eq(contact_id),
        contact_consents::channel_kind.eq(kind.as_str()),
        contact_consents::status.eq(status.as_str()),
        contact_consents::source.eq(source.as_str()),
        contact_consents::detail.eq(detail),
        contact_consents::changed_at.eq(at),
    );
    on_backend!(conn, |c| diesel::insert_into(contact_consents::table)
        .values(row)
        .on_conflict((contact_consents::contact_id, contact_consents::channel_kind))
        .do_update()
        .set((
            contact_consents::status.eq(status.as_str()),
            contact_consents::source.eq(source.as_str()),
            contact_consents::detail.eq(detail),
            contact_consents::changed_at.eq(at),
        ))
        .execute(c))?;
    diesel::insert_into(consent_events::table)
        .values((
            consent_events::contact_id.eq(contact_id),
            consent_events::channel_kind.eq(kind.as_str()),
            consent_events::status.eq(status.as_str()),
            consent_events::source.eq(source.as_str()),
            consent_events::detail.eq(detail),
            consent_events::actor_label.eq(actor_label),
            consent_events::occurred_at.eq(at),
        ))
        .execute(conn)?;
    Ok(true)
}

#[derive(Debug, Clone, Queryable)]
pub struct ConsentEvent {
    pub channel_kind: String,
    pub status: String,
    pub source: String,
    pub detail: String,
    pub actor_label: String,
    pub occurred_at: NaiveDateTime,
}

pub fn history(
    conn: &mut DbConnection,
    contact_id: i64,
    limit: i64,
) -> QueryResult<Vec<ConsentEvent>> {
    consent_events::table
        .filter(consent_events::contact_id.eq(contact_id))
        .select((
            consent_events::channel_kind,
            consent_events::status,
            consent_events::source,
            consent_events::detail,
            consent_events::actor_label,
            consent_events::occurred_at,
        ))
        .order(consent_events::id.desc())
        .limit(limit)
        .load(conn)
}
