//! One-to-one sends, shared by the send page and `POST /api/v1/messages`: the recipient, the
//! channel and the content are resolved, checked against the rules (`domain::policy` for consent,
//! window and approval; template rendering for variables and lengths; the channel's free-text
//! limit), and the message is queued once per idempotency key. A refusal writes nothing (a
//! contact created for the number is rolled back with it). Nothing here speaks HTTP.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::channel::ChannelKind;
use crate::domain::consent::ConsentStatus;
use crate::domain::content::{MessageContent, TextProblem, check_free_text};
use crate::domain::phone::{DefaultCountry, E164};
use crate::domain::policy::{self, ContentIntent, Denial, SendContext};
use crate::domain::template::{RenderError, Variables};
use crate::domain::window;
use crate::storage::channels::{self, Channel};
use crate::storage::contacts::{self, Contact, ContactPatch};
use crate::storage::messages::MessageRow;
use crate::storage::outbox::{self, NewMessage};
use crate::storage::templates::{self, SendableTemplate, TemplateLookup};
use crate::storage::{DbConnection, consents, conversations, is_unique_violation, now};

/// Who the message goes to.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipient {
    /// A phone number as typed; an unknown number becomes a contact.
    Phone(String),
    /// A contact's public id.
    Contact(String),
}

/// Which template: its public id (the send page) or its name and language on the channel (the
/// API).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateRef {
    Id(String),
    Name { name: String, language: String },
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentRequest {
    Text(String),
    Template {
        template: TemplateRef,
        variables: Variables,
    },
}

/// A request to send one message.
#[derive(Debug, Clone, Serialize)]
pub struct SendRequest {
    pub recipient: Recipient,
    /// A channel's public id or its name.
    pub channel: String,
    pub content: ContentRequest,
}

impl SendRequest {
    /// A fingerprint of the request (SHA-256 of its canonical JSON: fields in declaration
    /// order, named variables sorted), stored with the message so that a repeated idempotency
    /// key with another request is refused rather than answered with the first message.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Who asks, and how a repeat is recognised.
pub struct Requester<'a> {
    /// Kept with the message (`requested_by`): "Ada <ada@example.com>", "API key \"Shop\"".
    pub label: &'a str,
    /// The idempotency key, already scoped to the requester (so two API clients never share
    /// one).
    pub idempotency_key: Option<&'a str>,
    pub default_country: DefaultCountry,
}

/// Why a send was refused. Each has the API's machine-readable code and words for a person.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    InvalidPhone(String),
    #[error("There is no contact with this id.")]
    UnknownContact,
    #[error("There is no channel called or numbered \"{0}\".")]
    UnknownChannel(String),
    #[error("{0}")]
    UnknownTemplate(String),
    /// The policy said no; `detail` replaces the policy's words where more is known (why a
    /// template is not sendable).
    #[error("{}", detail.clone().unwrap_or_else(|| denial.message(*kind)))]
    Denied {
        denial: Denial,
        kind: ChannelKind,
        detail: Option<String>,
    },
    #[error("{0}")]
    Variables(RenderError),
    #[error("{0}")]
    Text(TextProblem),
    #[error(
        "This idempotency key was already used for a different message; use a new key for a new message."
    )]
    KeyReused,
    #[error("The message could not be stored.")]
    Storage(#[from] diesel::result::Error),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::InvalidPhone(_) => "invalid_phone",
            Refusal::UnknownContact => "unknown_contact",
            Refusal::UnknownChannel(_) => "unknown_channel",
            Refusal::UnknownTemplate(_) => "unknown_template",
            Refusal::Denied { denial, .. } => denial.code(),
            Refusal::Variables(e) => e.code(),
            Refusal::Text(e) => e.code(),
            Refusal::KeyReused => "idempotency_key_reused",
            Refusal::Storage(_) => "internal",
        }
    }
}

impl From<Refusal> for crate::error::AppError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Storage(e) => e.into(),
            other => crate::error::AppError::invalid(other.code(), other.to_string()),
        }
    }
}

/// A queued message with what it went to.
#[derive(Debug, Clone)]
pub struct Queued {
    pub message: MessageRow,
    pub contact: Contact,
    pub channel: Channel,
    pub created_contact: bool,
    /// The idempotency key had been used for this same request: nothing new was queued.
    pub replayed: bool,
}

/// The channel named by a public id or a name (compared without case).
pub fn find_channel(conn: &mut DbConnection, id_or_name: &str) -> Result<Channel, Refusal> {
    let wanted = id_or_name.trim();
    if let Some(c) = channels::find_by_public_id(conn, wanted)? {
        return Ok(c);
    }
    channels::find_by_name(conn, wanted, None)?
        .ok_or_else(|| Refusal::UnknownChannel(wanted.to_owned()))
}

