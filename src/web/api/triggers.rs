//! Issue 20: `/api/v1/triggers` (admins): list, create, read, change (disable), delete, and try
//! a sample payload. The same use cases as the Automations › Triggers pages
//! (`service::automations::triggers`).

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::domain::trigger::Mapping;
use crate::error::AppError;
use crate::service::automations::triggers::{self, TriggerContent, TriggerInput, TriggerView};
use crate::service::paging::Page;
use crate::startup::AppState;
use crate::web::api::{
    BadRequest, Body, Conflict, NotFound, PageQuery, Params, Unprocessable, page_request,
};
use crate::web::identity::{Auth, perm};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TriggerTemplate)]
pub struct TemplateBody {
    name: String,
    #[serde(default)]
    language: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TriggerVerificationBody)]
pub struct VerificationBody {
    /// `shopify`, `woocommerce`, `hubspot`, `standard_webhooks` or `api_key`.
    scheme: String,
    #[serde(default)]
    secret: Option<String>,
}

/// A trigger's fields; on PATCH every one is optional.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TriggerBody, example = json!({"name": "Order shipped", "channel": "Shop WhatsApp",
    "template": {"name": "order_shipped", "language": "en_US"},
    "verification": {"scheme": "shopify", "secret": "shpss_0123456789abcdef"},
    "mapping": {"phone": "/customer/phone", "default_country": "US",
        "variables": {"1": "/customer/first_name", "2": "/name"}}}))]
pub struct TriggerBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    template: Option<TemplateBody>,
    #[serde(default)]
    verification: Option<VerificationBody>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    mapping: Option<Mapping>,
    #[serde(default)]
    enabled: Option<bool>,
}

fn content_of(
    text: Option<String>,
    template: Option<TemplateBody>,
) -> Result<Option<TriggerContent>, AppError> {
    match (text, template) {
        (Some(_), Some(_)) => Err(AppError::invalid(
            "invalid_content",
            "Give either `text` or `template`, not both.",
        )),
        (Some(t), None) => Ok(Some(TriggerContent::Text(t))),
        (None, Some(t)) => Ok(Some(TriggerContent::Template {
            name: t.name,
            language: t.language,
        })),
        (None, None) => Ok(None),
    }
}

/// Applies a body (its content taken out by [`content_of`]) to a trigger's current state, or
/// to an empty one for a new trigger.
fn apply(
    body: TriggerBody,
    content: Option<TriggerContent>,
    mut input: TriggerInput,
) -> TriggerInput {
    if let Some(content) = content {
        input.content = content;
    }
    if let Some(name) = body.name {
        input.name = name;
    }
    if let Some(channel) = body.channel {
        input.channel = channel;
    }
    if let Some(v) = body.verification {
        input.scheme = v.scheme;
        input.secret = v.secret;
    }
    if let Some(m) = body.mapping {
        input.mapping = m;
    }
    if let Some(e) = body.enabled {
        input.enabled = e;
    }
    input
}

/// Takes the content out of a body, refusing both `text` and `template` at once.
fn split(mut body: TriggerBody) -> Result<(TriggerBody, Option<TriggerContent>), AppError> {
    let content = content_of(body.text.take(), body.template.take())?;
    Ok((body, content))
}

/// `GET /api/v1/triggers` -> `{"data": [trigger, ...], "next_cursor"}`, in the order they were
/// made.
#[utoipa::path(get, path = "/api/v1/triggers", tag = "triggers",
    summary = "List the triggers (admins)",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of triggers.", body = Page<TriggerView>),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
    ))]
pub async fn list(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    query: Params<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let request = match page_request(query) {
        Ok(r) => r,
        Err(res) => return Ok(res),
    };
    Ok(HttpResponse::Ok().json(triggers::page(&state, request).await?))
}

