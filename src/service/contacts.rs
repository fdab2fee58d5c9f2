//! Contacts: the filter the contacts page, the export, bulk actions and the API share; the read
//! model of one contact with its windows and consent per channel (the contact page and
//! `GET /api/v1/contacts/{id}` show the same); and the use cases that change contacts: create,
//! update, upsert by phone (the API), delete, consent (with the rule of who may reverse an
//! opt-out), list membership, simulated replies, and bulk actions over a selection or over
//! every contact matching a filter.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::idempotency::{self, IdempotencyKey};
use super::lists::list_or_404;
use super::{Change, FieldProblems, ServiceError, ServiceResult, Services};
use crate::channels::Adapter;
use crate::dispatch::events;
use crate::dispatch::hub::HubEvent;
use crate::domain::audit::Actor;
use crate::domain::channel::ChannelKind;
use crate::domain::consent::{
    ConsentSource, ConsentStatus, KeywordIntent, keyword_intent, keyword_may_apply,
};
use crate::domain::contact::{self as rules, Attributes};
use crate::domain::phone::{DefaultCountry, E164};
use crate::domain::role::Role;
use crate::domain::window::{self, WindowState};
use crate::storage::DbConnection;
use crate::storage::channels::{self, Channel};
use crate::storage::consents::{self, Consent};
pub use crate::storage::contacts::Cursor;
use crate::storage::contacts::{self, Contact, ContactPatch};
use crate::storage::conversations::{self, TimelineItem};
use crate::storage::lists::{self, List};

/// Contacts per step of a walk over every matching contact (bulk actions, exports): memory and
/// the time a write holds the database stay bounded whatever the number of contacts.
pub const WALK_BATCH: i64 = 1000;

/// The contact with this public id, or "This contact was not found."
pub fn contact_or_404(conn: &mut DbConnection, public_id: &str) -> ServiceResult<Contact> {
    contacts::find_by_public_id(conn, public_id)?
        .ok_or_else(|| ServiceError::not_found("This contact"))
}

/// Only an admin may opt a contact back in after they opted out: they answer for the proof of
/// consent. Anyone who may edit contacts may opt one out.
pub fn may_reverse_opt_out(role: Role) -> bool {
    role == Role::Admin
}

// ---------------------------------------------------------------------------------------------
// The filter

/// Which contacts a page, an export, a bulk action or an API list is about, as the filters
/// travel in query strings and forms (`q`, `list`, `opted_out`, `language`; empty: no filter).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContactFilter {
    /// Part of a phone number, name, e-mail or attribute value (a whole number finds that one).
    #[serde(default)]
    pub q: String,
    /// A list's public id (or its name): its members only.
    #[serde(default)]
    pub list: String,
    /// A kind of channel (`sms`, `whatsapp`, `viber`): contacts opted out of it only.
    #[serde(default)]
    pub opted_out: String,
    /// A language code, matched exactly.
    #[serde(default)]
    pub language: String,
}

