//! Settings › API keys (admins): keys for the business's own systems. A key is shown once,
//! stored as a hash, and can be revoked; its last use is shown.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::fields::FieldProblems;
use crate::domain::role::Role;
use crate::error::AppError;
use crate::service::api_keys as api_keys_service;
use crate::service::reveals::{self, Reveal, RevealOn};
use crate::service::{ServiceError, rate_limits};
use crate::startup::AppState;
use crate::web::chrome::Chrome;
use crate::web::format;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{paths, render_with_status};

pub struct KeyView {
    pub public_id: String,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub created: String,
    pub created_by: String,
    pub last_used: String,
    pub revoked: Option<String>,
    /// The key's own limit as typed in its form (blank: the default applies).
    pub rate_limit: String,
}

#[derive(Template)]
#[template(path = "api_keys/index.html")]
struct KeysPage {
    chrome: Chrome,
    keys: Vec<KeyView>,
    roles: [Role; 3],
    form: NewKeyForm,
    errors: FieldProblems,
    reveal: Option<Reveal>,
    api_base: String,
    /// The default limit for keys without their own (blank: unlimited).
    default_rate_limit: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct NewKeyForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    rate_limit: String,
}

async fn page(
    state: &AppState,
    chrome: Chrome,
    form: NewKeyForm,
    errors: FieldProblems,
    reveal: Option<Reveal>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let rows = api_keys_service::list(state).await?;
    let keys = rows
        .into_iter()
        .map(|(k, creator)| KeyView {
            created: format::datetime(&k.created_at),
            created_by: creator.unwrap_or_else(|| "command line".into()),
            last_used: format::ago(k.last_used_at.as_ref()),
            revoked: k.revoked_at.as_ref().map(format::datetime),
            rate_limit: k
                .rate_limit_per_minute
                .map(|n| n.to_string())
                .unwrap_or_default(),
            public_id: k.public_id,
            name: k.name,
            role: k.role,
            prefix: k.prefix,
        })
        .collect();
    let default_rate_limit = rate_limits::default_setting(state)
        .await?
        .map(|n| n.to_string())
        .unwrap_or_default();
    render_with_status(
        &KeysPage {
            chrome,
            keys,
            roles: Role::ALL,
            form,
            errors,
            reveal,
            api_base: format!("{}/api/v1", state.public_url),
            default_rate_limit,
        },
        status,
    )
}

pub async fn index(
    auth: Auth<perm::ManageApiKeys>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let reveal = reveals::take(&state, my_session(&auth)?, RevealOn::ApiKeys).await?;
    let form = NewKeyForm {
        role: Role::Marketer.as_str().into(),
        ..Default::default()
    };
    page(
        &state,
        chrome,
        form,
        FieldProblems::default(),
        reveal,
        StatusCode::OK,
    )
    .await
}

pub async fn create(
    req: HttpRequest,
    auth: Auth<perm::ManageApiKeys>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    form: web::Form<NewKeyForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let created = api_keys_service::create(
        &state,
        auth.actor(),
        auth.user().map(|u| u.id),
        my_session(&auth)?,
        &form.name,
        &form.role,
        &form.rate_limit,
    )
    .await;
    let (name, role) = match created {
        Ok(created) => created,
        Err(ServiceError::Invalid { fields, .. }) if !fields.is_empty() => {
            return page(
                &state,
                chrome,
                form,
                fields,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    session.success(format!(
        "API key \"{}\" created with the {} role.",
        name.as_str(),
        role.label()
    ));
    Ok(redirect_response(&req, paths::API_KEYS))
}

/// The admin's server-side session, which alone may see the key created here.
fn my_session(auth: &Auth<perm::ManageApiKeys>) -> Result<i64, AppError> {
    auth.user()
        .map(|u| u.session_id)
        .ok_or(AppError::Unauthenticated)
}

pub async fn revoke(
    req: HttpRequest,
    auth: Auth<perm::ManageApiKeys>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (key, revoked) = api_keys_service::revoke(&state, auth.actor(), path.into_inner()).await?;
    if revoked {
        session.success(format!(
            "API key \"{}\" is revoked; calls with it now get 401.",
            key.name
        ));
    } else {
        session.error(format!("API key \"{}\" was already revoked.", key.name));
    }
    Ok(redirect_response(&req, paths::API_KEYS))
}

// --- Issue 19: per-key rate limits ---

#[derive(Debug, Deserialize)]
pub struct RateLimitForm {
    #[serde(default)]
    rate_limit: String,
}

/// A refused limit goes back as a message on the page (the table has no room for the field's).
fn limit_refused(session: &TypedSession, e: ServiceError) -> Result<(), AppError> {
    match e.fields() {
        Some(fields) => {
            session.error(fields.summary());
            Ok(())
        }
        None => Err(e.into()),
    }
}

/// Sets the default limit of keys without their own (blank or 0: unlimited).
pub async fn set_default_rate_limit(
    req: HttpRequest,
    auth: Auth<perm::ManageApiKeys>,
    state: web::Data<AppState>,
    session: TypedSession,
    form: web::Form<RateLimitForm>,
) -> Result<HttpResponse, AppError> {
    match rate_limits::set_default(&state, auth.actor(), &form.rate_limit).await {
        Ok(Some(n)) => session.success(format!(
            "Keys without their own limit may now make {n} requests a minute."
        )),
        Ok(None) => session.success("Keys without their own limit are now unlimited."),
        Err(e) => limit_refused(&session, e)?,
    }
    Ok(redirect_response(&req, paths::API_KEYS))
}

/// Sets one key's own limit (blank: the default applies; 0: unlimited).
pub async fn set_rate_limit(
    req: HttpRequest,
    auth: Auth<perm::ManageApiKeys>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<RateLimitForm>,
) -> Result<HttpResponse, AppError> {
    let set =
        rate_limits::set_for_key(&state, auth.actor(), path.into_inner(), &form.rate_limit).await;
    match set {
        Ok((key, Some(0))) => {
            session.success(format!("API key \"{}\" is now unlimited.", key.name))
        }
        Ok((key, Some(n))) => session.success(format!(
            "API key \"{}\" may now make {n} requests a minute.",
            key.name
        )),
        Ok((key, None)) => session.success(format!(
            "API key \"{}\" now follows the default limit.",
            key.name
        )),
        Err(e) => limit_refused(&session, e)?,
    }
    Ok(redirect_response(&req, paths::API_KEYS))
}
