//! Issue 20: `/api/v1/triggers` (admins): list, create, read, change (disable), delete, and try
//! a sample payload. The same use cases as the Automations › Triggers pages
//! (`service::automations::triggers`).

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::domain::trigger::Mapping;
use crate::error::AppError;
use crate::service::automations::triggers::{self, TriggerContent, TriggerInput};
use crate::startup::AppState;
use crate::web::api::Body;
use crate::web::identity::{Auth, perm};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    name: String,
    #[serde(default)]
    language: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationBody {
    scheme: String,
    #[serde(default)]
    secret: Option<String>,
}

/// A trigger's fields; on PATCH every one is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// `GET /api/v1/triggers` -> `{"data": [trigger, ...]}`.
pub async fn list(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let data = triggers::list(&state).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"data": data, "next_cursor": null})))
}

/// `POST /api/v1/triggers` -> 201 with the trigger, its `url` and its secret.
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
pub async fn get(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let t = triggers::get(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(t))
}

/// `PATCH /api/v1/triggers/{id}`: any of the fields; `{"enabled": false}` disables it.
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
pub async fn delete(
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    triggers::delete(&state, auth.actor(), path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TryBody {
    payload: serde_json::Value,
}

/// `POST /api/v1/triggers/{id}/try` `{"payload": {...}}` -> what it would send (nothing is).
pub async fn try_payload(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<TryBody>,
) -> Result<HttpResponse, AppError> {
    let sample = body.get()?.payload.to_string();
    let trial = triggers::try_payload(&state, path.into_inner(), sample).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "skipped": trial.skipped,
        "recipient": trial.recipient.as_ref().ok(),
        "recipient_error": trial.recipient.as_ref().err(),
        "variables": trial.variables,
        "rendered": trial.rendered.as_ref().ok(),
        "rendered_error": trial.rendered.as_ref().err(),
    })))
}
