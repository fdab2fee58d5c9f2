//! Triggers: a shop or CRM posts JSON to `/hooks/{slug}` and a message goes out through the
//! one send use case (`service::sends`).
//!
//! Managing them (create, update, disable, delete) is audited like every change. A delivery is
//! handled in three steps: [`open`] finds the trigger and starts checking the signature from
//! the headers; the edge streams the raw body into it; [`receive`] finishes the check first
//! (a wrong signature stores nothing), then in ONE write records the event (a unique index on
//! the delivery id turns a retry away), cancels what an earlier event with the same delay key
//! scheduled, reads the payload through the mapping, upserts the contact and queues (or
//! schedules) the message, or records why not. Nothing the payload says makes the sender
//! retry: a payload Herald cannot use is acknowledged and logged with the reason.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::sealed;
use crate::domain::audit::Actor;
use crate::domain::message::MessageSource;
use crate::domain::phone::{DefaultCountry, E164};
use crate::domain::template::Variables;
use crate::domain::trigger::{Headers, Mapping, Scheme, Verification, text_at};
use crate::service::idempotency::{self, IdempotencyKey};
use crate::service::sends::{
    self, Checked, ContentRequest, Recipient, Requester, SendRequest, TemplateRef,
};
use crate::service::{FieldProblems, ServiceError, ServiceResult, Services};
use crate::storage::channels::{self, Channel};
use crate::storage::contacts::ContactPatch;
use crate::storage::messages::MessageRow;
use crate::storage::templates::{self, TemplateLookup};
use crate::storage::triggers::{self as store, EventLine, NewEvent, TriggerFields, TriggerRow};
use crate::storage::{DbConnection, now, outbox};

/// The largest payload Herald reads into a message (a larger one is logged, not used).
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// The most of a payload kept in the event log.
const KEPT_PAYLOAD: usize = 16 * 1024;

/// What a trigger sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerContent {
    Text(String),
    /// An approved template on the trigger's channel, by name and language.
    Template {
        name: String,
        language: String,
    },
}

/// A trigger as asked for (create, or the new state on update).
#[derive(Debug, Clone)]
pub struct TriggerInput {
    pub name: String,
    /// A channel's public id or name.
    pub channel: String,
    pub content: TriggerContent,
    pub scheme: String,
    /// `None`: Herald makes one (WooCommerce, Standard Webhooks, API key), or keeps the
    /// current one on update.
    pub secret: Option<String>,
    pub mapping: Mapping,
    pub enabled: bool,
}

/// A trigger as shown to an admin (page and API).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Trigger)]
pub struct TriggerView {
    pub id: String,
    pub name: String,
    pub url: String,
    pub channel: String,
    pub channel_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateName>,
    pub verification: VerificationView,
    /// JSON pointers into the payload: `phone`, `default_country`, `variables`... (docs/api.md).
    #[schema(value_type = Object)]
    pub mapping: Mapping,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    #[schema(ignore)]
    pub scheme: Option<Scheme>,
    #[serde(skip)]
    #[schema(ignore)]
    pub row_id: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TriggerTemplateName)]
pub struct TemplateName {
    pub name: String,
    pub language: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TriggerVerification)]
pub struct VerificationView {
    pub scheme: String,
    pub secret: String,
}

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    let mut fields = FieldProblems::new();
    fields.add(field, message.into());
    ServiceError::invalid_fields("invalid_trigger", fields)
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("There is no trigger with id \"{id}\"."))
}

/// A new random secret for the schemes where Herald makes it.
fn new_secret(scheme: Scheme) -> String {
    use base64::Engine;
    let bytes: [u8; 24] = rand::random();
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    match scheme {
        Scheme::StandardWebhooks => format!("whsec_{encoded}"),
        _ => encoded.replace(['+', '/', '='], ""),
    }
}

