//! Contacts: the searchable list with bulk actions, the contact page (fields, attributes,
//! lists, consent, windows, conversation), and the streamed CSV export.

use std::collections::{BTreeMap, HashMap};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use crate::channels::Adapter;
use crate::dispatch::events;
use crate::domain::audit::Actor;
use crate::domain::channel::{ChannelKind, Provider};
use crate::domain::consent::{
    ConsentSource, ConsentStatus, KeywordIntent, keyword_intent, keyword_may_apply,
};
use crate::domain::contact::{self as rules, Attributes};
use crate::domain::message::MessageStatus;
use crate::domain::phone::E164;
use crate::domain::role::{Permission, Role};
use crate::domain::window::{self, WindowState};
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::channels::{self, Channel};
use crate::storage::contacts::{self, Contact, ContactFilter, ContactPatch, Cursor};
use crate::storage::conversations::{self, TimelineItem};
use crate::storage::lists::{self, List};
use crate::storage::{DbConnection, audit, consents, write_transaction};
use crate::web::chrome::Chrome;
use crate::web::download::{csv_download, csv_rows};
use crate::web::events::{MessageStatusView, WindowBadge};
use crate::web::format;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{FieldErrors, render, render_with_status};

pub const PAGE_SIZE: i64 = 50;

/// The contact with this public id, or a 404 that says so.
pub fn contact_or_404(conn: &mut DbConnection, public_id: &str) -> Result<Contact, AppError> {
    contacts::find_by_public_id(conn, public_id)?.ok_or_else(|| AppError::not_found("This contact"))
}

/// The list with this public id, or a 404 that says so.
pub fn list_or_404(conn: &mut DbConnection, public_id: &str) -> Result<List, AppError> {
    lists::find_by_public_id(conn, public_id)?.ok_or_else(|| AppError::not_found("This list"))
}

/// The filters of the contacts page, as they travel in query strings.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FilterQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub list: String,
    #[serde(default)]
    pub opted_out: String,
    #[serde(default)]
    pub language: String,
}

impl FilterQuery {
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