impl ContactFilter {
    /// The query string for these filters (without a leading `?`).
    pub fn query(&self) -> String {
        let pairs: Vec<(&str, &str)> = [
            ("q", self.q.as_str()),
            ("list", self.list.as_str()),
            ("opted_out", self.opted_out.as_str()),
            ("language", self.language.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    pub fn is_active(&self) -> bool {
        !self.query().is_empty()
    }

    /// The kind of channel named by `opted_out` (`None` when empty), or why it names none.
    pub fn opted_out_kind(&self) -> Result<Option<ChannelKind>, String> {
        match self.opted_out.trim() {
            "" => Ok(None),
            k => k.parse::<ChannelKind>().map(Some),
        }
    }

    /// The storage filter: the list found (404 when there is none), the kind parsed (`Invalid`
    /// "invalid_filter" on the field `opted_out` when it is no kind of channel).
    pub fn resolve(&self, conn: &mut DbConnection) -> ServiceResult<contacts::ContactFilter> {
        let list_id = match self.list.trim() {
            "" => None,
            id => Some(
                match lists::find_by_public_id(conn, id)? {
                    Some(l) => Some(l),
                    None => lists::find_by_name(conn, id)?,
                }
                .ok_or_else(|| ServiceError::not_found("This list"))?
                .id,
            ),
        };
        let opted_out = self.opted_out_kind().map_err(|e| {
            let mut problems = FieldProblems::new();
            problems.add("opted_out", e);
            ServiceError::invalid_fields("invalid_filter", problems)
        })?;
        Ok(contacts::ContactFilter {
            q: Some(self.q.trim().to_owned()).filter(|q| !q.is_empty()),
            list_id,
            opted_out,
            language: Some(self.language.trim().to_owned()).filter(|l| !l.is_empty()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Read models

/// One channel as a contact stands on it: the customer-service window and whether they opted
/// out of its kind.
#[derive(Debug, Clone)]
pub struct ChannelWindow {
    pub channel: Channel,
    pub window: WindowState,
    pub opted_out: bool,
}

/// A contact with its lists, its consent per kind of channel and its window on every enabled
/// channel: what the contact page and the API's contact both show.
#[derive(Debug, Clone)]
pub struct ContactView {
    pub contact: Contact,
    pub lists: Vec<List>,
    /// Per kind of channel that has a record (`"sms"`, `"whatsapp"`, `"viber"`).
    pub consents: BTreeMap<&'static str, Consent>,
    /// Every enabled channel, in the order channels are listed.
    pub channels: Vec<ChannelWindow>,
    /// When the windows were worked out.
    pub as_of: DateTime<Utc>,
}

/// The read model of one contact, given every channel (enabled or not).
fn view_with(
    conn: &mut DbConnection,
    contact: Contact,
    all_channels: &[Channel],
) -> ServiceResult<ContactView> {
    let consents = consents::of_contact(conn, contact.id)?;
    let windows = conversations::windows(conn, contact.id)?;
    let now = Utc::now();
    let channels = all_channels
        .iter()
        .filter(|ch| ch.is_enabled())
        .map(|ch| {
            let last = windows
                .iter()
                .find(|(id, _)| *id == ch.id)
                .map(|(_, at)| at.and_utc());
            ChannelWindow {
                window: window::state(ch.kind, last, now),
                opted_out: consents
                    .get(ch.kind.as_str())
                    .is_some_and(|c| c.status == ConsentStatus::OptedOut),
                channel: ch.clone(),
            }
        })
        .collect();
    Ok(ContactView {
        lists: lists::of_contact(conn, contact.id)?,
        consents,
        channels,
        as_of: now,
        contact,
    })
}

/// The read model of one contact (blocking; inside `Db::run` or a change).
pub fn view_in(conn: &mut DbConnection, contact: Contact) -> ServiceResult<ContactView> {
    let all = channels::list(conn)?;
    view_with(conn, contact, &all)
}

/// The contact with this public id, with its windows and consent (404 "This contact").
pub async fn view(svc: &Services, public_id: String) -> ServiceResult<ContactView> {
    svc.read(move |conn| {
        let contact = contact_or_404(conn, &public_id)?;
        view_in(conn, contact)
    })
    .await
}

/// The contact with this phone number, if there is one.
pub async fn view_by_phone(svc: &Services, phone: E164) -> ServiceResult<Option<ContactView>> {
    svc.read(move |conn| match contacts::find_by_phone(conn, &phone)? {
        Some(c) => Ok(Some(view_in(conn, c)?)),
        None => Ok(None),
    })
    .await
}

/// A page of contact views for the API, newest first, from the contact `before` names.
pub struct ViewPage {
    pub data: Vec<ContactView>,
    /// The public id to pass as `before` for the next page; `None` on the last page.
    pub next_before: Option<String>,
    /// The same place as an opaque `cursor` (`service::paging`).
    pub next_cursor: Option<String>,
}

/// Where a page of contact views starts.
pub enum ViewsFrom {
    First,
    /// After the contact with this public id (the older `before` parameter).
    Before(String),
    /// After the contact a `cursor` names (its row id).
    Cursor(i64),
}

/// Contacts matching `filter`, newest first, `limit` at a time from `from` (a public id that
/// names no contact is `Invalid` "invalid_cursor").
pub async fn views(
    svc: &Services,
    filter: ContactFilter,
    from: ViewsFrom,
    limit: i64,
) -> ServiceResult<ViewPage> {
    svc.read(move |conn| {
        let cursor = match &from {
            ViewsFrom::Cursor(id) => Cursor::Before(*id),
            ViewsFrom::Before(public_id) => Cursor::Before(
                contacts::find_by_public_id(conn, public_id)?
                    .ok_or_else(|| {
                        ServiceError::invalid(
                            "invalid_cursor",
                            format!("before: no contact \"{public_id}\""),
                        )
                    })?
                    .id,
            ),
            ViewsFrom::First => Cursor::First,
        };
        let filter = filter.resolve(conn)?;
        let (rows, more) = contacts::page(conn, &filter, cursor, limit)?;
        let last = rows.last().filter(|_| more);
        let next_before = last.map(|c| c.public_id.clone());
        let next_cursor = last.map(|c| super::paging::encode_cursor(c.id));
        let all = channels::list(conn)?;
        let data = rows
            .into_iter()
            .map(|c| view_with(conn, c, &all))
            .collect::<ServiceResult<Vec<_>>>()?;
        Ok(ViewPage {
            data,
            next_before,
            next_cursor,
        })
    })
    .await
}

/// One row of the contacts page.
pub struct ListedContact {
    pub contact: Contact,
    /// Kinds of channel the contact opted out of.
    pub opted_out: Vec<ChannelKind>,
    /// The window on each of [`ContactListing::window_channels`], in that order.
    pub windows: Vec<WindowState>,
}

/// A page of the contacts list, with what the page says around it.
pub struct ContactListing {
    pub rows: Vec<ListedContact>,
    /// More rows lie beyond these in the cursor's direction.
    pub more: bool,
    /// How many contacts match the filter.
    pub matching: i64,
    /// How many contacts there are.
    pub total: i64,
    /// The name of the list filtered on.
    pub list_name: Option<String>,
    /// Every list (for the filter and the bulk actions).
    pub lists: Vec<List>,
    /// Enabled channels that have a window (WhatsApp, Viber): a column each.
    pub window_channels: Vec<Channel>,
    pub as_of: DateTime<Utc>,
}

/// The contacts page: `size` contacts matching `filter` from `cursor`, by keyset.
pub async fn listing(
    svc: &Services,
    filter: ContactFilter,
    cursor: Cursor,
    size: i64,
) -> ServiceResult<ContactListing> {
    svc.read(move |conn| {
        let filter = filter.resolve(conn)?;
        let (page, more) = contacts::page(conn, &filter, cursor, size)?;
        let ids: Vec<i64> = page.iter().map(|c| c.id).collect();
        let mut opted: HashMap<i64, Vec<ChannelKind>> = HashMap::new();
        for (id, kind) in consents::opted_out_kinds(conn, &ids)? {
            if let Ok(kind) = kind.parse::<ChannelKind>() {
                opted.entry(id).or_default().push(kind);
            }
        }
        let matching = contacts::count(conn, &filter)?;
        let total = if filter.is_empty() {
            matching
        } else {
            contacts::count(conn, &contacts::ContactFilter::default())?
        };
        let list_name = match filter.list_id {
            Some(id) => lists::find(conn, id)?.map(|l| l.name),
            None => None,
        };
        let window_channels: Vec<Channel> = channels::list(conn)?
            .into_iter()
            .filter(|c| c.is_enabled() && window::has_window(c.kind))
            .collect();
        let windows = conversations::windows_of(conn, &ids)?;
        let now = Utc::now();
        let rows = page
            .into_iter()
            .map(|c| ListedContact {
                opted_out: opted.remove(&c.id).unwrap_or_default(),
                windows: window_channels
                    .iter()
                    .map(|ch| {
                        let last = windows
                            .iter()
                            .find(|(contact, channel, _)| *contact == c.id && *channel == ch.id)
                            .map(|(_, _, at)| at.and_utc());
                        window::state(ch.kind, last, now)
                    })
                    .collect(),
                contact: c,
            })
            .collect();
        Ok(ContactListing {
            rows,
            more,
            matching,
            total,
            list_name,
            lists: lists::all(conn)?,
            window_channels,
            as_of: now,
        })
    })
    .await
}

/// Everything the contact page shows.
pub struct ContactDetails {
    pub view: ContactView,
    /// Every list (to offer the ones the contact is not in).
    pub all_lists: Vec<List>,
    /// Every channel, enabled or not (the conversation names them all).
    pub all_channels: Vec<Channel>,
    /// The latest hundred messages both ways, newest first.
    pub timeline: Vec<TimelineItem>,
}

pub async fn details(svc: &Services, public_id: String) -> ServiceResult<ContactDetails> {
    svc.read(move |conn| {
        let contact = contact_or_404(conn, &public_id)?;
        let all_channels = channels::list(conn)?;
        let timeline = conversations::timeline(conn, contact.id, 100)?;
        Ok(ContactDetails {
            view: view_with(conn, contact, &all_channels)?,
            all_lists: lists::all(conn)?,
            all_channels,
            timeline,
        })
    })
    .await
}

/// A contact's conversation, with the names of the channels it went over.
pub struct Conversation {
    pub items: Vec<TimelineItem>,
    pub channel_names: HashMap<i64, String>,
}

pub async fn conversation(svc: &Services, public_id: String) -> ServiceResult<Conversation> {
    svc.read(move |conn| {
        let contact = contact_or_404(conn, &public_id)?;
        let channel_names = channels::list(conn)?
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect();
        Ok(Conversation {
            items: conversations::timeline(conn, contact.id, 100)?,
            channel_names,
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Create, update, delete

/// The contact form's fields, as typed.
#[derive(Debug, Clone, Default)]
pub struct ContactForm {
    pub phone: String,
    pub name: String,
    pub email: String,
    pub language: String,
    pub time_zone: String,
}

/// Checks the form into a patch (and, for a new contact, its phone number); every problem is
/// named by field (`attributes` for the attribute rows).
fn parse_form(
    form: &ContactForm,
    attributes: &[(String, String)],
    country: Option<DefaultCountry>,
) -> Result<(Option<E164>, ContactPatch), FieldProblems> {
    let mut problems = FieldProblems::new();
    let phone = country.and_then(|c| problems.check("phone", E164::parse(&form.phone, Some(c))));
    let mut patch = ContactPatch {
        name: problems.check("name", rules::parse_name(&form.name)),
        email: problems.check("email", rules::parse_email(&form.email)),
        language: problems.check("language", rules::parse_language(&form.language)),
        time_zone: problems.check("time_zone", rules::parse_time_zone(&form.time_zone)),
        attributes: Attributes::new(),
        replace_attributes: true,
    };
    let parsed = rules::parse_attributes(
        attributes
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    match parsed {
        Ok(a) => patch.attributes = a,
        Err(e) => problems.add("attributes", e),
    }
    problems.into_result((phone, patch))
}

/// What creating a contact from the form did.
pub struct Created {
    pub contact: Contact,
    /// False when the number already belonged to a contact: that one, unchanged.
    pub created: bool,
}

/// Adds a contact from the form. A number that belongs to a contact already changes nothing
/// and answers that contact. Field problems are `Invalid` ("invalid_contact").
pub async fn create(
    svc: &Services,
    actor: Actor,
    form: ContactForm,
    attributes: Vec<(String, String)>,
) -> ServiceResult<Created> {
    let (phone, patch) = parse_form(&form, &attributes, Some(svc.settings.default_country))
        .map_err(|p| ServiceError::invalid_fields("invalid_contact", p))?;
    let phone = phone.ok_or_else(|| ServiceError::invalid("invalid_contact", "phone: missing"))?;
    svc.write(actor, move |change| create_in(change, &phone, &patch))
        .await
}

pub fn create_in(
    change: &mut Change<'_>,
    phone: &E164,
    patch: &ContactPatch,
) -> ServiceResult<Created> {
    if let Some(contact) = contacts::find_by_phone(change.conn, phone)? {
        return Ok(Created {
            contact,
            created: false,
        });
    }
    let (contact, created) = contacts::upsert(change.conn, phone, patch)?;
    change.audit(
        "contact.created",
        "contact",
        Some(&contact.public_id),
        serde_json::json!({"phone": contact.phone.as_str()}),
    )?;
    Ok(Created { contact, created })
}

/// Saves the contact form over the contact with this public id (its phone number stays).
pub async fn update(
    svc: &Services,
    actor: Actor,
    public_id: String,
    form: ContactForm,
    attributes: Vec<(String, String)>,
) -> ServiceResult<Contact> {
    let (_, patch) = parse_form(&form, &attributes, None)
        .map_err(|p| ServiceError::invalid_fields("invalid_contact", p))?;
    svc.write(actor, move |change| update_in(change, &public_id, &patch))
        .await
}

pub fn update_in(
    change: &mut Change<'_>,
    public_id: &str,
    patch: &ContactPatch,
) -> ServiceResult<Contact> {
    let contact = contact_or_404(change.conn, public_id)?;
    let contact = contacts::update(change.conn, contact, patch)?;
    change.audit(
        "contact.updated",
        "contact",
        Some(&contact.public_id),
        serde_json::json!({}),
    )?;
    Ok(contact)
}

/// Deletes a contact with their conversation; answers the contact as it was.
pub async fn delete(svc: &Services, actor: Actor, public_id: String) -> ServiceResult<Contact> {
    svc.write(actor, move |change| {
        let contact = contact_or_404(change.conn, &public_id)?;
        contacts::delete(change.conn, &[contact.id])?;
        change.audit(
            "contact.deleted",
            "contact",
            Some(&contact.public_id),
            serde_json::json!({"phone": contact.phone.as_str()}),
        )?;
        Ok(contact)
    })
    .await
}

/// The API's contact, as sent: fields left out stay as they are.
#[derive(Debug, Clone, Default)]
pub struct ContactUpsert {
    pub phone: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
    pub time_zone: Option<String>,
    /// Strings, numbers or booleans; an empty value (or null) removes the attribute.
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// `{"sms": "opted_out"}`.
    pub consent: BTreeMap<String, String>,
    /// List names; missing lists are created.
    pub lists: Vec<String>,
}

fn invalid_field(field: &str, e: String) -> ServiceError {
    ServiceError::invalid("invalid_field", format!("{field}: {e}"))
}

/// The upsert, checked: the first problem found is the answer ("invalid_phone", or
/// "invalid_field" naming the field).
struct CheckedUpsert {
    phone: E164,
    patch: ContactPatch,
    consent: Vec<(ChannelKind, ConsentStatus)>,
    lists: Vec<String>,
}

fn check_upsert(input: &ContactUpsert, country: DefaultCountry) -> ServiceResult<CheckedUpsert> {
    let phone = E164::parse(&input.phone, Some(country))
        .map_err(|e| ServiceError::invalid("invalid_phone", e))?;
    let mut attrs: Vec<(String, String)> = Vec::new();
    for (k, v) in &input.attributes {
        let value = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => v.to_string(),
            _ => {
                return Err(invalid_field(
                    &format!("attributes.{k}"),
                    "must be a string, number or boolean".into(),
                ));
            }
        };
        attrs.push((k.clone(), value));
    }
    let mut attributes = Attributes::new();
    for (k, v) in &attrs {
        let key = rules::parse_attribute_key(k)
            .map_err(|e| invalid_field(&format!("attributes.{k}"), e))?;
        let value = rules::parse_attribute_value(&key, v)
            .map_err(|e| invalid_field(&format!("attributes.{k}"), e))?;
        // An empty value removes the attribute.
        attributes.insert(key, value);
    }
    let optional = |field: &str,
                    value: &Option<String>,
                    parse: fn(&str) -> Result<String, String>|
     -> ServiceResult<Option<String>> {
        value
            .as_deref()
            .map(parse)
            .transpose()
            .map_err(|e| invalid_field(field, e))
    };
    let patch = ContactPatch {
        name: optional("name", &input.name, rules::parse_name)?,
        email: optional("email", &input.email, rules::parse_email)?,
        language: optional("language", &input.language, rules::parse_language)?,
        time_zone: optional("time_zone", &input.time_zone, rules::parse_time_zone)?,
        attributes,
        replace_attributes: false,
    };
    let mut consent = Vec::new();
    for (k, v) in &input.consent {
        let kind: ChannelKind = k
            .parse()
            .map_err(|e| invalid_field(&format!("consent.{k}"), e))?;
        let status: ConsentStatus = v
            .parse()
            .map_err(|e| invalid_field(&format!("consent.{k}"), e))?;
        consent.push((kind, status));
    }
    let mut lists = Vec::new();
    for l in &input.lists {
        lists.push(
            crate::domain::user::DisplayName::parse(l)
                .map_err(|e| invalid_field("lists", e))?
                .into_inner(),
        );
    }
    Ok(CheckedUpsert {
        phone,
        patch,
        consent,
        lists,
    })
}

/// `POST /api/v1/contacts`: creates the contact for this phone number or updates the one that
/// has it, with its consent changes (reversing an opt-out needs an admin) and lists, in one unit
/// of work. Answers the contact as it now is and whether it was created.
pub async fn upsert(
    svc: &Services,
    actor: Actor,
    role: Role,
    input: ContactUpsert,
    once: Option<IdempotencyKey>,
) -> ServiceResult<(ContactView, bool)> {
    let checked = check_upsert(&input, svc.settings.default_country)?;
    svc.write(actor, move |change| {
        let (view, created) = upsert_in(change, role, checked)?;
        // An update is answered (and replayed) as 200, a creation as the caller's 201.
        let once = once.map(|k| if created { k } else { k.answered_with(200) });
        idempotency::remember(change, once.as_ref(), "contact", &view.contact.public_id)?;
        Ok((view, created))
    })
    .await
}

fn upsert_in(
    change: &mut Change<'_>,
    role: Role,
    input: CheckedUpsert,
) -> ServiceResult<(ContactView, bool)> {
    let (contact, created) = contacts::upsert(change.conn, &input.phone, &input.patch)?;
    for (kind, status) in input.consent {
        let request = ConsentChange {
            kind,
            status,
            source: ConsentSource::Api,
            detail: String::new(),
        };
        change_consent_in(change, &contact, &request, role)?;
    }
    for name in input.lists {
        let list = lists::find_or_create(change.conn, &name)?;
        lists::add_members(change.conn, list.id, &[contact.id])?;
    }
    change.audit(
        if created {
            "contact.created"
        } else {
            "contact.updated"
        },
        "contact",
        Some(&contact.public_id),
        serde_json::json!({"phone": contact.phone.as_str()}),
    )?;
    let fresh = contacts::find(change.conn, contact.id)?
        .ok_or_else(|| ServiceError::not_found("The contact"))?;
    Ok((view_in(change.conn, fresh)?, created))
}

// ---------------------------------------------------------------------------------------------
// Consent

/// A consent change asked for by a person or a client.
#[derive(Debug, Clone)]
pub struct ConsentChange {
    pub kind: ChannelKind,
    pub status: ConsentStatus,
    pub source: ConsentSource,
    /// How it came about ("" when the source says it all).
    pub detail: String,
}

/// Changes a contact's consent with its audit entry, in the change's transaction. Reversing an
/// opt-out is `Forbidden` unless [`may_reverse_opt_out`] for `role`. True when it changed.
pub fn change_consent_in(
    change: &mut Change<'_>,
    contact: &Contact,
    request: &ConsentChange,
    role: Role,
) -> ServiceResult<bool> {
    let current = consents::status(change.conn, contact.id, request.kind)?;
    if request.status == ConsentStatus::OptedIn
        && current == Some(ConsentStatus::OptedOut)
        && !may_reverse_opt_out(role)
    {
        return Err(ServiceError::Forbidden(format!(
            "{} opted out of {} messages; only an admin may opt them back in, with their consent on record.",
            contact.display_name(),
            request.kind.label()
        )));
    }
    let changed = consents::set(
        change.conn,
        contact.id,
        request.kind,
        request.status,
        request.source,
        &request.detail,
        &change.actor.label,
    )?;
    if changed {
        audit_consent(
            change,
            contact,
            request.kind,
            request.status,
            &request.detail,
        )?;
    }
    Ok(changed)
}

/// The audit entry of a consent change made by a person or a client.
fn audit_consent(
    change: &mut Change<'_>,
    contact: &Contact,
    kind: ChannelKind,
    status: ConsentStatus,
    detail: &str,
) -> ServiceResult<()> {
    let mut details = serde_json::json!({"kind": kind.as_str(), "status": status.as_str()});
    if !detail.is_empty() {
        details["detail"] = serde_json::Value::String(detail.to_owned());
    }
    change.audit(
        "contact.consent_changed",
        "contact",
        Some(&contact.public_id),
        details,
    )
}

/// The contact page's consent change (source: the dashboard). Answers the contact and whether
/// anything changed.
pub async fn change_consent(
    svc: &Services,
    actor: Actor,
    role: Role,
    public_id: String,
    kind: ChannelKind,
    status: ConsentStatus,
) -> ServiceResult<(Contact, bool)> {
    svc.write(actor, move |change| {
        let contact = contact_or_404(change.conn, &public_id)?;
        let request = ConsentChange {
            kind,
            status,
            source: ConsentSource::Admin,
            detail: String::new(),
        };
        let changed = change_consent_in(change, &contact, &request, role)?;
        Ok((contact, changed))
    })
    .await
}

/// What a simulated reply did.
pub struct SimulatedReply {
    pub contact: Contact,
    pub channel: Channel,
    /// The reply was an opt-out or opt-in keyword.
    pub intent: Option<KeywordIntent>,
    /// An admin's opt-in keyword that opted the contact back in.
    pub reversed_opt_out: bool,
}

/// The sandbox's "simulate a customer reply": records an inbound message as if the contact had
/// written on a sandbox channel, the way a provider's webhook would. A person typed it, not the
/// customer: it may opt the contact out, but only an admin may reverse an opt-out with it (as on
/// every other path; refused before anything is recorded), and its consent change is audited as
/// that person's.
pub async fn simulate_reply(
    svc: &Services,
    actor: Actor,
    role: Role,
    public_id: String,
    channel_public_id: String,
    text: &str,
) -> ServiceResult<SimulatedReply> {
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(ServiceError::invalid(
            "empty_text",
            "Type what the customer writes.",
        ));
    }
    let (contact, channel, before) = svc
        .read(move |conn| {
            let c = contact_or_404(conn, &public_id)?;
            let ch = channels::find_by_public_id(conn, &channel_public_id)?
                .ok_or_else(|| ServiceError::not_found("This channel"))?;
            let before = consents::status(conn, c.id, ch.kind)?;
            Ok((c, ch, before))
        })
        .await?;
    let Ok(Adapter::Sandbox(sandbox)) = svc.channels.adapter(&channel) else {
        return Err(ServiceError::Forbidden(
            "Replies can only be simulated on sandbox channels.".into(),
        ));
    };
    let intent = keyword_intent(&text);
    let reverses_opt_out = intent == Some(KeywordIntent::OptIn)
        && !keyword_may_apply(ConsentStatus::OptedIn, before, true);
    if reverses_opt_out && !may_reverse_opt_out(role) {
        return Err(ServiceError::Forbidden(format!(
            "{} opted out of {} messages. A simulated \"{}\" does not opt them back in: only an admin may, with their consent on record.",
            contact.display_name(),
            channel.kind.label(),
            text.to_uppercase()
        )));
    }
    let event = sandbox
        .simulate_reply(contact.phone.clone(), &text)
        .await
        .map_err(ServiceError::internal)?;
    let event = event.cleaned();

    // The reply applied as the provider's webhook would be, and what it did to consent in the
    // audit log with who typed it: one unit of work.
    let kind = channel.kind;
    let contact_id = contact.public_id.clone();
    let detail = format!(
        "simulated reply \"{}\" on {}",
        text.to_uppercase(),
        channel.name
    );
    let on = channel.clone();
    let (reversed, hub_events) = svc
        .write(actor, move |change| {
            let mut applied = events::Applied::default();
            let hub_events = events::apply_in(change.conn, &on, &event, &mut applied)?;
            let c = contact_or_404(change.conn, &contact_id)?;
            if reverses_opt_out {
                // The keyword itself did not apply (a simulated START never does): the admin
                // opts the contact back in, as on the contact page.
                let request = ConsentChange {
                    kind,
                    status: ConsentStatus::OptedIn,
                    source: ConsentSource::Admin,
                    detail,
                };
                let reversed = change_consent_in(change, &c, &request, role)?;
                return Ok((reversed, hub_events));
            }
            let after = consents::status(change.conn, c.id, kind)?;
            if after != before
                && let Some(status) = after
            {
                audit_consent(change, &c, kind, status, &detail)?;
            }
            Ok((false, hub_events))
        })
        .await?;
    for e in hub_events {
        svc.hub.publish(e);
    }
    if reversed {
        svc.hub.publish(HubEvent::Consent {
            contact_id: contact.id,
            kind: kind.as_str().to_owned(),
            status: ConsentStatus::OptedIn.as_str().to_owned(),
        });
    }
    Ok(SimulatedReply {
        contact,
        channel,
        intent,
        reversed_opt_out: reverses_opt_out,
    })
}

// ---------------------------------------------------------------------------------------------
// Lists and bulk actions

/// Adds the contact to the list; answers both.
pub async fn add_to_list(
    svc: &Services,
    actor: Actor,
    public_id: String,
    list_public_id: String,
) -> ServiceResult<(Contact, List)> {
    svc.write(actor, move |change| {
        let contact = contact_or_404(change.conn, &public_id)?;
        let list = list_or_404(change.conn, &list_public_id)?;
        // Not deleted meanwhile (a membership of a contact being deleted would fail).
        if contacts::lock_existing(change.conn, &[contact.id])?.is_empty() {
            return Err(ServiceError::not_found("This contact"));
        }
        lists::add_members(change.conn, list.id, &[contact.id])?;
        Ok((contact, list))
    })
    .await
}

/// Takes the contact out of the list; answers both.
pub async fn remove_from_list(
    svc: &Services,
    actor: Actor,
    public_id: String,
    list_public_id: String,
) -> ServiceResult<(Contact, List)> {
    svc.write(actor, move |change| {
        let contact = contact_or_404(change.conn, &public_id)?;
        let list = list_or_404(change.conn, &list_public_id)?;
        lists::remove_members(change.conn, list.id, &[contact.id])?;
        Ok((contact, list))
    })
    .await
}

/// What a bulk action does to each contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    AddToList,
    RemoveFromList,
    Delete,
}

impl BulkAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "add_to_list" => Some(BulkAction::AddToList),
            "remove_from_list" => Some(BulkAction::RemoveFromList),
            "delete" => Some(BulkAction::Delete),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::AddToList => "add_to_list",
            BulkAction::RemoveFromList => "remove_from_list",
            BulkAction::Delete => "delete",
        }
    }
}

/// Which contacts a bulk action is for.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These contacts (public ids; those no longer there are skipped).
    Chosen(Vec<String>),
    /// Every contact matching the filter.
    AllMatching,
}

#[derive(Debug, Clone)]
pub struct BulkRequest {
    pub action: BulkAction,
    pub selection: Selection,
    /// The page's filters (checked whatever the selection).
    pub filter: ContactFilter,
    /// The list to add to or remove from (public id).
    pub target_list: String,
}

/// What a bulk action did.
pub struct BulkOutcome {
    pub action: BulkAction,
    /// How many contacts were added, removed or deleted.
    pub affected: usize,
    pub list: Option<List>,
}

/// Applies a bulk action. Chosen contacts are one unit of work. Every matching contact is
/// walked by keyset a thousand at a time, one unit of work each (so a million contacts neither
/// sit in memory nor hold the database for long); the action's audit entry, with the total,
/// commits with the last step.
pub async fn bulk(
    svc: &Services,
    actor: Actor,
    request: BulkRequest,
) -> ServiceResult<BulkOutcome> {
    svc.db.run(move |conn| bulk_in(conn, &actor, request)).await
}

fn bulk_in(
    conn: &mut DbConnection,
    actor: &Actor,
    request: BulkRequest,
) -> ServiceResult<BulkOutcome> {
    let filter = request.filter.resolve(conn)?;
    let action = request.action;
    let list = match action {
        BulkAction::Delete => None,
        _ => Some(
            lists::find_by_public_id(conn, &request.target_list)?
                .ok_or_else(|| ServiceError::invalid("no_list", "Choose a list."))?,
        ),
    };
    let apply = |conn: &mut DbConnection, batch: &[i64]| -> ServiceResult<usize> {
        Ok(match (&list, action) {
            (Some(l), BulkAction::AddToList) => {
                let existing = contacts::lock_existing(conn, batch)?;
                lists::add_members(conn, l.id, &existing)?
            }
            (Some(l), _) => lists::remove_members(conn, l.id, batch)?,
            (None, _) => contacts::delete(conn, batch)?,
        })
    };
    let audit = |change: &mut Change<'_>, affected: usize| {
        change.audit(
            &format!("contacts.bulk_{}", action.as_str()),
            "contacts",
            None,
            serde_json::json!({"count": affected, "list": list.as_ref().map(|l| l.name.clone())}),
        )
    };
    let mut affected = 0usize;
    match request.selection {
        Selection::Chosen(ids) => {
            super::write(conn, actor, |change| {
                let mut chosen = Vec::new();
                for id in &ids {
                    if let Some(c) = contacts::find_by_public_id(change.conn, id)? {
                        chosen.push(c.id);
                    }
                }
                affected = apply(change.conn, &chosen)?;
                audit(change, affected)
            })?;
        }
        Selection::AllMatching => {
            let mut before = None;
            loop {
                let done = super::write(conn, actor, |change| {
                    let batch = contacts::ids_batch(change.conn, &filter, before, WALK_BATCH)?;
                    affected += apply(change.conn, &batch)?;
                    // Deleting shifts nothing below the last id: the keyset walk stays correct.
                    before = batch.last().copied().or(before);
                    let last_step = batch.len() < WALK_BATCH as usize;
                    if last_step {
                        audit(change, affected)?;
                    }
                    Ok(last_step)
                })?;
                if done {
                    break;
                }
            }
        }
    }
    Ok(BulkOutcome {
        action,
        affected,
        list,
    })
}

// ---------------------------------------------------------------------------------------------
// Export

/// What an export needs before it streams: the storage filter and every attribute key (a
/// column each).
pub async fn export_plan(
    svc: &Services,
    filter: ContactFilter,
) -> ServiceResult<(contacts::ContactFilter, Vec<String>)> {
    svc.read(move |conn| Ok((filter.resolve(conn)?, contacts::attribute_keys(conn)?)))
        .await
}

/// Walks every contact matching `filter`, newest first, [`WALK_BATCH`] at a time, handing each
/// batch to `each` with the kinds of channel each contact opted out of; stops when `each`
/// answers false. Blocking (a streamed download's producer).
pub fn each_matching_batch(
    conn: &mut DbConnection,
    filter: &contacts::ContactFilter,
    mut each: impl FnMut(&[Contact], &HashMap<i64, Vec<ChannelKind>>) -> bool,
) -> ServiceResult<()> {
    let mut before = None;
    loop {
        let batch = contacts::rows_batch(conn, filter, before, WALK_BATCH)?;
        let Some(last) = batch.last().map(|c| c.id) else {
            return Ok(());
        };
        let ids: Vec<i64> = batch.iter().map(|c| c.id).collect();
        let mut opted: HashMap<i64, Vec<ChannelKind>> = HashMap::new();
        for (id, kind) in consents::opted_out_kinds(conn, &ids)? {
            if let Ok(kind) = kind.parse::<ChannelKind>() {
                opted.entry(id).or_default().push(kind);
            }
        }
        if !each(&batch, &opted) {
            return Ok(());
        }
        before = Some(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::audit_entries_by as entries;
    use crate::service::{failpoint, testing, write};

    fn new_contact(conn: &mut DbConnection, phone: &str) -> Contact {
        let phone = E164::parse(phone, None).expect("phone");
        contacts::upsert(conn, &phone, &ContactPatch::default())
            .expect("contact")
            .0
    }

    #[test]
    fn a_consent_change_and_its_audit_entry_roll_back_together() {
        let (_dir, db) = testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let contact = new_contact(&mut conn, "+12015550123");
        let request = ConsentChange {
            kind: ChannelKind::Sms,
            status: ConsentStatus::OptedOut,
            source: ConsentSource::Admin,
            detail: String::new(),
        };

        let failing = Actor::system("contacts: consent change failing after its audit entry");
        failpoint::fail_after_audit(&failing.label);
        let err = write(&mut conn, &failing, |change| {
            change_consent_in(change, &contact, &request, Role::Admin)
        })
        .unwrap_err();
        assert!(matches!(err, ServiceError::Internal(_)), "{err:?}");
        assert_eq!(entries(&mut conn, &failing.label), 0, "no audit entry");
        assert_eq!(
            consents::status(&mut conn, contact.id, ChannelKind::Sms).expect("status"),
            None,
            "no consent change"
        );

        // The same change by an actor without the fault commits both.
        let kept = Actor::system("contacts: consent change kept");
        let changed = write(&mut conn, &kept, |change| {
            change_consent_in(change, &contact, &request, Role::Admin)
        })
        .expect("committed");
        assert!(changed);
        assert_eq!(entries(&mut conn, &kept.label), 1);
        assert_eq!(
            consents::status(&mut conn, contact.id, ChannelKind::Sms).expect("status"),
            Some(ConsentStatus::OptedOut)
        );
    }

    #[test]
    fn an_update_and_its_audit_entry_roll_back_together() {
        let (_dir, db) = testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let contact = new_contact(&mut conn, "+12015550124");
        let patch = ContactPatch {
            name: Some("Ada Lovelace".into()),
            ..ContactPatch::default()
        };
        let failing = Actor::system("contacts: update failing after its audit entry");
        failpoint::fail_after_audit(&failing.label);
        write(&mut conn, &failing, |change| {
            update_in(change, &contact.public_id, &patch)
        })
        .unwrap_err();
        assert_eq!(entries(&mut conn, &failing.label), 0, "no audit entry");
        let stored = contacts::find(&mut conn, contact.id)
            .expect("find")
            .expect("still there");
        assert_eq!(stored.name, "", "the update rolled back");
    }

    #[test]
    fn only_an_admin_reverses_an_opt_out() {
        let (_dir, db) = testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let contact = new_contact(&mut conn, "+12015550125");
        let actor = Actor::system("contacts: opt-out reversal");
        let mut request = ConsentChange {
            kind: ChannelKind::Whatsapp,
            status: ConsentStatus::OptedOut,
            source: ConsentSource::Admin,
            detail: String::new(),
        };
        write(&mut conn, &actor, |change| {
            change_consent_in(change, &contact, &request, Role::SupportLead)
        })
        .expect("anyone may opt out");
        request.status = ConsentStatus::OptedIn;
        let err = write(&mut conn, &actor, |change| {
            change_consent_in(change, &contact, &request, Role::SupportLead)
        })
        .unwrap_err();
        assert!(matches!(err, ServiceError::Forbidden(_)), "{err:?}");
        assert!(
            write(&mut conn, &actor, |change| {
                change_consent_in(change, &contact, &request, Role::Admin)
            })
            .expect("an admin may")
        );
        assert_eq!(entries(&mut conn, &actor.label), 2);
    }

    #[test]
    fn filters_read_like_query_strings() {
        let f = ContactFilter {
            q: "ada lovelace".into(),
            opted_out: "sms".into(),
            ..ContactFilter::default()
        };
        assert_eq!(f.query(), "q=ada+lovelace&opted_out=sms");
        assert!(f.is_active());
        assert_eq!(f.opted_out_kind(), Ok(Some(ChannelKind::Sms)));
        assert!(!ContactFilter::default().is_active());
        let bad = ContactFilter {
            opted_out: "fax".into(),
            ..ContactFilter::default()
        };
        assert!(bad.opted_out_kind().is_err());
    }
}
