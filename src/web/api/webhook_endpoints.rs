//! Status-callback endpoints in the API (admins): `POST /api/v1/webhook-endpoints` registers one
//! (its `whsec_` secret in the answer, once), `GET` lists them or reads one, `PATCH` changes,
//! `DELETE` removes, `POST …/rotate-secret` makes a new secret (the old one signs beside it
//! for 24 hours), `POST …/test` queues a test event, `GET …/deliveries` reads the delivery log
//! and `POST …/send-again` makes deliveries due again. The use cases: `service::callbacks`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::service::callbacks::{self as service, EndpointInput, EndpointPatch, SendAgain};
use crate::service::paging::{Page, PageRequest, encode_cursor};
use crate::startup::AppState;
use crate::storage::callbacks::Endpoint;
use crate::web::api::{
    BadRequest, Body, Conflict, NotFound, PageQuery, Params, Unprocessable, page_params,
    page_request,
};
use crate::web::identity::{Auth, perm};

/// A status-callback endpoint.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WebhookEndpoint, example = json!({"id": "3e0f6b7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
    "url": "https://shop.example/herald", "description": "Order system",
    "events": ["message.sent", "message.delivered", "message.read"], "enabled": true,
    "allow_private_network": false, "disabled_reason": null, "failing_since": null,
    "previous_secret_expires_at": null, "created_at": "2026-12-04T09:00:00+00:00",
    "updated_at": "2026-12-04T09:00:00+00:00", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}))]
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookEndpointCreate, example = json!({"url": "https://shop.example/herald",
    "events": ["message.sent", "message.delivered", "message.read", "message.failed"],
    "description": "Order system"}))]
pub struct CreateBody {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    allow_private_network: bool,
    #[serde(default = "enabled_by_default")]
    #[schema(default = true)]
    enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// `POST /api/v1/webhook-endpoints` -> 201 with the endpoint and its `secret`, shown once.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints", tag = "webhook-endpoints",
    summary = "Register a status-callback endpoint (admins)",
    description = "Events: `message.queued`, `message.sent`, `message.delivered`, `message.read`, `message.failed`, `message.unknown`, `message.inbound`, `contact.opted_out`, `contact.opted_in`, `broadcast.completed`, `broadcast.paused`. Deliveries are signed by the Standard Webhooks scheme with the `secret`, shown only here.",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The endpoint, with its `secret` (shown once).", body = EndpointJson),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
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

/// `GET /api/v1/webhook-endpoints` -> `{"data": [...], "next_cursor"}`, in the order they were
/// made.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints", tag = "webhook-endpoints",
    summary = "List the endpoints (admins)",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of endpoints.", body = Page<EndpointJson>),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
    ))]
pub async fn list(
    _auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    query: Params<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let request = match page_request(query) {
        Ok(r) => r,
        Err(res) => return Ok(res),
    };
    let page = service::page(&state, request).await?;
    Ok(HttpResponse::Ok().json(page.map(|e| endpoint_json(e, None))))
}

/// `GET /api/v1/webhook-endpoints/{id}`.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints/{id}", tag = "webhook-endpoints",
    summary = "Read an endpoint (admins)",
    params(("id" = String, Path, description = "The endpoint's id.")),
    responses(
        (status = 200, description = "The endpoint.", body = EndpointJson),
        (status = 404, response = NotFound),
    ))]
