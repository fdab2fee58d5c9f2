//! Issue 20: `/api/v1/reminders` (admins): list, create, read, change (disable), delete
//! reminder rules. The same use cases as the Automations › Reminders pages
//! (`service::automations::reminders`).

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::domain::template::VariableMapping;
use crate::error::AppError;
use crate::service::ServiceError;
use crate::service::automations::reminders::{
    self, DEFAULT_GRACE_MINUTES, RuleContent, RuleInput, Timing,
};
use crate::startup::AppState;
use crate::web::api::{Body, Params};
use crate::web::identity::{Auth, perm};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    name: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    variables: VariableMapping,
}

/// A rule's fields; on PATCH every one is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/reminders` -> `{"data": [rule, ...], "next_cursor": ...}`.
pub async fn list(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    query: Params<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.get()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::invalid(
            "invalid_limit",
            format!("limit must be between 1 and 200, not {limit}"),
        ));
    }
    let (data, next) = reminders::list(&state, query.cursor, limit).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"data": data, "next_cursor": next})))
}

/// `POST /api/v1/reminders` -> 201 with the rule.
pub async fn create(
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    body: Body<RuleBody>,
) -> Result<HttpResponse, AppError> {
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
    let created = reminders::create(&state, auth.actor(), input).await?;
    Ok(HttpResponse::Created().json(created))
}

/// `GET /api/v1/reminders/{id}`.
pub async fn get(
    _auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let rule = reminders::get(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(rule))
}

/// `PATCH /api/v1/reminders/{id}`: any of the fields; `{"enabled": false}` disables it.
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
pub async fn delete(
    auth: Auth<perm::ManageAutomations>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    reminders::delete(&state, auth.actor(), path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
