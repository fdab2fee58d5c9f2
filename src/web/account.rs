//! A person's own account: changing their password (also required after an admin reset).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::user::{Email, NewPassword};
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::{audit, users};
use crate::web::chrome::Chrome;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::passwords::password_error;
use crate::web::session::TypedSession;
use crate::web::{FieldErrors, paths, render, render_with_status};

#[derive(Template)]
#[template(path = "account/password.html")]
struct PasswordPage {
    chrome: Chrome,
    required: bool,
    errors: FieldErrors,
}

pub async fn password_form(
    auth: Auth<perm::ViewDashboard>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    render(&PasswordPage {
        required: auth.user().is_some_and(|u| u.must_change_password),
        chrome,
        errors: FieldErrors::default(),
    })
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirm: String,
}

pub async fn change_password(
    req: HttpRequest,
    auth: Auth<perm::ViewDashboard>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let me = auth.user().cloned().ok_or(AppError::Unauthenticated)?;
    let form = form.into_inner();
    let mut errors = FieldErrors::default();

    let stored = state
        .db
        .run(move |conn| Ok::<_, AppError>(users::find(conn, me.id)?))
        .await?
        .ok_or(AppError::Unauthenticated)?;
    let current_ok = state
        .passwords
        .verify(form.current_password.clone(), stored.password_hash.clone())
        .await
        .map_err(password_error)?;
    if !current_ok {
        errors.add("current_password", "This is not your current password.");
    }
    let email = Email::parse(&stored.email).ok();
    let new = errors.check(
        "new_password",
        NewPassword::parse(&form.new_password, email.as_ref()),
    );
    if new.is_some() && form.new_password != form.new_password_confirm {
        errors.add("new_password_confirm", "The two passwords differ.");
    }
    if new.is_some() && form.new_password == form.current_password {
        errors.add(
            "new_password",
            "Choose a password different from the current one.",
        );
    }
    let (Some(new), true) = (new, errors.is_empty()) else {
        return render_with_status(
            &PasswordPage {
                required: stored.must_change_password,
                chrome,
                errors,
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    };

    let hash = state
        .passwords
        .hash(new.expose().to_owned())
        .await
        .map_err(password_error)?;
    let actor = auth.actor();
    let epoch = state
        .db
        .run(move |conn| {
            let epoch = users::set_password(conn, stored.id, &hash, false)?;
            audit::record(
                conn,
                &actor,
                "user.password_changed",
                "user",
                Some(&stored.id.to_string()),
                serde_json::json!({}),
            )?;
            Ok::<_, AppError>(epoch)
        })
        .await?;
    // Other sessions of this person end; this one carries on with the new epoch.
    session.set_epoch(epoch)?;
    session.success("Your password has been changed. Other sessions have been signed out.");
    Ok(redirect_response(&req, paths::HOME))
}
