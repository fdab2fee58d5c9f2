//! Status-callback endpoints in the API (admins): `POST /api/v1/webhook-endpoints` registers one
//! (its `whsec_` secret in the answer, once), `GET` lists them or reads one, `PATCH` changes,
//! `DELETE` removes, `POST …/rotate-secret` makes a new secret (the old one signs beside it
//! for 24 hours), `POST …/test` queues a test event, `GET …/deliveries` reads the delivery log
//! and `POST …/send-again` makes deliveries due again. The use cases: `service::callbacks`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::service::callbacks::{self as service, EndpointInput, EndpointPatch, SendAgain};
use crate::startup::AppState;
use crate::storage::callbacks::Endpoint;
use crate::web::api::{Body, Params};
use crate::web::identity::{Auth, perm};

#[derive(Serialize)]
pub struct EndpointJson {
    pub id: String,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub allow_private_network: bool,
    /// Why Herald disabled it (a 410, or a day of failures), if it did.
    pub disabled_reason: Option<String>,
    pub failing_since: Option<String>,
    /// Until when the rotated-out secret still signs beside the new one.
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Only in the answers that create or rotate it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn endpoint_json(e: Endpoint, secret: Option<String>) -> EndpointJson {
    let now = crate::storage::now();
    EndpointJson {
        events: e.event_names().into_iter().map(str::to_owned).collect(),
        enabled: e.is_enabled(),
        allow_private_network: e.allows_private_network(),
        previous_secret_expires_at: e
            .previous_secret_until
            .filter(|u| *u > now)
            .map(|u| u.and_utc().to_rfc3339()),
        failing_since: e.failing_since.map(|t| t.and_utc().to_rfc3339()),
        created_at: e.created_at.and_utc().to_rfc3339(),
        updated_at: e.updated_at.and_utc().to_rfc3339(),
        id: e.public_id,
        url: e.url,
        description: e.description,
        disabled_reason: e.disabled_reason,
        secret,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    allow_private_network: bool,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// `POST /api/v1/webhook-endpoints` -> 201 with the endpoint and its `secret`, shown once.
pub async fn create(
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    body: Body<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let once = body.idempotency();
    let b = body.get()?;
    let input = EndpointInput {
        url: b.url,
        description: b.description,
        events: b.events,
        enabled: b.enabled,
        allow_private_network: b.allow_private_network,
    };
    let (state, actor) = (&state, auth.actor());
    // A replay answers with the endpoint but never repeats its secret (Herald keeps it sealed).
    crate::web::api::idempotent(
        state,
        &auth.principal,
        once,
        actix_web::http::StatusCode::CREATED,
        |key| async move {
            let (endpoint, secret) = service::create(state, actor, input, None, key).await?;
            Ok(HttpResponse::Created().json(endpoint_json(endpoint, Some(secret))))
        },
        |id| async move {
            Ok(HttpResponse::Created().json(endpoint_json(service::get(state, id).await?, None)))
        },
    )
    .await
}

/// `GET /api/v1/webhook-endpoints` -> `{"data": [...], "next_cursor": null}` (there are few).
pub async fn list(
    _auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let data: Vec<EndpointJson> = service::list(&state)
        .await?
        .into_iter()
        .map(|e| endpoint_json(e, None))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({"data": data, "next_cursor": null})))
}

pub async fn get(
    _auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let endpoint = service::get(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(endpoint_json(endpoint, None)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    allow_private_network: Option<bool>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// `PATCH /api/v1/webhook-endpoints/{id}`: changes the fields given.
pub async fn patch(
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<PatchBody>,
) -> Result<HttpResponse, AppError> {
    let b = body.get()?;
    let patch = EndpointPatch {
        url: b.url,
        description: b.description,
        events: b.events,
        enabled: b.enabled,
        allow_private_network: b.allow_private_network,
    };
    let endpoint = service::update(&state, auth.actor(), path.into_inner(), patch).await?;
    Ok(HttpResponse::Ok().json(endpoint_json(endpoint, None)))
}

/// `DELETE /api/v1/webhook-endpoints/{id}` -> 204.
pub async fn delete(
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    service::delete(&state, auth.actor(), path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/webhook-endpoints/{id}/rotate-secret` -> the endpoint with its new `secret`.
pub async fn rotate_secret(
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    once: crate::web::api::RequestKey,
) -> Result<HttpResponse, AppError> {
    let (state, actor) = (&state, auth.actor());
    // A replay answers with the endpoint but never repeats the new secret.
    crate::web::api::idempotent(
        state,
        &auth.principal,
        once,
        actix_web::http::StatusCode::OK,
        |key| async move {
            let (endpoint, secret) =
                service::rotate_secret(state, actor, path.into_inner(), None, key).await?;
            Ok(HttpResponse::Ok().json(endpoint_json(endpoint, Some(secret))))
        },
        |id| async move {
            Ok(HttpResponse::Ok().json(endpoint_json(service::get(state, id).await?, None)))
        },
    )
    .await
}

/// `POST /api/v1/webhook-endpoints/{id}/test` -> 202 `{"webhook_id": "msg_…"}`.
pub async fn test(
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    once: crate::web::api::RequestKey,
) -> Result<HttpResponse, AppError> {
    let (state, actor) = (&state, auth.actor());
    let answer = |id: String| HttpResponse::Accepted().json(serde_json::json!({"webhook_id": id}));
    crate::web::api::idempotent(
        state,
        &auth.principal,
        once,
        actix_web::http::StatusCode::ACCEPTED,
        |key| async move {
            Ok(answer(
                service::send_test(state, actor, path.into_inner(), key).await?,
            ))
        },
        |id| async move { Ok(answer(id)) },
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    event: Option<String>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /api/v1/webhook-endpoints/{id}/deliveries?status=&event=&cursor=` -> the delivery log,
/// newest first, each with its attempts.
pub async fn deliveries(
    _auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Params<LogQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.get()?;
    let filter = service::log_filter(q.status.as_deref(), q.event.as_deref(), q.cursor.as_deref())?;
    let (_, rows, more) = service::log(&state, path.into_inner(), filter).await?;
    let next = more
        .then(|| rows.last().map(|r| r.delivery.id.to_string()))
        .flatten();
    let data: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|r| {
            let d = r.delivery;
            serde_json::json!({
                "webhook_id": d.webhook_id,
                "type": d.event_type,
                "status": d.status,
                "created_at": d.created_at.and_utc().to_rfc3339(),
                "next_attempt_at": (d.status == "pending").then(|| d.next_attempt_at.and_utc().to_rfc3339()),
                "attempts": r.attempts.into_iter().map(|a| serde_json::json!({
                    "at": a.attempted_at.and_utc().to_rfc3339(),
                    "status_code": a.status_code,
                    "duration_ms": a.duration_ms,
                    "response": a.response_excerpt,
                    "error": a.error,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({"data": data, "next_cursor": next})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendAgainBody {
    /// One delivery's `webhook-id`.
    #[serde(default)]
    webhook_id: Option<String>,
    /// Every failed delivery created since this RFC 3339 time.
    #[serde(default)]
    failed_since: Option<String>,
}

/// `POST /api/v1/webhook-endpoints/{id}/send-again` `{"webhook_id"}` or `{"failed_since"}` ->
/// `{"deliveries": n}`.
pub async fn send_again(
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<SendAgainBody>,
) -> Result<HttpResponse, AppError> {
    let b = body.get()?;
    let what = match (b.webhook_id, b.failed_since) {
        (Some(id), None) => SendAgain::One(id),
        (None, Some(since)) => SendAgain::FailedSince(
            chrono::DateTime::parse_from_rfc3339(since.trim())
                .map_err(|_| {
                    AppError::invalid(
                        "invalid_time",
                        "`failed_since` must be an RFC 3339 time, like 2026-12-04T09:00:00Z.",
                    )
                })?
                .naive_utc(),
        ),
        _ => {
            return Err(AppError::invalid(
                "invalid_send_again",
                "Give either `webhook_id` (one delivery) or `failed_since` (every failed delivery since then).",
            ));
        }
    };
    let n = service::send_again(&state, auth.actor(), path.into_inner(), what).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"deliveries": n})))
}
