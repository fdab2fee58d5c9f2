//! Settings › Users (admins): invite people, change roles, disable, reset passwords.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::fields::FieldProblems;
use crate::domain::role::Role;
use crate::error::AppError;
use crate::service::ServiceError;
use crate::service::reveals::{self, Reveal, RevealOn};
use crate::service::users::{self as accounts, Invitation};
use crate::startup::AppState;
use crate::web::chrome::Chrome;
use crate::web::format;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{paths, render_with_status};

pub struct UserView {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub active: bool,
    pub is_me: bool,
    pub last_login: String,
    pub must_change_password: bool,
}

#[derive(Template)]
#[template(path = "users/index.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserView>,
    roles: [Role; 3],
    form: NewUserForm,
    errors: FieldProblems,
    reveal: Option<Reveal>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

async fn page(
    state: &AppState,
    chrome: Chrome,
    me: i64,
    form: NewUserForm,
    errors: FieldProblems,
    reveal: Option<Reveal>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let all = accounts::list(state).await?;
    let users = all
        .into_iter()
        .map(|u| UserView {
            id: u.id,
            active: u.is_active(),
            is_me: u.id == me,
            last_login: format::ago(u.last_login_at.as_ref()),
            must_change_password: u.must_change_password,
            name: u.name,
            email: u.email,
            role: u.role,
        })
        .collect();
    render_with_status(
        &UsersPage {
            chrome,
            users,
            roles: Role::ALL,
            form,
            errors,
            reveal,
        },
        status,
    )
}

fn my_id(auth: &Auth<perm::ManageUsers>) -> i64 {
    auth.user().map_or(0, |u| u.id)
}

/// The admin's server-side session, which alone may see the secrets created here.
fn my_session(auth: &Auth<perm::ManageUsers>) -> Result<i64, AppError> {
    auth.user()
        .map(|u| u.session_id)
        .ok_or(AppError::Unauthenticated)
}

pub async fn index(
    auth: Auth<perm::ManageUsers>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let reveal = reveals::take(&state, my_session(&auth)?, RevealOn::Users).await?;
    let form = NewUserForm {
        role: Role::Marketer.as_str().into(),
        ..Default::default()
    };
    page(
        &state,
        chrome,
        my_id(&auth),
        form,
        FieldProblems::default(),
        reveal,
        StatusCode::OK,
    )
    .await
}

pub async fn create(
    req: HttpRequest,
    auth: Auth<perm::ManageUsers>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    form: web::Form<NewUserForm>,
) -> Result<HttpResponse, AppError> {
    let mut form = form.into_inner();
    let invitation = Invitation {
        name: form.name.clone(),
        email: form.email.clone(),
        role: form.role.clone(),
        password: form.password.clone(),
    };
    let (user, role) =
        match accounts::invite(&state, auth.actor(), my_session(&auth)?, invitation).await {
            Ok(user) => {
                let role = user.role;
                (user, role)
            }
            Err(ServiceError::Invalid { fields, .. }) if !fields.is_empty() => {
                form.password.clear();
                return page(
                    &state,
                    chrome,
                    my_id(&auth),
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
        "{} can now sign in as {}.",
        user.name,
        role.label()
    ));
    Ok(redirect_response(&req, paths::USERS))
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

pub async fn change_role(
    req: HttpRequest,
    auth: Auth<perm::ManageUsers>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<i64>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, AppError> {
    let (user, role) = accounts::change_role(
        &state,
        auth.actor(),
        my_id(&auth),
        path.into_inner(),
        &form.role,
    )
    .await?;
    session.success(format!("{} is now {}.", user.name, role.label()));
    Ok(redirect_response(&req, paths::USERS))
}

async fn set_access(
    req: HttpRequest,
    auth: Auth<perm::ManageUsers>,
    state: web::Data<AppState>,
    session: TypedSession,
    target: i64,
    disable: bool,
) -> Result<HttpResponse, AppError> {
    let user = accounts::set_access(&state, auth.actor(), my_id(&auth), target, disable).await?;
    if disable {
        session.success(format!(
            "{} is disabled and has been signed out.",
            user.name
        ));
    } else {
        session.success(format!("{} can sign in again.", user.name));
    }
    Ok(redirect_response(&req, paths::USERS))
}

pub async fn disable(
    req: HttpRequest,
    auth: Auth<perm::ManageUsers>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    set_access(req, auth, state, session, path.into_inner(), true).await
}

pub async fn enable(
    req: HttpRequest,
    auth: Auth<perm::ManageUsers>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    set_access(req, auth, state, session, path.into_inner(), false).await
}

pub async fn reset_password(
    req: HttpRequest,
    auth: Auth<perm::ManageUsers>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let user = accounts::reset_password(
        &state,
        auth.actor(),
        my_id(&auth),
        my_session(&auth)?,
        path.into_inner(),
    )
    .await?;
    session.success(format!(
        "{}'s password was reset and their sessions ended.",
        user.name
    ));
    Ok(redirect_response(&req, paths::USERS))
}