/// What the policy needs to know about this contact on this channel now.
pub fn send_context(
    conn: &mut DbConnection,
    contact_id: i64,
    channel: &Channel,
    at: DateTime<Utc>,
) -> diesel::QueryResult<SendContext> {
    let consent = consents::status(conn, contact_id, channel.kind)?;
    let last = if window::has_window(channel.kind) {
        conversations::last_inbound(conn, contact_id, channel.id)?
    } else {
        None
    };
    let sent_since_last_inbound = match (channel.kind, last) {
        (ChannelKind::Viber, Some(since)) => u32::try_from(conversations::sent_since(
            conn, contact_id, channel.id, since,
        )?)
        .unwrap_or(u32::MAX),
        _ => 0,
    };
    Ok(SendContext {
        kind: channel.kind,
        channel_enabled: channel.is_enabled(),
        consent,
        window: window::state(channel.kind, last.map(|t| t.and_utc()), at),
        sent_since_last_inbound,
    })
}

/// Whether the contact opted out of this kind of channel.
pub fn opted_out(ctx: &SendContext) -> bool {
    ctx.consent == Some(ConsentStatus::OptedOut)
}

/// The template named by `template` on `channel`, as sendable or with why not.
pub fn find_template(
    conn: &mut DbConnection,
    channel: &Channel,
    template: &TemplateRef,
) -> Result<TemplateLookup, Refusal> {
    let lookup = match template {
        TemplateRef::Id(id) => match templates::find_by_public_id(conn, id.trim())? {
            Some(t) if t.channel_id == channel.id => templates::sendable(conn, t.id)?,
            _ => TemplateLookup::NotFound,
        },
        TemplateRef::Name { name, language } => {
            templates::sendable_by_name(conn, channel, name, language)?
        }
    };
    if let TemplateLookup::NotFound = lookup {
        return Err(Refusal::UnknownTemplate(match template {
            TemplateRef::Id(_) => format!("This template is not one of {}'s.", channel.name),
            TemplateRef::Name { name, language } => format!(
                "{} has no template \"{}\" in \"{}\".",
                channel.name,
                name.trim(),
                language.trim()
            ),
        }));
    }
    Ok(lookup)
}

/// The contact a recipient names; a new number is created (inside the caller's transaction).
fn resolve_recipient(
    conn: &mut DbConnection,
    recipient: &Recipient,
    country: DefaultCountry,
) -> Result<(Contact, bool), Refusal> {
    match recipient {
        Recipient::Contact(id) => contacts::find_by_public_id(conn, id.trim())?
            .map(|c| (c, false))
            .ok_or(Refusal::UnknownContact),
        Recipient::Phone(raw) => {
            let phone = E164::parse(raw, Some(country)).map_err(|e| {
                let mut words = e;
                if let Some(first) = words.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                Refusal::InvalidPhone(format!("{words}."))
            })?;
            Ok(contacts::upsert(conn, &phone, &ContactPatch::default())?)
        }
    }
}

/// What will be sent: the adapter's content, the text for the history and the template.
struct Prepared {
    content: MessageContent,
    text: String,
    template_id: Option<i64>,
}

fn prepare(
    conn: &mut DbConnection,
    channel: &Channel,
    ctx: &SendContext,
    content: &ContentRequest,
) -> Result<Prepared, Refusal> {
    let denied = |denial: Denial, detail: Option<String>| Refusal::Denied {
        denial,
        kind: channel.kind,
        detail,
    };
    match content {
        ContentRequest::Text(text) => {
            policy::may_send(ctx, ContentIntent::FreeText).map_err(|d| denied(d, None))?;
            check_free_text(channel.kind, text).map_err(Refusal::Text)?;
            Ok(Prepared {
                content: MessageContent::Text { body: text.clone() },
                text: text.clone(),
                template_id: None,
            })
        }
        ContentRequest::Template {
            template,
            variables,
        } => {
            let template: Box<SendableTemplate> = match find_template(conn, channel, template)? {
                TemplateLookup::Sendable(t) => t,
                TemplateLookup::NotSendable { reason, .. } => {
                    let intent = ContentIntent::Template { sendable: false };
                    let denial = policy::may_send(ctx, intent)
                        .err()
                        .unwrap_or(Denial::TemplateNotApproved);
                    let detail = (denial == Denial::TemplateNotApproved)
                        .then(|| format!("This template cannot be sent yet: {reason}"));
                    return Err(denied(denial, detail));
                }
                TemplateLookup::NotFound => {
                    return Err(Refusal::UnknownTemplate("No such template.".into()));
                }
            };
            policy::may_send(ctx, ContentIntent::Template { sendable: true })
                .map_err(|d| denied(d, None))?;
            let rendered = template.render(variables).map_err(Refusal::Variables)?;
            Ok(Prepared {
                content: rendered.content,
                text: rendered.text,
                template_id: Some(template.template_id),
            })
        }
    }
}

