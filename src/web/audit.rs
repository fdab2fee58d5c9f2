//! Settings › Audit log (admins): every change people and keys made, newest first.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::audit::{self, AuditEntry};
use crate::web::chrome::Chrome;
use crate::web::format;
use crate::web::identity::{Auth, perm};
use crate::web::render;

const PAGE_SIZE: i64 = 50;

pub struct EntryView {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
}

impl From<AuditEntry> for EntryView {
    fn from(e: AuditEntry) -> Self {
        let details = match serde_json::from_str::<serde_json::Value>(&e.details) {
            Ok(serde_json::Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}: {s}"),
                    other => format!("{k}: {other}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        EntryView {
            when: format::datetime(&e.occurred_at),
            actor: e.actor_label,
            action: e.action,
            subject: match e.subject_id {
                Some(id) => format!("{} {id}", e.subject_kind),
                None => e.subject_kind,
            },
            details,
        }
    }
}

#[derive(Template)]
#[template(path = "audit/index.html")]
struct AuditPage {
    chrome: Chrome,
    entries: Vec<EntryView>,
    older: Option<i64>,
    is_first_page: bool,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

pub async fn index(
    _auth: Auth<perm::ViewAuditLog>,
    state: web::Data<AppState>,
    chrome: Chrome,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let before = query.before;
    let mut rows = state
        .db
        .run(move |conn| Ok::<_, AppError>(audit::page(conn, before, PAGE_SIZE + 1)?))
        .await?;
    let has_more = rows.len() > usize::try_from(PAGE_SIZE).unwrap_or(50);
    rows.truncate(usize::try_from(PAGE_SIZE).unwrap_or(50));
    let older = if has_more {
        rows.last().map(|e| e.id)
    } else {
        None
    };
    render(&AuditPage {
        chrome,
        entries: rows.into_iter().map(EntryView::from).collect(),
        older,
        is_first_page: before.is_none(),
    })
}
