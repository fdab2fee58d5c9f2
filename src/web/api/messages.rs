//! `POST /api/v1/messages` (send one message, with an optional `Idempotency-Key`) and
//! `GET /api/v1/messages/{id}` (its status). The same use case as the send page:
//! `service::sends`.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::domain::template::Variables;
use crate::error::AppError;
use crate::service::api_objects::{self, MessageJson, message_json};
use crate::service::history::{self, HistoryParams};
use crate::service::paging::Page;
use crate::service::sends::{self, ContentRequest, Recipient, SendRequest, TemplateRef};
use crate::service::{FieldProblems, ServiceError};
use crate::startup::AppState;
use crate::storage::DbConnection;
use crate::storage::channels::{self, Channel};
use crate::storage::messages;
use crate::web::api::{
    BadRequest, Body, Conflict, NotFound, Params, Unprocessable, idempotency_key,
};
use crate::web::errors::query_refused;
use crate::web::identity::{Auth, Principal, perm};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "+14155550100", "channel": "Shop WhatsApp",
    "template": {"name": "order_update", "language": "en_US", "variables": ["Ada", "#1001"]}}))]
pub struct SendBody {
    /// A phone number (`+E164`; national numbers use `HERALD_DEFAULT_COUNTRY`) or a contact id.
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    contact_id: Option<String>,
    /// A channel's id or name.
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    template: Option<TemplateBody>,
    /// Issue 20: send later, at this RFC 3339 time (in the future, within 30 days).
    #[serde(default)]
    send_at: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SendTemplateBody)]
pub struct TemplateBody {
    name: String,
    #[serde(default)]
    language: String,
    /// A list in the order of the template's variables, or an object by variable name.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    variables: Option<Variables>,
}

/// The request a body asks for, or what is wrong with its shape.
fn request_from(body: SendBody) -> Result<SendRequest, AppError> {
    let recipient = match (body.to.map(|s| s.trim().to_owned()), body.contact_id) {
        (Some(_), Some(_)) => {
            return Err(AppError::invalid(
                "invalid_recipient",
                "Give either `to` or `contact_id`, not both.",
            ));
        }
        (None, Some(id)) => Recipient::Contact(id),
        // A contact id is a UUID; anything else is read as a phone number.
        (Some(to), None) if uuid::Uuid::parse_str(&to).is_ok() => Recipient::Contact(to),
        (Some(to), None) => Recipient::Phone(to),
        (None, None) => {
            return Err(AppError::invalid(
                "missing_recipient",
                "Say who the message goes to: `to` (a phone number like +14155550100, or a contact id).",
            ));
        }
    };
    let channel = body
        .channel
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            AppError::invalid(
                "missing_channel",
                "Say which channel sends it: `channel` (its id or name).",
            )
        })?;
    let content = match (body.text, body.template) {
        (Some(text), None) => ContentRequest::Text(text),
        (None, Some(t)) => {
            if t.language.trim().is_empty() {
                return Err(AppError::invalid(
                    "unknown_template",
                    "Give the template's `language` as well as its `name` (e.g. \"en_US\").",
                ));
            }
            ContentRequest::Template {
                template: TemplateRef::Name {
                    name: t.name,
                    language: t.language,
                },
                variables: t.variables.unwrap_or(Variables::Positional(Vec::new())),
            }
        }
        _ => {
            return Err(AppError::invalid(
                "invalid_content",
                "Send either `text` or `template` (with `name`, `language` and `variables`).",
            ));
        }
    };
    let send_at = match body.send_at.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(
            chrono::DateTime::parse_from_rfc3339(raw)
                .map_err(|_| {
                    AppError::invalid(
                        "invalid_send_at",
                        format!(
                            "`send_at` \"{raw}\" is not an RFC 3339 time: give the date, time and offset, like 2026-12-24T09:00:00+01:00."
                        ),
                    )
                })?
                .with_timezone(&chrono::Utc),
        ),
    };
    Ok(SendRequest {
        recipient,
        channel,
        content,
        send_at,
    })
}