    /// The storage filter, resolving the list's public id.
    pub fn resolve(&self, conn: &mut DbConnection) -> Result<ContactFilter, AppError> {
        let list_id = match self.list.trim() {
            "" => None,
            id => Some(list_or_404(conn, id)?.id),
        };
        let opted_out = match self.opted_out.trim() {
            "" => None,
            k => Some(k.parse::<ChannelKind>().map_err(AppError::BadRequest)?),
        };
        Ok(ContactFilter {
            q: Some(self.q.trim().to_owned()).filter(|q| !q.is_empty()),
            list_id,
            opted_out,
            language: Some(self.language.trim().to_owned()).filter(|l| !l.is_empty()),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(flatten)]
    filter: FilterQuery,
    before: Option<i64>,
    after: Option<i64>,
}

pub struct Row {
    pub contact: Contact,
    pub opted_out: Vec<&'static str>,
    pub updated: String,
    /// The window on each enabled WhatsApp and Viber channel.
    pub windows: Vec<(Channel, WindowBadge)>,
}

#[derive(Template)]
#[template(path = "contacts/index.html")]
struct ContactsPage {
    chrome: Chrome,
    results: Results,
    lists: Vec<List>,
    can_import: bool,
    total_contacts: i64,
}

#[derive(Template)]
#[template(path = "contacts/_results.html")]
struct Results {
    rows: Vec<Row>,
    /// Enabled WhatsApp and Viber channels (a window column each row).
    window_channels: Vec<Channel>,
    filter: FilterQuery,
    matching: i64,
    newer: Option<i64>,
    older: Option<i64>,
    lists: Vec<List>,
    csrf: String,
    list_name: Option<String>,
}

impl Results {
    /// The live events' address for the contacts on this page.
    fn live_url(&self) -> String {
        let ids: Vec<&str> = self
            .rows
            .iter()
            .map(|r| r.contact.public_id.as_str())
            .collect();
        format!("/events?contacts={}", ids.join(","))
    }

    fn count_label(&self) -> String {
        let n = thousands(self.matching);
        match (self.matching, self.filter.is_active()) {
            (1, true) => "1 contact matches".into(),
            (_, true) => format!("{n} contacts match"),
            (1, false) => "1 contact".into(),
            (_, false) => format!("{n} contacts"),
        }
    }
}

/// 1284 -> "1,284".
pub fn thousands(n: impl std::borrow::Borrow<i64>) -> String {
    let n = *n.borrow();
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn kind_label(kind: &str) -> &'static str {
    kind.parse::<ChannelKind>()
        .map(ChannelKind::label)
        .unwrap_or("?")
}

pub async fn index(
    req: HttpRequest,
    auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let csrf = chrome.csrf.clone();
    let filter_q = query.filter.clone();
    let cursor = match (query.before, query.after) {
        (Some(b), _) => Cursor::Before(b),
        (None, Some(a)) => Cursor::After(a),
        _ => Cursor::First,
    };
    let (rows, more, matching, all_lists, total, list_name, window_channels) = state
        .db
        .run(move |conn| {
            let filter = filter_q.resolve(conn)?;
            let (page, more) = contacts::page(conn, &filter, cursor, PAGE_SIZE)?;
            let ids: Vec<i64> = page.iter().map(|c| c.id).collect();
            let mut opted: HashMap<i64, Vec<&'static str>> = HashMap::new();
            for (id, kind) in consents::opted_out_kinds(conn, &ids)? {
                opted.entry(id).or_default().push(kind_label(&kind));
            }
            let matching = contacts::count(conn, &filter)?;
            let total = if filter.is_empty() {
                matching
            } else {
                contacts::count(conn, &ContactFilter::default())?
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
            let rows: Vec<Row> = page
                .into_iter()
                .map(|c| Row {
                    opted_out: opted.remove(&c.id).unwrap_or_default(),
                    updated: format::ago(Some(&c.updated_at)),
                    windows: window_channels
                        .iter()
                        .map(|ch| {
                            let last = windows
                                .iter()
                                .find(|(contact, channel, _)| *contact == c.id && *channel == ch.id)
                                .map(|(_, _, at)| at.and_utc());
                            let badge = WindowBadge::new(window::state(ch.kind, last, now), now);
                            (ch.clone(), badge)
                        })
                        .collect(),
                    contact: c,
                })
                .collect();
            Ok::<_, AppError>((
                rows,
                more,
                matching,
                lists::all(conn)?,
                total,
                list_name,
                window_channels,
            ))
        })
        .await?;
    let (newer, older) = match cursor {
        Cursor::First => (
            None,
            more.then(|| rows.last().map(|r| r.contact.id)).flatten(),
        ),
        Cursor::Before(_) => (
            rows.first().map(|r| r.contact.id),
            more.then(|| rows.last().map(|r| r.contact.id)).flatten(),
        ),
        Cursor::After(_) => (
            more.then(|| rows.first().map(|r| r.contact.id)).flatten(),
            rows.last().map(|r| r.contact.id),
        ),
    };
    let results = Results {
        rows,
        window_channels,
        filter: query.filter,
        matching,
        newer,
        older,
        lists: all_lists.clone(),
        csrf,
        list_name,
    };
    // The search box and pager swap only the results.
    if crate::web::htmx_targets(&req, "contacts-results") {
        return render(&results);
    }
    render(&ContactsPage {
        chrome,
        results,
        lists: all_lists,
        can_import: auth.principal.role().can(Permission::ImportContacts),
        total_contacts: total,
    })
}

/// The contact form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct ContactForm {
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub time_zone: String,
}

/// Attribute rows of a form: `attr_key` / `attr_value` pairs in order, parsed from the raw body
/// (a form may repeat them).
fn attribute_rows(pairs: &[(String, String)]) -> Vec<(String, String)> {
    let keys = pairs
        .iter()
        .filter(|(k, _)| k == "attr_key")
        .map(|(_, v)| v.clone());
    let values = pairs
        .iter()
        .filter(|(k, _)| k == "attr_value")
        .map(|(_, v)| v.clone());
    keys.zip(values)
        .filter(|(k, v)| !k.trim().is_empty() || !v.trim().is_empty())
        .collect()
}

/// The first value of a form field (empty when absent).
pub(crate) fn field_of(pairs: &[(String, String)], name: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn form_from(pairs: &[(String, String)]) -> ContactForm {
    ContactForm {
        phone: field_of(pairs, "phone"),
        name: field_of(pairs, "name"),
        email: field_of(pairs, "email"),
        language: field_of(pairs, "language"),
        time_zone: field_of(pairs, "time_zone"),
    }
}

/// Validates the form into a patch (and, for new contacts, the phone number).
fn parse_form(
    form: &ContactForm,
    attrs: &[(String, String)],
    country: crate::domain::phone::DefaultCountry,
    errors: &mut FieldErrors,
    need_phone: bool,
) -> (Option<E164>, ContactPatch) {
    let phone = if need_phone {
        errors.check("phone", E164::parse(&form.phone, Some(country)))
    } else {
        None
    };
    let mut patch = ContactPatch {
        name: errors.check("name", rules::parse_name(&form.name)),
        email: errors.check("email", rules::parse_email(&form.email)),
        language: errors.check("language", rules::parse_language(&form.language)),
        time_zone: errors.check("time_zone", rules::parse_time_zone(&form.time_zone)),
        attributes: Attributes::new(),
        replace_attributes: true,
    };
    let parsed = rules::parse_attributes(
        attrs
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    match parsed {
        Ok(a) => patch.attributes = a,
        Err(e) => errors.add("attributes", e),
    }
    (phone, patch)
}

#[derive(Template)]
#[template(path = "contacts/new.html")]
struct NewContactPage {
    chrome: Chrome,
    form: ContactForm,
    attributes: Vec<(String, String)>,
    errors: FieldErrors,
    default_country: String,
}

pub async fn new_form(
    _auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    render(&NewContactPage {
        chrome,
        form: ContactForm::default(),
        attributes: Vec::new(),
        errors: FieldErrors::default(),
        default_country: state.settings.default_country.code().to_owned(),
    })
}

pub async fn create(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let pairs = body.into_inner();
    let form = form_from(&pairs);
    let attrs = attribute_rows(&pairs);
    let mut errors = FieldErrors::default();
    let (phone, patch) = parse_form(
        &form,
        &attrs,
        state.settings.default_country,
        &mut errors,
        true,
    );
    let (Some(phone), true) = (phone, errors.is_empty()) else {
        return render_with_status(
            &NewContactPage {
                chrome,
                form,
                attributes: attrs,
                errors,
                default_country: state.settings.default_country.code().to_owned(),
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    };
    let actor = auth.actor();
    let (contact, created) = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                let existing = contacts::find_by_phone(conn, &phone)?;
                if let Some(c) = existing {
                    return Ok::<_, AppError>((c, false));
                }
                let (c, created) = contacts::upsert(conn, &phone, &patch)?;
                audit::record(
                    conn,
                    &actor,
                    "contact.created",
                    "contact",
                    Some(&c.public_id),
                    serde_json::json!({"phone": c.phone.as_str()}),
                )?;
                Ok((c, created))
            })
        })
        .await?;
    if created {
        session.success(format!("{} was added.", contact.display_name()));
    } else {
        session.error(format!(
            "{} already belongs to {}; here is that contact (nothing was changed).",
            contact.phone,
            contact.display_name()
        ));
    }
    Ok(redirect_response(
        &req,
        &format!("/contacts/{}", contact.public_id),
    ))
}

pub struct ChannelState {
    pub channel: Channel,
    pub window: WindowState,
    pub window_label: String,
    pub badge: WindowBadge,
    pub opted_out: bool,
}

pub struct ConsentRow {
    pub kind: ChannelKind,
    pub status: Option<ConsentStatus>,
    pub how: String,
}

impl ConsentRow {
    pub fn opted_out(&self) -> bool {
        self.status == Some(ConsentStatus::OptedOut)
    }
}

pub struct TimelineView {
    pub inbound: bool,
    /// The outbound message's public id (its status follows live).
    pub message_id: Option<String>,
    pub status_view: Option<MessageStatusView>,
    /// Failed or unknown: an admin may send it again.
    pub resendable: bool,
    pub channel: String,
    pub body: String,
    pub status: String,
    pub error: Option<String>,
    pub when: String,
}

#[derive(Template)]
#[template(path = "contacts/show.html")]
struct ContactPage {
    chrome: Chrome,
    contact: Contact,
    form: ContactForm,
    attributes: Vec<(String, String)>,
    errors: FieldErrors,
    lists: Vec<List>,
    other_lists: Vec<List>,
    consents: Vec<ConsentRow>,
    channels: Vec<ChannelState>,
    sandbox_channels: Vec<Channel>,
    timeline: TimelinePartial,
    can_edit: bool,
    can_send: bool,
    is_admin: bool,
    created: String,
}

/// Describes a window for people: "open, 23 h 12 min left", "closed, templates only".
pub fn window_label(state: WindowState) -> String {
    crate::web::events::window_label(state, Utc::now())
}

struct ContactDetails {
    contact: Contact,
    lists: Vec<List>,
    all_lists: Vec<List>,
    consents: BTreeMap<&'static str, consents::Consent>,
    channels: Vec<Channel>,
    windows: Vec<(i64, chrono::NaiveDateTime)>,
    timeline: Vec<TimelineItem>,
}

async fn load_details(state: &AppState, public_id: String) -> Result<ContactDetails, AppError> {
    state
        .db
        .run(move |conn| {
            let contact = contact_or_404(conn, &public_id)?;
            Ok::<_, AppError>(ContactDetails {
                lists: lists::of_contact(conn, contact.id)?,
                all_lists: lists::all(conn)?,
                consents: consents::of_contact(conn, contact.id)?,
                channels: channels::list(conn)?,
                windows: conversations::windows(conn, contact.id)?,
                timeline: conversations::timeline(conn, contact.id, 100)?,
                contact,
            })
        })
        .await
}

fn contact_page(
    chrome: Chrome,
    role: Role,
    d: ContactDetails,
    form: Option<ContactForm>,
    attributes: Option<Vec<(String, String)>>,
    errors: FieldErrors,
) -> ContactPage {
    let now = Utc::now();
    let names: HashMap<i64, String> = d.channels.iter().map(|c| (c.id, c.name.clone())).collect();
    let consent_rows: Vec<ConsentRow> = ChannelKind::ALL
        .iter()
        .map(|k| {
            let c = d.consents.get(k.as_str());
            ConsentRow {
                kind: *k,
                status: c.map(|c| c.status),
                how: c
                    .map(|c| {
                        let detail = if c.detail.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", c.detail)
                        };
                        format!(
                            "{} {}{detail}",
                            format::datetime(&c.changed_at),
                            c.source.label()
                        )
                    })
                    .unwrap_or_else(|| "no record".into()),
            }
        })
        .collect();
    let channels: Vec<ChannelState> = d
        .channels
        .iter()
        .filter(|c| c.is_enabled())
        .map(|c| {
            let last = d
                .windows
                .iter()
                .find(|(id, _)| *id == c.id)
                .map(|(_, at)| at.and_utc());
            let w = window::state(c.kind, last, now);
            ChannelState {
                badge: WindowBadge::new(w, now),
                window_label: window_label(w),
                window: w,
                opted_out: d
                    .consents
                    .get(c.kind.as_str())
                    .is_some_and(|x| x.status == ConsentStatus::OptedOut),
                channel: c.clone(),
            }
        })
        .collect();
    let member_ids: Vec<i64> = d.lists.iter().map(|l| l.id).collect();
    let timeline = TimelinePartial {
        contact_id: d.contact.public_id.clone(),
        items: timeline_views(d.timeline, &names),
        may_resend: role.can(Permission::ResendMessages),
    };
    let c = &d.contact;
    ContactPage {
        form: form.unwrap_or_else(|| ContactForm {
            phone: c.phone.to_string(),
            name: c.name.clone(),
            email: c.email.clone(),
            language: c.language.clone(),
            time_zone: c.time_zone.clone(),
        }),
        attributes: attributes.unwrap_or_else(|| {
            c.attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        errors,
        other_lists: d
            .all_lists
            .into_iter()
            .filter(|l| !member_ids.contains(&l.id))
            .collect(),
        lists: d.lists,
        consents: consent_rows,
        sandbox_channels: d
            .channels
            .iter()
            .filter(|c| c.provider == Provider::Sandbox && c.is_enabled())
            .cloned()
            .collect(),
        channels,
        timeline,
        can_edit: role.can(Permission::ManageContacts),
        can_send: role.can(Permission::SendMessages),
        is_admin: role == Role::Admin,
        created: format::datetime(&c.created_at),
        contact: d.contact,
        chrome,
    }
}

/// The conversation as the contact page shows it.
#[derive(Template)]
#[template(path = "contacts/_timeline.html")]
pub struct TimelinePartial {
    pub contact_id: String,
    pub items: Vec<TimelineView>,
    /// The viewer may resend failed and unknown messages (admins).
    pub may_resend: bool,
}

fn timeline_views(items: Vec<TimelineItem>, names: &HashMap<i64, String>) -> Vec<TimelineView> {
    items
        .into_iter()
        .map(|item| match item {
            TimelineItem::Inbound {
                channel_id,
                body,
                at,
            } => TimelineView {
                inbound: true,
                message_id: None,
                status_view: None,
                resendable: false,
                channel: names.get(&channel_id).cloned().unwrap_or_default(),
                body,
                status: "received".into(),
                error: None,
                when: format::datetime(&at),
            },
            TimelineItem::Outbound {
                public_id,
                channel_id,
                body,
                status,
                error,
                at,
            } => {
                let parsed = MessageStatus::parse(&status).unwrap_or(MessageStatus::Unknown);
                let view = MessageStatusView::new(parsed, None, error.as_deref());
                TimelineView {
                    inbound: false,
                    message_id: Some(public_id),
                    status_view: Some(view),
                    resendable: parsed.may_resend(),
                    channel: names.get(&channel_id).cloned().unwrap_or_default(),
                    body,
                    status,
                    error,
                    when: format::datetime(&at),
                }
            }
        })
        .collect()
}

/// `GET /contacts/{id}/timeline`: the conversation alone, for the page to refresh it live.
pub async fn timeline(
    auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let contact_id = public_id.clone();
    let (items, names) = state
        .db
        .run(move |conn| {
            let contact = contact_or_404(conn, &public_id)?;
            let names: HashMap<i64, String> = channels::list(conn)?
                .into_iter()
                .map(|c| (c.id, c.name))
                .collect();
            Ok::<_, AppError>((conversations::timeline(conn, contact.id, 100)?, names))
        })
        .await?;
    render(&TimelinePartial {
        contact_id,
        items: timeline_views(items, &names),
        may_resend: auth.principal.role().can(Permission::ResendMessages),
    })
}

pub async fn show(
    auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let details = load_details(&state, path.into_inner()).await?;
    render(&contact_page(
        chrome,
        auth.principal.role(),
        details,
        None,
        None,
        FieldErrors::default(),
    ))
}

pub async fn update(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    path: web::Path<String>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let pairs = body.into_inner();
    let form = form_from(&pairs);
    let attrs = attribute_rows(&pairs);
    let mut errors = FieldErrors::default();
    let (_, patch) = parse_form(
        &form,
        &attrs,
        state.settings.default_country,
        &mut errors,
        false,
    );
    if !errors.is_empty() {
        let details = load_details(&state, public_id).await?;
        return render_with_status(
            &contact_page(
                chrome,
                auth.principal.role(),
                details,
                Some(form),
                Some(attrs),
                errors,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let actor = auth.actor();
    let contact = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                let c = contact_or_404(conn, &public_id)?;
                let c = contacts::update(conn, c, &patch)?;
                audit::record(
                    conn,
                    &actor,
                    "contact.updated",
                    "contact",
                    Some(&c.public_id),
                    serde_json::json!({}),
                )?;
                Ok::<_, AppError>(c)
            })
        })
        .await?;
    session.success("Saved.");
    Ok(redirect_response(
        &req,
        &format!("/contacts/{}", contact.public_id),
    ))
}

pub async fn delete(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let actor = auth.actor();
    let contact = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                let c = contact_or_404(conn, &public_id)?;
                contacts::delete(conn, &[c.id])?;
                audit::record(
                    conn,
                    &actor,
                    "contact.deleted",
                    "contact",
                    Some(&c.public_id),
                    serde_json::json!({"phone": c.phone.as_str()}),
                )?;
                Ok::<_, AppError>(c)
            })
        })
        .await?;
    session.success(format!(
        "{} was deleted, with their conversation.",
        contact.display_name()
    ));
    Ok(redirect_response(&req, "/contacts"))
}