fn view(
    svc_url: &str,
    key: &[u8; 32],
    conn: &mut DbConnection,
    row: TriggerRow,
) -> ServiceResult<TriggerView> {
    let channel = channels::find(conn, row.channel_id)?;
    let template = match row.template_id {
        Some(id) => templates::find(conn, id)?.map(|t| TemplateName {
            name: t.name,
            language: t.language,
        }),
        None => None,
    };
    let mapping: Mapping = serde_json::from_str(&row.mapping).map_err(ServiceError::internal)?;
    let secret = sealed::open(key, &row.secret).map_err(ServiceError::internal)?;
    Ok(TriggerView {
        id: row.public_id,
        name: row.name,
        url: format!("{svc_url}/hooks/{}", row.slug),
        channel: channel.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
        channel_id: channel.map(|c| c.public_id).unwrap_or_default(),
        text: row.text,
        template,
        verification: VerificationView {
            scheme: row.scheme.clone(),
            secret,
        },
        mapping,
        enabled: row.enabled != 0,
        created_at: row.created_at.and_utc().to_rfc3339(),
        updated_at: row.updated_at.and_utc().to_rfc3339(),
        scheme: Scheme::parse(&row.scheme),
        row_id: row.id,
    })
}

/// The key trigger secrets are sealed with (the one channel secrets use) and the public URL
/// the hooks are reached at.
fn sealing(svc: &Services) -> ([u8; 32], String) {
    (svc.keys.channel_secrets, svc.public_url.clone())
}

/// The checked parts of a [`TriggerInput`], ready to store.
struct CheckedTrigger {
    channel: Channel,
    template_id: Option<i64>,
    text: Option<String>,
    scheme: Scheme,
    mapping_json: String,
}

/// Checks a trigger: a name, a channel, an approved template (its variables all mapped, no
/// other) or text, a known scheme with a usable secret, and a mapping whose paths are JSON
/// Pointers.
fn check(
    conn: &mut DbConnection,
    input: &TriggerInput,
    except: Option<i64>,
) -> ServiceResult<CheckedTrigger> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(invalid(
            "name",
            "Give the trigger a name (up to 100 characters).",
        ));
    }
    if store::name_taken(conn, name, except)? {
        return Err(ServiceError::conflict(
            "name_taken",
            format!("There is already a trigger called \"{name}\"."),
        ));
    }
    let scheme = Scheme::parse(&input.scheme).ok_or_else(|| {
        invalid(
            "verification.scheme",
            format!(
                "\"{}\" is not a verification scheme: use shopify, woocommerce, hubspot, standard_webhooks or api_key.",
                input.scheme
            ),
        )
    })?;
    let channel = sends::find_channel(conn, &input.channel)?;
    let (template_id, text, variables) = match &input.content {
        TriggerContent::Text(text) => {
            crate::domain::content::check_free_text(channel.kind, text)
                .map_err(|e| invalid("text", e.to_string()))?;
            (None, Some(text.clone()), None)
        }
        TriggerContent::Template { name, language } => {
            let t = super::sendable_template(conn, &channel, name, language, invalid)?;
            let mut names: Vec<String> = Vec::new();
            for p in t.placeholders() {
                if !names.contains(&p.name) {
                    names.push(p.name);
                }
            }
            (Some(t.template_id), None, Some(names))
        }
    };
    let problems = input.mapping.check(variables.as_deref());
    if !problems.is_empty() {
        let mut fields = FieldProblems::new();
        for (field, words) in problems {
            fields.add(&field, words);
        }
        return Err(ServiceError::invalid_fields("invalid_mapping", fields));
    }
    let mapping_json = serde_json::to_string(&input.mapping).map_err(ServiceError::internal)?;
    Ok(CheckedTrigger {
        channel,
        template_id,
        text,
        scheme,
        mapping_json,
    })
}

