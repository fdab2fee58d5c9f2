//! Channels in the API: `GET /api/v1/channels` (anyone) lists them; admins create
//! (`POST /api/v1/channels`), read one (`GET /api/v1/channels/{id}`, with its non-secret
//! settings), change (`PATCH`) and delete (`DELETE`) them. Secrets go in, never out.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::domain::channel::{ChannelKind, Provider};
use crate::domain::fields::FieldProblems;
use crate::domain::role::Permission;
use crate::error::AppError;
use crate::service::ServiceError;
use crate::service::channels::{self as service, ChannelDraft, webhook_url};
use crate::service::paging::Page;
use crate::startup::AppState;
use crate::storage::channels::Channel;
use crate::web::api::{
    BadRequest, Body, Conflict, NotFound, PageQuery, Params, Unprocessable, page_request,
};
use crate::web::identity::{Auth, perm};

/// A channel as the API lists it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "0b9c3a52-4b9e-4d43-9a1e-3c1f6c2f7a10", "name": "Shop SMS",
    "kind": "sms", "provider": "twilio", "sandbox": false, "sender": "+14155550100",
    "enabled": true, "rate_limit_per_second": 80,
    "webhook_url": "https://herald.example/webhooks/twilio/0b9c3a52-4b9e-4d43-9a1e-3c1f6c2f7a10",
    "created_at": "2026-12-04T09:00:00+00:00"}))]
pub struct ChannelJson {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub provider: &'static str,
    pub sandbox: bool,
    pub sender: String,
    pub enabled: bool,
    pub rate_limit_per_second: i32,
    pub webhook_url: Option<String>,
    pub created_at: String,
}

impl ChannelJson {
    pub fn new(c: Channel, public_url: &str) -> Self {
        ChannelJson {
            webhook_url: webhook_url(public_url, &c),
            kind: c.kind.as_str(),
            provider: c.provider.as_str(),
            sandbox: c.is_sandbox(),
            enabled: c.is_enabled(),
            rate_limit_per_second: c.rate_limit_per_second,
            created_at: c.created_at.and_utc().to_rfc3339(),
            id: c.public_id,
            name: c.name,
            sender: c.sender,
        }
    }
}

/// One channel; admins also see its non-secret settings and which secrets are saved.
#[derive(Serialize, utoipa::ToSchema)]
struct ChannelDetail {
    #[serde(flatten)]
    channel: ChannelJson,
    /// The non-secret settings (admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    settings: Option<Value>,
    /// The names of the saved secrets (`["auth_token"]`), never their values.
    #[serde(skip_serializing_if = "Option::is_none")]
    secrets_set: Option<Vec<String>>,
}

fn detail(state: &AppState, channel: Channel, admin: bool) -> ChannelDetail {
    let (settings, secrets_set) = if admin {
        let settings = serde_json::from_str::<Value>(&channel.settings).unwrap_or(json!({}));
        let secrets = service::saved_secret_keys(&state.channels, &channel);
        (Some(settings), Some(secrets))
    } else {
        (None, None)
    };
    ChannelDetail {
        channel: ChannelJson::new(channel, &state.public_url),
        settings,
        secrets_set,
    }
}

/// `GET /api/v1/channels`: the channels, in the order they were made, a page at a time.
#[utoipa::path(get, path = "/api/v1/channels", tag = "channels",
    summary = "List the channels",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of channels.", body = Page<ChannelJson>),
        (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable),
    ))]
pub async fn list(
    _auth: Auth<perm::ViewChannels>,
    state: web::Data<AppState>,
    query: Params<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let request = match page_request(query) {
        Ok(r) => r,
        Err(res) => return Ok(res),
    };
    let page = service::page(&state, request).await?;
    Ok(HttpResponse::Ok().json(page.map(|c| ChannelJson::new(c, &state.public_url))))
}

/// A number as the API sent it (`80` or `"80"`), as text for the same check the form runs.
fn number_text(value: Option<Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChannelCreate)]
#[schema(example = json!({"kind": "sms", "name": "Shop SMS", "settings": {"account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "…", "from": "+14155550100"}, "rate_limit_per_second": 80}))]
pub struct CreateBody {
    /// `whatsapp`, `sms`, `viber` (through the real provider) or `sandbox`.
    kind: String,
    /// For `kind: "sandbox"`: which kind's rules it follows (default `whatsapp`).
    simulates: Option<String>,
    name: Option<String>,
    sender: Option<String>,
    /// The provider's settings (see the README for the keys of each provider).
    #[serde(default)]
    #[schema(value_type = Object)]
    settings: Map<String, Value>,
    /// Messages a second (a number, or a number as text).
    #[schema(value_type = Option<i32>)]
    rate_limit_per_second: Option<Value>,
}

