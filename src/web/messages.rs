//! Issue 18: one message's page (`/messages/{public_id}`) and the retention setting
//! (`/settings/retention`).
//!
//! The page is for everyone who may see contacts (they see messages on the contact's timeline
//! already); the raw provider payloads on it are for those who may view the send history
//! (admins), and are dropped by the service for everyone else, never merely hidden.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;
use serde::Deserialize;

use crate::domain::content::MessageContent;
use crate::domain::role::Permission;
use crate::error::AppError;
use crate::service::automations::scheduled;
use crate::service::message_detail::{self, MessageDetail, Sender};
use crate::service::{FieldProblems, ServiceError, retention};
use crate::startup::AppState;
use crate::web::chrome::Chrome;
use crate::web::format::{self, MessageStatusView};
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{paths, render};

/// A time with seconds, for the timeline.
fn precise(at: &NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// One step of the timeline.
pub struct EventView {
    pub status: String,
    pub label: String,
    pub source: String,
    pub detail: String,
    pub when: String,
    /// The payload, pretty-printed when it is JSON (escaped by askama when shown).
    pub payload: Option<String>,
}

/// A template variable as filled.
pub struct VariableView {
    pub name: String,
    pub value: String,
}

#[derive(Template)]
#[template(path = "messages/show.html")]
struct MessagePage {
    chrome: Chrome,
    d: MessageDetail,
    status: MessageStatusView,
    /// The text the recipient read.
    rendered: Option<String>,
    /// Template name and language, with its variables, for template messages.
    template_call: Option<(String, String)>,
    variables: Vec<VariableView>,
    events: Vec<EventView>,
    sender: String,
    sender_href: Option<String>,
    created: String,
    sent: Option<String>,
    delivered: Option<String>,
    read: Option<String>,
    failed: Option<String>,
    approved: Option<String>,
    /// The viewer sees the raw payloads (admins).
    shows_payloads: bool,
    /// The viewer may resend, and this message may be resent.
    may_resend: bool,
    /// Issue 20: the viewer may cancel, and this message is scheduled: when it goes.
    cancellable_at: Option<String>,
    /// Retention's words, when the content is gone.
    purged_note: Option<String>,
}

fn pretty(payload: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| payload.to_owned()),
        Err(_) => payload.to_owned(),
    }
}

fn page(
    chrome: Chrome,
    d: MessageDetail,
    shows_payloads: bool,
    (can_resend, can_cancel): (bool, bool),
) -> MessagePage {
    let m = &d.message;
    let status = MessageStatusView::of(m);
    let (rendered, template_call, variables) = match &d.content {
        Some(MessageContent::Text { body }) => (Some(body.clone()), None, Vec::new()),
        Some(MessageContent::Template(t)) => {
            let named =
                |i: usize, p: &crate::domain::content::TemplateParam, part: &str| VariableView {
                    name: match &p.name {
                        Some(n) => format!("{part} {{{{{n}}}}}"),
                        None => format!("{part} {{{{{}}}}}", i + 1),
                    },
                    value: p.value.clone(),
                };
            let mut vars: Vec<VariableView> = t
                .header
                .iter()
                .enumerate()
                .map(|(i, p)| named(i, p, "Header"))
                .collect();
            vars.extend(t.body.iter().enumerate().map(|(i, p)| named(i, p, "Body")));
            vars.extend(t.buttons.iter().map(|b| VariableView {
                name: format!("Button {}", b.index + 1),
                value: b.value.clone(),
            }));
            (
                Some(t.rendered.clone()),
                Some((t.name.clone(), t.language.clone())),
                vars,
            )
        }
        // Unreadable content (never expected): the body column still says what was sent.
        None if d.purged.is_none() => (Some(m.body.clone()), None, Vec::new()),
        None => (None, None, Vec::new()),
    };
    let events = d
        .events
        .iter()
        .map(|e| {
            let parsed = crate::domain::message::MessageStatus::parse(&e.status);
            EventView {
                label: parsed.map(|s| s.label()).unwrap_or("Unknown").to_owned(),
                status: e.status.clone(),
                source: e.source.clone(),
                detail: e.detail.clone(),
                when: precise(&e.occurred_at),
                payload: e.payload.as_deref().map(pretty),
            }
        })
        .collect();
    let (sender, sender_href) = match &d.sender {
        Sender::Person(label) => (label.clone(), None),
        Sender::ApiKey(label) => (label.clone(), Some(paths::API_KEYS.to_owned())),
        Sender::Broadcast { public_id, name } => (
            format!("Broadcast \u{201c}{name}\u{201d}"),
            Some(format!("/broadcasts/{public_id}")),
        ),
        Sender::Other(label) => (label.clone(), None),
    };
    let approved = d
        .template
        .as_ref()
        .and_then(|t| t.version.as_ref())
        .map(|v| match (&v.approved_by, &v.approved_at) {
            (Some(who), Some(at)) => format!(
                "version {}, approved by {who} on {}",
                v.number,
                format::datetime(at)
            ),
            (Some(who), None) => format!("version {}, approved by {who}", v.number),
            _ => format!("version {}", v.number),
        });
    let purged_note = d.purged.map(|p| {
        format!(
            "Content removed after {} days (retention), on {}.",
            p.after_days,
            format::datetime(&p.at)
        )
    });
    MessagePage {
        status,
        rendered,
        template_call,
        variables,
        events,
        sender,
        sender_href,
        created: precise(&m.created_at),
        sent: m.sent_at.as_ref().map(precise),
        delivered: m.delivered_at.as_ref().map(precise),
        read: m.read_at.as_ref().map(precise),
        failed: m.failed_at.as_ref().map(precise),
        approved,
        shows_payloads,
        may_resend: can_resend
            && m.status().may_resend()
            && d.resent_as.is_none()
            && d.purged.is_none(),
        cancellable_at: (can_cancel && m.status().may_cancel())
            .then(|| precise(&m.next_attempt_at)),
        purged_note,
        chrome,
        d,
    }
}