#[derive(Deserialize)]
pub struct ConsentForm {
    kind: String,
    status: String,
}

/// Records a consent change made in the dashboard. Anyone who may edit contacts may opt a
/// contact out; reversing an opt-out needs an admin (they answer for the proof of consent).
pub async fn set_consent(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<ConsentForm>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let kind: ChannelKind = form
        .kind
        .parse()
        .map_err(|e| AppError::invalid("invalid_kind", e))?;
    let status: ConsentStatus = form
        .status
        .parse()
        .map_err(|e| AppError::invalid("invalid_status", e))?;
    let actor = auth.actor();
    let is_admin = auth.principal.role() == Role::Admin;
    let (contact, changed) = state
        .db
        .run(move |conn| {
            change_consent(
                conn,
                &public_id,
                kind,
                status,
                ConsentSource::Admin,
                "",
                &actor,
                is_admin,
            )
        })
        .await?;
    if changed {
        let what = match status {
            ConsentStatus::OptedOut => "opted out of",
            ConsentStatus::OptedIn => "opted in to",
        };
        session.success(format!(
            "{} is now {what} {} messages.",
            contact.display_name(),
            kind.label()
        ));
    }
    Ok(redirect_response(
        &req,
        &format!("/contacts/{}", contact.public_id),
    ))
}

