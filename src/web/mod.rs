//! The web side: thin handlers, askama views, and the one route table (`configure`).

pub mod account;
pub mod api;
// Issue 19: the API reference page.
pub mod api_keys;
pub mod api_reference;
pub mod assets;
pub mod audit;
pub mod auth_pages;
// Issue 20: Automations › Triggers and Reminders, and what their pages share.
pub mod automations;
pub mod body_deadline;
pub mod broadcasts;
pub mod channels;
pub mod chrome;
pub mod contacts;
pub mod csrf;
pub mod download;
pub mod edge;
pub mod errors;
pub mod events;
pub mod format;
pub mod health;
// issue 18: the send history
pub mod history;
pub mod home;
// Issue 20: triggers from a shop or CRM.
pub mod hooks;
pub mod identity;
pub mod imports;
pub mod lists;
// Issue 18: the message detail page and the retention setting.
pub mod messages;
pub mod metrics;
pub mod resend;
pub mod send;
pub mod session;
pub mod templates;
pub mod users;
// Issue 20: a template's variables as form rows (broadcasts, reminder rules).
pub mod variables;
pub mod webhooks;
// Issue 19: Settings › Webhooks (status callbacks to the business).
pub mod webhook_endpoints;

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::AppError;

/// Route paths used in more than one place.
pub mod paths {
    pub const HOME: &str = "/";
    pub const SETUP: &str = "/setup";
    pub const LOGIN: &str = "/login";
    pub const LOGOUT: &str = "/logout";
    pub const ACCOUNT_PASSWORD: &str = "/account/password";
    pub const USERS: &str = "/settings/users";
    pub const API_KEYS: &str = "/settings/api-keys";
    pub const CHANNELS: &str = "/settings/channels";
    pub const AUDIT: &str = "/settings/audit";
    // Issue 18: retention.
    pub const RETENTION: &str = "/settings/retention";
    // Issue 19: status callbacks.
    pub const WEBHOOKS: &str = "/settings/webhooks";
    pub const API_REFERENCE: &str = "/settings/api-reference";
    // Issue 20: automations (triggers).
    pub const AUTOMATIONS: &str = "/automations";
    // Issue 20: Automations › Reminders.
    pub const REMINDERS: &str = "/automations/reminders";
    /// The reminder form's variables block, re-rendered when the template changes.
    pub const REMINDER_VARIABLES: &str = "/automations/reminders/variables";
}

/// Marks the `/api/v1` scope: `Auth<P>` authenticates with bearer keys there.
#[derive(Clone, Copy)]
pub struct ApiScope;

pub fn is_htmx(req: &HttpRequest) -> bool {
    req.headers().contains_key("HX-Request")
}

/// Whether htmx asked to fill only the element with this id (a search box or pager swapping
/// the results alone).
pub fn htmx_targets(req: &HttpRequest, id: &str) -> bool {
    req.headers().get("HX-Target").and_then(|v| v.to_str().ok()) == Some(id)
}

