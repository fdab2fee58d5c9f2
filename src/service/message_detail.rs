//! Issue 18: one message, everything known about it, for the detail page
//! (`/messages/{public_id}`): its content as sent, its timeline with the providers' payloads,
//! who or what sent it, its broadcast, and the template version it used with who approved it.
//! Raw payloads are only read for those who may see them (the caller says).

use chrono::NaiveDateTime;

use crate::domain::content::MessageContent;
use crate::domain::template::ReviewStatus;
use crate::service::{ServiceError, ServiceResult, Services};
use crate::storage::channels::Channel;
use crate::storage::message_detail::{self, EventRow, Purged};
use crate::storage::messages::{self, MessageRow};
use crate::storage::{DbConnection, broadcasts, contacts, outbox, templates};

/// Who or what asked for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A person, by the label kept with the message ("Ada <ada@example.com>").
    Person(String),
    /// An API key ("API key \"Shop\"").
    ApiKey(String),
    /// A broadcast: `(public id, name)`.
    Broadcast { public_id: String, name: String },
    /// A broadcast that is gone, or a label Herald wrote itself.
    Other(String),
}

/// The template a message used, and the version that was approved when it was queued.
#[derive(Debug, Clone)]
pub struct TemplateUsed {
    pub public_id: String,
    pub name: String,
    pub language: String,
    /// The version in force when the message was queued (the newest approved before it).
    pub version: Option<VersionUsed>,
}

#[derive(Debug, Clone)]
pub struct VersionUsed {
    pub number: i32,
    pub approved_by: Option<String>,
    pub approved_at: Option<NaiveDateTime>,
}

/// Everything the detail page shows.
#[derive(Debug, Clone)]
pub struct MessageDetail {
    pub message: MessageRow,
    /// The content as sent (`None` once retention purged it, or when it cannot be read).
    pub content: Option<MessageContent>,
    pub purged: Option<Purged>,
    pub channel: Option<Channel>,
    /// `(public id, name, phone)` of the contact, when it still exists.
    pub contact: Option<(String, String, String)>,
    pub sender: Sender,
    /// `(public id, name)` of the broadcast it belongs to.
    pub broadcast: Option<(String, String)>,
    pub template: Option<TemplateUsed>,
    /// The timeline, oldest first; payloads are `None` unless asked for.
    pub events: Vec<EventRow>,
    /// The message this one resent, and the one that resent this one (public ids).
    pub resend_of: Option<String>,
    pub resent_as: Option<String>,
}

/// Reads a message for its page. `with_payloads` is false for those who may not see the raw
/// provider payloads: they are dropped here, never handed to the page.
pub async fn detail(
    svc: &Services,
    public_id: String,
    with_payloads: bool,
) -> ServiceResult<MessageDetail> {
    svc.read(move |conn| detail_in(conn, &public_id, with_payloads))
        .await
}

fn detail_in(
    conn: &mut DbConnection,
    public_id: &str,
    with_payloads: bool,
) -> ServiceResult<MessageDetail> {
    let message = messages::find_by_public_id(conn, public_id)?.ok_or_else(|| {
        ServiceError::NotFound(format!("There is no message with id \"{public_id}\"."))
    })?;
    let purged = message_detail::purged(conn, message.id)?;
    let content = if purged.is_some() {
        None
    } else {
        serde_json::from_str::<MessageContent>(&message.content).ok()
    };
    let channel = crate::storage::channels::find(conn, message.channel_id)?;
    let contact = contacts::find(conn, message.contact_id)?
        .map(|c| (c.public_id, c.name, c.phone.to_string()));
    let broadcast = match message.campaign_id {
        Some(id) => broadcasts::find(conn, id)?.map(|b| (b.public_id, b.name)),
        None => None,
    };
    let sender = sender_of(&message.requested_by, broadcast.as_ref());
    let template = match message.template_id {
        Some(id) => template_used(conn, id, message.created_at)?,
        None => None,
    };
    let mut events = message_detail::timeline(conn, message.id)?;
    if !with_payloads {
        for e in &mut events {
            e.payload = None;
        }
    }
    let resend_of = match message.resend_of {
        Some(id) => messages::find(conn, id)?.map(|m| m.public_id),
        None => None,
    };
    let resent_as = outbox::resent_as(conn, message.id)?;
    Ok(MessageDetail {
        message,
        content,
        purged,
        channel,
        contact,
        sender,
        broadcast,
        template,
        events,
        resend_of,
        resent_as,
    })
}

/// Who sent it, from the label kept with the message and its broadcast.
pub fn sender_of(requested_by: &str, broadcast: Option<&(String, String)>) -> Sender {
    if let Some((public_id, name)) = broadcast {
        return Sender::Broadcast {
            public_id: public_id.clone(),
            name: name.clone(),
        };
    }
    if requested_by.starts_with("API key") {
        Sender::ApiKey(requested_by.to_owned())
    } else if requested_by.starts_with("Broadcast ") || requested_by.is_empty() {
        Sender::Other(requested_by.to_owned())
    } else {
        Sender::Person(requested_by.to_owned())
    }
}

/// The template and the version approved last before `queued_at` (the one a send used: only
/// an approved version is sent).
fn template_used(
    conn: &mut DbConnection,
    template_id: i64,
    queued_at: NaiveDateTime,
) -> ServiceResult<Option<TemplateUsed>> {
    let Some(template) = templates::find(conn, template_id)? else {
        return Ok(None);
    };
    // Newest first.
    let versions = templates::versions(conn, template_id)?;
    let version = versions
        .iter()
        .find(|v| {
            v.state.review == ReviewStatus::Approved && v.reviewed_at.is_none_or(|r| r <= queued_at)
        })
        .or_else(|| {
            versions
                .iter()
                .find(|v| v.state.review == ReviewStatus::Approved)
        })
        .map(|v| VersionUsed {
            number: v.number,
            approved_by: v.reviewer_label.clone(),
            approved_at: v.reviewed_at,
        });
    Ok(Some(TemplateUsed {
        public_id: template.public_id,
        name: template.name,
        language: template.language,
        version,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_is_told_from_the_label_and_the_broadcast() {
        let b = ("b-1".to_owned(), "Spring sale".to_owned());
        assert_eq!(
            sender_of("Broadcast \"Spring sale\"", Some(&b)),
            Sender::Broadcast {
                public_id: "b-1".into(),
                name: "Spring sale".into()
            }
        );
        assert_eq!(
            sender_of("API key \"Shop\"", None),
            Sender::ApiKey("API key \"Shop\"".into())
        );
        assert_eq!(
            sender_of("Ada <ada@example.com>", None),
            Sender::Person("Ada <ada@example.com>".into())
        );
        assert_eq!(
            sender_of("Broadcast \"Gone\"", None),
            Sender::Other("Broadcast \"Gone\"".into())
        );
    }
}