/// Changes consent for a contact (by public id) and audits it; shared by the page, the API and
/// simulated replies. `detail` says how it came about ("" when the source says it all).
#[allow(clippy::too_many_arguments)]
pub fn change_consent(
    conn: &mut DbConnection,
    public_id: &str,
    kind: ChannelKind,
    status: ConsentStatus,
    source: ConsentSource,
    detail: &str,
    actor: &Actor,
    may_reverse_opt_out: bool,
) -> Result<(Contact, bool), AppError> {
    write_transaction(conn, |conn| {
        let c = contact_or_404(conn, public_id)?;
        let current = consents::status(conn, c.id, kind)?;
        if status == ConsentStatus::OptedIn
            && current == Some(ConsentStatus::OptedOut)
            && !may_reverse_opt_out
        {
            return Err(AppError::Refused(format!(
                "{} opted out of {} messages; only an admin may opt them back in, with their consent on record.",
                c.display_name(),
                kind.label()
            )));
        }
        let changed = consents::set(conn, c.id, kind, status, source, detail, &actor.label)?;
        if changed {
            audit_consent(conn, actor, &c, kind, status, detail)?;
        }
        Ok((c, changed))
    })
}

/// The audit entry of a consent change made by a person or a client.
fn audit_consent(
    conn: &mut DbConnection,
    actor: &Actor,
    contact: &Contact,
    kind: ChannelKind,
    status: ConsentStatus,
    detail: &str,
) -> diesel::QueryResult<()> {
    let mut details = serde_json::json!({"kind": kind.as_str(), "status": status.as_str()});
    if !detail.is_empty() {
        details["detail"] = serde_json::Value::String(detail.to_owned());
    }
    audit::record(
        conn,
        actor,
        "contact.consent_changed",
        "contact",
        Some(&contact.public_id),
        details,
    )
    .map(drop)
}

