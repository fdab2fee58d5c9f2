//! `GET /api/v1/audit` (admins): the audit log, newest first, for export to other tools.
//! Pages as every list does (`?limit=`, `?cursor=`, `next_cursor`); `?before=<id>` with
//! `next_before` still works for clients written before.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::audit;
use crate::web::api::{BadRequest, Params, Unprocessable, page_params};
use crate::web::identity::{Auth, perm};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Older form of `cursor`: the `next_before` of the previous page.
    before: Option<i64>,
    /// Page size: 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One entry of the audit log.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": 42, "occurred_at": "2026-12-04T09:00:00+00:00",
    "actor": {"kind": "api_key", "label": "Shop backend"}, "action": "contact.created",
    "subject": {"kind": "contact", "id": "5d1c7e8a-2f3b-4c6d-8e9f-0a1b2c3d4e5f"}, "details": {}}))]
#[schema(as = AuditEntry)]
struct Entry {
    id: i64,
    occurred_at: String,
    actor: Actor,
    action: String,
    subject: Subject,
    /// What changed, as the action records it.
    details: serde_json::Value,
}

/// Who did it: a user, an API key or Herald itself.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AuditActor)]
struct Actor {
    kind: String,
    label: String,
}

/// What it was done to.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AuditSubject)]
struct Subject {
    kind: String,
    id: Option<String>,
}

/// A page of the audit log.
#[derive(Serialize, utoipa::ToSchema)]
struct AuditPage {
    data: Vec<Entry>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
    /// The same place for the older `before` parameter.
    next_before: Option<i64>,
}

/// `GET /api/v1/audit`.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    summary = "Read the audit log (admins)",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of entries, newest first.", body = AuditPage),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
    ))]
pub async fn list(
    _auth: Auth<perm::ViewAuditLog>,
    state: web::Data<AppState>,
    query: Params<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.get()?;
    let request = match page_params(query.limit.as_deref(), query.cursor.as_deref()) {
        Ok(r) => r,
        Err(res) => return Ok(res),
    };
    let before = request.after.or(query.before);
    let fetch = request.fetch();
    let rows = state
        .db
        .run(move |conn| Ok::<_, AppError>(audit::page(conn, before, fetch)?))
        .await?;
    let page = request.finish(rows, |e| e.id);
    let next_before = page
        .next_cursor
        .as_ref()
        .and_then(|_| page.data.last().map(|e| e.id));
    let data = page
        .data
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
    Ok(HttpResponse::Ok().json(AuditPage {
        data,
        next_cursor: page.next_cursor,
        next_before,
    }))
}