/// The message an idempotency key already queued, if the request is the same one.
fn replay(
    conn: &mut DbConnection,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Queued>, Refusal> {
    let Some(message) = outbox::find_by_idempotency_key(conn, key)? else {
        return Ok(None);
    };
    if outbox::request_hash(conn, message.id)?.as_deref() != Some(fingerprint) {
        return Err(Refusal::KeyReused);
    }
    let contact = contacts::find(conn, message.contact_id)?.ok_or(Refusal::UnknownContact)?;
    let channel = channels::find(conn, message.channel_id)?
        .ok_or_else(|| Refusal::UnknownChannel(message.channel_id.to_string()))?;
    Ok(Some(Queued {
        message,
        contact,
        channel,
        created_contact: false,
        replayed: true,
    }))
}

/// Checks the request and queues the message, or says why not. With an idempotency key, the
/// same request again answers with the first message (even while two arrive together: the
/// key is unique in the database), and another request under that key is refused.
pub fn queue(
    conn: &mut DbConnection,
    request: &SendRequest,
    requester: &Requester<'_>,
) -> Result<Queued, Refusal> {
    let fingerprint = request.fingerprint();
    if let Some(key) = requester.idempotency_key
        && let Some(done) = replay(conn, key, &fingerprint)?
    {
        return Ok(done);
    }
    let mut attempt = 0;
    let result = loop {
        let result = attempt_queue(conn, request, requester, &fingerprint);
        match result {
            // SQLite refuses to turn a read transaction into a write one when another writer
            // committed meanwhile ("database is locked", without waiting): start again.
            Err(Refusal::Storage(ref e)) if is_sqlite_busy(e) && attempt < 5 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(10 * attempt));
            }
            other => break other,
        }
    };
    match (result, requester.idempotency_key) {
        // The same key arrived twice at once and the other request stored it first.
        (Err(Refusal::Storage(e)), Some(key)) if is_unique_violation(&e) => {
            replay(conn, key, &fingerprint)?.ok_or(Refusal::Storage(e))
        }
        (result, _) => result,
    }
}

fn is_sqlite_busy(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(_, info)
        if info.message().contains("database is locked") || info.message().contains("busy"))
}

fn attempt_queue(
    conn: &mut DbConnection,
    request: &SendRequest,
    requester: &Requester<'_>,
    fingerprint: &str,
) -> Result<Queued, Refusal> {
    crate::storage::write_transaction(conn, |conn| {
        let channel = find_channel(conn, &request.channel)?;
        let (contact, created_contact) =
            resolve_recipient(conn, &request.recipient, requester.default_country)?;
        let ctx = send_context(conn, contact.id, &channel, Utc::now())?;
        let prepared = prepare(conn, &channel, &ctx, &request.content)?;
        let content_json = serde_json::to_string(&prepared.content)
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        let message = outbox::enqueue(
            conn,
            &NewMessage {
                channel_id: channel.id,
                contact_id: contact.id,
                to_address: contact.phone.as_str(),
                campaign_id: None,
                template_id: prepared.template_id,
                content_kind: match prepared.content {
                    MessageContent::Text { .. } if prepared.template_id.is_none() => "text",
                    _ => "template",
                },
                body: &prepared.text,
                content: &content_json,
                idempotency_key: requester.idempotency_key,
                requested_by: requester.label,
                resend_of: None,
                not_before: now(),
            },
        )?;
        outbox::set_request_hash(conn, message.id, fingerprint)?;
        Ok::<_, Refusal>(Queued {
            message,
            contact,
            channel,
            created_contact,
            replayed: false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> SendRequest {
        SendRequest {
            recipient: Recipient::Phone("+14155550100".into()),
            channel: "Sandbox WhatsApp".into(),
            content: ContentRequest::Text(text.into()),
        }
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        assert_eq!(request("hi").fingerprint(), request("hi").fingerprint());
        assert_ne!(request("hi").fingerprint(), request("hi!").fingerprint());
        let named = |pairs: &[(&str, &str)]| SendRequest {
            content: ContentRequest::Template {
                template: TemplateRef::Name {
                    name: "order".into(),
                    language: "en_US".into(),
                },
                variables: Variables::Named(
                    pairs
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
            },
            ..request("")
        };
        // Named variables compare as a map, whatever order they came in.
        assert_eq!(
            named(&[("a", "1"), ("b", "2")]).fingerprint(),
            named(&[("b", "2"), ("a", "1")]).fingerprint()
        );
    }

    #[test]
    fn refusals_carry_the_api_codes() {
        assert_eq!(Refusal::InvalidPhone("x".into()).code(), "invalid_phone");
        assert_eq!(Refusal::KeyReused.code(), "idempotency_key_reused");
        let denied = Refusal::Denied {
            denial: Denial::WindowClosed { closed_at: None },
            kind: ChannelKind::Whatsapp,
            detail: None,
        };
        assert_eq!(denied.code(), "window_closed");
        assert!(denied.to_string().contains("24-hour window is closed"));
    }
}