/// The kind and provider a create names, or the problems with them.
fn target(body: &CreateBody) -> Result<(ChannelKind, Provider), FieldProblems> {
    let mut problems = FieldProblems::default();
    let kind_word = body.kind.trim().to_ascii_lowercase();
    let target = if kind_word == "sandbox" {
        let simulated = body.simulates.as_deref().unwrap_or("whatsapp");
        match simulated.parse::<ChannelKind>() {
            Ok(kind) => Some((kind, Provider::Sandbox)),
            Err(_) => {
                problems.add_first(
                    "simulates",
                    format!(
                        "simulates is whatsapp, sms or viber (the kind whose rules the sandbox follows), not \"{simulated}\""
                    ),
                );
                None
            }
        }
    } else {
        match kind_word.parse::<ChannelKind>() {
            Ok(kind) => {
                if body.simulates.is_some() {
                    problems.add_first(
                        "simulates",
                        "simulates is only for kind \"sandbox\"; remove it or use kind \"sandbox\"",
                    );
                }
                Some((kind, kind.real_provider()))
            }
            Err(_) => {
                problems.add_first(
                    "kind",
                    format!(
                        "kind is whatsapp, sms, viber or sandbox, not \"{}\"",
                        body.kind
                    ),
                );
                None
            }
        }
    };
    match target {
        Some(t) if problems.is_empty() => Ok(t),
        _ => Err(problems),
    }
}

/// `POST /api/v1/channels` -> 201 with the channel (its `id` and `webhook_url` among the fields).
#[utoipa::path(post, path = "/api/v1/channels", tag = "channels",
    summary = "Create a channel (admins)",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The channel, with its webhook URL.", body = ChannelDetail),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn create(
    auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    body: Body<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let once = body.idempotency();
    let body = body.get()?;
    // 422 naming every field (`"fields": {"settings.account_sid": "…"}`), or 409 for a name
    // in use.
    let (kind, provider) = target(&body)
        .map_err(|problems| ServiceError::invalid_fields(service::INVALID, problems))?;
    let draft = ChannelDraft {
        name: Some(body.name.unwrap_or_default()),
        sender: body.sender,
        rate_limit_per_second: number_text(body.rate_limit_per_second),
        settings: body.settings,
    };
    let state = &state;
    let created = |channel| {
        let json = detail(state, channel, true);
        HttpResponse::Created()
            .insert_header((
                header::LOCATION,
                format!("/api/v1/channels/{}", json.channel.id),
            ))
            .json(json)
    };
    let actor = auth.actor();
    crate::web::api::idempotent(
        state,
        &auth.principal,
        once,
        actix_web::http::StatusCode::CREATED,
        |key| async move {
            let channel = service::create(state, actor, kind, provider, draft, key).await?;
            Ok(created(channel))
        },
        |id| async move { Ok(created(service::get(state, id).await?)) },
    )
    .await
}

/// `GET /api/v1/channels/{id}`.
#[utoipa::path(get, path = "/api/v1/channels/{id}", tag = "channels",
    summary = "Read a channel",
    params(("id" = String, Path, description = "The channel's id.")),
    responses(
        (status = 200, description = "The channel (admins also see its settings).", body = ChannelDetail),
        (status = 404, response = NotFound),
    ))]
pub async fn get(
    auth: Auth<perm::ViewChannels>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let channel = service::get(&state, path.into_inner()).await?;
    let admin = auth.principal.role().can(Permission::ManageChannels);
    Ok(HttpResponse::Ok().json(detail(&state, channel, admin)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChannelPatch, example = json!({"enabled": false}))]
pub struct PatchBody {
    name: Option<String>,
    sender: Option<String>,
    /// Keys to change: a secret replaces the saved one (empty keeps it), a non-secret `null`
    /// or `""` removes the setting, keys not named stay as they are.
    #[serde(default)]
    #[schema(value_type = Object)]
    settings: Map<String, Value>,
    #[schema(value_type = Option<i32>)]
    rate_limit_per_second: Option<Value>,
    enabled: Option<bool>,
}

/// `PATCH /api/v1/channels/{id}` -> 200 with the channel.
#[utoipa::path(patch, path = "/api/v1/channels/{id}", tag = "channels",
    summary = "Change a channel (admins)",
    params(("id" = String, Path, description = "The channel's id.")),
    request_body = PatchBody,
    responses(
        (status = 200, description = "The channel as it is now.", body = ChannelDetail),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub async fn patch(
    auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<PatchBody>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let body = body.get()?;
    let draft = ChannelDraft {
        name: body.name,
        sender: body.sender,
        rate_limit_per_second: number_text(body.rate_limit_per_second),
        settings: body.settings,
    };
    let mut channel = service::update(&state, auth.actor(), id.clone(), draft)
        .await?
        .channel;
    if let Some(enabled) = body.enabled {
        channel = service::set_enabled(&state, auth.actor(), id, enabled).await?;
    }
    Ok(HttpResponse::Ok().json(detail(&state, channel, true)))
}

/// `DELETE /api/v1/channels/{id}` -> 204, or 409 when messages were sent through it.
#[utoipa::path(delete, path = "/api/v1/channels/{id}", tag = "channels",
    summary = "Delete a channel (admins)",
    params(("id" = String, Path, description = "The channel's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ))]
pub async fn delete(
    auth: Auth<perm::ManageChannels>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    service::delete(&state, auth.actor(), path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