/// Creates a trigger (audited `trigger.created`); its secret is sealed at rest.
pub async fn create(
    svc: &Services,
    actor: Actor,
    input: TriggerInput,
    once: Option<IdempotencyKey>,
) -> ServiceResult<TriggerView> {
    let (key, url) = sealing(svc);
    svc.write(actor, move |change| {
        let c = check(change.conn, &input, None)?;
        let secret = match input
            .secret
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(s) => s.to_owned(),
            None if c.scheme.herald_generates_secret() => new_secret(c.scheme),
            None => {
                return Err(invalid(
                    "verification.secret",
                    format!(
                        "Paste the signing secret {} shows for this webhook.",
                        c.scheme.label()
                    ),
                ));
            }
        };
        c.scheme
            .check_secret(&secret)
            .map_err(|w| invalid("verification.secret", w))?;
        let sealed_secret = sealed::seal(&key, &secret).map_err(ServiceError::internal)?;
        let slug = uuid::Uuid::new_v4().simple().to_string();
        let row = store::insert(
            change.conn,
            &TriggerFields {
                name: input.name.trim(),
                channel_id: c.channel.id,
                template_id: c.template_id,
                text: c.text.as_deref(),
                scheme: c.scheme.as_str(),
                sealed_secret: &sealed_secret,
                mapping: &c.mapping_json,
                enabled: input.enabled,
            },
            &slug,
            &change.actor.label,
        )?;
        change.audit(
            "trigger.created",
            "trigger",
            Some(&row.public_id),
            json!({"name": row.name, "scheme": row.scheme, "channel": c.channel.name}),
        )?;
        idempotency::remember(change, once.as_ref(), "trigger", &row.public_id)?;
        view(&url, &key, change.conn, row)
    })
    .await
}

/// Changes a trigger (audited `trigger.updated`; `trigger.disabled` / `trigger.enabled` when
/// only that changed). `edit` gets the current state and returns the new one.
pub async fn update(
    svc: &Services,
    actor: Actor,
    public_id: String,
    edit: impl FnOnce(TriggerInput) -> TriggerInput + Send + 'static,
) -> ServiceResult<TriggerView> {
    let (key, url) = sealing(svc);
    svc.write(actor, move |change| {
        let row = store::find_by_public_id(change.conn, &public_id)?.ok_or_else(|| not_found(&public_id))?;
        let current = view(&url, &key, change.conn, row.clone())?;
        let before = input_of(&current);
        let after = edit(before.clone());
        let c = check(change.conn, &after, Some(row.id))?;
        let secret = after
            .secret
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(&current.verification.secret)
            .to_owned();
        c.scheme
            .check_secret(&secret)
            .map_err(|w| invalid("verification.secret", w))?;
        let sealed_secret = sealed::seal(&key, &secret).map_err(ServiceError::internal)?;
        store::update(
            change.conn,
            row.id,
            &TriggerFields {
                name: after.name.trim(),
                channel_id: c.channel.id,
                template_id: c.template_id,
                text: c.text.as_deref(),
                scheme: c.scheme.as_str(),
                sealed_secret: &sealed_secret,
                mapping: &c.mapping_json,
                enabled: after.enabled,
            },
        )?;
        let action = match (before.enabled, after.enabled) {
            (true, false) => "trigger.disabled",
            (false, true) => "trigger.enabled",
            _ => "trigger.updated",
        };
        change.audit(
            action,
            "trigger",
            Some(&row.public_id),
            json!({"name": after.name.trim(), "secret_changed": secret != current.verification.secret}),
        )?;
        let row = store::find_by_public_id(change.conn, &public_id)?.ok_or_else(|| not_found(&public_id))?;
        view(&url, &key, change.conn, row)
    })
    .await
}

/// The input that would leave a trigger as it is (the start of an edit).
pub fn input_of(v: &TriggerView) -> TriggerInput {
    TriggerInput {
        name: v.name.clone(),
        channel: v.channel_id.clone(),
        content: match (&v.text, &v.template) {
            (_, Some(t)) => TriggerContent::Template {
                name: t.name.clone(),
                language: t.language.clone(),
            },
            (text, None) => TriggerContent::Text(text.clone().unwrap_or_default()),
        },
        scheme: v.verification.scheme.clone(),
        secret: None,
        mapping: v.mapping.clone(),
        enabled: v.enabled,
    }
}

/// Deletes a trigger and its event log (audited `trigger.deleted`); its messages stay.
pub async fn delete(svc: &Services, actor: Actor, public_id: String) -> ServiceResult<()> {
    svc.write(actor, move |change| {
        let row = store::find_by_public_id(change.conn, &public_id)?
            .ok_or_else(|| not_found(&public_id))?;
        store::delete(change.conn, row.id)?;
        change.audit(
            "trigger.deleted",
            "trigger",
            Some(&row.public_id),
            json!({"name": row.name}),
        )?;
        Ok(())
    })
    .await
}

