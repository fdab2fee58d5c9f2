//! The send page: one message to one contact. The form follows the rules as it is filled in
//! (htmx): choosing the recipient, the channel, the template or a variable's source re-renders
//! the composer (`POST /send/compose`); typing re-renders the preview only (`POST
//! /send/preview`), so nothing being typed is replaced. The window badge and the composer
//! follow the contact live (server-sent events, see `web/events.rs`). Submitting goes through
//! the same use case as the API (`service::sends`), with an idempotency key generated into the
//! form.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use crate::domain::audit::Actor;
use crate::domain::broadcast::{local_to_utc, parse_zone};
use crate::domain::channel::ChannelKind;
use crate::domain::content::{check_free_text, free_text_limit};
use crate::domain::phone::E164;
use crate::domain::policy::{self, ContentIntent, SendContext};
use crate::domain::sms::{self, SmsInfo};
use crate::domain::template::{
    CONTACT_FIELDS, PlaceholderInfo, RenderError, VariableMapping, VariableSource, Variables,
    preview, resolve,
};
use crate::domain::window::{self, WindowState};
use crate::error::AppError;
use crate::service::ServiceError;
use crate::service::sends::{self as sending, ContentRequest, Recipient, SendRequest, TemplateRef};
use crate::startup::AppState;
use crate::storage::channels::{self, Channel};
use crate::storage::contacts::{self, Contact, ContactFilter, Cursor};
use crate::storage::templates::{self, SendableTemplate, StatusFilter, TemplateFilter};
use crate::storage::{DbConnection, conversations, messages};
use crate::web::chrome::Chrome;
use crate::web::format::{MessageStatusView, WindowBadge};
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::{is_htmx, render, render_with_status};

pub const PATH: &str = "/send";