#[derive(Deserialize)]
pub struct AddToListForm {
    list: String,
}

pub async fn add_to_list(
    req: HttpRequest,
    _auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<AddToListForm>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let list_public = form.list.clone();
    let (contact, list) = state
        .db
        .run(move |conn| {
            let c = contact_or_404(conn, &public_id)?;
            let l = list_or_404(conn, &list_public)?;
            write_transaction(conn, |conn| lists::add_members(conn, l.id, &[c.id]))?;
            Ok::<_, AppError>((c, l))
        })
        .await?;
    session.success(format!("Added to {}.", list.name));
    Ok(redirect_response(
        &req,
        &format!("/contacts/{}", contact.public_id),
    ))
}

pub async fn remove_from_list(
    req: HttpRequest,
    _auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (public_id, list_public) = path.into_inner();
    let (contact, list) = state
        .db
        .run(move |conn| {
            let c = contact_or_404(conn, &public_id)?;
            let l = list_or_404(conn, &list_public)?;
            write_transaction(conn, |conn| lists::remove_members(conn, l.id, &[c.id]))?;
            Ok::<_, AppError>((c, l))
        })
        .await?;
    session.success(format!("Removed from {}.", list.name));
    Ok(redirect_response(
        &req,
        &format!("/contacts/{}", contact.public_id),
    ))
}

