//! Settings › API keys (admins): keys for the business's own systems. A key is shown once,
//! stored as a hash, and can be revoked; its last use is shown.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::auth::token;
use crate::domain::role::Role;
use crate::domain::user::DisplayName;
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::{api_keys, audit};
use crate::web::chrome::Chrome;
use crate::web::format;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::{Reveal, RevealOn, TypedSession, take_reveal};
use crate::web::{FieldErrors, paths, render_with_status};

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
    errors: FieldErrors,
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
    errors: FieldErrors,
    reveal: Option<Reveal>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let rows = state
        .db
        .run(|conn| Ok::<_, AppError>(api_keys::list(conn)?))
        .await?;
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
    let reveal = take_reveal(&state, my_session(&auth)?, RevealOn::ApiKeys).await?;
    let form = NewKeyForm {
        role: Role::Marketer.as_str().into(),
        ..Default::default()
    };
    page(
        &state,
        chrome,
        form,
        FieldErrors::default(),
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
    let mut errors = FieldErrors::default();
    let name = errors.check("name", DisplayName::parse(&form.name));
    let role = errors.check("role", form.role.parse::<Role>().map_err(|e| e.to_string()));
    let (Some(name), Some(role)) = (name, role) else {
        return page(
            &state,
            chrome,
            form,
            errors,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };

    let new = token::new_api_key();
    let (actor, created_by) = (auth.actor(), auth.user().map(|u| u.id));
    let session_id = my_session(&auth)?;
    let reveal = Reveal::new(
        format!("API key \"{}\"", name.as_str()),
        new.secret,
        "Copy it now: Herald stores only a hash and cannot show it again. Send it in the header Authorization: Bearer <key>.",
    )
    .seal(&state.keys)?;
    let (prefix, hash) = (new.prefix.clone(), new.hash.clone());
    let key_name = name.clone();
    state
        .db
        .run(move |conn| {
            crate::storage::write_transaction(conn, |conn| {
                let key = api_keys::insert(
                    conn,
                    &api_keys::NewApiKey {
                        name: key_name.as_str(),
                        role,
                        prefix: &prefix,
                        key_hash: &hash,
                        created_by,
                    },
                )?;
                audit::record(
                    conn,
                    &actor,
                    "api_key.created",
                    "api_key",
                    Some(&key.public_id),
                    serde_json::json!({"name": key.name, "role": role.as_str(), "prefix": key.prefix}),
                )?;
                reveal.keep(conn, session_id, RevealOn::ApiKeys)?;
                Ok::<_, AppError>(())
            })
        })
        .await?;
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
    let public_id = path.into_inner();
    let actor = auth.actor();
    let (key, revoked) = state
        .db
        .run(move |conn| {
            let key = api_keys::find_by_public_id(conn, &public_id)?
                .ok_or_else(|| AppError::not_found("This API key"))?;
            let revoked = api_keys::revoke(conn, key.id)?;
            if revoked {
                audit::record(
                    conn,
                    &actor,
                    "api_key.revoked",
                    "api_key",
                    Some(&key.public_id),
                    serde_json::json!({"name": key.name}),
                )?;
            }
            Ok::<_, AppError>((key, revoked))
        })
        .await?;
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
