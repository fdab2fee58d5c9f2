//! Issue 20: `/api/v1/reminders` (admins): list, create, read, change (disable), delete
//! reminder rules. The same use cases as the Automations › Reminders pages
//! (`service::automations::reminders`).

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::domain::template::VariableMapping;
use crate::error::AppError;
use crate::service::ServiceError;
use crate::service::automations::reminders::RuleView;
use crate::service::automations::reminders::{
    self, DEFAULT_GRACE_MINUTES, RuleContent, RuleInput, Timing,
};
use crate::service::paging::Page;
use crate::startup::AppState;
use crate::web::api::{
    BadRequest, Body, Conflict, NotFound, PageQuery, Params, Unprocessable, page_request,
};
use crate::web::identity::{Auth, perm};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    name: String,
    #[serde(default)]
    language: String,
    /// Each template variable from a field, an attribute or fixed text, with a fallback.
    #[serde(default)]
    #[schema(value_type = Object)]
    variables: VariableMapping,
}

/// A rule's fields; on PATCH every one is optional. Either `offset_minutes` (negative: before
/// the date) or `at_time` (HH:MM, local to the contact) with `day_offset`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Appointment tomorrow", "channel": "Sandbox SMS",
    "text": "See you tomorrow!", "attribute": "appointment_at", "offset_minutes": -1440}))]
pub struct RuleBody {
    name: Option<String>,
    channel: Option<String>,
    text: Option<String>,
    template: Option<TemplateBody>,
    attribute: Option<String>,
    offset_minutes: Option<i32>,
    at_time: Option<String>,
    day_offset: Option<i32>,
    time_zone: Option<String>,
    grace_minutes: Option<i32>,
    enabled: Option<bool>,
}

/// Applies a body to a rule's current state (or to an empty one for a new rule).
fn apply(body: RuleBody, mut input: RuleInput) -> Result<RuleInput, ServiceError> {
    match (body.text, body.template) {
        (Some(_), Some(_)) => {
            return Err(ServiceError::invalid(
                "invalid_content",
                "Give either `text` or `template`, not both.",
            ));
        }
        (Some(t), None) => input.content = RuleContent::Text(t),
        (None, Some(t)) => {
            input.content = RuleContent::Template {
                name: t.name,
                language: t.language,
                variables: t.variables,
            }
        }
        (None, None) => {}
    }
    input.timing = match (
        body.offset_minutes,
        body.at_time,
        body.day_offset,
        input.timing,
    ) {
        (Some(_), Some(_), _, _) | (Some(_), _, Some(_), _) => {
            return Err(ServiceError::invalid(
                "invalid_timing",
                "Give either `offset_minutes`, or `at_time` (with `day_offset`), not both.",
            ));
        }
        (Some(m), None, None, _) => Timing::Offset { offset_minutes: m },
        (None, Some(t), days, Timing::AtTime { day_offset, .. }) => Timing::AtTime {
            at_time: t,
            day_offset: days.unwrap_or(day_offset),
        },
        (None, Some(t), days, Timing::Offset { .. }) => Timing::AtTime {
            at_time: t,
            day_offset: days.unwrap_or(0),
        },
        (None, None, Some(d), Timing::AtTime { at_time, .. }) => Timing::AtTime {
            at_time,
            day_offset: d,
        },
        (None, None, Some(_), Timing::Offset { .. }) => {
            return Err(ServiceError::invalid(
                "invalid_timing",
                "`day_offset` goes with `at_time`.",
            ));
        }
        (None, None, None, current) => current,
    };
    if let Some(v) = body.name {
        input.name = v;
    }
    if let Some(v) = body.channel {
        input.channel = v;
    }
    if let Some(v) = body.attribute {
        input.attribute = v;
    }
    if let Some(v) = body.time_zone {
        input.time_zone = v;
    }
    if let Some(v) = body.grace_minutes {
        input.grace_minutes = v;
    }
    if let Some(v) = body.enabled {
        input.enabled = v;
    }
    Ok(input)
}

