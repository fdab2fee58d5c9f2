//! The template page: its versions, status card (polled while a provider's verdict is awaited) and history.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::channel::ChannelKind;
use crate::domain::role::Permission;
use crate::domain::template::{PlaceholderInfo, TemplateStage};
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::audit::AuditEntry;
use crate::storage::channels::Channel;
use crate::storage::templates::{Template as StoredTemplate, Version};
use crate::web::chrome::Chrome;
use crate::web::identity::{Auth, CurrentUser, perm};
use crate::web::{format, render};

use super::form::PreviewPane;
use super::*;
use crate::service::templates::{self as service, Loaded};

// ---------------------------------------------------------------------------------------------
// The template page

/// A version as the page shows it.
pub struct VersionView {
    pub number: i32,
    pub stage: TemplateStage,
    pub stage_label: String,
    pub stage_class: &'static str,
    pub author: String,
    pub editor: Option<String>,
    pub created: String,
    pub reviewer: Option<String>,
    pub reviewed: Option<String>,
    pub review_note: Option<String>,
    pub provider_template_id: Option<String>,
    pub provider_reason: Option<String>,
    pub provider_note: Option<String>,
    pub provider_error: Option<String>,
    pub provider_checked: Option<String>,
    pub submitting: bool,
    pub live: bool,
}

impl VersionView {
    fn new(v: &Version, channel: &Channel, live_id: Option<i64>) -> VersionView {
        VersionView {
            number: v.number,
            stage: v.stage,
            stage_label: stage_label(v.stage, channel),
            stage_class: stage_class(v.stage),
            author: v.author_label.clone(),
            editor: (v.editor_label != v.author_label).then(|| v.editor_label.clone()),
            created: format::datetime(&v.created_at),
            reviewer: v.reviewer_label.clone(),
            reviewed: v.reviewed_at.as_ref().map(format::datetime),
            review_note: v.review_note.clone(),
            provider_template_id: v.provider_template_id.clone(),
            provider_reason: v.state.provider.reason().map(str::to_owned),
            provider_note: v.provider_note.clone(),
            provider_error: v.provider_error.clone(),
            provider_checked: v
                .provider_checked_at
                .as_ref()
                .map(|at| format::ago(Some(at))),
            submitting: v.is_submitting(),
            live: live_id == Some(v.id),
        }
    }
}

/// The status card: the newest version's state and what the person may do about it. Polls
/// itself while a provider's verdict is awaited.
#[derive(Template)]
#[template(path = "templates/_status.html")]
struct StatusCard {
    public_id: String,
    csrf: String,
    kind: ChannelKind,
    reviewer_name: &'static str,
    review_time: String,
    current: VersionView,
    /// The version that sends, when it is not the newest.
    live: Option<VersionView>,
    can_draft: bool,
    can_review: bool,
    /// The signed-in person wrote the newest version (and so may not review it).
    wrote_it: bool,
    note: String,
    note_error: Option<String>,
}

impl StatusCard {
    fn polling(&self) -> bool {
        self.current.submitting
            || self.current.stage == TemplateStage::Pending
            || self
                .live
                .as_ref()
                .is_some_and(|l| l.stage == TemplateStage::Pending)
    }

    /// What the page showed, so its polling hears only of changes.
    fn fingerprint(&self) -> String {
        let live = self.live.as_ref().map_or("-", |l| l.stage.as_str());
        format!(
            "{}.{}.{}.{live}",
            self.current.number,
            self.current.stage.as_str(),
            u8::from(self.current.submitting)
        )
    }

    fn has_provider(&self) -> bool {
        self.kind != ChannelKind::Sms
    }

    fn can_sync(&self) -> bool {
        self.has_provider()
            && (self.current.provider_template_id.is_some()
                || self
                    .live
                    .as_ref()
                    .is_some_and(|l| l.provider_template_id.is_some()))
    }
}

pub struct HistoryItem {
    pub when: String,
    pub who: String,
    pub what: String,
    pub detail: String,
}