/// The form as posted: every field by name, the last non-empty value winning (a picked
/// contact's button adds its `contact` after the form's hidden one).
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> String {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    }

    /// Like `get`, but keeps the text as typed (messages may start or end with spaces).
    fn raw(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.replace("\r\n", "\n"))
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// What the composer is asked to show: the recipient, the channel, the content.
#[derive(Debug, Clone, Default)]
struct Input {
    contact: String,
    phone: String,
    channel: String,
    mode: String,
    template: String,
    text: String,
    /// Issue 20: send later, at this date and time (`datetime-local`) in `send_zone`.
    send_at: String,
    send_zone: String,
    /// Per variable: source, contact field, fixed or fallback text, value (`None`: not posted).
    sources: BTreeMap<String, (String, String, String)>,
    values: BTreeMap<String, Option<String>>,
    /// Variables whose value is computed again from their source (all, unless the request
    /// came from typing in a value or from a live refresh).
    refresh: Refresh,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Refresh {
    #[default]
    All,
    One(String),
    None,
}

impl Input {
    fn from_fields(fields: &Fields, trigger: Option<&str>) -> Input {
        let mut input = Input {
            contact: fields.get("contact"),
            phone: fields.get("phone"),
            channel: fields.get("channel"),
            mode: fields.get("mode"),
            template: fields.get("template"),
            text: fields.raw("text").unwrap_or_default(),
            send_at: fields.get("send_at"),
            send_zone: fields.get("send_zone"),
            ..Input::default()
        };
        if fields.has("change_recipient") && trigger == Some("change_recipient") {
            input.contact.clear();
            input.phone.clear();
        }
        if trigger == Some("contact") {
            // A recipient just chosen: their channel (the one they last wrote on) is offered.
            input.channel.clear();
        }
        for (k, _) in &fields.0 {
            if let Some(name) = k.strip_prefix("source.") {
                input.sources.insert(
                    name.to_owned(),
                    (
                        fields.get(k),
                        fields.get(&format!("key.{name}")),
                        fields.raw(&format!("fallback.{name}")).unwrap_or_default(),
                    ),
                );
            }
            if let Some(name) = k.strip_prefix("value.") {
                input
                    .values
                    .insert(name.to_owned(), fields.raw(k).map(|v| v.trim().to_owned()));
            }
        }
        // The form's one box per variable: `key.X` names the contact field it comes from, or
        // is empty when the value is typed (then the typed value is the fixed text).
        for (k, _) in &fields.0 {
            if let Some(name) = k.strip_prefix("key.")
                && !input.sources.contains_key(name)
            {
                let key = fields.get(k);
                let source = if key.is_empty() {
                    (
                        "fixed".to_owned(),
                        String::new(),
                        fields.raw(&format!("value.{name}")).unwrap_or_default(),
                    )
                } else {
                    ("attribute".to_owned(), key, String::new())
                };
                input.sources.insert(name.to_owned(), source);
            }
        }
        input.refresh = match trigger {
            None => Refresh::None,
            Some(t) => match t.split_once('.') {
                Some(("source" | "key" | "fallback", name)) => Refresh::One(name.to_owned()),
                Some(("value", _)) => Refresh::None,
                _ => Refresh::All,
            },
        };
        input
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Template,
    Text,
}

pub struct ChannelChoice {
    pub channel: Channel,
    pub selected: bool,
}

pub struct TemplateChoice {
    pub public_id: String,
    pub label: String,
    pub selected: bool,
}

/// One window badge of the recipient, per WhatsApp or Viber channel.
pub struct WindowRow {
    pub channel: Channel,
    pub badge: WindowBadge,
}

pub struct VariableRow {
    pub name: String,
    pub placeholder: String,
    pub sample: String,
    /// `attribute`, `fixed` or `fallback`.
    pub source: &'static str,
    pub key: String,
    pub fallback: String,
    pub value: String,
    pub problem: Option<String>,
}

/// The preview beside the form: the message as the recipient reads it, its length, and for
/// SMS its encoding and segments.
#[derive(Template)]
#[template(path = "send/_preview.html")]
pub struct PreviewPanel {
    pub text: String,
    pub length: usize,
    pub limit: usize,
    pub sms: Option<SmsInfo>,
    pub problem: Option<String>,
    pub empty: bool,
}

#[derive(Template)]
#[template(path = "send/_compose.html")]
pub struct Compose {
    pub contact: Option<Contact>,
    /// A number typed that is not a contact yet (it becomes one when the message is sent).
    pub new_phone: Option<E164>,
    pub recipient_problem: Option<String>,
    pub windows: Vec<WindowRow>,
    pub channels: Vec<ChannelChoice>,
    pub channel: Option<Channel>,
    /// The selected channel's window for this recipient.
    pub window: Option<WindowBadge>,
    pub opted_out: Option<String>,
    pub free_text_allowed: bool,
    /// Why free text is not allowed, or what allows it.
    pub free_text_note: String,
    pub text_mode: bool,
    pub templates: Vec<TemplateChoice>,
    pub template_selected: bool,
    pub variables: Vec<VariableRow>,
    pub attribute_keys: Vec<String>,
    pub text: String,
    pub preview: PreviewPanel,
    pub can_send: bool,
    /// Send is disabled for a reason typing cannot fix (no recipient, opted out, …).
    pub send_blocked: bool,
    /// Why Send is disabled, shown beside it (empty when it is not).
    pub send_note: String,
    /// Issue 20: "Send later", kept as typed across refreshes of the form.
    pub send_at: String,
    pub send_zone: String,
}

impl Compose {
    /// The live event that carries the selected channel's window for this contact.
    fn selected_window_event(&self) -> Option<String> {
        let (c, ch) = (self.contact.as_ref()?, self.channel.as_ref()?);
        Some(format!("window-{}-{}", c.public_id, ch.public_id))
    }
}

fn source_name(s: &VariableSource) -> &'static str {
    match s {
        VariableSource::Attribute { .. } => "attribute",
        VariableSource::Fixed { .. } => "fixed",
        VariableSource::AttributeWithFallback { .. } => "fallback",
    }
}

/// The mapping for a variable: as posted, or a first guess (a named placeholder that is also a
/// contact field or attribute takes it, with the sample as fallback).
fn mapping_for(
    info: &PlaceholderInfo,
    posted: Option<&(String, String, String)>,
    keys: &[String],
) -> VariableSource {
    if let Some((source, key, text)) = posted {
        return match source.as_str() {
            "attribute" => VariableSource::Attribute { key: key.clone() },
            "fallback" => VariableSource::AttributeWithFallback {
                key: key.clone(),
                fallback: text.clone(),
            },
            _ => VariableSource::Fixed { text: text.clone() },
        };
    }
    if keys.contains(&info.name) {
        VariableSource::Attribute {
            key: info.name.clone(),
        }
    } else {
        VariableSource::Fixed {
            text: String::new(),
        }
    }
}

/// Loads what the composer shows for `input`.
fn compose(
    conn: &mut DbConnection,
    input: &Input,
    country: crate::domain::phone::DefaultCountry,
) -> Result<Compose, AppError> {
    let now = Utc::now();
    // The recipient.
    let mut recipient_problem = None;
    let mut contact = match input.contact.as_str() {
        "" => None,
        id => contacts::find_by_public_id(conn, id)?,
    };
    let mut new_phone = None;
    if contact.is_none() && !input.phone.is_empty() {
        match E164::parse(&input.phone, Some(country)) {
            Ok(phone) => match contacts::find_by_phone(conn, &phone)? {
                Some(c) => contact = Some(c),
                None => new_phone = Some(phone),
            },
            Err(e) => recipient_problem = Some(e),
        }
    }

    let all_channels: Vec<Channel> = channels::list(conn)?
        .into_iter()
        .filter(Channel::is_enabled)
        .collect();
    // The channel asked for, else the one the contact last wrote on (or was last written to
    // on), else the first.
    let last_used = match (&contact, input.channel.is_empty()) {
        (Some(c), true) => conversations::last_channel(conn, c.id)?,
        _ => None,
    };
    let selected = all_channels
        .iter()
        .find(|c| c.public_id == input.channel)
        .or_else(|| all_channels.iter().find(|c| Some(c.id) == last_used))
        .or_else(|| all_channels.first())
        .cloned();

    let windows_of_contact = match &contact {
        Some(c) => conversations::windows(conn, c.id)?,
        None => Vec::new(),
    };
    let windows: Vec<WindowRow> = if contact.is_some() || new_phone.is_some() {
        all_channels
            .iter()
            .filter(|c| window::has_window(c.kind))
            .map(|c| {
                let last = windows_of_contact
                    .iter()
                    .find(|(id, _)| *id == c.id)
                    .map(|(_, at)| at.and_utc());
                WindowRow {
                    channel: c.clone(),
                    badge: WindowBadge::new(window::state(c.kind, last, now), now),
                }
            })
            .collect()
    } else {
        Vec::new()
    };

    // What the rules allow on the selected channel.
    let ctx: Option<SendContext> = match (&selected, &contact, &new_phone) {
        (Some(ch), Some(c), _) => Some(sending::send_context(conn, c.id, ch, now)?),
        (Some(ch), None, Some(_)) => Some(SendContext {
            kind: ch.kind,
            channel_enabled: ch.is_enabled(),
            consent: None,
            window: window::state(ch.kind, None, now),
            sent_since_last_inbound: 0,
        }),
        _ => None,
    };
    let kind = selected.as_ref().map(|c| c.kind);
    let opted_out = ctx
        .filter(sending::opted_out)
        .map(|c| policy::Denial::OptedOut.message(c.kind));
    let (free_text_allowed, free_text_note) = match (&ctx, kind) {
        (Some(ctx), Some(kind)) => match policy::may_send(ctx, ContentIntent::FreeText) {
            Ok(()) => (
                true,
                match ctx.window {
                    WindowState::Open { until } => format!(
                        "The customer wrote in the last 24 hours: free text is allowed ({}).",
                        window::remaining_label(until, now)
                    ),
                    _ => format!(
                        "{} has no window: free text is always allowed.",
                        kind.label()
                    ),
                },
            ),
            Err(denial) => (false, denial.message(kind)),
        },
        (None, Some(kind)) if !window::has_window(kind) => (true, String::new()),
        _ => (false, "Choose who to send to first.".into()),
    };

    let templates_on_channel: Vec<SendableTemplate> = match &selected {
        Some(ch) => templates::sendable_list(
            conn,
            &TemplateFilter {
                channel_id: Some(ch.id),
                status: Some(StatusFilter::Sendable),
                ..TemplateFilter::default()
            },
        )?
        .into_iter()
        .map(|(_, t)| t)
        .collect(),
        None => Vec::new(),
    };
    let mode = match input.mode.as_str() {
        "text" if free_text_allowed => Mode::Text,
        "template" => Mode::Template,
        _ if free_text_allowed && (input.mode == "text" || templates_on_channel.is_empty()) => {
            Mode::Text
        }
        _ => Mode::Template,
    };
    let template = templates_on_channel
        .iter()
        .find(|t| t.public_id == input.template)
        .cloned();
    let templates: Vec<TemplateChoice> = templates_on_channel
        .iter()
        .map(|t| TemplateChoice {
            public_id: t.public_id.clone(),
            label: format!(
                "{} ({})",
                t.template.name().as_str(),
                t.template.language().as_str()
            ),
            selected: template
                .as_ref()
                .is_some_and(|s| s.public_id == t.public_id),
        })
        .collect();

    let mut attribute_keys: Vec<String> = CONTACT_FIELDS.iter().map(|s| (*s).to_owned()).collect();
    attribute_keys.push("first_name".into());
    for k in contacts::attribute_keys(conn)? {
        if !attribute_keys.contains(&k) {
            attribute_keys.push(k);
        }
    }

    // The template's variables: their sources (as posted, else as last sent, else a first
    // guess) and values.
    let mut variables = Vec::new();
    if let (Mode::Template, Some(t)) = (mode, &template) {
        let remembered = templates::variable_sources(conn, t.template_id)?;
        let mut seen: Vec<String> = Vec::new();
        for info in t.placeholders() {
            if seen.contains(&info.name) {
                continue;
            }
            seen.push(info.name.clone());
            let posted = input
                .sources
                .get(&info.name)
                .or_else(|| remembered.get(&info.name));
            let source = mapping_for(&info, posted, &attribute_keys);
            let posted = input.values.get(&info.name).cloned().flatten();
            let recompute = match &input.refresh {
                Refresh::All => true,
                Refresh::One(name) => *name == info.name,
                Refresh::None => posted.is_none(),
            };
            let unset = match &source {
                VariableSource::Fixed { text } => text.trim().is_empty(),
                VariableSource::Attribute { key } => key.is_empty(),
                VariableSource::AttributeWithFallback { .. } => false,
            };
            let (value, problem) = if recompute && unset {
                // Not chosen yet: nothing to say until the person picks a source or types.
                (String::new(), None)
            } else if recompute {
                let mapping: VariableMapping = [(info.name.clone(), source.clone())].into();
                let lookup = |key: &str| contact.as_ref().and_then(|c| c.value_of(key));
                match resolve(&mapping, &lookup) {
                    Ok(Variables::Named(mut v)) => (v.remove(&info.name).unwrap_or_default(), None),
                    Ok(Variables::Positional(_)) => (String::new(), None),
                    Err(e) => (String::new(), Some(e.to_string())),
                }
            } else {
                (posted.unwrap_or_default(), None)
            };
            let (key, fallback) = match &source {
                VariableSource::Attribute { key } => (key.clone(), String::new()),
                VariableSource::Fixed { text } => (String::new(), text.clone()),
                VariableSource::AttributeWithFallback { key, fallback } => {
                    (key.clone(), fallback.clone())
                }
            };
            variables.push(VariableRow {
                placeholder: info.placeholder.clone(),
                sample: info.sample.clone(),
                source: source_name(&source),
                name: info.name.clone(),
                key,
                fallback,
                value,
                problem,
            });
        }
    }
    let values: BTreeMap<String, String> = variables
        .iter()
        .filter(|v| !v.value.is_empty())
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    let preview_panel = preview_panel(kind, mode, template.as_ref(), &values, &input.text);
    let has_recipient = contact.is_some() || new_phone.is_some();
    // Why Send is disabled: first what the server decides, then what typing can fix (the
    // page's script lifts the latter as soon as the text or every variable has a value).
    let blocked = if !has_recipient {
        Some("Choose who to send to first.".to_owned())
    } else if selected.is_none() {
        Some("Choose a channel first.".to_owned())
    } else if let Some(o) = &opted_out {
        Some(o.clone())
    } else {
        match (mode, &template) {
            (Mode::Text, _) if !free_text_allowed => Some(free_text_note.clone()),
            (Mode::Template, None) => Some("Choose a template first.".to_owned()),
            _ => None,
        }
    };
    let missing = match mode {
        _ if blocked.is_some() => None,
        Mode::Text if input.text.trim().is_empty() => Some("Write the message first.".to_owned()),
        Mode::Text => None,
        Mode::Template => variables
            .iter()
            .find(|v| v.value.trim().is_empty())
            .map(|v| format!("Give {} a value first.", v.placeholder)),
    };
    let can_send = blocked.is_none() && missing.is_none();
    let send_note = blocked.clone().or(missing).unwrap_or_default();
    Ok(Compose {
        contact,
        new_phone,
        recipient_problem,
        windows,
        window: selected.as_ref().and_then(|ch| {
            ctx.filter(|_| window::has_window(ch.kind))
                .map(|ctx| WindowBadge::new(ctx.window, now))
        }),
        channels: all_channels
            .into_iter()
            .map(|c| ChannelChoice {
                selected: selected.as_ref().is_some_and(|s| s.id == c.id),
                channel: c,
            })
            .collect(),
        channel: selected,
        opted_out,
        free_text_allowed,
        free_text_note,
        text_mode: mode == Mode::Text,
        template_selected: template.is_some(),
        templates,
        variables,
        attribute_keys,
        text: input.text.clone(),
        preview: preview_panel,
        can_send,
        send_blocked: blocked.is_some(),
        send_note,
        send_at: input.send_at.clone(),
        send_zone: if input.send_zone.trim().is_empty() {
            "UTC".to_owned()
        } else {
            input.send_zone.clone()
        },
    })
}

fn preview_panel(
    kind: Option<ChannelKind>,
    mode: Mode,
    template: Option<&SendableTemplate>,
    values: &BTreeMap<String, String>,
    text: &str,
) -> PreviewPanel {
    let Some(kind) = kind else {
        return PreviewPanel {
            text: String::new(),
            length: 0,
            limit: 0,
            sms: None,
            problem: None,
            empty: true,
        };
    };
    let (shown, problem, limit) = match (mode, template) {
        (Mode::Text, _) => (
            text.to_owned(),
            match check_free_text(kind, text) {
                Err(crate::domain::content::TextProblem::Empty) => None,
                Err(e) => Some(e.to_string()),
                Ok(()) => None,
            },
            free_text_limit(kind),
        ),
        (Mode::Template, Some(t)) => {
            let limit = crate::domain::template::body_limit(kind);
            match t.render(&Variables::Named(values.clone())) {
                Ok(rendered) => (rendered.text, None, limit),
                Err(e) => {
                    // Shown as far as it can be filled; the missing placeholders as written.
                    // A value not given yet is no error: Send says what is missing.
                    let mut draft = t.template.to_draft();
                    draft.samples = values.clone();
                    let problem = match e {
                        RenderError::MissingVariable { .. } | RenderError::EmptyValue { .. } => {
                            None
                        }
                        e => Some(e.to_string()),
                    };
                    (preview(kind, &draft).text, problem, limit)
                }
            }
        }
        (Mode::Template, None) => (String::new(), None, 0),
    };
    PreviewPanel {
        length: shown.chars().count(),
        sms: (kind == ChannelKind::Sms && !shown.is_empty()).then(|| sms::analyse(&shown)),
        empty: shown.trim().is_empty(),
        text: shown,
        problem,
        limit,
    }
}

#[derive(Template)]
#[template(path = "send/index.html")]
struct SendPage {
    chrome: Chrome,
    compose: Compose,
    idempotency_key: String,
    result: Option<SentCard>,
    refused: Option<Refused>,
}

/// The message just queued, with its status following live.
#[derive(Template)]
#[template(path = "send/_result.html")]
pub struct SentCard {
    pub message_id: String,
    pub contact_id: String,
    pub contact_name: String,
    pub channel_name: String,
    pub status: MessageStatusView,
    pub replayed: bool,
    pub created_contact: bool,
    /// A fresh idempotency key for the next message (swapped into the form out of band).
    pub next_key: Option<String>,
    /// The emptied composer for the next message (swapped in out of band).
    pub fresh: Option<Compose>,
}

#[derive(Template)]
#[template(path = "send/_refused.html")]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

#[derive(Template)]
#[template(path = "send/_recipients.html")]
struct Recipients {
    matches: Vec<Contact>,
    new_phone: Option<E164>,
    searched: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    contact: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    phone: String,
    /// The message just sent (after a submit without JavaScript).
    #[serde(default)]
    sent: String,
}

fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub async fn page(
    _auth: Auth<perm::SendMessages>,
    state: web::Data<AppState>,
    chrome: Chrome,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner();
    let input = Input {
        contact: q.contact.trim().to_owned(),
        phone: q.phone.trim().to_owned(),
        channel: q.channel.trim().to_owned(),
        template: q.template.trim().to_owned(),
        mode: if q.template.trim().is_empty() {
            String::new()
        } else {
            "template".into()
        },
        ..Input::default()
    };
    let country = state.settings.default_country;
    let sent = q.sent.trim().to_owned();
    let (compose, result) = state
        .db
        .run(move |conn| {
            let compose = compose(conn, &input, country)?;
            let result = match sent.as_str() {
                "" => None,
                id => match messages::find_by_public_id(conn, id)? {
                    Some(m) => {
                        let contact = contacts::find(conn, m.contact_id)?;
                        let channel = channels::find(conn, m.channel_id)?;
                        Some(SentCard {
                            message_id: m.public_id.clone(),
                            contact_id: contact
                                .as_ref()
                                .map(|c| c.public_id.clone())
                                .unwrap_or_default(),
                            contact_name: contact
                                .map(|c| c.display_name().to_owned())
                                .unwrap_or_default(),
                            channel_name: channel.map(|c| c.name).unwrap_or_default(),
                            status: MessageStatusView::of(&m),
                            replayed: false,
                            created_contact: false,
                            next_key: None,
                            fresh: None,
                        })
                    }
                    None => None,
                },
            };
            Ok::<_, AppError>((compose, result))
        })
        .await?;
    render(&SendPage {
        chrome,
        compose,
        idempotency_key: new_key(),
        result,
        refused: None,
    })
}

fn trigger_name(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("HX-Trigger-Name")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `POST /send/compose`: the composer again, for the form's current values.
pub async fn compose_partial(
    req: HttpRequest,
    _auth: Auth<perm::SendMessages>,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let fields = Fields(form.into_inner());
    let input = Input::from_fields(&fields, trigger_name(&req).as_deref());
    let country = state.settings.default_country;
    let compose = state
        .db
        .run(move |conn| compose(conn, &input, country))
        .await?;
    render(&compose)
}

/// `POST /send/preview`: the preview only, while typing.
pub async fn preview_partial(
    _auth: Auth<perm::SendMessages>,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let fields = Fields(form.into_inner());
    render(&compose_as_posted(&state, &fields).await?.preview)
}

/// The composer for the values as posted, none computed again from its source.
async fn compose_as_posted(state: &AppState, fields: &Fields) -> Result<Compose, AppError> {
    let mut input = Input::from_fields(fields, None);
    input.refresh = Refresh::None;
    let country = state.settings.default_country;
    state
        .db
        .run(move |conn| compose(conn, &input, country))
        .await
}

/// `POST /send/recipients`: contacts matching what is typed, and the number itself when it is
/// a valid one nobody has yet.
pub async fn recipients(
    _auth: Auth<perm::SendMessages>,
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let fields = Fields(form.into_inner());
    let q = fields.get("search");
    let country = state.settings.default_country;
    let found = state
        .db
        .run(move |conn| {
            if q.chars().count() < 2 {
                return Ok::<_, AppError>(Recipients {
                    matches: Vec::new(),
                    new_phone: None,
                    searched: false,
                });
            }
            let filter = ContactFilter {
                q: Some(q.clone()),
                ..ContactFilter::default()
            };
            let (matches, _) = contacts::page(conn, &filter, Cursor::First, 8)?;
            let new_phone = match E164::parse(&q, Some(country)) {
                Ok(p) if contacts::find_by_phone(conn, &p)?.is_none() => Some(p),
                _ => None,
            };
            Ok(Recipients {
                matches,
                new_phone,
                searched: true,
            })
        })
        .await?;
    render(&found)
}

/// `POST /send`: checks again on the server and queues the message, once per form.
pub async fn submit(
    req: HttpRequest,
    auth: Auth<perm::SendMessages>,
    state: web::Data<AppState>,
    chrome: Chrome,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let fields = Fields(form.into_inner());
    let user_id = auth.user().map(|u| u.id).unwrap_or_default();
    let key = fields.get("idempotency_key");
    let request = request_from(&fields);
    let outcome = match (request, key.len()) {
        (Err(refused), _) => Err(refused),
        (Ok(_), 0) | (Ok(_), 101..) => Err(Refused {
            code: "invalid_form",
            message: "This form has no valid send key: reload the page and try again.".into(),
        }),
        (Ok(request), _) => {
            let scoped = format!("form:{user_id}:{key}");
            match sending::send(&state, auth.actor(), request, Some(scoped)).await {
                Ok(q) => Ok(q),
                Err(ServiceError::Invalid { code, message, .. }) => Err(Refused { code, message }),
                Err(e) => return Err(e.into()),
            }
        }
    };
    match outcome {
        Ok(q) => {
            if let Some(template_id) = q.message.template_id.filter(|_| !q.replayed) {
                remember_sources(&state, auth.actor(), template_id, &fields).await;
            }
            if is_htmx(&req) {
                // The form starts again for the next message (same recipient and channel,
                // nothing written, Send disabled), so a second click cannot send it twice.
                let input = Input {
                    contact: q.contact.public_id.clone(),
                    channel: q.channel.public_id.clone(),
                    ..Input::default()
                };
                let country = state.settings.default_country;
                let fresh = state
                    .db
                    .run(move |conn| compose(conn, &input, country))
                    .await?;
                render(&SentCard {
                    message_id: q.message.public_id.clone(),
                    contact_id: q.contact.public_id.clone(),
                    contact_name: q.contact.display_name().to_owned(),
                    channel_name: q.channel.name.clone(),
                    status: MessageStatusView::of(&q.message),
                    replayed: q.replayed,
                    created_contact: q.created_contact,
                    next_key: Some(new_key()),
                    fresh: Some(fresh),
                })
            } else {
                Ok(redirect_response(
                    &req,
                    &format!(
                        "{PATH}?contact={}&channel={}&sent={}",
                        q.contact.public_id, q.channel.public_id, q.message.public_id
                    ),
                ))
            }
        }
        Err(refused) => {
            if is_htmx(&req) {
                return render_with_status(&refused, StatusCode::UNPROCESSABLE_ENTITY);
            }
            let compose = compose_as_posted(&state, &fields).await?;
            render_with_status(
                &SendPage {
                    chrome,
                    compose,
                    idempotency_key: if key.is_empty() { new_key() } else { key },
                    result: None,
                    refused: Some(refused),
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    }
}

/// Keeps how the variables of a template just sent were filled, to offer it next time (a
/// failure here costs only that convenience).
async fn remember_sources(state: &AppState, actor: Actor, template_id: i64, fields: &Fields) {
    let sources: templates::VariableSources = Input::from_fields(fields, None)
        .sources
        .into_iter()
        .filter(|(_, (source, _, _))| !source.is_empty())
        .collect();
    if sources.is_empty() {
        return;
    }
    let stored = sending::remember_variable_sources(state, actor, template_id, sources).await;
    if let Err(e) = stored {
        tracing::warn!(error = ?e, template_id, "remembering a template's variable sources failed");
    }
}

/// The request a submitted form makes, or what is missing from it.
fn request_from(fields: &Fields) -> Result<SendRequest, Refused> {
    let recipient = match (fields.get("contact"), fields.get("phone")) {
        (c, _) if !c.is_empty() => Recipient::Contact(c),
        (_, p) if !p.is_empty() => Recipient::Phone(p),
        _ => {
            return Err(Refused {
                code: "missing_recipient",
                message: "Choose who to send to: search for a contact or type a phone number."
                    .into(),
            });
        }
    };
    let channel = fields.get("channel");
    if channel.is_empty() {
        return Err(Refused {
            code: "unknown_channel",
            message: "Choose a channel.".into(),
        });
    }
    let content = if fields.get("mode") == "text" {
        ContentRequest::Text(fields.raw("text").unwrap_or_default())
    } else {
        let template = fields.get("template");
        if template.is_empty() {
            return Err(Refused {
                code: "unknown_template",
                message: "Choose a template, or write free text where the channel allows it."
                    .into(),
            });
        }
        let values: BTreeMap<String, String> = fields
            .0
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("value.")?;
                let v = v.trim();
                (!v.is_empty()).then(|| (name.to_owned(), v.to_owned()))
            })
            .collect();
        ContentRequest::Template {
            template: TemplateRef::Id(template),
            variables: Variables::Named(values),
        }
    };
    Ok(SendRequest {
        recipient,
        channel,
        content,
        send_at: send_at_from(fields)?,
    })
}

/// Issue 20: "Send later": a date and time (`datetime-local`) read in the zone given beside
/// it (UTC when empty); nothing typed means now. Whether it is in the future and within 30
/// days is the send use case's rule.
fn send_at_from(fields: &Fields) -> Result<Option<chrono::DateTime<chrono::Utc>>, Refused> {
    let raw = fields.get("send_at");
    if raw.is_empty() {
        return Ok(None);
    }
    let local = chrono::NaiveDateTime::parse_from_str(&raw, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(&raw, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| Refused {
            code: "invalid_send_at",
            message: format!("\"{raw}\" is not a date and time: enter one like 2026-12-24T09:00."),
        })?;
    let zone = parse_zone(&fields.get("send_zone")).map_err(|message| Refused {
        code: "invalid_send_at",
        message,
    })?;
    Ok(Some(local_to_utc(local, zone)))
}
