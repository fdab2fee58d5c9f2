//! `GET /api/v1/audit` (admins): the audit log, newest first, for export to other tools.
//! Page with `?before=<id>` (the `next_before` of the previous page) and `?limit=` (1..=500).

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::audit;
use crate::web::api::Params;
use crate::web::identity::{Auth, perm};

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct Entry {
    id: i64,
    occurred_at: String,
    actor: Actor,
    action: String,
    subject: Subject,
    details: serde_json::Value,
}

#[derive(Serialize)]
struct Actor {
    kind: String,
    label: String,
}

#[derive(Serialize)]
struct Subject {
    kind: String,
    id: Option<String>,
}

#[derive(Serialize)]
struct Page {
    data: Vec<Entry>,
    next_before: Option<i64>,
}

pub async fn list(
    _auth: Auth<perm::ViewAuditLog>,
    state: web::Data<AppState>,
    query: Params<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.get()?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(AppError::invalid(
            "invalid_limit",
            format!("limit must be between 1 and 500, not {limit}"),
        ));
    }
    let before = query.before;
    let mut rows = state
        .db
        .run(move |conn| Ok::<_, AppError>(audit::page(conn, before, limit + 1)?))
        .await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_before = if more {
        rows.last().map(|e| e.id)
    } else {
        None
    };
    let data = rows
        .into_iter()
        .map(|e| Entry {
            id: e.id,
            occurred_at: e.occurred_at.and_utc().to_rfc3339(),
            actor: Actor {
                kind: e.actor_kind,
                label: e.actor_label,
            },
            action: e.action,
            subject: Subject {
                kind: e.subject_kind,
                id: e.subject_id,
            },
            details: serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null),
        })
        .collect();
    Ok(HttpResponse::Ok().json(Page { data, next_before }))
}