fn history_item(e: AuditEntry) -> HistoryItem {
    let details: serde_json::Value = serde_json::from_str(&e.details).unwrap_or_default();
    let text = |k: &str| details.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let version = details
        .get("version")
        .and_then(serde_json::Value::as_i64)
        .map(|n| format!("version {n}"))
        .unwrap_or_default();
    let what = match e.action.as_str() {
        "template.drafted" => format!("drafted {version}"),
        "template.edited" => {
            if details
                .get("new_version")
                .and_then(serde_json::Value::as_bool)
                == Some(true)
            {
                format!("made a new draft, {version}")
            } else {
                format!("edited {version}")
            }
        }
        "template.submitted" => format!("submitted {version} for review"),
        "template.withdrawn" => format!("withdrew {version} from review"),
        "template.approved" => format!("approved {version}"),
        "template.rejected" => format!("rejected {version}"),
        "template.provider_status" => match text("status").as_deref() {
            Some("submitted") => format!("{version} submitted to the provider"),
            Some("submission_failed") => format!("{version} could not be submitted"),
            Some(status) => format!("{version}: {}", status.replace('_', " ")),
            None => version.clone(),
        },
        other => other.to_owned(),
    };
    let detail = ["note", "reason", "error", "renamed", "provider_template_id"]
        .iter()
        .filter_map(|k| text(k).map(|v| (k, v)))
        .map(|(k, v)| match *k {
            "provider_template_id" => format!("provider id {v}"),
            "renamed" => format!("now {v}"),
            _ => v,
        })
        .collect::<Vec<_>>()
        .join(" · ");
    HistoryItem {
        when: format::datetime(&e.occurred_at),
        who: e.actor_label,
        what,
        detail,
    }
}

#[derive(Template)]
#[template(path = "templates/show.html")]
pub(super) struct ShowPage {
    chrome: Chrome,
    template: StoredTemplate,
    channel: Channel,
    status: StatusCard,
    preview: PreviewPane,
    placeholders: Vec<PlaceholderInfo>,
    versions: Vec<VersionView>,
    history: Vec<HistoryItem>,
    can_draft: bool,
}

fn status_card(
    loaded: &Loaded,
    user: &CurrentUser,
    csrf: String,
    note: String,
    note_error: Option<String>,
) -> Result<StatusCard, AppError> {
    let current = loaded
        .current()
        .ok_or_else(|| AppError::not_found("This template's content"))?;
    let live_id = loaded.template.live_version_id;
    let live = loaded
        .versions
        .iter()
        .find(|v| Some(v.id) == live_id && v.id != current.id)
        .map(|v| VersionView::new(v, &loaded.channel, live_id));
    Ok(StatusCard {
        public_id: loaded.template.public_id.clone(),
        csrf,
        kind: loaded.channel.kind,
        reviewer_name: reviewer_name(&loaded.channel),
        review_time: review_time(&loaded.channel),
        current: VersionView::new(current, &loaded.channel, live_id),
        live,
        can_draft: user.can(Permission::DraftTemplates),
        can_review: user.can(Permission::ReviewTemplates),
        wrote_it: current.is_written_by(user.id),
        note,
        note_error,
    })
}

pub(super) async fn show_page(
    state: &AppState,
    chrome: Chrome,
    user: &CurrentUser,
    public_id: String,
    note: String,
    note_error: Option<String>,
) -> Result<ShowPage, AppError> {
    let loaded = service::load(state, public_id).await?;
    let history = service::history(state, loaded.template.clone()).await?;
    let status = status_card(&loaded, user, chrome.csrf.clone(), note, note_error)?;
    let current = loaded
        .current()
        .ok_or_else(|| AppError::not_found("This template's content"))?;
    let (preview, p) = PreviewPane::new(&loaded.channel, &current.draft, false);
    let live_id = loaded.template.live_version_id;
    Ok(ShowPage {
        status,
        preview,
        placeholders: p.placeholders,
        versions: loaded
            .versions
            .iter()
            .map(|v| VersionView::new(v, &loaded.channel, live_id))
            .collect(),
        history: history.into_iter().map(history_item).collect(),
        can_draft: user.can(Permission::DraftTemplates),
        template: loaded.template,
        channel: loaded.channel,
        chrome,
    })
}

pub async fn show(
    auth: Auth<perm::ViewTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let user = person(&auth)?;
    let page = show_page(&state, chrome, user, path.into_inner(), String::new(), None).await?;
    render(&page)
}

#[derive(Debug, Default, Deserialize)]
pub struct StatusQuery {
    /// The fingerprint of the status the page shows.
    #[serde(default)]
    seen: String,
}

/// The status card's polling: nothing (204) while the status is what the page shows; when it
/// changed, htmx reloads the page, so the versions and history change with it. Without htmx,
/// the card alone.
pub async fn status(
    req: HttpRequest,
    auth: Auth<perm::ViewTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    path: web::Path<String>,
    query: web::Query<StatusQuery>,
) -> Result<HttpResponse, AppError> {
    let user = person(&auth)?;
    let loaded = service::load(&state, path.into_inner()).await?;
    let card = status_card(&loaded, user, chrome.csrf, String::new(), None)?;
    if card.fingerprint() == query.seen {
        return Ok(HttpResponse::NoContent().finish());
    }
    if crate::web::is_htmx(&req) {
        return Ok(HttpResponse::Ok()
            .insert_header(("HX-Refresh", "true"))
            .finish());
    }
    render(&card)
}