#[derive(Deserialize)]
pub struct SimulateForm {
    channel: String,
    text: String,
}

/// The sandbox's "simulate a customer reply": records an inbound message as if the contact had
/// written on a sandbox channel, so a newcomer can see the window open (and STOP work). A
/// person typed it, not the customer: it may opt the contact out, but only an admin may
/// reverse an opt-out with it (as on every other path), and that is audited.
pub async fn simulate_reply(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<SimulateForm>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let text = form.text.trim().to_owned();
    if text.is_empty() {
        return Err(AppError::invalid(
            "empty_text",
            "Type what the customer writes.",
        ));
    }
    let channel_public = form.channel.clone();
    let (contact, channel, before) = state
        .db
        .run(move |conn| {
            let c = contact_or_404(conn, &public_id)?;
            let ch = channels::find_by_public_id(conn, &channel_public)?
                .ok_or_else(|| AppError::not_found("This channel"))?;
            let before = consents::status(conn, c.id, ch.kind)?;
            Ok::<_, AppError>((c, ch, before))
        })
        .await?;
    // The reply goes the way a provider's webhook would: the sandbox adapter makes the event,
    // and the same code that applies webhooks applies it.
    let Ok(Adapter::Sandbox(sandbox)) = state.channels.adapter(&channel) else {
        return Err(AppError::Refused(
            "Replies can only be simulated on sandbox channels.".into(),
        ));
    };
    let intent = keyword_intent(&text);
    let reverses_opt_out = intent == Some(KeywordIntent::OptIn)
        && !keyword_may_apply(ConsentStatus::OptedIn, before, true);
    let is_admin = auth.principal.role() == Role::Admin;
    if reverses_opt_out && !is_admin {
        // Refused before anything is recorded.
        return Err(AppError::Refused(format!(
            "{} opted out of {} messages. A simulated \"{}\" does not opt them back in: only an admin may, with their consent on record.",
            contact.display_name(),
            channel.kind.label(),
            text.to_uppercase()
        )));
    }
    let event = sandbox
        .simulate_reply(contact.phone.clone(), &text)
        .await
        .map_err(AppError::internal)?;
    events::apply(&state.db, &state.hub, &channel, vec![event]).await?;

    // What the reply did to consent, in the audit log with who typed it.
    let actor = auth.actor();
    let (kind, contact_id) = (channel.kind, contact.public_id.clone());
    let detail = format!(
        "simulated reply \"{}\" on {}",
        text.to_uppercase(),
        channel.name
    );
    let reversed = state
        .db
        .run(move |conn| {
            if reverses_opt_out {
                // The keyword itself did not apply (a simulated START never does): the admin
                // opts the contact back in, as on the contact page.
                let (_, changed) = change_consent(
                    conn,
                    &contact_id,
                    kind,
                    ConsentStatus::OptedIn,
                    ConsentSource::Admin,
                    &detail,
                    &actor,
                    true,
                )?;
                return Ok::<_, AppError>(changed);
            }
            let c = contact_or_404(conn, &contact_id)?;
            let after = consents::status(conn, c.id, kind)?;
            if after != before
                && let Some(status) = after
            {
                write_transaction(conn, |conn| {
                    audit_consent(conn, &actor, &c, kind, status, &detail)
                })?;
            }
            Ok(false)
        })
        .await?;
    if reversed {
        state.hub.publish(crate::dispatch::hub::HubEvent::Consent {
            contact_id: contact.id,
            kind: channel.kind.as_str().to_owned(),
            status: ConsentStatus::OptedIn.as_str().to_owned(),
        });
    }

    let mut msg = format!("{} replied on {}.", contact.display_name(), channel.name);
    match intent {
        Some(KeywordIntent::OptOut) => msg.push_str(&format!(
            " That is an opt-out keyword: no more {} messages go to them.",
            channel.kind.label()
        )),
        Some(KeywordIntent::OptIn) if reverses_opt_out => msg.push_str(&format!(
            " That is an opt-in keyword: as an admin you opted them back in to {} messages (recorded in the audit log).",
            channel.kind.label()
        )),
        Some(KeywordIntent::OptIn) => msg.push_str(&format!(
            " That is an opt-in keyword: {} messages may go to them again.",
            channel.kind.label()
        )),
        None if window::has_window(channel.kind) => msg.push_str(" The 24-hour window is open."),
        None => {}
    }
    session.success(msg);
    Ok(redirect_response(
        &req,
        &format!("/contacts/{}", contact.public_id),
    ))
}