/// The route table: every path Herald serves. A path with several methods is one resource, so
/// other methods get 405.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use web::{get, post, resource};
    cfg.service(resource("/healthz").get(health::healthz))
        .service(resource("/metrics").get(metrics::metrics))
        .service(resource("/favicon.ico").get(assets::favicon))
        .service(resource("/assets/{path:.*}").get(assets::serve))
        .service(
            resource("/webhooks/{provider}/{channel}")
                .app_data(web::PayloadConfig::new(1 << 20))
                .route(get().to(webhooks::receive))
                .route(post().to(webhooks::receive)),
        )
        // Issue 20: a shop or CRM triggers a message (signed; no session, no CSRF).
        .service(resource("/hooks/{slug}").post(hooks::receive))
        .service(
            web::scope("/api/v1")
                .app_data(ApiScope)
                // Issue 19: every answer carries the key's rate-limit headers.
                .wrap(actix_web::middleware::from_fn(identity::rate_limit_headers))
                .configure(api::configure),
        )
        .service(
            resource(paths::SETUP)
                .route(get().to(auth_pages::setup_form))
                .route(post().to(auth_pages::setup)),
        )
        .service(
            resource(paths::LOGIN)
                .route(get().to(auth_pages::login_form))
                .route(post().to(auth_pages::login)),
        )
        .service(resource(paths::LOGOUT).post(auth_pages::logout))
        .service(resource(paths::HOME).get(home::dashboard))
        .service(resource("/events").get(events::stream))
        .service(
            resource(send::PATH)
                .route(get().to(send::page))
                .route(post().to(send::submit)),
        )
        .service(resource("/send/compose").post(send::compose_partial))
        .service(resource("/send/preview").post(send::preview_partial))
        .service(resource("/send/recipients").post(send::recipients))
        .service(
            resource(paths::ACCOUNT_PASSWORD)
                .route(get().to(account::password_form))
                .route(post().to(account::change_password)),
        )
        .service(
            resource(paths::USERS)
                .route(get().to(users::index))
                .route(post().to(users::create)),
        )
        .service(resource("/settings/users/{id}/role").post(users::change_role))
        .service(resource("/settings/users/{id}/disable").post(users::disable))
        .service(resource("/settings/users/{id}/enable").post(users::enable))
        .service(resource("/settings/users/{id}/reset-password").post(users::reset_password))
        .service(
            resource(paths::API_KEYS)
                .route(get().to(api_keys::index))
                .route(post().to(api_keys::create)),
        )
        .service(resource("/settings/api-keys/{id}/revoke").post(api_keys::revoke))
        // Issue 19: per-key rate limits.
        .service(resource("/settings/api-keys/rate-limit").post(api_keys::set_default_rate_limit))
        .service(resource("/settings/api-keys/{id}/rate-limit").post(api_keys::set_rate_limit))
        // Issue 19: status-callback endpoints.
        .service(
            resource(paths::WEBHOOKS)
                .route(get().to(webhook_endpoints::index))
                .route(post().to(webhook_endpoints::create)),
        )
        .service(resource("/settings/webhooks/new").get(webhook_endpoints::new_form))
        .service(
            resource("/settings/webhooks/{id}")
                .route(get().to(webhook_endpoints::show))
                .route(post().to(webhook_endpoints::update)),
        )
        .service(resource("/settings/webhooks/{id}/rotate").post(webhook_endpoints::rotate))
        .service(resource("/settings/webhooks/{id}/test").post(webhook_endpoints::test))
        .service(resource("/settings/webhooks/{id}/send-again").post(webhook_endpoints::send_again))
        .service(resource("/settings/webhooks/{id}/delete").post(webhook_endpoints::delete))
        .service(
            resource("/contacts")
                .route(get().to(contacts::index))
                .route(post().to(contacts::create)),
        )
        .service(resource("/contacts/new").get(contacts::new_form))
        .service(resource("/contacts/export.csv").get(contacts::export))
        .service(resource("/contacts/bulk").post(contacts::bulk))
        .service(
            resource(lists::PATH)
                .route(get().to(lists::index))
                .route(post().to(lists::create)),
        )
        .service(resource("/contacts/lists/{id}/rename").post(lists::rename))
        .service(resource("/contacts/lists/{id}/delete").post(lists::delete))
        .service(
            resource("/contacts/import")
                .route(get().to(imports::index))
                .route(post().to(imports::start)),
        )
        .service(resource("/contacts/import/preview").post(imports::preview))
        .service(resource("/contacts/imports/{id}").get(imports::show))
        .service(resource("/contacts/imports/{id}/progress").get(imports::progress))
        .service(resource("/contacts/imports/{id}/rejected.csv").get(imports::rejected_csv))
        .service(
            resource("/contacts/{id}")
                .route(get().to(contacts::show))
                .route(post().to(contacts::update)),
        )
        .service(resource("/contacts/{id}/delete").post(contacts::delete))
        .service(resource("/contacts/{id}/timeline").get(contacts::timeline))
        .service(resource("/contacts/{id}/consent").post(contacts::set_consent))
        .service(resource("/contacts/{id}/lists").post(contacts::add_to_list))
        .service(resource("/contacts/{id}/lists/{list}/remove").post(contacts::remove_from_list))
        .service(resource("/contacts/{id}/simulate-reply").post(contacts::simulate_reply))
        .service(resource("/messages/{id}/resend").post(resend::from_timeline))
        // Issue 20: cancelling a scheduled send.
        .service(resource("/messages/{id}/cancel").post(messages::cancel))
        // Issue 20: Automations › Triggers.
        .service(
            resource(paths::AUTOMATIONS)
                .route(get().to(automations::triggers::index))
                .route(post().to(automations::triggers::create)),
        )
        .service(resource("/automations/triggers/{id}").get(automations::triggers::show))
        .service(resource("/automations/triggers/{id}/try").post(automations::triggers::try_it))
        .service(
            resource("/automations/triggers/{id}/enabled")
                .post(automations::set_enabled::<automations::triggers::TriggerPages>),
        )
        .service(
            resource("/automations/triggers/{id}/delete")
                .post(automations::delete::<automations::triggers::TriggerPages>),
        )
        // Issue 20: Automations › Reminders.
        .service(
            resource(paths::REMINDERS)
                .route(get().to(automations::reminders::index))
                .route(post().to(automations::reminders::create)),
        )
        // Before `{id}`: the form's variables block for the chosen template.
        .service(resource(paths::REMINDER_VARIABLES).post(automations::reminders::variables_block))
        .service(
            resource("/automations/reminders/{id}")
                .route(get().to(automations::reminders::show))
                .route(post().to(automations::reminders::update)),
        )
        .service(
            resource("/automations/reminders/{id}/enabled")
                .post(automations::set_enabled::<automations::reminders::RulePages>),
        )
        .service(
            resource("/automations/reminders/{id}/delete")
                .post(automations::delete::<automations::reminders::RulePages>),
        )
        // Issue 18: the message detail page and the retention setting.
        .service(resource("/messages/{id}").get(messages::show))
        .service(
            resource(paths::RETENTION)
                .route(get().to(messages::retention_form))
                .route(post().to(messages::save_retention)),
        )
        .service(
            resource(paths::CHANNELS)
                .route(get().to(channels::index))
                .route(post().to(channels::create)),
        )
        .service(resource("/settings/channels/new").get(channels::new_form))
        .service(
            resource("/settings/channels/{id}")
                .route(get().to(channels::show))
                .route(post().to(channels::update)),
        )
        .service(resource("/settings/channels/{id}/test").post(channels::test))
        .service(resource("/settings/channels/{id}/disable").post(channels::disable))
        .service(resource("/settings/channels/{id}/enable").post(channels::enable))
        .service(resource("/settings/channels/{id}/delete").post(channels::delete))
        .service(
            resource(templates::PATH)
                .route(get().to(templates::index))
                .route(post().to(templates::create)),
        )
        .service(resource("/templates/new").get(templates::new_form))
        .service(resource("/templates/preview").post(templates::preview))
        .service(
            resource("/templates/{id}")
                .route(get().to(templates::show))
                .route(post().to(templates::update)),
        )
        .service(resource("/templates/{id}/edit").get(templates::edit_form))
        .service(resource("/templates/{id}/status").get(templates::status))
        .service(
            resource("/templates/{id}/{action:submit|withdraw}").post(templates::author_action),
        )
        .service(resource("/templates/{id}/approve").post(templates::approve))
        .service(resource("/templates/{id}/reject").post(templates::reject))
        .service(resource("/templates/{id}/provider").post(templates::resubmit))
        .service(resource("/templates/{id}/sync").post(templates::sync))
        .service(resource(paths::AUDIT).get(audit::index))
        // Issue 19: the API reference, rendered from the OpenAPI document.
        .service(resource(paths::API_REFERENCE).get(api_reference::page))
        // issue 18: the send history
        .service(resource(history::PATH).get(history::index))
        .service(resource("/history/export.csv").get(history::export))
        .configure(broadcasts::configure)
        .default_service(web::to(not_found));
}

