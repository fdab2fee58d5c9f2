//! Settings › API keys (admins): keys for the business's own systems. A key is shown once,
//! stored as a hash, and can be revoked; its last use is shown.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::fields::FieldProblems;
use crate::domain::role::Role;
use crate::error::AppError;
use crate::service::ServiceError;
use crate::service::api_keys as api_keys_service;
use crate::service::reveals::{self, Reveal, RevealOn};
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
}

#[derive(Debug, Default, Deserialize)]
pub struct NewKeyForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
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
            public_id: k.public_id,
            name: k.name,
            role: k.role,
            prefix: k.prefix,
        })
        .collect();
    render_with_status(
        &KeysPage {
            chrome,
            keys,
            roles: Role::ALL,
            form,
            errors,
            reveal,
            api_base: format!("{}/api/v1", state.public_url),
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
