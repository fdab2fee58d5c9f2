//! Settings › Users (admins): invite people, change roles, disable, reset passwords.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::auth::token;
use crate::domain::audit::Actor;
use crate::domain::role::Role;
use crate::domain::user::{DisplayName, Email, NewPassword};
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::{audit, is_unique_violation, users, write_transaction};
use crate::web::chrome::Chrome;
use crate::web::format;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::passwords::password_error;
use crate::web::session::{Reveal, RevealOn, TypedSession, take_reveal};
use crate::web::{FieldErrors, paths, render_with_status};

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
    errors: FieldErrors,
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
    errors: FieldErrors,
    reveal: Option<Reveal>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let all = state
        .db
        .run(|conn| Ok::<_, AppError>(users::list(conn)?))
        .await?;
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
    let reveal = take_reveal(&state, my_session(&auth)?, RevealOn::Users).await?;
    let form = NewUserForm {
        role: Role::Marketer.as_str().into(),
        ..Default::default()
    };
    page(
        &state,
        chrome,
        my_id(&auth),
        form,
        FieldErrors::default(),
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
    let mut errors = FieldErrors::default();
    let name = errors.check("name", DisplayName::parse(&form.name));
    let email = errors.check("email", Email::parse(&form.email));
    let role = errors.check("role", form.role.parse::<Role>().map_err(|e| e.to_string()));
    let generated = form.password.trim().is_empty();
    let secret = if generated {
        token::readable_password()
    } else {
        form.password.clone()
    };
    let pw = errors.check("password", NewPassword::parse(&secret, email.as_ref()));
    let (Some(name), Some(email), Some(role), Some(pw), true) =
        (name, email, role, pw, errors.is_empty())
    else {
        form.password.clear();
        return page(
            &state,
            chrome,
            my_id(&auth),
            form,
            errors,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };

    let hash = state
        .passwords
        .hash(pw.expose().to_owned())
        .await
        .map_err(password_error)?;
    let actor = auth.actor();
    let session_id = my_session(&auth)?;
    let reveal = Reveal::new(
        format!("Sign-in details for {}", name.as_str()),
        format!("{email} / {}", pw.expose()),
        "Share them privately. They choose their own password at first sign-in. This is shown only once.",
    )
    .seal(&state.keys)?;
    let (email_c, name_c) = (email.clone(), name.clone());
    // The inner result keeps Diesel's error, so a duplicate e-mail can be told apart.
    let result = state
        .db
        .run(move |conn| {
            Ok::<_, AppError>(write_transaction(conn, |conn| {
                let user = users::insert(
                    conn,
                    &users::NewUser {
                        email: email_c.as_str(),
                        name: name_c.as_str(),
                        role,
                        password_hash: &hash,
                        must_change_password: true,
                    },
                )?;
                audit::record(
                    conn,
                    &actor,
                    "user.created",
                    "user",
                    Some(&user.id.to_string()),
                    serde_json::json!({"email": user.email, "role": role.as_str()}),
                )?;
                reveal.keep(conn, session_id, RevealOn::Users)?;
                Ok::<_, diesel::result::Error>(user)
            }))
        })
        .await?;
    match result {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            errors.add("email", format!("{email} already has an account."));
            form.password.clear();
            return page(
                &state,
                chrome,
                my_id(&auth),
                form,
                errors,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    }
    session.success(format!(
        "{} can now sign in as {}.",
        name.as_str(),
        role.label()
    ));
    Ok(redirect_response(&req, paths::USERS))
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

/// Loads the target account and refuses changes that would lock everyone out: nobody changes
/// their own role or access here, and the last active admin stays an active admin.
fn guard_change(
    conn: &mut crate::storage::DbConnection,
    me: i64,
    target: i64,
    removes_admin: bool,
) -> Result<users::User, AppError> {
    let user = users::find(conn, target)?.ok_or_else(|| AppError::not_found("This user"))?;
    if user.id == me {
        return Err(AppError::Refused(
            "You cannot change your own role or access; ask another admin.".into(),
        ));
    }
    if removes_admin
        && user.role == Role::Admin
        && user.is_active()
        && users::count_active_admins(conn)? <= 1
    {
        return Err(AppError::Refused(
            "Herald needs at least one active admin; make someone else an admin first.".into(),
        ));
    }
    Ok(user)
}

fn record(
    conn: &mut crate::storage::DbConnection,
    actor: &Actor,
    action: &str,
    user: &users::User,
    details: serde_json::Value,
) -> Result<(), AppError> {
    audit::record(
        conn,
        actor,
        action,
        "user",
        Some(&user.id.to_string()),
        details,
    )?;
    Ok(())
}

pub async fn change_role(
    req: HttpRequest,
    auth: Auth<perm::ManageUsers>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<i64>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, AppError> {
    let role: Role = form
        .role
        .parse()
        .map_err(|e: crate::domain::role::UnknownRole| {
            AppError::invalid("invalid_role", e.to_string())
        })?;
    let (me, actor, target) = (my_id(&auth), auth.actor(), path.into_inner());
    let user = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                let user = guard_change(conn, me, target, role != Role::Admin)?;
                if user.role != role {
                    users::set_role(conn, user.id, role)?;
                    record(
                        conn,
                        &actor,
                        "user.role_changed",
                        &user,
                        serde_json::json!({"from": user.role.as_str(), "to": role.as_str()}),
                    )?;
                }
                Ok::<_, AppError>(user)
            })
        })
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
    let (me, actor) = (my_id(&auth), auth.actor());
    let user = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                let user = guard_change(conn, me, target, disable)?;
                users::set_disabled(conn, user.id, disable)?;
                let action = if disable {
                    "user.disabled"
                } else {
                    "user.enabled"
                };
                record(conn, &actor, action, &user, serde_json::json!({}))?;
                Ok::<_, AppError>(user)
            })
        })
        .await?;
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
    let (me, actor, target) = (my_id(&auth), auth.actor(), path.into_inner());
    let (session_id, keys) = (my_session(&auth)?, state.keys.clone());
    let temporary = token::readable_password();
    let hash = state
        .passwords
        .hash(temporary.clone())
        .await
        .map_err(password_error)?;
    let user = state
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                let user = guard_change(conn, me, target, false)?;
                users::set_password(conn, user.id, &hash, true, None)?;
                record(
                    conn,
                    &actor,
                    "user.password_reset",
                    &user,
                    serde_json::json!({}),
                )?;
                Reveal::new(
                    format!("New temporary password for {}", user.name),
                    format!("{} / {temporary}", user.email),
                    "Share it privately. They must choose a new password when they sign in. This is shown only once.",
                )
                .seal(&keys)?
                .keep(conn, session_id, RevealOn::Users)?;
                Ok::<_, AppError>(user)
            })
        })
        .await?;
    session.success(format!(
        "{}'s password was reset and their sessions ended.",
        user.name
    ));
    Ok(redirect_response(&req, paths::USERS))
}