async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound(
        "There is no page at this address.".into(),
    ))
}

/// One log line per request, inside the request's span (which carries the method, path and
/// request id): status and latency.
pub async fn access_log(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let res = next.call(req).await?;
    let status = res.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Method, path and request id are on the enclosing request span.
    if status >= 500 {
        tracing::error!(status, latency_ms, "request failed");
    } else {
        tracing::info!(status, latency_ms, "request");
    }
    Ok(res)
}

/// Renders a template as an HTML response.
pub fn render(template: &impl askama::Template) -> Result<HttpResponse, AppError> {
    render_with_status(template, StatusCode::OK)
}

pub fn render_with_status(
    template: &impl askama::Template,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::build(status)
        .content_type(ContentType::html())
        .body(template.render()?))
}

// --- multipart uploads (the contact import, and issue 17's CSV audience) ---

/// Reads the small fields of a multipart form up to `stop_at` (which is returned unread),
/// each at most `max_field` bytes.
pub async fn multipart_fields(
    multipart: &mut actix_multipart::Multipart,
    stop_at: &str,
    max_field: usize,
) -> Result<
    (
        std::collections::HashMap<String, String>,
        Option<actix_multipart::Field>,
    ),
    AppError,
> {
    use futures_util::StreamExt;
    let mut fields = std::collections::HashMap::new();
    while let Some(item) = multipart.next().await {
        let mut field =
            item.map_err(|e| AppError::BadRequest(format!("The upload could not be read: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        if name == stop_at {
            return Ok((fields, Some(field)));
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk
                .map_err(|e| AppError::BadRequest(format!("The upload could not be read: {e}")))?;
            if value.len() + chunk.len() > max_field {
                return Err(AppError::BadRequest(format!(
                    "The form field \"{name}\" is too large."
                )));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8_lossy(&value).into_owned();
        // The same edge check as url-encoded forms (`web::edge`): a NUL names no list.
        if name.contains('\0') || value.contains('\0') {
            return Err(crate::web::errors::nul_error(&name.replace('\0', "\\0")));
        }
        fields.insert(name, value);
    }
    Ok((fields, None))
}

/// Reads and drops the rest of an upload, so the browser gets the answer instead of a reset.
pub async fn drain_upload(mut file: actix_multipart::Field, mut rest: actix_multipart::Multipart) {
    use futures_util::StreamExt;
    while let Some(Ok(_)) = file.next().await {}
    // The multipart stream yields the next field only once this one is gone.
    drop(file);
    while let Some(Ok(mut f)) = rest.next().await {
        while let Some(Ok(_)) = f.next().await {}
    }
}
// --- end multipart uploads ---