pub async fn list(svc: &Services) -> ServiceResult<Vec<TriggerView>> {
    let (key, url) = sealing(svc);
    svc.read(move |conn| {
        store::list(conn)?
            .into_iter()
            .map(|row| view(&url, &key, conn, row))
            .collect()
    })
    .await
}

/// A page of triggers, in the order they were made (the API's list).
pub async fn page(
    svc: &Services,
    request: crate::service::paging::PageRequest,
) -> ServiceResult<crate::service::paging::Page<TriggerView>> {
    let (key, url) = sealing(svc);
    svc.read(move |conn| {
        let rows = store::page(conn, request.after, request.fetch())?;
        let more = request.finish(rows, |row| row.id);
        let data = more
            .data
            .into_iter()
            .map(|row| view(&url, &key, conn, row))
            .collect::<ServiceResult<Vec<_>>>()?;
        Ok(crate::service::paging::Page {
            data,
            next_cursor: more.next_cursor,
        })
    })
    .await
}

pub async fn get(svc: &Services, public_id: String) -> ServiceResult<TriggerView> {
    let (key, url) = sealing(svc);
    svc.read(move |conn| {
        let row =
            store::find_by_public_id(conn, &public_id)?.ok_or_else(|| not_found(&public_id))?;
        view(&url, &key, conn, row)
    })
    .await
}

/// A page of a trigger's event log, newest first.
pub async fn events(
    svc: &Services,
    trigger_row_id: i64,
    before: Option<i64>,
    limit: i64,
) -> ServiceResult<Vec<EventLine>> {
    svc.read(move |conn| Ok(store::events(conn, trigger_row_id, before, limit)?))
        .await
}

// ---------------------------------------------------------------------------------------------
// Deliveries

/// A trigger found by its URL, with its signature check started.
pub struct Hook {
    row: TriggerRow,
    /// The public ids of its channel and template, which its sends name.
    channel: String,
    template: Option<String>,
    pub verification: Verification,
}

/// Why a delivery is turned away before anything is stored.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No trigger has this URL (404).
    #[error("There is no trigger at this address.")]
    Unknown,
    /// The trigger is disabled (410: the sender should stop).
    #[error("This trigger is disabled.")]
    Disabled,
    /// The signature is missing or wrong (401).
    #[error("{0}")]
    Unsigned(crate::domain::trigger::VerifyError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Finds the trigger at `/hooks/{slug}` and starts checking the request's signature from its
/// headers (`uri` is the public URL the sender called, for HubSpot).
pub async fn open(
    svc: &Services,
    slug: String,
    method: String,
    uri: String,
    headers: Headers,
) -> Result<Hook, Refusal> {
    let key = svc.keys.channel_secrets;
    let (row, channel, template) = svc
        .read(move |conn| Ok(store::find_hook(conn, &slug)?))
        .await?
        .ok_or(Refusal::Unknown)?;
    if !row.is_enabled() {
        return Err(Refusal::Disabled);
    }
    let scheme = Scheme::parse(&row.scheme)
        .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("unknown scheme {}", row.scheme)))?;
    let secret = sealed::open(&key, &row.secret).map_err(ServiceError::internal)?;
    let verification = Verification::start(scheme, &secret, &method, &uri, &headers, Utc::now())
        .map_err(Refusal::Unsigned)?;
    Ok(Hook {
        row,
        channel,
        template,
        verification,
    })
}

/// What a delivery did.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    /// `queued`, `scheduled`, `skipped`, `refused`, or `duplicate` (a retry: nothing new).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip)]
    message: Option<MessageRow>,
}