/// `POST /api/v1/messages` -> 202 with the queued message.
#[utoipa::path(post, path = "/api/v1/messages", tag = "messages",
    summary = "Send a message",
    description = "Queues one message: free text (inside the conversation window, or on SMS) or an approved template. With an `Idempotency-Key`, a repeat answers the first message again (with `Idempotent-Replayed: true`).",
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; a repeat under the same key sends nothing new.")),
    request_body = SendBody,
    responses(
        (status = 202, description = "Queued (or scheduled, with `send_at`).", body = MessageJson),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn send(
    req: HttpRequest,
    auth: Auth<perm::SendMessages>,
    state: web::Data<AppState>,
    body: Body<SendBody>,
) -> Result<HttpResponse, AppError> {
    let key = idempotency_key(&req)?;
    let request = request_from(body.get()?)?;
    // Keys are scoped to the API key that sent them: two clients never share one.
    let owner = match &auth.principal {
        Principal::ApiKey(k) => format!("api:{}", k.public_id),
        Principal::User(u) => format!("user:{}", u.id),
    };
    let scoped = key.map(|k| format!("{owner}:{k}"));
    let queued = sends::send(&state, auth.actor(), request, scoped).await?;
    let replayed = queued.replayed;
    let json = message_json(queued.message, &queued.channel, queued.contact.public_id);
    let mut res = HttpResponse::build(StatusCode::ACCEPTED);
    if replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(res.json(json))
}

fn message_or_404(conn: &mut DbConnection, id: &str) -> Result<MessageJson, AppError> {
    let m = messages::find_by_public_id(conn, id)?
        .ok_or_else(|| AppError::not_found("This message"))?;
    Ok(api_objects::message_json_in(conn, m)?)
}

/// `GET /api/v1/messages/{id}` -> its status, provider id, error and timestamps.
#[utoipa::path(get, path = "/api/v1/messages/{id}", tag = "messages",
    summary = "Read a message and its status",
    params(("id" = String, Path, description = "The message's id.")),
    responses(
        (status = 200, description = "The message.", body = MessageJson),
        (status = 404, response = NotFound),
    ))]
pub async fn get(
    _auth: Auth<perm::ViewContacts>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let json = state
        .db
        .run(move |conn| message_or_404(conn, id.trim()))
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

// --- issue 18: the history as a list ---

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(flatten)]
    filters: HistoryParams,
    #[serde(default)]
    limit: Option<String>,
}

/// `limit`: 1 to 500, 50 when not given.
fn list_limit(raw: Option<&str>) -> Result<i64, ServiceError> {
    let raw = raw.map(str::trim).filter(|l| !l.is_empty());
    let Some(raw) = raw else {
        return Ok(history::API_LIMIT_DEFAULT);
    };
    match raw.parse::<i64>() {
        Ok(n) if (1..=history::API_LIMIT_MAX).contains(&n) => Ok(n),
        _ => {
            let mut fields = FieldProblems::new();
            fields.add(
                "limit",
                format!(
                    "\"{raw}\" is not a page size: give a number from 1 to {}.",
                    history::API_LIMIT_MAX
                ),
            );
            Err(ServiceError::invalid_fields("invalid_limit", fields))
        }
    }
}

/// `GET /api/v1/messages?channel=&status=&contact=&broadcast=&template=&source=&error=&since=
/// &until=&limit=&cursor=` (admins) -> `{"data": [message, ...], "next_cursor": null|"..."}`,
/// newest first, each message as `GET /api/v1/messages/{id}` answers it. Filters that do not
/// fit are a 400 naming them (`service::history` reads them, as for the history page).
#[utoipa::path(get, path = "/api/v1/messages", tag = "messages",
    summary = "List messages, newest first, with filters",
    params(
        ("channel" = Option<String>, Query, description = "A channel's id or name."),
        ("status" = Option<String>, Query, description = "A message status (`delivered`, `failed`...)."),
        ("contact" = Option<String>, Query, description = "A contact's id or phone number."),
        ("broadcast" = Option<String>, Query, description = "A broadcast's id."),
        ("template" = Option<String>, Query, description = "A template's name."),
        ("source" = Option<String>, Query, description = "`person`, `api` or `broadcast`."),
        ("error" = Option<String>, Query, description = "An error code."),
        ("since" = Option<String>, Query, description = "RFC 3339 time or date: messages created at or after it."),
        ("until" = Option<String>, Query, description = "RFC 3339 time or date: messages created before it."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size: 1 to 500 (default 50)."),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of messages.", body = Page<MessageJson>),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
    ))]