pub async fn get(
    _auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let endpoint = service::get(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(endpoint_json(endpoint, None)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookEndpointPatch, example = json!({"enabled": false}))]
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
#[utoipa::path(patch, path = "/api/v1/webhook-endpoints/{id}", tag = "webhook-endpoints",
    summary = "Change an endpoint (admins)",
    params(("id" = String, Path, description = "The endpoint's id.")),
    request_body = PatchBody,
    responses(
        (status = 200, description = "The endpoint as it is now.", body = EndpointJson),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
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
#[utoipa::path(delete, path = "/api/v1/webhook-endpoints/{id}", tag = "webhook-endpoints",
    summary = "Delete an endpoint (admins)",
    params(("id" = String, Path, description = "The endpoint's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, response = NotFound),
    ))]
pub async fn delete(
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    service::delete(&state, auth.actor(), path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/webhook-endpoints/{id}/rotate-secret` -> the endpoint with its new `secret`.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhook-endpoints",
    summary = "Make a new signing secret (the old one signs beside it for 24 hours)",
    params(("id" = String, Path, description = "The endpoint's id.")),
    responses(
        (status = 200, description = "The endpoint with its new `secret` (shown once).", body = EndpointJson),
        (status = 404, response = NotFound),
    ))]
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

/// The test event queued.
#[derive(Serialize, utoipa::ToSchema)]
struct TestQueued {
    /// The delivery's `webhook-id`.
    webhook_id: String,
}

/// `POST /api/v1/webhook-endpoints/{id}/test` -> 202 `{"webhook_id": "msg_…"}`.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/test", tag = "webhook-endpoints",
    summary = "Send a test event",
    params(("id" = String, Path, description = "The endpoint's id.")),
    responses(
        (status = 202, description = "The test event is queued.", body = TestQueued),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub async fn test(
    auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    once: crate::web::api::RequestKey,
) -> Result<HttpResponse, AppError> {
    let (state, actor) = (&state, auth.actor());
    let answer = |webhook_id: String| HttpResponse::Accepted().json(TestQueued { webhook_id });
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

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// `pending`, `succeeded` or `failed`.
    #[serde(default)]
    status: Option<String>,
    /// An event type (`message.delivered`...).
    #[serde(default)]
    event: Option<String>,
    /// Page size: 1 to 200 (default 50).
    #[serde(default)]
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

/// One attempt to deliver.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DeliveryAttempt)]
struct AttemptJson {
    at: String,
    /// The receiver's HTTP status, when it answered.
    status_code: Option<i32>,
    duration_ms: i32,
    /// The first bytes of the receiver's answer.
    response: String,
    /// Why there was no answer (timeout, refused...).
    error: Option<String>,
}

/// One delivery of an event to the endpoint, with its attempts.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Delivery)]
struct DeliveryJson {
    webhook_id: String,
    #[serde(rename = "type")]
    event_type: String,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    created_at: String,
    next_attempt_at: Option<String>,
    attempts: Vec<AttemptJson>,
}

/// `GET /api/v1/webhook-endpoints/{id}/deliveries?status=&event=&cursor=` -> the delivery log,
/// newest first, each with its attempts.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints/{id}/deliveries", tag = "webhook-endpoints",
    summary = "Read an endpoint's delivery log",
    params(("id" = String, Path, description = "The endpoint's id."), LogQuery),
    responses(
        (status = 200, description = "A page of deliveries, newest first.", body = Page<DeliveryJson>),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
    ))]
pub async fn deliveries(
    _auth: Auth<perm::ManageWebhooks>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Params<LogQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.get()?;
    let request: PageRequest = match page_params(q.limit.as_deref(), q.cursor.as_deref()) {
        Ok(r) => r,
        Err(res) => return Ok(res),
    };
    let mut filter = service::log_filter(q.status.as_deref(), q.event.as_deref(), None)?;
    filter.before_id = request.after;
    filter.page_size = request.limit;
    let (_, rows, more) = service::log(&state, path.into_inner(), filter).await?;
    let next_cursor = rows
        .last()
        .filter(|_| more)
        .map(|r| encode_cursor(r.delivery.id));
    let data = rows
        .into_iter()
        .map(|r| {
            let d = r.delivery;
            DeliveryJson {
                next_attempt_at: (d.status == "pending")
                    .then(|| d.next_attempt_at.and_utc().to_rfc3339()),
                created_at: d.created_at.and_utc().to_rfc3339(),
                webhook_id: d.webhook_id,
                event_type: d.event_type,
                status: d.status,
                attempts: r
                    .attempts
                    .into_iter()
                    .map(|a| AttemptJson {
                        at: a.attempted_at.and_utc().to_rfc3339(),
                        status_code: a.status_code,
                        duration_ms: a.duration_ms,
                        response: a.response_excerpt,
                        error: a.error,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(Page { data, next_cursor }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeliverySendAgain, example = json!({"failed_since": "2026-12-04T09:00:00Z"}))]
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
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/send-again", tag = "webhook-endpoints",
    summary = "Deliver again: one delivery, or every failed one since a time",
    params(("id" = String, Path, description = "The endpoint's id.")),
    request_body = SendAgainBody,
    responses(
        (status = 200, description = "How many deliveries are due again.", body = SentAgain),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
    ))]
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
    let deliveries = service::send_again(&state, auth.actor(), path.into_inner(), what).await?;
    Ok(HttpResponse::Ok().json(SentAgain { deliveries }))
}

/// How many deliveries a send-again made due.
#[derive(Serialize, utoipa::ToSchema)]
struct SentAgain {
    deliveries: usize,
}