/// Finishes the signature check (a wrong one stores nothing), then records and handles the
/// delivery in one write. `body` holds at most [`MAX_PAYLOAD`] bytes; `too_large` says the
/// sender sent more.
pub async fn receive(
    svc: &Services,
    hook: Hook,
    headers: Headers,
    body: Vec<u8>,
    too_large: bool,
) -> Result<Received, Refusal> {
    let Hook {
        row,
        channel,
        template,
        verification,
    } = hook;
    verification.finish().map_err(Refusal::Unsigned)?;
    let scheme = Scheme::parse(&row.scheme);
    let delivery_id = scheme
        .and_then(Scheme::delivery_id_header)
        .and_then(|h| headers.get(h))
        .map(|v| v.trim().chars().take(200).collect::<String>())
        .filter(|v| !v.is_empty());
    let mapping: Mapping = serde_json::from_str(&row.mapping).map_err(ServiceError::internal)?;
    let payload = read_payload(&body, too_large);
    let stored_payload = (!too_large).then(|| kept(&body));
    drop(body);
    // Deliveries for one recipient take one write lane (a retry finds its twin committed, and
    // the contact's rows are locked by one lane only); different recipients spread over the
    // lanes, so one busy trigger is not limited to one lane's round trips.
    let shard = match payload
        .as_ref()
        .ok()
        .and_then(|p| text_at(p, &mapping.phone))
    {
        Some(phone) => crate::storage::group::shard_of(phone.trim()),
        None => crate::storage::group::shard_of(&row.slug),
    };
    let actor = Actor::system(&format!("Trigger \"{}\"", row.name));
    let country = svc.settings.default_country;
    // Looked up before the write (and kept a moment for the next delivery); a channel that
    // has gone is left to the write, which refuses the send with the reason.
    let channel_row = sends::channel_for_send(svc, &channel).await.ok();
    let delivery = std::sync::Arc::new(Delivery {
        row,
        channel,
        channel_row,
        template,
        mapping,
        actor,
        delivery_id,
        payload,
        stored_payload,
    });
    let mut refused: Option<String> = None;
    let received = loop {
        let d = delivery.clone();
        let why = refused.clone();
        // The lane runs each write in a savepoint (or a transaction) of its own, which an
        // `Undo` rolls back as a whole.
        let written = svc
            .db
            .write_grouped(shard, move |conn| handle(conn, &d, country, why.as_deref()))
            .await;
        match written {
            Ok(received) => break received,
            Err(Undo::Duplicate) => {
                break done(
                    "duplicate",
                    Some("This delivery was received before; nothing more is done.".into()),
                );
            }
            // The send was refused after it wrote (the contact it made or changed): written
            // again with the refusal alone. Once only: that write sends nothing.
            Err(Undo::Refused(why)) if refused.is_none() => refused = Some(why),
            Err(Undo::Refused(why)) => {
                return Err(ServiceError::internal(anyhow::anyhow!(
                    "a refusal was refused again: {why}"
                ))
                .into());
            }
            Err(Undo::Failed(e)) => return Err(e.into()),
        }
    };
    if let Some(m) = &received.message {
        sends::announce_queued(svc, m);
    }
    Ok(received)
}

/// Why a delivery's write is rolled back as a whole (its savepoint in the lane).
enum Undo {
    /// A retry: an earlier copy was recorded, so nothing of this one is kept.
    Duplicate,
    /// The send was refused after writing the contact: the event is written again, with this
    /// reason and without the send.
    Refused(String),
    Failed(ServiceError),
}

impl From<ServiceError> for Undo {
    fn from(e: ServiceError) -> Self {
        Undo::Failed(e)
    }
}

impl From<diesel::result::Error> for Undo {
    fn from(e: diesel::result::Error) -> Self {
        Undo::Failed(e.into())
    }
}

impl From<crate::storage::StorageError> for Undo {
    fn from(e: crate::storage::StorageError) -> Self {
        Undo::Failed(e.into())
    }
}

fn kept(body: &[u8]) -> String {
    let cut = body.len().min(KEPT_PAYLOAD);
    String::from_utf8_lossy(&body[..cut]).into_owned()
}

fn done(outcome: &'static str, reason: Option<String>) -> Received {
    Received {
        outcome,
        reason,
        message_id: None,
        message: None,
    }
}

/// The payload as JSON, or why it cannot be read.
fn read_payload(body: &[u8], too_large: bool) -> Result<Value, String> {
    if too_large {
        Err(format!(
            "Refused: the payload is larger than {} MiB.",
            MAX_PAYLOAD / (1024 * 1024)
        ))
    } else {
        serde_json::from_slice(body).map_err(|e| format!("Refused: the payload is not JSON ({e})."))
    }
}

/// One delivery as the write lane handles it (read once, before its turn; the lane may run
/// its write more than once).
struct Delivery {
    row: TriggerRow,
    /// The public ids of the trigger's channel and template.
    channel: String,
    /// The channel itself, when it was found before the write.
    channel_row: Option<crate::storage::channels::Channel>,
    template: Option<String>,
    mapping: Mapping,
    actor: Actor,
    delivery_id: Option<String>,
    payload: Result<Value, String>,
    /// The first bytes kept for the event log (`None` when the payload was too large).
    stored_payload: Option<String>,
}