/// `GET /messages/{public_id}`: everything about one message; 404 for an unknown id.
pub async fn show(
    auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let role = auth.principal.role();
    let shows_payloads = role.can(Permission::ViewHistory);
    let detail = message_detail::detail(&state, path.into_inner(), shows_payloads).await?;
    render(&page(
        chrome,
        detail,
        shows_payloads,
        (
            role.can(Permission::ResendMessages),
            role.can(Permission::SendMessages),
        ),
    ))
}

/// Issue 20: `POST /messages/{public_id}/cancel`: withdraws a scheduled message (the button on
/// its page, behind a confirmation), then back to the page with what happened.
pub async fn cancel(
    req: HttpRequest,
    auth: Auth<perm::SendMessages>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    match scheduled::cancel(&state, auth.actor(), id.clone()).await {
        Ok(_) => session.success("Cancelled: this message will not be sent."),
        Err(ServiceError::Conflict { message, .. }) => session.error(message),
        Err(e) => return Err(e.into()),
    }
    Ok(redirect_response(&req, &format!("/messages/{id}")))
}

// ---------------------------------------------------------------------------------------------
// Settings › Retention

#[derive(Template)]
#[template(path = "messages/retention.html")]
struct RetentionPage {
    chrome: Chrome,
    /// As typed (or as stored).
    days: String,
    errors: FieldProblems,
    min: i32,
    max: i32,
}

impl RetentionPage {
    fn problem(&self) -> Option<&str> {
        self.errors.get("retention_days")
    }
}

pub async fn retention_form(
    _auth: Auth<perm::ManageRetention>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let days = retention::days(&state).await?;
    render(&RetentionPage {
        chrome,
        days: days.map(|d| d.to_string()).unwrap_or_default(),
        errors: FieldProblems::default(),
        min: retention::MIN_DAYS,
        max: retention::MAX_DAYS,
    })
}

#[derive(Deserialize)]
pub struct RetentionForm {
    #[serde(default)]
    retention_days: String,
}

pub async fn save_retention(
    req: HttpRequest,
    auth: Auth<perm::ManageRetention>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    form: web::Form<RetentionForm>,
) -> Result<HttpResponse, AppError> {
    let typed = form.into_inner().retention_days;
    match retention::set_days(&state, auth.actor(), typed.clone()).await {
        Ok(Some(d)) => session.success(format!(
            "Message bodies and raw payloads older than {d} days will be removed in the background."
        )),
        Ok(None) => session.success("Message content is kept for as long as Herald runs."),
        Err(e) => {
            let Some(errors) = e.fields().cloned() else {
                return Err(e.into());
            };
            return crate::web::render_with_status(
                &RetentionPage {
                    chrome,
                    days: typed,
                    errors,
                    min: retention::MIN_DAYS,
                    max: retention::MAX_DAYS,
                },
                actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
    }
    Ok(redirect_response(&req, paths::RETENTION))
}