/// `POST /api/v1/triggers` -> 201 with the trigger, its `url` and its secret.
#[utoipa::path(post, path = "/api/v1/triggers", tag = "triggers",
    summary = "Create a trigger (admins)",
    request_body = TriggerBody,
    responses(
        (status = 201, description = "The trigger, with the `url` to post to.", body = TriggerView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn create(
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    body: Body<TriggerBody>,
) -> Result<HttpResponse, AppError> {
    let once = body.idempotency();
    let body = body.get()?;
    for (present, field) in [
        (body.name.is_some(), "name"),
        (body.channel.is_some(), "channel"),
        (body.verification.is_some(), "verification"),
        (body.mapping.is_some(), "mapping"),
    ] {
        if !present {
            return Err(AppError::invalid(
                "invalid_trigger",
                format!("`{field}` is required."),
            ));
        }
    }
    if body.text.is_none() && body.template.is_none() {
        return Err(AppError::invalid(
            "invalid_content",
            "Give `text` or `template` (with `name` and `language`).",
        ));
    }
    let (body, content) = split(body)?;
    let input = apply(
        body,
        content,
        TriggerInput {
            name: String::new(),
            channel: String::new(),
            content: TriggerContent::Text(String::new()),
            scheme: String::new(),
            secret: None,
            mapping: Mapping::default(),
            enabled: true,
        },
    );
    let (state, actor) = (&state, auth.actor());
    crate::web::api::idempotent(
        state,
        &auth.principal,
        once,
        actix_web::http::StatusCode::CREATED,
        |key| async move {
            let created = triggers::create(state, actor, input, key).await?;
            Ok(HttpResponse::Created().json(created))
        },
        |id| async move { Ok(HttpResponse::Created().json(triggers::get(state, id).await?)) },
    )
    .await
}

/// `GET /api/v1/triggers/{id}`.
#[utoipa::path(get, path = "/api/v1/triggers/{id}", tag = "triggers",
    summary = "Read a trigger (admins)",
    params(("id" = String, Path, description = "The trigger's id.")),
    responses(
        (status = 200, description = "The trigger.", body = TriggerView),
        (status = 404, response = NotFound),
    ))]
pub async fn get(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let t = triggers::get(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(t))
}

/// `PATCH /api/v1/triggers/{id}`: any of the fields; `{"enabled": false}` disables it.
#[utoipa::path(patch, path = "/api/v1/triggers/{id}", tag = "triggers",
    summary = "Change a trigger (admins)",
    params(("id" = String, Path, description = "The trigger's id.")),
    request_body = TriggerBody,
    responses(
        (status = 200, description = "The trigger as it is now.", body = TriggerView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn update(
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<TriggerBody>,
) -> Result<HttpResponse, AppError> {
    let (body, content) = split(body.get()?)?;
    let t = triggers::update(&state, auth.actor(), path.into_inner(), move |current| {
        apply(body, content, current)
    })
    .await?;
    Ok(HttpResponse::Ok().json(t))
}

/// `DELETE /api/v1/triggers/{id}` -> 204.
#[utoipa::path(delete, path = "/api/v1/triggers/{id}", tag = "triggers",
    summary = "Delete a trigger (admins)",
    params(("id" = String, Path, description = "The trigger's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, response = NotFound),
    ))]
pub async fn delete(
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    triggers::delete(&state, auth.actor(), path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TriggerTry, example = json!({"payload": {"name": "#1001", "customer": {"phone": "+14155550100", "first_name": "Ada"}}}))]
pub struct TryBody {
    /// A sample payload, as the shop or CRM would post it.
    payload: serde_json::Value,
}

/// What a trigger would do with a payload.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = TriggerTrial)]
struct TrialJson<'a> {
    /// Why it would be skipped (its conditions), or null.
    skipped: Option<&'a str>,
    recipient: Option<&'a str>,
    recipient_error: Option<&'a str>,
    variables: &'a std::collections::BTreeMap<String, String>,
    /// The message as the recipient would read it.
    rendered: Option<&'a str>,
    rendered_error: Option<&'a str>,
}

/// `POST /api/v1/triggers/{id}/try` `{"payload": {...}}` -> what it would send (nothing is).
#[utoipa::path(post, path = "/api/v1/triggers/{id}/try", tag = "triggers",
    summary = "Try a sample payload (nothing is sent)",
    params(("id" = String, Path, description = "The trigger's id.")),
    request_body = TryBody,
    responses(
        (status = 200, description = "What it would send.", body = TrialJson),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
    ))]
pub async fn try_payload(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<TryBody>,
) -> Result<HttpResponse, AppError> {
    let sample = body.get()?.payload.to_string();
    let trial = triggers::try_payload(&state, path.into_inner(), sample).await?;
    Ok(HttpResponse::Ok().json(TrialJson {
        skipped: trial.skipped.as_deref(),
        recipient: trial.recipient.as_deref().ok(),
        recipient_error: trial.recipient.as_ref().err().map(String::as_str),
        variables: &trial.variables,
        rendered: trial.rendered.as_deref().ok(),
        rendered_error: trial.rendered.as_ref().err().map(String::as_str),
    }))
}