/// `GET /api/v1/reminders` -> `{"data": [rule, ...], "next_cursor": ...}`.
#[utoipa::path(get, path = "/api/v1/reminders", tag = "reminders",
    summary = "List the reminder rules (admins)",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of reminder rules.", body = Page<RuleView>),
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
    Ok(HttpResponse::Ok().json(reminders::page(&state, request).await?))
}

/// `POST /api/v1/reminders` -> 201 with the rule.
#[utoipa::path(post, path = "/api/v1/reminders", tag = "reminders",
    summary = "Create a reminder rule (admins)",
    request_body = RuleBody,
    responses(
        (status = 201, description = "The rule.", body = RuleView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn create(
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    body: Body<RuleBody>,
) -> Result<HttpResponse, AppError> {
    let once = body.idempotency();
    let body = body.get()?;
    for (present, field) in [
        (body.name.is_some(), "name"),
        (body.channel.is_some(), "channel"),
        (body.attribute.is_some(), "attribute"),
    ] {
        if !present {
            return Err(AppError::invalid(
                "invalid_reminder",
                format!("`{field}` is required."),
            ));
        }
    }
    if body.text.is_none() && body.template.is_none() {
        return Err(AppError::invalid(
            "invalid_content",
            "Give `text` or `template` (with `name`, `language` and `variables`).",
        ));
    }
    if body.offset_minutes.is_none() && body.at_time.is_none() {
        return Err(AppError::invalid(
            "invalid_timing",
            "Give `offset_minutes` (negative: before the date), or `at_time` (HH:MM) with `day_offset`.",
        ));
    }
    let input = apply(
        body,
        RuleInput {
            name: String::new(),
            channel: String::new(),
            content: RuleContent::Text(String::new()),
            attribute: String::new(),
            timing: Timing::Offset { offset_minutes: 0 },
            time_zone: String::new(),
            grace_minutes: DEFAULT_GRACE_MINUTES,
            enabled: true,
        },
    )?;
    let (state, actor) = (&state, auth.actor());
    crate::web::api::idempotent(
        state,
        &auth.principal,
        once,
        actix_web::http::StatusCode::CREATED,
        |key| async move {
            let created = reminders::create(state, actor, input, key).await?;
            Ok(HttpResponse::Created().json(created))
        },
        |id| async move { Ok(HttpResponse::Created().json(reminders::get(state, id).await?)) },
    )
    .await
}

/// `GET /api/v1/reminders/{id}`.
#[utoipa::path(get, path = "/api/v1/reminders/{id}", tag = "reminders",
    summary = "Read a reminder rule (admins)",
    params(("id" = String, Path, description = "The rule's id.")),
    responses(
        (status = 200, description = "The rule.", body = RuleView),
        (status = 404, response = NotFound),
    ))]
pub async fn get(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let rule = reminders::get(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(rule))
}

/// `PATCH /api/v1/reminders/{id}`: any of the fields; `{"enabled": false}` disables it.
#[utoipa::path(patch, path = "/api/v1/reminders/{id}", tag = "reminders",
    summary = "Change a reminder rule (admins)",
    params(("id" = String, Path, description = "The rule's id.")),
    request_body = RuleBody,
    responses(
        (status = 200, description = "The rule as it is now.", body = RuleView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn update(
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<RuleBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.get()?;
    let rule = reminders::update(&state, auth.actor(), path.into_inner(), move |current| {
        apply(body, current)
    })
    .await?;
    Ok(HttpResponse::Ok().json(rule))
}

/// `DELETE /api/v1/reminders/{id}` -> 204.
#[utoipa::path(delete, path = "/api/v1/reminders/{id}", tag = "reminders",
    summary = "Delete a reminder rule (admins)",
    params(("id" = String, Path, description = "The rule's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, response = NotFound),
    ))]
pub async fn delete(
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    reminders::delete(&state, auth.actor(), path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
