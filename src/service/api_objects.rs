//! The API's objects as JSON: a message, a contact, a broadcast, as `/api/v1` answers them and
//! as status callbacks carry them in `data` (issue 19), so the two never drift apart. Kept in
//! the application layer because the callbacks' worker builds them too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ServiceResult;
use super::broadcasts::BroadcastView;
use super::contacts::ContactView;
use crate::domain::broadcast::{Audience, BroadcastMessage, BroadcastState};
use crate::storage::broadcasts::Counts;
use crate::storage::channels::{self, Channel};
use crate::storage::messages::MessageRow;
use crate::storage::{DbConnection, contacts};

/// A channel as the API's answers name it (a message's or a template's channel).
#[derive(serde::Serialize, ToSchema)]
pub struct ChannelRef {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
}

impl ChannelRef {
    pub fn of(channel: &crate::storage::channels::Channel) -> Self {
        ChannelRef {
            id: channel.public_id.clone(),
            name: channel.name.clone(),
            kind: channel.kind.as_str(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ErrorJson {
    pub code: String,
    pub message: String,
}

/// A message as the API answers it (and status callbacks carry it).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "7f0b2c1e-8a8b-4f7e-9d4a-2b6a1f3c9e21", "status": "delivered",
    "channel": {"id": "0b9c3a52-4b9e-4d43-9a1e-3c1f6c2f7a10", "name": "Shop SMS", "kind": "sms"},
    "to": "+14155550100", "contact_id": "5d1c7e8a-2f3b-4c6d-8e9f-0a1b2c3d4e5f", "content": "text",
    "body": "Your order has shipped.", "provider_message_id": "SM0123456789abcdef",
    "error": null, "attempts": 1, "created_at": "2026-12-04T09:00:00+00:00",
    "updated_at": "2026-12-04T09:00:05+00:00", "sent_at": "2026-12-04T09:00:01+00:00",
    "delivered_at": "2026-12-04T09:00:05+00:00", "read_at": null, "failed_at": null,
    "broadcast_id": null, "source": "api"}))]
pub struct MessageJson {
    pub id: String,
    pub status: String,
    pub channel: ChannelRef,
    pub to: String,
    pub contact_id: String,
    /// `text` or `template`.
    pub content: String,
    /// What the recipient reads.
    pub body: String,
    pub provider_message_id: Option<String>,
    pub error: Option<ErrorJson>,
    pub attempts: i32,
    pub created_at: String,
    pub updated_at: String,
    pub sent_at: Option<String>,
    pub delivered_at: Option<String>,
    pub read_at: Option<String>,
    pub failed_at: Option<String>,
    /// The broadcast that sent it, if one did.
    pub broadcast_id: Option<String>,
    /// Where it came from: `person`, `api` or `broadcast`.
    pub source: String,
    /// Issue 20: when a `scheduled` message goes (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
}

fn rfc3339(at: Option<chrono::NaiveDateTime>) -> Option<String> {
    at.map(|t| t.and_utc().to_rfc3339())
}

pub fn message_json(m: MessageRow, channel: &Channel, contact_id: String) -> MessageJson {
    let error = match (&m.error_code, &m.error_message) {
        (None, None) => None,
        (code, message) => Some(ErrorJson {
            code: code.clone().unwrap_or_else(|| "error".into()),
            message: message.clone().unwrap_or_default(),
        }),
    };
    let send_at = (m.status() == crate::domain::message::MessageStatus::Scheduled)
        .then(|| m.next_attempt_at.and_utc().to_rfc3339());
    MessageJson {
        send_at,
        id: m.public_id,
        status: m.status,
        channel: ChannelRef::of(channel),
        to: m.to_address,
        contact_id,
        content: m.content_kind,
        body: m.body,
        provider_message_id: m.provider_message_id,
        error,
        attempts: m.attempts,
        created_at: m.created_at.and_utc().to_rfc3339(),
        updated_at: m.updated_at.and_utc().to_rfc3339(),
        sent_at: rfc3339(m.sent_at),
        delivered_at: rfc3339(m.delivered_at),
        read_at: rfc3339(m.read_at),
        failed_at: rfc3339(m.failed_at),
        broadcast_id: None,
        source: m.source,
    }
}

/// A message with its channel, contact and broadcast looked up, as `GET /api/v1/messages/{id}`
/// answers it.
pub fn message_json_in(conn: &mut DbConnection, m: MessageRow) -> ServiceResult<MessageJson> {
    let channel = channels::find(conn, m.channel_id)?
        .ok_or_else(|| super::ServiceError::not_found("Its channel"))?;
    let contact = contacts::find(conn, m.contact_id)?
        .map(|c| c.public_id)
        .unwrap_or_default();
    let broadcast = match m.campaign_id {
        Some(id) => crate::storage::broadcasts::find(conn, id)?.map(|b| b.public_id),
        None => None,
    };
    let mut json = message_json(m, &channel, contact);
    json.broadcast_id = broadcast;
    Ok(json)
}

