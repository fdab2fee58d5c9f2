//! One-to-one sends, shared by the send page and `POST /api/v1/messages`: the recipient, the
//! channel and the content are resolved, checked against the rules (`domain::policy` for consent,
//! window and approval; template rendering for variables and lengths; the channel's free-text
//! limit), and the message is queued once per idempotency key. A refusal writes nothing (a
//! contact created for the number is rolled back with it) and is a
//! [`ServiceError::Invalid`] with the API's code (`window_closed`, `opted_out`, …) and the field
//! at fault, named as the API's body names it (`to`, `channel`, `template`,
//! `template.variables`, `text`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::dispatch::hub::HubEvent;
use crate::domain::audit::Actor;
use crate::domain::channel::ChannelKind;
use crate::domain::consent::ConsentStatus;
use crate::domain::content::{MessageContent, check_free_text};
use crate::domain::message::{MessageSource, MessageStatus, check_send_at};
use crate::domain::phone::{DefaultCountry, E164};
use crate::domain::policy::{self, ContentIntent, Denial, SendContext};
use crate::domain::template::Variables;
use crate::domain::window;
use crate::service::{Change, FieldProblems, ServiceError, ServiceResult, Services};
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

impl Recipient {
    /// Which write lane takes a send to this recipient: the same one every time, so that two
    /// sends creating or touching one contact never wait on each other's row locks.
    fn shard(&self) -> u64 {
        match self {
            Recipient::Phone(p) | Recipient::Contact(p) => {
                crate::storage::group::shard_of(p.trim())
            }
        }
    }
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
    /// When it goes, if later than now (`scheduled` until then); RFC 3339 at the edges.
    /// Left out of the fingerprint when absent, so immediate sends fingerprint as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<DateTime<Utc>>,
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
    pub actor: &'a Actor,
    /// The idempotency key, already scoped to the requester (so two API clients never share
    /// one).
    pub idempotency_key: Option<&'a str>,
    /// Where the message comes from when it is not the actor's own send (a trigger, a
    /// reminder rule); by default `MessageSource::of_actor`.
    pub source: Option<MessageSource>,
}

/// The refusal of a send: 422 with the API's `code`, the words for a person, and the field at
/// fault (the API's name for it) when one is.
fn refused(code: &'static str, field: Option<&str>, message: impl Into<String>) -> ServiceError {
    let message = message.into();
    let mut fields = FieldProblems::new();
    if let Some(field) = field {
        fields.add(field, message.clone());
    }
    ServiceError::Invalid {
        code,
        message,
        fields,
    }
}

fn invalid_phone(message: String) -> ServiceError {
    refused("invalid_phone", Some("to"), message)
}

fn unknown_contact() -> ServiceError {
    refused(
        "unknown_contact",
        Some("to"),
        "There is no contact with this id.",
    )
}

fn unknown_channel(wanted: &str) -> ServiceError {
    refused(
        "unknown_channel",
        Some("channel"),
        format!("There is no channel called or numbered \"{wanted}\"."),
    )
}

fn unknown_template(message: String) -> ServiceError {
    refused("unknown_template", Some("template"), message)
}

/// The policy said no; `detail` replaces the policy's words where more is known (why a
/// template is not sendable). The field is what the rule is about: the recipient's consent,
/// the channel, or the content.
fn denied(
    denial: Denial,
    kind: ChannelKind,
    content_field: &str,
    detail: Option<String>,
) -> ServiceError {
    let field = match denial {
        Denial::OptedOut => "to",
        Denial::ChannelDisabled => "channel",
        Denial::TemplateNotApproved | Denial::WindowClosed { .. } | Denial::SessionLimit => {
            content_field
        }
    };
    refused(
        denial.code(),
        Some(field),
        detail.unwrap_or_else(|| denial.message(kind)),
    )
}

fn key_reused() -> ServiceError {
    refused(
        "idempotency_key_reused",
        None,
        "This idempotency key was already used for a different message; use a new key for a new message.",
    )
}