pub async fn list(
    _auth: Auth<perm::ViewHistory>,
    state: web::Data<AppState>,
    query: Params<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let query = match query.get() {
        Ok(q) => q,
        Err(e) => return query_refused(e),
    };
    let limit = match list_limit(query.limit.as_deref()) {
        Ok(l) => l,
        Err(e) => return query_refused(e),
    };
    let page = match history::page(&state, query.filters, limit, false).await {
        Ok(p) => p,
        Err(e) => return query_refused(e),
    };
    let channels: HashMap<i64, Channel> = state
        .db
        .run(|conn| Ok::<_, AppError>(channels::list(conn)?))
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let mut data = Vec::with_capacity(page.rows.len());
    for row in page.rows {
        let channel = channels
            .get(&row.message.channel_id)
            .ok_or_else(|| AppError::not_found("A message's channel"))?;
        let mut json = message_json(
            row.message,
            channel,
            row.contact_public_id.unwrap_or_default(),
        );
        json.broadcast_id = row.broadcast_public_id;
        data.push(json);
    }
    Ok(HttpResponse::Ok().json(Page {
        data,
        next_cursor: page.older,
    }))
}
// --- end issue 18 ---

/// Issue 20: `POST /api/v1/messages/{id}/cancel`: 200 with the message, now `cancelled`;
/// 409 `not_scheduled` when it is no longer waiting for its time.
#[utoipa::path(post, path = "/api/v1/messages/{id}/cancel", tag = "messages",
    summary = "Cancel a scheduled message",
    params(("id" = String, Path, description = "The message's id.")),
    responses(
        (status = 200, description = "The message, now `cancelled`.", body = MessageJson),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub async fn cancel(
    auth: Auth<perm::SendMessages>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner().trim().to_owned();
    let done = crate::service::automations::scheduled::cancel(&state, auth.actor(), id).await?;
    let json = state
        .db
        .run(move |conn| message_or_404(conn, &done.public_id))
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

/// The message a resend queued.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Resent {
    id: String,
    status: String,
    /// The message it sends again.
    resend_of: String,
}

/// `POST /api/v1/messages/{id}/resend`: 202 with the new message.
#[utoipa::path(post, path = "/api/v1/messages/{id}/resend", tag = "messages",
    summary = "Send a failed message again",
    params(("id" = String, Path, description = "The message's id.")),
    responses(
        (status = 202, description = "The new message, queued.", body = Resent),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn resend(
    auth: Auth<perm::ResendMessages>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    once: crate::web::api::RequestKey,
) -> Result<HttpResponse, AppError> {
    let (state, actor, original) = (&state, auth.actor(), path.into_inner());
    let id = original.clone();
    let answer = |id: String, status: String| {
        HttpResponse::Accepted().json(Resent {
            id,
            status,
            resend_of: original.clone(),
        })
    };
    crate::web::api::idempotent(
        state,
        &auth.principal,
        once,
        StatusCode::ACCEPTED,
        |key| async move {
            let done = crate::service::resends::resend(state, actor, id, key).await?;
            Ok(answer(done.message.public_id, done.message.status))
        },
        |id| async move {
            let found = state.db.run(move |conn| message_or_404(conn, &id)).await?;
            Ok(answer(found.id, found.status))
        },
    )
    .await
}