/// The bulk-action form: an action, the selected contacts (`ids`, repeated) or every contact
/// matching the filters (`scope=all`).
pub async fn bulk(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let pairs = body.into_inner();
    let action = field_of(&pairs, "action");
    let scope_all = field_of(&pairs, "scope") == "all";
    let list_public = field_of(&pairs, "target_list");
    let filter = FilterQuery {
        q: field_of(&pairs, "q"),
        list: field_of(&pairs, "list"),
        opted_out: field_of(&pairs, "opted_out"),
        language: field_of(&pairs, "language"),
    };
    let back = format!("/contacts?{}", filter.query());
    let ids: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v.clone())
        .collect();
    if !scope_all && ids.is_empty() {
        session.error("Select at least one contact, or choose all matching contacts.");
        return Ok(redirect_response(&req, &back));
    }
    if !matches!(
        action.as_str(),
        "add_to_list" | "remove_from_list" | "delete"
    ) {
        session.error("Choose what to do with the selected contacts.");
        return Ok(redirect_response(&req, &back));
    }
    let actor = auth.actor();
    let message = state
        .db
        .run(move |conn| {
            let contact_filter = filter.resolve(conn)?;
            let target = if action == "delete" {
                None
            } else {
                Some(lists::find_by_public_id(conn, &list_public)?.ok_or_else(|| AppError::invalid("no_list", "Choose a list."))?)
            };
            // Walk the selection in batches, so "all 800,000 matching" works in bounded memory.
            let mut affected = 0usize;
            let mut apply = |conn: &mut DbConnection, batch: &[i64]| -> Result<(), AppError> {
                affected += match (&target, action.as_str()) {
                    (Some(l), "add_to_list") => lists::add_members(conn, l.id, batch)?,
                    (Some(l), _) => lists::remove_members(conn, l.id, batch)?,
                    (None, _) => contacts::delete(conn, batch)?,
                };
                Ok(())
            };
            if scope_all {
                let mut before = None;
                loop {
                    let batch = contacts::ids_batch(conn, &contact_filter, before, 1000)?;
                    let Some(last) = batch.last().copied() else { break };
                    write_transaction(conn, |c| apply(c, &batch))?;
                    // Deleting shifts nothing below `last`: the keyset walk stays correct.
                    before = Some(last);
                }
            } else {
                let mut chosen = Vec::new();
                for id in &ids {
                    if let Some(c) = contacts::find_by_public_id(conn, id)? {
                        chosen.push(c.id);
                    }
                }
                write_transaction(conn, |c| apply(c, &chosen))?;
            }
            audit::record(
                conn,
                &actor,
                &format!("contacts.bulk_{action}"),
                "contacts",
                None,
                serde_json::json!({"count": affected, "list": target.as_ref().map(|l| l.name.clone())}),
            )?;
            Ok::<_, AppError>(match (action.as_str(), target) {
                ("add_to_list", Some(l)) => format!("Added {} contacts to {}.", thousands(affected as i64), l.name),
                ("remove_from_list", Some(l)) => format!("Removed {} contacts from {}.", thousands(affected as i64), l.name),
                _ => format!("Deleted {} contacts.", thousands(affected as i64)),
            })
        })
        .await?;
    session.success(message);
    Ok(redirect_response(&req, &back))
}