/// The database error behind an internal one, to tell a busy SQLite or a lost race on the
/// idempotency key from other faults.
fn database_error(err: &ServiceError) -> Option<&diesel::result::Error> {
    match err {
        ServiceError::Internal(e) => e.downcast_ref::<diesel::result::Error>(),
        _ => None,
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
pub fn find_channel(conn: &mut DbConnection, id_or_name: &str) -> ServiceResult<Channel> {
    let wanted = id_or_name.trim();
    // Public ids are UUIDs; a name that is not one is looked up by name alone.
    if uuid::Uuid::parse_str(wanted).is_ok()
        && let Some(c) = channels::find_by_public_id(conn, wanted)?
    {
        return Ok(c);
    }
    channels::find_by_name(conn, wanted, None)?.ok_or_else(|| unknown_channel(wanted))
}

/// The channel a send names (its public id or its name), as [`find_channel`] finds it, from
/// [`Services::channel_cache`] while fresh: a busy sender's requests do not each read it, and
/// the write that queues the message does not wait for the read.
pub async fn channel_for_send(svc: &Services, id_or_name: &str) -> ServiceResult<Channel> {
    let key = id_or_name.trim().to_owned();
    if let Some(channel) = svc.channel_cache.fresh(&key) {
        return Ok(channel);
    }
    let generation = svc.channel_cache.generation();
    let wanted = key.clone();
    let channel = svc.db.run(move |conn| find_channel(conn, &wanted)).await?;
    svc.channel_cache.keep(key, channel.clone(), generation);
    Ok(channel)
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
    Ok(context_of(
        channel,
        consent,
        last.map(|t| t.and_utc()),
        sent_since_last_inbound,
        at,
    ))
}

/// What the policy knows about a contact this very write created: no consent recorded, never
/// written in, so no window and nothing sent since. Nothing to read.
fn new_contact_context(channel: &Channel, at: DateTime<Utc>) -> SendContext {
    context_of(channel, None, None, 0, at)
}

fn context_of(
    channel: &Channel,
    consent: Option<ConsentStatus>,
    last_inbound: Option<DateTime<Utc>>,
    sent_since_last_inbound: u32,
    at: DateTime<Utc>,
) -> SendContext {
    SendContext {
        kind: channel.kind,
        channel_enabled: channel.is_enabled(),
        consent,
        window: window::state(channel.kind, last_inbound, at),
        sent_since_last_inbound,
    }
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
) -> ServiceResult<TemplateLookup> {
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
        return Err(unknown_template(match template {
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

/// Who a request names, checked before any database work: a phone number parsed (the
/// library doing it is the costliest step of a send), or a contact's public id.
#[derive(Debug, Clone)]
enum Target {
    Phone(E164),
    Contact(String),
}

impl Target {
    fn of(recipient: &Recipient, country: DefaultCountry) -> ServiceResult<Target> {
        match recipient {
            Recipient::Contact(id) => Ok(Target::Contact(id.trim().to_owned())),
            Recipient::Phone(raw) => {
                E164::parse(raw, Some(country))
                    .map(Target::Phone)
                    .map_err(|e| {
                        let mut words = e;
                        if let Some(first) = words.get_mut(..1) {
                            first.make_ascii_uppercase();
                        }
                        invalid_phone(format!("{words}."))
                    })
            }
        }
    }
}

/// A send request with what can be known of it without the database: its recipient parsed
/// and its fingerprint taken. Built before the request takes its turn to write, so that the
/// write itself is short (and a malformed number never waits for a turn).
#[derive(Debug, Clone)]
pub struct Checked {
    request: SendRequest,
    target: Target,
    fingerprint: String,
    /// Applied to the recipient's contact as the send finds or creates it by its number.
    contact_patch: ContactPatch,
    /// The channel, when it was looked up before the write ([`channel_for_send`]); else the
    /// write looks it up.
    channel: Option<Channel>,
}

impl Checked {
    pub fn new(request: SendRequest, country: DefaultCountry) -> ServiceResult<Checked> {
        let target = Target::of(&request.recipient, country)?;
        let fingerprint = request.fingerprint();
        Ok(Checked {
            request,
            target,
            fingerprint,
            contact_patch: ContactPatch::default(),
            channel: None,
        })
    }

    /// The channel the request names, looked up already (see [`channel_for_send`]).
    pub fn with_channel(mut self, channel: Channel) -> Checked {
        self.channel = Some(channel);
        self
    }

    /// The send also writes these fields to the contact it finds or creates for a phone number
    /// (a trigger's mapped name and attributes): one upsert of the contact, not two. A refused
    /// send keeps none of it (the caller's transaction or savepoint is rolled back).
    pub fn with_contact_patch(mut self, patch: ContactPatch) -> Checked {
        self.contact_patch = patch;
        self
    }
}

/// The contact a recipient names; a new number is created (inside the caller's transaction).
fn resolve_recipient(
    conn: &mut DbConnection,
    target: &Target,
    patch: &ContactPatch,
) -> ServiceResult<(Contact, bool)> {
    match target {
        Target::Contact(id) => contacts::find_by_public_id(conn, id)?
            .map(|c| (c, false))
            .ok_or_else(unknown_contact),
        Target::Phone(phone) => Ok(contacts::upsert(conn, phone, patch)?),
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
) -> ServiceResult<Prepared> {
    match content {
        ContentRequest::Text(text) => {
            policy::may_send(ctx, ContentIntent::FreeText)
                .map_err(|d| denied(d, channel.kind, "text", None))?;
            check_free_text(channel.kind, text)
                .map_err(|e| refused(e.code(), Some("text"), e.to_string()))?;
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
                    return Err(denied(denial, channel.kind, "template", detail));
                }
                TemplateLookup::NotFound => {
                    return Err(unknown_template("No such template.".into()));
                }
            };
            policy::may_send(ctx, ContentIntent::Template { sendable: true })
                .map_err(|d| denied(d, channel.kind, "template", None))?;
            let rendered = template
                .render(variables)
                .map_err(|e| refused(e.code(), Some("template.variables"), e.to_string()))?;
            Ok(Prepared {
                content: rendered.content,
                text: rendered.text,
                template_id: Some(template.template_id),
            })
        }
    }
}

/// The message an idempotency key already queued, if the request is the same one.
fn replay(conn: &mut DbConnection, key: &str, fingerprint: &str) -> ServiceResult<Option<Queued>> {
    let Some(message) = outbox::find_by_idempotency_key(conn, key)? else {
        return Ok(None);
    };
    if outbox::request_hash(conn, message.id)?.as_deref() != Some(fingerprint) {
        return Err(key_reused());
    }
    let contact = contacts::find(conn, message.contact_id)?.ok_or_else(unknown_contact)?;
    let channel = channels::find(conn, message.channel_id)?
        .ok_or_else(|| unknown_channel(&message.channel_id.to_string()))?;
    Ok(Some(Queued {
        message,
        contact,
        channel,
        created_contact: false,
        replayed: true,
    }))
}

/// Queues a message (page and API alike) and, when it is new, tells the live pages and wakes
/// the dispatcher. See [`queue_in`]. Sends arriving together are committed together
/// (`Db::write_grouped`); the answer comes only once this one is committed.
pub async fn send(
    svc: &Services,
    actor: Actor,
    request: SendRequest,
    scoped_key: Option<String>,
) -> ServiceResult<Queued> {
    let shard = request.recipient.shard();
    let checked = Checked::new(request, svc.settings.default_country)?;
    let channel = channel_for_send(svc, &checked.request.channel).await?;
    let checked = checked.with_channel(channel);
    let queued = svc
        .db
        .write_grouped(shard, move |conn| {
            queue_in(
                conn,
                &checked,
                &Requester {
                    actor: &actor,
                    idempotency_key: scoped_key.as_deref(),
                    source: None,
                },
            )
        })
        .await?;
    if !queued.replayed {
        announce_queued(svc, &queued.message);
    }
    Ok(queued)
}

/// Remembers how the send page filled a template's variables, to offer the same next time
/// (a convenience: no audit entry, and a caller may ignore a failure).
pub async fn remember_variable_sources(
    svc: &Services,
    actor: Actor,
    template_id: i64,
    sources: templates::VariableSources,
) -> ServiceResult<()> {
    svc.write(actor, move |change| {
        templates::remember_variable_sources(change.conn, template_id, &sources)?;
        Ok(())
    })
    .await
}

/// Tells the live pages and this process's dispatcher about a message just queued (or
/// scheduled: the dispatcher has nothing to do until its time).
pub(crate) fn announce_queued(svc: &Services, message: &MessageRow) {
    let status = message.status();
    svc.hub.publish(HubEvent::message_status(message, status));
    if status == MessageStatus::Queued {
        svc.dispatcher.wake();
    }
}

/// Checks the request and queues the message, or says why not. With an idempotency key, the
/// same request again answers with the first message (even while two arrive together: the
/// key is unique in the database), and another request under that key is refused.
pub fn queue_in(
    conn: &mut DbConnection,
    request: &Checked,
    requester: &Requester<'_>,
) -> ServiceResult<Queued> {
    let fingerprint = &request.fingerprint;
    if let Some(key) = requester.idempotency_key
        && let Some(done) = replay(conn, key, fingerprint)?
    {
        return Ok(done);
    }
    // In a write lane the send already has a savepoint of its own, which a refusal rolls back
    // as a whole; another one here would only cost two more statements (round trips on
    // PostgreSQL). With an idempotency key it is kept: a lost race on the key is a unique
    // violation, after which PostgreSQL refuses the look-up that answers it unless the
    // savepoint is rolled back first.
    if requester.idempotency_key.is_none() && crate::storage::in_transaction(conn) {
        return queue_new(
            &mut Change {
                conn,
                actor: requester.actor,
            },
            request,
            requester,
        );
    }
    let mut attempt = 0;
    let result = loop {
        let result = crate::service::write(conn, requester.actor, |change| {
            queue_new(change, request, requester)
        });
        match result {
            // SQLite refuses to turn a read transaction into a write one when another writer
            // committed meanwhile ("database is locked", without waiting): start again.
            Err(ref e) if database_error(e).is_some_and(is_sqlite_busy) && attempt < 5 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(10 * attempt));
            }
            other => break other,
        }
    };
    match (result, requester.idempotency_key) {
        // The same key arrived twice at once and the other request stored it first.
        (Err(e), Some(key)) if database_error(&e).is_some_and(is_unique_violation) => {
            replay(conn, key, fingerprint)?.ok_or(e)
        }
        (result, _) => result,
    }
}

fn is_sqlite_busy(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(_, info)
        if info.message().contains("database is locked") || info.message().contains("busy"))
}

/// The change a new send makes: the contact (when the number is new) and the queued message.
/// A send is recorded on the message itself (`requested_by`), not in the audit log.
fn queue_new(
    change: &mut Change<'_>,
    checked: &Checked,
    requester: &Requester<'_>,
) -> ServiceResult<Queued> {
    let conn = &mut *change.conn;
    let request = &checked.request;
    if let Some(at) = request.send_at {
        check_send_at(at, Utc::now())
            .map_err(|e| refused("invalid_send_at", Some("send_at"), e.to_string()))?;
    }
    let channel = match &checked.channel {
        Some(channel) => channel.clone(),
        None => find_channel(conn, &request.channel)?,
    };
    let (contact, created_contact) =
        resolve_recipient(conn, &checked.target, &checked.contact_patch)?;
    let ctx = if created_contact {
        new_contact_context(&channel, Utc::now())
    } else {
        send_context(conn, contact.id, &channel, Utc::now())?
    };
    let prepared = prepare(conn, &channel, &ctx, &request.content)?;
    let content_json = serde_json::to_string(&prepared.content).map_err(ServiceError::internal)?;
    let message = NewMessage {
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
        requested_by: &requester.actor.label,
        resend_of: None,
        not_before: request.send_at.map_or_else(now, |at| at.naive_utc()),
        request_hash: Some(&checked.fingerprint),
        source: requester
            .source
            .unwrap_or_else(|| MessageSource::of_actor(requester.actor.kind)),
    };
    // A later send waits as `scheduled`; the policy is asked again when it goes.
    let message = match request.send_at {
        Some(_) => outbox::schedule(conn, &message)?,
        None => outbox::enqueue(conn, &message)?,
    };
    Ok(Queued {
        message,
        contact,
        channel,
        created_contact,
        replayed: false,
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
            send_at: None,
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

    fn code(err: &ServiceError) -> &'static str {
        match err {
            ServiceError::Invalid { code, .. } => code,
            _ => "not invalid",
        }
    }

    #[test]
    fn refusals_carry_the_api_codes_and_the_field_at_fault() {
        assert_eq!(code(&invalid_phone("x".into())), "invalid_phone");
        assert_eq!(code(&key_reused()), "idempotency_key_reused");
        assert!(key_reused().fields().is_none());
        let denied = denied(
            Denial::WindowClosed { closed_at: None },
            ChannelKind::Whatsapp,
            "text",
            None,
        );
        assert_eq!(code(&denied), "window_closed");
        assert!(denied.to_string().contains("24-hour window is closed"));
        let fields = denied.fields().expect("the field at fault");
        assert_eq!(fields.get("text"), Some(denied.to_string().as_str()));
        let opted_out = super::denied(Denial::OptedOut, ChannelKind::Sms, "text", None);
        assert!(opted_out.fields().and_then(|f| f.get("to")).is_some());
    }

    fn sandbox_channel(conn: &mut DbConnection) -> Channel {
        channels::seed_sandbox(conn)
            .expect("sandbox channels")
            .into_iter()
            .find(|c| c.kind == ChannelKind::Sms)
            .expect("an SMS channel")
    }

    #[test]
    fn a_refused_send_writes_nothing_and_a_repeat_key_answers_the_first_message() {
        let (_dir, db) = crate::service::testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let channel = sandbox_channel(&mut conn);
        let actor = Actor::system("sends test");
        let requester = |key| Requester {
            actor: &actor,
            idempotency_key: key,
            source: None,
        };
        let to = |text: &str| {
            Checked::new(
                SendRequest {
                    recipient: Recipient::Phone("+14155550199".into()),
                    channel: channel.public_id.clone(),
                    content: ContentRequest::Text(text.into()),
                    send_at: None,
                },
                DefaultCountry::default(),
            )
            .expect("a valid number")
        };

        let err = queue_in(&mut conn, &to(""), &requester(None)).unwrap_err();
        assert_eq!(code(&err), "empty_text");
        let phone = E164::parse("+14155550199", None).expect("phone");
        assert!(
            contacts::find_by_phone(&mut conn, &phone)
                .expect("lookup")
                .is_none(),
            "the contact made for the refused send was rolled back"
        );

        let first = queue_in(&mut conn, &to("hello"), &requester(Some("k1"))).expect("queued");
        assert!(first.created_contact && !first.replayed);
        assert_eq!(first.message.requested_by, "sends test");
        let again = queue_in(&mut conn, &to("hello"), &requester(Some("k1"))).expect("replayed");
        assert!(again.replayed);
        assert_eq!(again.message.public_id, first.message.public_id);
        let other = queue_in(&mut conn, &to("bye"), &requester(Some("k1"))).unwrap_err();
        assert_eq!(code(&other), "idempotency_key_reused");
    }
}