/// One delivery, inside the write's savepoint. The event is written last, once, with what it
/// did: when its de-duplication key was recorded before (the unique index decides, so two
/// copies arriving together still make one event) the whole write is undone. `refused` is
/// the refusal of an earlier run of this write, recorded instead of the send.
fn handle(
    conn: &mut DbConnection,
    d: &Delivery,
    default_country: DefaultCountry,
    refused: Option<&str>,
) -> Result<Received, Undo> {
    let (row, mapping, payload) = (&d.row, &d.mapping, &d.payload);
    let dedup = match (d.delivery_id.as_deref(), payload) {
        (Some(id), _) => Some(format!("delivery:{id}")),
        (None, Ok(p)) => mapping.dedup_value(p).map(|v| format!("key:{v}")),
        _ => None,
    };
    let delay_key = payload
        .as_ref()
        .ok()
        .and_then(|p| mapping.delay_key.as_deref().and_then(|k| text_at(p, k)));
    let outcome = match payload {
        Err(why) => done("refused", Some(why.clone())),
        Ok(payload) => {
            // A later event with the same key replaces what an earlier one scheduled, whatever
            // this one then does (an order cancelled before its confirmation went).
            if let Some(k) = &delay_key {
                for id in store::delayed_with_key(conn, row.id, k)? {
                    outbox::cancel_scheduled(
                        conn,
                        id,
                        "Cancelled: a later event with the same key arrived before it went.",
                        now(),
                    )?;
                }
            }
            match (mapping.conditions_hold(payload), refused) {
                (Err(why), _) => done("skipped", Some(why)),
                (Ok(()), Some(why)) => done("refused", Some(why.to_owned())),
                (Ok(()), None) => send_for(conn, d, payload, default_country)?,
            }
        }
    };
    let recorded = store::insert_event(
        conn,
        &NewEvent {
            trigger_id: row.id,
            dedup_key: dedup.as_deref(),
            delay_key: delay_key.as_deref(),
            outcome: outcome.outcome,
            reason: outcome.reason.as_deref(),
            payload: d.stored_payload.as_deref(),
            message_id: outcome.message.as_ref().map(|m| m.id),
        },
    )?;
    match recorded {
        Some(_) => Ok(outcome),
        None => Err(Undo::Duplicate),
    }
}

/// The message an event asks for, queued or scheduled through the send use case with the
/// mapped contact fields; a refusal before anything is written (an invalid number) is the
/// event's outcome, one after the contact was written undoes the write.
fn send_for(
    conn: &mut DbConnection,
    d: &Delivery,
    payload: &Value,
    default_country: DefaultCountry,
) -> Result<Received, Undo> {
    let checked = match prepare(d, payload, default_country) {
        Ok(c) => c,
        Err(why) => return Ok(done("refused", Some(why))),
    };
    let queued = sends::queue_in(
        conn,
        &checked,
        &Requester {
            actor: &d.actor,
            idempotency_key: None,
            source: Some(MessageSource::Trigger),
        },
    );
    match queued {
        Ok(q) => {
            let scheduled = q.message.status() == crate::domain::message::MessageStatus::Scheduled;
            Ok(Received {
                outcome: if scheduled { "scheduled" } else { "queued" },
                reason: None,
                message_id: Some(q.message.public_id.clone()),
                message: Some(q.message),
            })
        }
        Err(ServiceError::Invalid { message, .. }) => {
            Err(Undo::Refused(format!("Refused: {message}")))
        }
        Err(e) => Err(Undo::Failed(e)),
    }
}

/// The country national numbers in the payload are read in: the mapping's, else Herald's.
fn country_of(mapping: &Mapping, default: DefaultCountry) -> DefaultCountry {
    mapping
        .default_country
        .as_deref()
        .and_then(|c| DefaultCountry::parse(c).ok())
        .unwrap_or(default)
}

