//! Contacts: the searchable list with bulk actions, the contact page (fields, attributes,
//! lists, consent, windows, conversation), and the streamed CSV export. The use cases and the
//! filter live in `service::contacts`; these handlers parse, call and render.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use crate::domain::channel::{ChannelKind, Provider};
use crate::domain::consent::{ConsentStatus, KeywordIntent};
use crate::domain::fields::FieldProblems;
use crate::domain::message::MessageStatus;
use crate::domain::role::{Permission, Role};
use crate::domain::window::{self, WindowState};
use crate::error::AppError;
use crate::service;
use crate::service::contacts::{
    BulkAction, BulkRequest, ContactDetails, ContactFilter, ContactForm, Cursor, Selection,
};
use crate::startup::AppState;
use crate::storage::channels::Channel;
use crate::storage::contacts::Contact;
use crate::storage::conversations::TimelineItem;
use crate::storage::lists::List;
use crate::web::chrome::Chrome;
use crate::web::download::{csv_download, csv_rows, download_error};
use crate::web::format::{self, MessageStatusView, WindowBadge, field_of, thousands};
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{render, render_with_status};

pub const PAGE_SIZE: i64 = 50;

/// The filters as the page reads them: a kind of channel that is none is a bad request here
/// (the API, which has no form to come from, answers 422).
fn page_filter(filter: ContactFilter) -> Result<ContactFilter, AppError> {
    filter.opted_out_kind().map_err(AppError::BadRequest)?;
    Ok(filter)
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(flatten)]
    filter: ContactFilter,
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
    filter: ContactFilter,
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

pub async fn index(
    req: HttpRequest,
    auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let filter = page_filter(query.filter)?;
    let cursor = match (query.before, query.after) {
        (Some(b), _) => Cursor::Before(b),
        (None, Some(a)) => Cursor::After(a),
        _ => Cursor::First,
    };
    let listing = service::contacts::listing(&state, filter.clone(), cursor, PAGE_SIZE).await?;
    let now = listing.as_of;
    let window_channels = listing.window_channels;
    let rows: Vec<Row> = listing
        .rows
        .into_iter()
        .map(|r| Row {
            opted_out: r.opted_out.into_iter().map(ChannelKind::label).collect(),
            updated: format::ago(Some(&r.contact.updated_at)),
            windows: window_channels
                .iter()
                .cloned()
                .zip(r.windows)
                .map(|(ch, w)| (ch, WindowBadge::new(w, now)))
                .collect(),
            contact: r.contact,
        })
        .collect();
    let more = listing.more;
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
        filter,
        matching: listing.matching,
        newer,
        older,
        lists: listing.lists.clone(),
        csrf: chrome.csrf.clone(),
        list_name: listing.list_name,
    };
    // The search box and pager swap only the results.
    if crate::web::htmx_targets(&req, "contacts-results") {
        return render(&results);
    }
    render(&ContactsPage {
        chrome,
        results,
        lists: listing.lists,
        can_import: auth.principal.role().can(Permission::ImportContacts),
        total_contacts: listing.total,
    })
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

fn form_from(pairs: &[(String, String)]) -> ContactForm {
    ContactForm {
        phone: field_of(pairs, "phone"),
        name: field_of(pairs, "name"),
        email: field_of(pairs, "email"),
        language: field_of(pairs, "language"),
        time_zone: field_of(pairs, "time_zone"),
    }
}

#[derive(Template)]
#[template(path = "contacts/new.html")]
struct NewContactPage {
    chrome: Chrome,
    form: ContactForm,
    attributes: Vec<(String, String)>,
    errors: FieldProblems,
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
        errors: FieldProblems::default(),
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
    let outcome =
        service::contacts::create(&state, auth.actor(), form.clone(), attrs.clone()).await;
    let created = match outcome {
        Ok(created) => created,
        Err(e) => {
            let Some(errors) = e.fields().cloned() else {
                return Err(e.into());
            };
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
        }
    };
    let contact = created.contact;
    if created.created {
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
    errors: FieldProblems,
    lists: Vec<List>,
    other_lists: Vec<List>,
    consents: Vec<ConsentRow>,
    channels: Vec<ChannelState>,
    sandbox_channels: Vec<Channel>,
    /// The sandbox channel a simulated reply goes to first: the one whose window is shown
    /// first.
    simulate_default: Option<i64>,
    timeline: TimelinePartial,
    can_edit: bool,
    can_send: bool,
    is_admin: bool,
    created: String,
}

impl ContactPage {
    fn simulates_first(&self, channel: &Channel) -> bool {
        self.simulate_default == Some(channel.id)
    }
}

/// Describes a window for people: "open, 23 h 12 min left", "closed, templates only".
pub fn window_label(state: WindowState) -> String {
    crate::web::format::window_label(state, Utc::now())
}

fn contact_page(
    chrome: Chrome,
    role: Role,
    d: ContactDetails,
    form: Option<ContactForm>,
    attributes: Option<Vec<(String, String)>>,
    errors: FieldProblems,
) -> ContactPage {
    let view = d.view;
    let now = view.as_of;
    let names: HashMap<i64, String> = d
        .all_channels
        .iter()
        .map(|c| (c.id, c.name.clone()))
        .collect();
    let consent_rows: Vec<ConsentRow> = ChannelKind::ALL
        .iter()
        .map(|k| {
            let c = view.consents.get(k.as_str());
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
                    .unwrap_or_default(),
            }
        })
        .collect();
    let channels: Vec<ChannelState> = view
        .channels
        .into_iter()
        .map(|c| ChannelState {
            badge: WindowBadge::new(c.window, now),
            window_label: window_label(c.window),
            window: c.window,
            opted_out: c.opted_out,
            channel: c.channel,
        })
        .collect();
    let member_ids: Vec<i64> = view.lists.iter().map(|l| l.id).collect();
    let timeline = TimelinePartial {
        contact_id: view.contact.public_id.clone(),
        items: timeline_views(d.timeline, &names),
        may_resend: role.can(Permission::ResendMessages),
    };
    let c = &view.contact;
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
        lists: view.lists,
        consents: consent_rows,
        simulate_default: channels
            .iter()
            .map(|c| &c.channel)
            .filter(|c| c.provider == Provider::Sandbox && c.is_enabled())
            .find(|c| crate::domain::window::has_window(c.kind))
            .map(|c| c.id),
        sandbox_channels: d
            .all_channels
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
        contact: view.contact,
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
    let contact_id = path.into_inner();
    let conversation = service::contacts::conversation(&state, contact_id.clone()).await?;
    render(&TimelinePartial {
        contact_id,
        items: timeline_views(conversation.items, &conversation.channel_names),
        may_resend: auth.principal.role().can(Permission::ResendMessages),
    })
}

