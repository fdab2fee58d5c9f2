//! The conversation with a contact: inbound messages (which open the customer-service window
//! and may carry an opt-out keyword), the windows, and the timeline of both directions.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::channels::Channel;
use super::contacts::{self, Contact, ContactPatch};
use super::schema::{contact_windows, inbound_messages, messages};
use super::{DbConnection, consents, new_public_id, now, on_backend};
use crate::domain::consent::{
    ConsentSource, ConsentStatus, KeywordIntent, keyword_intent, keyword_may_apply,
};
use crate::domain::phone::E164;

/// What recording an inbound message did.
#[derive(Debug, Clone)]
pub struct InboundOutcome {
    pub contact: Contact,
    pub created_contact: bool,
    /// The provider had already delivered this message (a webhook retry): nothing was changed.
    pub duplicate: bool,
    /// The consent change a keyword caused, if any.
    pub consent_change: Option<ConsentStatus>,
}

pub struct Inbound<'a> {
    pub from: &'a E164,
    pub text: &'a str,
    pub provider_message_id: Option<&'a str>,
    pub received_at: NaiveDateTime,
    /// A name the provider knows the sender by (WhatsApp profile name), used for new contacts.
    pub profile_name: Option<&'a str>,
}

/// Records a message from a customer: creates the contact if the number is new, stores the
/// message (once, whatever the provider retries), restarts the window on this channel, and
/// applies an opt-out or opt-in keyword to this kind of channel.
pub fn record_inbound(
    conn: &mut DbConnection,
    channel: &Channel,
    msg: &Inbound<'_>,
) -> QueryResult<InboundOutcome> {
    crate::storage::write_transaction(conn, |conn| {
        let patch = ContactPatch::default();
        let (mut contact, created_contact) = contacts::upsert(conn, msg.from, &patch)?;
        if created_contact
            && let Some(name) = msg.profile_name.map(str::trim).filter(|n| !n.is_empty())
        {
            let with_name = ContactPatch {
                name: Some(
                    name.chars()
                        .take(crate::domain::contact::MAX_NAME_CHARS)
                        .collect(),
                ),
                ..ContactPatch::default()
            };
            contact = contacts::update(conn, contact, &with_name)?;
        }

        let row = (
            inbound_messages::public_id.eq(new_public_id()),
            inbound_messages::channel_id.eq(channel.id),
            inbound_messages::contact_id.eq(contact.id),
            inbound_messages::provider_message_id.eq(msg.provider_message_id),
            inbound_messages::body.eq(msg.text),
            inbound_messages::received_at.eq(msg.received_at),
            inbound_messages::created_at.eq(now()),
        );
        let inserted = on_backend!(conn, |c| diesel::insert_into(inbound_messages::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c))?;
        if inserted == 0 {
            return Ok(InboundOutcome {
                contact,
                created_contact,
                duplicate: true,
                consent_change: None,
            });
        }

        touch_window(conn, contact.id, channel.id, msg.received_at)?;
        // Issue 18: a reply to a broadcast counts for it (its recipient row says when).
        super::broadcast_results::attribute_reply(conn, contact.id, channel.id, msg.received_at)?;

        let consent_change = match keyword_intent(msg.text) {
            Some(intent) => {
                let status = match intent {
                    KeywordIntent::OptOut => ConsentStatus::OptedOut,
                    KeywordIntent::OptIn => ConsentStatus::OptedIn,
                };
                let keyword = msg.text.trim().to_uppercase();
                // On a sandbox channel a person typed the reply: it cannot opt anyone back in.
                let simulated = channel.is_sandbox();
                let current = consents::status(conn, contact.id, channel.kind)?;
                let changed = keyword_may_apply(status, current, simulated)
                    && consents::set(
                        conn,
                        contact.id,
                        channel.kind,
                        status,
                        ConsentSource::Keyword,
                        &format!("{keyword} on {}", channel.name),
                        &format!("{} (by keyword)", contact.phone),
                    )?;
                changed.then_some(status)
            }
            None => None,
        };
        Ok(InboundOutcome {
            contact,
            created_contact,
            duplicate: false,
            consent_change,
        })
    })
}