/// The send request an event makes, or why it cannot make one.
fn prepare(
    d: &Delivery,
    payload: &Value,
    default_country: DefaultCountry,
) -> Result<Checked, String> {
    let mapping = &d.mapping;
    let mapped = mapping
        .apply(payload)
        .map_err(|why| format!("Refused: {why}"))?;
    let country = country_of(mapping, default_country);
    let phone = E164::parse(&mapped.phone, Some(country)).map_err(|e| {
        format!(
            "Refused: {} is not a phone number Herald can send to ({e}).",
            mapped.phone
        )
    })?;
    let content = match (&d.template, &d.row.text) {
        (Some(template), _) => ContentRequest::Template {
            template: TemplateRef::Id(template.clone()),
            variables: Variables::Named(mapped.variables.clone()),
        },
        (None, text) => ContentRequest::Text(text.clone().unwrap_or_default()),
    };
    let send_at: Option<DateTime<Utc>> = mapping
        .delay_minutes
        .filter(|m| *m > 0)
        .map(|m| Utc::now() + chrono::Duration::minutes(i64::from(m)));
    let request = SendRequest {
        recipient: Recipient::Phone(phone.as_str().to_owned()),
        channel: d.channel.clone(),
        content,
        send_at,
    };
    let mut checked = Checked::new(request, country).map_err(|e| format!("Refused: {e}"))?;
    if let Some(channel) = &d.channel_row {
        checked = checked.with_channel(channel.clone());
    }
    Ok(checked.with_contact_patch(ContactPatch {
        name: mapped.name.clone(),
        attributes: mapped.attributes.clone(),
        ..ContactPatch::default()
    }))
}

// ---------------------------------------------------------------------------------------------
// Try it

/// What a sample payload would do, with nothing sent or stored.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// The conditions' verdict: `None` when they hold, else why it would be skipped.
    pub skipped: Option<String>,
    /// The recipient in E.164, or why there is none.
    pub recipient: Result<String, String>,
    pub variables: BTreeMap<String, String>,
    /// The message as the recipient would read it, or why it cannot be made.
    pub rendered: Result<String, String>,
}

/// Reads a sample payload through a trigger's mapping and renders the message it would send.
pub async fn try_payload(
    svc: &Services,
    public_id: String,
    sample: String,
) -> ServiceResult<Trial> {
    let country = svc.settings.default_country;
    svc.read(move |conn| {
        let row =
            store::find_by_public_id(conn, &public_id)?.ok_or_else(|| not_found(&public_id))?;
        let mapping: Mapping =
            serde_json::from_str(&row.mapping).map_err(ServiceError::internal)?;
        let payload: Value = match serde_json::from_str(&sample) {
            Ok(p) => p,
            Err(e) => {
                return Ok(Trial {
                    skipped: None,
                    recipient: Err(format!("The sample is not JSON: {e}.")),
                    variables: BTreeMap::new(),
                    rendered: Err("Paste the JSON body the shop or CRM sends.".into()),
                });
            }
        };
        let skipped = mapping.conditions_hold(&payload).err();
        let mapped = match mapping.apply(&payload) {
            Ok(m) => m,
            Err(why) => {
                return Ok(Trial {
                    skipped,
                    recipient: Err(why.clone()),
                    variables: BTreeMap::new(),
                    rendered: Err(why),
                });
            }
        };
        let country = country_of(&mapping, country);
        let recipient = E164::parse(&mapped.phone, Some(country))
            .map(|p| p.as_str().to_owned())
            .map_err(|e| {
                format!(
                    "{} is not a phone number Herald can send to ({e}).",
                    mapped.phone
                )
            });
        let rendered = match (row.template_id, &row.text) {
            (Some(id), _) => match templates::sendable(conn, id)? {
                TemplateLookup::Sendable(t) => t
                    .render(&Variables::Named(mapped.variables.clone()))
                    .map(|r| r.text)
                    .map_err(|e| e.to_string()),
                TemplateLookup::NotSendable { reason, .. } => {
                    Err(format!("The template cannot be sent now: {reason}"))
                }
                TemplateLookup::NotFound => Err("The template is gone.".into()),
            },
            (None, text) => Ok(text.clone().unwrap_or_default()),
        };
        Ok(Trial {
            skipped,
            recipient,
            variables: mapped.variables,
            rendered,
        })
    })
    .await
}