/// `GET /contacts/export.csv`: every contact matching the filters, streamed a thousand rows at
/// a time (never the whole list in memory).
pub async fn export(
    _auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    query: web::Query<FilterQuery>,
) -> Result<HttpResponse, AppError> {
    let filter_q = query.into_inner();
    let (filter, keys) = state
        .db
        .run(move |conn| {
            Ok::<_, AppError>((filter_q.resolve(conn)?, contacts::attribute_keys(conn)?))
        })
        .await?;
    let file_name = format!("contacts-{}.csv", Utc::now().format("%Y%m%d-%H%M"));
    Ok(csv_download(
        state.db.clone(),
        file_name,
        move |conn, sink| {
            let mut header: Vec<String> = ["phone", "name", "email", "language", "time_zone"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            header.extend(
                ChannelKind::ALL
                    .iter()
                    .map(|k| format!("consent_{}", k.as_str())),
            );
            header.extend(["created_at".to_string(), "updated_at".to_string()]);
            header.extend(keys.iter().cloned());
            if !sink(csv_rows([header])) {
                return Ok(());
            }
            let mut before = None;
            loop {
                let batch =
                    contacts::rows_batch(conn, &filter, before, 1000).map_err(|e| e.to_string())?;
                let Some(last) = batch.last().map(|c| c.id) else {
                    return Ok(());
                };
                let ids: Vec<i64> = batch.iter().map(|c| c.id).collect();
                let mut opted: HashMap<i64, Vec<String>> = HashMap::new();
                for (id, k) in consents::opted_out_kinds(conn, &ids).map_err(|e| e.to_string())? {
                    opted.entry(id).or_default().push(k);
                }
                let rows = batch.iter().map(|c| {
                    let outs = opted.get(&c.id);
                    let mut fields: Vec<String> = vec![
                        c.phone.to_string(),
                        c.name.clone(),
                        c.email.clone(),
                        c.language.clone(),
                        c.time_zone.clone(),
                    ];
                    for k in ChannelKind::ALL {
                        let out = outs.is_some_and(|o| o.iter().any(|x| x == k.as_str()));
                        fields.push(if out {
                            "opted_out".into()
                        } else {
                            String::new()
                        });
                    }
                    fields.push(c.created_at.and_utc().to_rfc3339());
                    fields.push(c.updated_at.and_utc().to_rfc3339());
                    fields.extend(
                        keys.iter()
                            .map(|k| c.attributes.get(k).cloned().unwrap_or_default()),
                    );
                    fields
                });
                if !sink(csv_rows(rows)) {
                    return Ok(());
                }
                before = Some(last);
            }
        },
    ))
}
