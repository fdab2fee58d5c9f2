//! The templates list with its filters.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::role::Permission;
use crate::domain::template::{TemplateCategory, TemplateStage};
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::channels::Channel;
use crate::storage::templates::{Listed, StatusFilter};
use crate::web::chrome::Chrome;
use crate::web::identity::{Auth, perm};
use crate::web::{format, render};

use super::*;
use crate::service::templates::{self as service, ListFilter};

// ---------------------------------------------------------------------------------------------
// The list

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub language: String,
}

impl ListQuery {
    fn is_active(&self) -> bool {
        [&self.channel, &self.status, &self.category, &self.language]
            .iter()
            .any(|v| !v.trim().is_empty())
    }

    fn status(&self) -> Result<Option<StatusFilter>, AppError> {
        match self.status.trim() {
            "" => Ok(None),
            "sendable" => Ok(Some(StatusFilter::Sendable)),
            word => TemplateStage::parse(word)
                .map(|s| Some(StatusFilter::Current(s)))
                .ok_or_else(|| {
                    AppError::BadRequest(format!("\"{word}\" is not a template status."))
                }),
        }
    }
}

/// The status filter's choices: value and words.
pub const STATUS_CHOICES: [(&str, &str); 9] = [
    ("sendable", "Sendable"),
    ("draft", "Draft"),
    ("in_review", "In review"),
    ("rejected", "Rejected in review"),
    ("approved", "Approved, not yet at the provider"),
    ("pending", "Waiting for the provider"),
    ("provider_rejected", "Rejected by the provider"),
    ("paused", "Paused"),
    ("disabled", "Disabled"),
];

pub struct Row {
    pub public_id: String,
    pub name: String,
    pub language: String,
    pub channel: Channel,
    pub category: String,
    pub stage_label: String,
    pub stage_class: &'static str,
    pub version: i32,
    /// "version 1 sends until version 2 is approved", when another version is live.
    pub live_note: Option<String>,
    pub updated: String,
}

impl Row {
    fn new(l: Listed) -> Row {
        let live_note = l.live.as_ref().map(|live| {
            if live.stage == TemplateStage::Sendable {
                format!("version {} sends meanwhile", live.number)
            } else {
                format!(
                    "version {}: {}",
                    live.number,
                    stage_label(live.stage, &l.channel)
                )
            }
        });
        Row {
            stage_label: stage_label(l.current.stage, &l.channel),
            stage_class: stage_class(l.current.stage),
            version: l.current.number,
            updated: format::ago(Some(&l.template.updated_at)),
            public_id: l.template.public_id,
            name: l.template.name,
            language: l.template.language,
            category: l.template.category,
            channel: l.channel,
            live_note,
        }
    }
}

#[derive(Template)]
#[template(path = "templates/_results.html")]
struct Results {
    rows: Vec<Row>,
    filtered: bool,
    total: i64,
    can_draft: bool,
}

#[derive(Template)]
#[template(path = "templates/index.html")]
struct IndexPage {
    chrome: Chrome,
    results: Results,
    filter: ListQuery,
    channels: Vec<Channel>,
    languages: Vec<String>,
    statuses: &'static [(&'static str, &'static str)],
    categories: &'static [TemplateCategory],
    can_draft: bool,
}

impl IndexPage {
    fn channel_selected(&self, c: &Channel) -> bool {
        c.public_id == self.filter.channel
    }

    fn status_selected(&self, value: &str) -> bool {
        value == self.filter.status
    }

    fn category_selected(&self, c: &TemplateCategory) -> bool {
        c.as_str() == self.filter.category
    }

    fn language_selected(&self, l: &str) -> bool {
        l == self.filter.language
    }
}

pub async fn index(
    req: HttpRequest,
    auth: Auth<perm::ViewTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let status = query.status()?;
    let list = service::list(
        &state,
        ListFilter {
            channel: query.channel.clone(),
            status,
            category: query.category.clone(),
            language: query.language.clone(),
        },
    )
    .await?;
    let rows: Vec<Row> = list.templates.into_iter().map(Row::new).collect();
    let (total, all_channels, languages) = (list.total, list.channels, list.languages);
    let can_draft = auth.principal.role().can(Permission::DraftTemplates);
    let results = Results {
        rows,
        filtered: query.is_active(),
        total,
        can_draft,
    };
    if crate::web::htmx_targets(&req, "templates-results") {
        return render(&results);
    }
    render(&IndexPage {
        chrome,
        results,
        filter: query,
        channels: all_channels,
        languages,
        statuses: &STATUS_CHOICES,
        categories: &TemplateCategory::ALL,
        can_draft,
    })
}