#[derive(Serialize, ToSchema)]
pub struct WindowJson {
    pub open: bool,
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ChannelStateJson {
    pub channel_id: String,
    pub name: String,
    pub kind: &'static str,
    pub window: WindowJson,
    pub opted_out: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentJson {
    pub status: &'static str,
    pub source: &'static str,
    pub changed_at: String,
}

/// A contact as the API answers it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "5d1c7e8a-2f3b-4c6d-8e9f-0a1b2c3d4e5f", "phone": "+14155550100",
    "name": "Ada Lovelace", "email": "", "language": "en", "time_zone": "Europe/London",
    "attributes": {"city": "London"}, "lists": ["VIP"], "consent": {},
    "channels": [{"channel_id": "0b9c3a52-4b9e-4d43-9a1e-3c1f6c2f7a10", "name": "Shop WhatsApp",
        "kind": "whatsapp", "window": {"open": true, "expires_at": "2026-12-05T09:00:00+00:00"},
        "opted_out": false}],
    "created_at": "2026-12-04T09:00:00+00:00", "updated_at": "2026-12-04T09:00:00+00:00"}))]
pub struct ContactJson {
    pub id: String,
    pub phone: String,
    pub name: String,
    pub email: String,
    pub language: String,
    pub time_zone: String,
    pub attributes: BTreeMap<String, String>,
    pub lists: Vec<String>,
    pub consent: BTreeMap<&'static str, ConsentJson>,
    pub channels: Vec<ChannelStateJson>,
    pub created_at: String,
    pub updated_at: String,
}

/// A contact with everything the API shows about it.
pub fn contact_json(view: ContactView) -> ContactJson {
    let c = view.contact;
    ContactJson {
        lists: view.lists.into_iter().map(|l| l.name).collect(),
        consent: view
            .consents
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    ConsentJson {
                        status: v.status.as_str(),
                        source: v.source.as_str(),
                        changed_at: v.changed_at.and_utc().to_rfc3339(),
                    },
                )
            })
            .collect(),
        channels: view
            .channels
            .into_iter()
            .map(|ch| ChannelStateJson {
                opted_out: ch.opted_out,
                window: WindowJson {
                    open: ch.window.is_open(),
                    expires_at: ch.window.expires_at().map(|t| t.to_rfc3339()),
                },
                kind: ch.channel.kind.as_str(),
                channel_id: ch.channel.public_id,
                name: ch.channel.name,
            })
            .collect(),
        id: c.public_id,
        phone: c.phone.into_inner(),
        name: c.name,
        email: c.email,
        language: c.language,
        time_zone: c.time_zone,
        attributes: c.attributes,
        created_at: c.created_at.and_utc().to_rfc3339(),
        updated_at: c.updated_at.and_utc().to_rfc3339(),
    }
}

/// `{"from": "21:00", "to": "08:00"}`: a broadcast's quiet hours in the recipient's local time.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursBody {
    pub from: String,
    pub to: String,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleJson {
    at: Option<String>,
    time_zone: String,
    expires_at: Option<String>,
    recipient_local_time: bool,
    /// The wall-clock time each recipient gets it at, in their zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    local_time: Option<String>,
    quiet_hours: Option<QuietHoursBody>,
}

/// A broadcast as the API answers it.
#[derive(Serialize, ToSchema)]
pub struct BroadcastJson {
    id: String,
    name: String,
    state: BroadcastState,
    channel: ChannelRef,
    /// As sent in the draft: `lists`, `exclude_lists`, `filter` (docs/api.md), or the `csv`
    /// upload or `follow_up` it came from.
    #[schema(value_type = Object)]
    audience: Audience,
    /// `{"text": {"text"}}` or `{"template": {"template", "variables", "window_text"}}`.
    #[schema(value_type = Object)]
    message: BroadcastMessage,
    schedule: ScheduleJson,
    counts: Counts,
    pause_reason: Option<String>,
    review_note: Option<String>,
    approved_by: Option<String>,
    created_by: String,
    created_at: String,
    launched_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
}

pub fn broadcast_json(v: BroadcastView) -> BroadcastJson {
    let state = v.state();
    let timing = v.row.timing();
    let row = v.row;
    BroadcastJson {
        id: row.public_id,
        name: row.name,
        state,
        channel: ChannelRef::of(&v.channel),
        audience: v.audience,
        message: v.message,
        schedule: ScheduleJson {
            at: rfc3339(row.send_at),
            time_zone: row.time_zone,
            expires_at: rfc3339(row.expires_at),
            recipient_local_time: timing.local_time.is_some(),
            local_time: timing
                .local_time
                .map(|t| t.format("%Y-%m-%dT%H:%M").to_string()),
            quiet_hours: timing.quiet_hours.map(|q| QuietHoursBody {
                from: q.from.format("%H:%M").to_string(),
                to: q.to.format("%H:%M").to_string(),
            }),
        },
        counts: v.counts,
        pause_reason: row.pause_reason,
        review_note: row.review_note,
        approved_by: row.approved_by_label,
        created_by: row.created_by_label,
        created_at: row.created_at.and_utc().to_rfc3339(),
        launched_at: rfc3339(row.launched_at),
        started_at: rfc3339(row.started_at),
        finished_at: rfc3339(row.finished_at),
    }
}