pub async fn show(
    auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let details = service::contacts::details(&state, path.into_inner()).await?;
    render(&contact_page(
        chrome,
        auth.principal.role(),
        details,
        None,
        None,
        FieldProblems::default(),
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
    let outcome = service::contacts::update(
        &state,
        auth.actor(),
        public_id.clone(),
        form.clone(),
        attrs.clone(),
    )
    .await;
    let contact = match outcome {
        Ok(contact) => contact,
        Err(e) => {
            let Some(errors) = e.fields().cloned() else {
                return Err(e.into());
            };
            let details = service::contacts::details(&state, public_id).await?;
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
    };
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
    let contact = service::contacts::delete(&state, auth.actor(), path.into_inner()).await?;
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

/// Records a consent change made in the dashboard (who may reverse an opt-out is the
/// service's rule).
pub async fn set_consent(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<ConsentForm>,
) -> Result<HttpResponse, AppError> {
    let kind: ChannelKind = form
        .kind
        .parse()
        .map_err(|e| AppError::invalid("invalid_kind", e))?;
    let status: ConsentStatus = form
        .status
        .parse()
        .map_err(|e| AppError::invalid("invalid_status", e))?;
    let (contact, changed) = service::contacts::change_consent(
        &state,
        auth.actor(),
        auth.principal.role(),
        path.into_inner(),
        kind,
        status,
    )
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

#[derive(Deserialize)]
pub struct AddToListForm {
    list: String,
}

pub async fn add_to_list(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<AddToListForm>,
) -> Result<HttpResponse, AppError> {
    let (contact, list) = service::contacts::add_to_list(
        &state,
        auth.actor(),
        path.into_inner(),
        form.into_inner().list,
    )
    .await?;
    session.success(format!("Added to {}.", list.name));
    Ok(redirect_response(
        &req,
        &format!("/contacts/{}", contact.public_id),
    ))
}

pub async fn remove_from_list(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (public_id, list_public) = path.into_inner();
    let (contact, list) =
        service::contacts::remove_from_list(&state, auth.actor(), public_id, list_public).await?;
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

/// The sandbox's "simulate a customer reply" (see `service::contacts::simulate_reply`).
pub async fn simulate_reply(
    req: HttpRequest,
    auth: Auth<perm::ManageContacts>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<SimulateForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let reply = service::contacts::simulate_reply(
        &state,
        auth.actor(),
        auth.principal.role(),
        path.into_inner(),
        form.channel,
        &form.text,
    )
    .await?;
    let (contact, channel) = (&reply.contact, &reply.channel);
    let mut msg = format!("{} replied on {}.", contact.display_name(), channel.name);
    match reply.intent {
        Some(KeywordIntent::OptOut) => msg.push_str(&format!(
            " That is an opt-out keyword: no more {} messages go to them.",
            channel.kind.label()
        )),
        Some(KeywordIntent::OptIn) if reply.reversed_opt_out => msg.push_str(&format!(
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
    let scope_all = field_of(&pairs, "scope") == "all";
    let filter = ContactFilter {
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
    let Some(action) = BulkAction::parse(&field_of(&pairs, "action")) else {
        session.error("Choose what to do with the selected contacts.");
        return Ok(redirect_response(&req, &back));
    };
    let request = BulkRequest {
        action,
        selection: if scope_all {
            Selection::AllMatching
        } else {
            Selection::Chosen(ids)
        },
        filter: page_filter(filter)?,
        target_list: field_of(&pairs, "target_list"),
    };
    let done = service::contacts::bulk(&state, auth.actor(), request).await?;
    let n = thousands(i64::try_from(done.affected).unwrap_or(i64::MAX));
    session.success(match (done.action, done.list) {
        (BulkAction::AddToList, Some(l)) => format!("Added {n} contacts to {}.", l.name),
        (BulkAction::RemoveFromList, Some(l)) => format!("Removed {n} contacts from {}.", l.name),
        _ => format!("Deleted {n} contacts."),
    });
    Ok(redirect_response(&req, &back))
}

/// `GET /contacts/export.csv`: every contact matching the filters, streamed a thousand rows at
/// a time (never the whole list in memory).
pub async fn export(
    _auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    query: web::Query<ContactFilter>,
) -> Result<HttpResponse, AppError> {
    let filter = page_filter(query.into_inner())?;
    let (filter, keys) = service::contacts::export_plan(&state, filter).await?;
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
            service::contacts::each_matching_batch(conn, &filter, |batch, opted| {
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
                        let out = outs.is_some_and(|o| o.contains(&k));
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
                sink(csv_rows(rows))
            })
            .map_err(|e| download_error(&e))
        },
    ))
}