/// Moves the window's start forward to `at` (never backwards: webhooks arrive out of order).
fn touch_window(
    conn: &mut DbConnection,
    contact_id: i64,
    channel_id: i64,
    at: NaiveDateTime,
) -> QueryResult<()> {
    let row = (
        contact_windows::contact_id.eq(contact_id),
        contact_windows::channel_id.eq(channel_id),
        contact_windows::last_inbound_at.eq(at),
    );
    on_backend!(conn, |c| diesel::insert_into(contact_windows::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
    diesel::update(
        contact_windows::table
            .filter(contact_windows::contact_id.eq(contact_id))
            .filter(contact_windows::channel_id.eq(channel_id))
            .filter(contact_windows::last_inbound_at.lt(at)),
    )
    .set(contact_windows::last_inbound_at.eq(at))
    .execute(conn)?;
    Ok(())
}

/// When the contact last wrote on each channel: `(channel_id, last_inbound_at)`.
pub fn windows(conn: &mut DbConnection, contact_id: i64) -> QueryResult<Vec<(i64, NaiveDateTime)>> {
    contact_windows::table
        .filter(contact_windows::contact_id.eq(contact_id))
        .select((
            contact_windows::channel_id,
            contact_windows::last_inbound_at,
        ))
        .load(conn)
}

/// One entry of a contact's conversation.
#[derive(Debug, Clone)]
pub enum TimelineItem {
    Inbound {
        channel_id: i64,
        body: String,
        at: NaiveDateTime,
    },
    Outbound {
        public_id: String,
        channel_id: i64,
        body: String,
        status: String,
        error: Option<String>,
        at: NaiveDateTime,
    },
}

impl TimelineItem {
    pub fn at(&self) -> NaiveDateTime {
        match self {
            TimelineItem::Inbound { at, .. } | TimelineItem::Outbound { at, .. } => *at,
        }
    }
}

/// The newest `limit` messages in both directions, newest first.
pub fn timeline(
    conn: &mut DbConnection,
    contact_id: i64,
    limit: i64,
) -> QueryResult<Vec<TimelineItem>> {
    let inbound: Vec<(i64, String, NaiveDateTime)> = inbound_messages::table
        .filter(inbound_messages::contact_id.eq(contact_id))
        .select((
            inbound_messages::channel_id,
            inbound_messages::body,
            inbound_messages::received_at,
        ))
        .order(inbound_messages::received_at.desc())
        .limit(limit)
        .load(conn)?;
    #[allow(clippy::type_complexity)]
    let outbound: Vec<(
        String,
        i64,
        String,
        String,
        Option<String>,
        Option<String>,
        NaiveDateTime,
    )> = messages::table
        .filter(messages::contact_id.eq(contact_id))
        .select((
            messages::public_id,
            messages::channel_id,
            messages::body,
            messages::status,
            messages::error_code,
            messages::error_message,
            messages::created_at,
        ))
        .order(messages::created_at.desc())
        .limit(limit)
        .load(conn)?;
    let mut items: Vec<TimelineItem> = inbound
        .into_iter()
        .map(|(channel_id, body, at)| TimelineItem::Inbound {
            channel_id,
            body,
            at,
        })
        .chain(outbound.into_iter().map(
            |(public_id, channel_id, body, status, code, message, at)| {
                let error = match (code, message) {
                    (Some(c), Some(m)) => Some(format!("{m} ({c})")),
                    (None, Some(m)) => Some(m),
                    (Some(c), None) => Some(c),
                    (None, None) => None,
                };
                TimelineItem::Outbound {
                    public_id,
                    channel_id,
                    body,
                    status,
                    error,
                    at,
                }
            },
        ))
        .collect();
    items.sort_by_key(|i| std::cmp::Reverse(i.at()));
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(items)
}

/// When each of these contacts last wrote on this channel (for the window check at send time).
pub fn windows_on_channel(
    conn: &mut DbConnection,
    channel_id: i64,
    contact_ids: &[i64],
) -> QueryResult<std::collections::HashMap<i64, NaiveDateTime>> {
    let mut out = std::collections::HashMap::new();
    for chunk in contact_ids.chunks(500) {
        let rows: Vec<(i64, NaiveDateTime)> = contact_windows::table
            .filter(contact_windows::channel_id.eq(channel_id))
            .filter(contact_windows::contact_id.eq_any(chunk))
            .select((
                contact_windows::contact_id,
                contact_windows::last_inbound_at,
            ))
            .load(conn)?;
        out.extend(rows);
    }
    Ok(out)
}

/// Business messages queued on a channel to a contact after `since` that were not refused or
/// failed: Viber's session counts them (the same rule as [`session_messages`]).
pub fn sent_since(
    conn: &mut DbConnection,
    contact_id: i64,
    channel_id: i64,
    since: NaiveDateTime,
) -> QueryResult<i64> {
    let session = session_messages(conn, channel_id, &[(contact_id, since)].into())?;
    Ok(session
        .get(&contact_id)
        .map_or(0, |ids| i64::try_from(ids.len()).unwrap_or(i64::MAX)))
}

/// Viber's session at send time: for each contact with a last inbound message on the channel,
/// the ids (ascending) of the business messages queued to it on the channel since then that
/// were not refused or failed. A message's own place in that list is how many went before it;
/// a new message's session is the whole list ([`sent_since`]).
pub fn session_messages(
    conn: &mut DbConnection,
    channel_id: i64,
    since: &std::collections::HashMap<i64, NaiveDateTime>,
) -> QueryResult<std::collections::HashMap<i64, Vec<i64>>> {
    let mut out: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
    let contacts: Vec<i64> = since.keys().copied().collect();
    for chunk in contacts.chunks(500) {
        let Some(earliest) = chunk.iter().filter_map(|c| since.get(c)).min() else {
            continue;
        };
        let rows: Vec<(i64, i64, NaiveDateTime)> = messages::table
            .filter(messages::contact_id.eq_any(chunk))
            .filter(messages::channel_id.eq(channel_id))
            .filter(messages::created_at.gt(earliest))
            .filter(messages::status.ne_all(["failed", "skipped", "cancelled"]))
            .select((messages::contact_id, messages::id, messages::created_at))
            .load(conn)?;
        for (contact, id, at) in rows {
            if since.get(&contact).is_some_and(|s| at > *s) {
                out.entry(contact).or_default().push(id);
            }
        }
    }
    for ids in out.values_mut() {
        ids.sort_unstable();
    }
    Ok(out)
}

/// When each of these contacts last wrote, per channel: `(contact_id, channel_id, at)`.
pub fn windows_of(
    conn: &mut DbConnection,
    contact_ids: &[i64],
) -> QueryResult<Vec<(i64, i64, NaiveDateTime)>> {
    let mut out = Vec::new();
    for chunk in contact_ids.chunks(500) {
        out.extend(
            contact_windows::table
                .filter(contact_windows::contact_id.eq_any(chunk))
                .select((
                    contact_windows::contact_id,
                    contact_windows::channel_id,
                    contact_windows::last_inbound_at,
                ))
                .load::<(i64, i64, NaiveDateTime)>(conn)?,
        );
    }
    Ok(out)
}

/// When the contact last wrote on this channel.
pub fn last_inbound(
    conn: &mut DbConnection,
    contact_id: i64,
    channel_id: i64,
) -> QueryResult<Option<NaiveDateTime>> {
    contact_windows::table
        .filter(contact_windows::contact_id.eq(contact_id))
        .filter(contact_windows::channel_id.eq(channel_id))
        .select(contact_windows::last_inbound_at)
        .first(conn)
        .optional()
}

/// The channel a reply to this contact most likely belongs on: the one they last wrote on,
/// else the one they were last written to on (both served by the per-contact time indexes).
pub fn last_channel(conn: &mut DbConnection, contact_id: i64) -> QueryResult<Option<i64>> {
    let inbound = inbound_messages::table
        .filter(inbound_messages::contact_id.eq(contact_id))
        .order((
            inbound_messages::received_at.desc(),
            inbound_messages::id.desc(),
        ))
        .select(inbound_messages::channel_id)
        .first::<i64>(conn)
        .optional()?;
    if inbound.is_some() {
        return Ok(inbound);
    }
    messages::table
        .filter(messages::contact_id.eq(contact_id))
        .order((messages::created_at.desc(), messages::id.desc()))
        .select(messages::channel_id)
        .first::<i64>(conn)
        .optional()
}
