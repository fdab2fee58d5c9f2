//! A person's own account: changing their password (also required after an admin reset).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::fields::FieldProblems;
use crate::domain::user::{Email, NewPassword};
use crate::error::AppError;
use crate::service::sign_in::{self, Verdict, throttled_message};
use crate::service::users as accounts;
use crate::startup::AppState;
use crate::web::chrome::Chrome;
use crate::web::errors::with_retry_after;
use crate::web::identity::{Auth, client_address, perm, redirect_response};
use crate::web::session::TypedSession;
use crate::web::{paths, render, render_with_status};

#[derive(Template)]
#[template(path = "account/password.html")]
struct PasswordPage {
    chrome: Chrome,
    required: bool,
    errors: FieldProblems,
}

pub async fn password_form(
    auth: Auth<perm::ViewDashboard>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    render(&PasswordPage {
        required: auth.user().is_some_and(|u| u.must_change_password),
        chrome,
        errors: FieldProblems::default(),
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
    let mut errors = FieldProblems::default();

    let page = |chrome, errors| PasswordPage {
        required: me.must_change_password,
        chrome,
        errors,
    };
    // The current password is a guessable secret like any sign-in: throttled the same way,
    // against the same account.
    let verdict = sign_in::check_current_password(
        &state,
        &client_address(&req, state.settings.trust_proxy),
        me.id,
        form.current_password.clone(),
    )
    .await?;
    let attempt = match verdict {
        Verdict::Throttled {
            retry_after_secs,
            per_account,
        } => {
            errors.add(
                "current_password",
                throttled_message("wrong passwords", retry_after_secs, per_account),
            );
            let res = render_with_status(&page(chrome, errors), StatusCode::TOO_MANY_REQUESTS)?;
            return Ok(with_retry_after(res, retry_after_secs));
        }
        Verdict::Busy { retry_after_secs } => {
            errors.add(
                "current_password",
                "Herald is busy checking passwords. Try again in a few seconds.",
            );
            let res = render_with_status(&page(chrome, errors), StatusCode::SERVICE_UNAVAILABLE)?;
            return Ok(with_retry_after(res, retry_after_secs));
        }
        Verdict::Checked { matches: false, .. } => {
            errors.add("current_password", "This is not your current password.");
            None
        }
        Verdict::Checked {
            matches: true,
            attempt,
            loaded,
        } => Some((attempt, loaded)),
    };
    let email = Email::parse(&me.email).ok();
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
    let (new, (attempt, stored)) = match (new, attempt, errors.is_empty()) {
        (Some(new), Some(checked), true) => (new, checked),
        (_, checked, _) => {
            if let Some((attempt, _)) = checked {
                // The current password was right; only the new one was refused.
                sign_in::forget(&state, attempt).await?;
            }
            return render_with_status(&page(chrome, errors), StatusCode::UNPROCESSABLE_ENTITY);
        }
    };

    // Other sessions of this person end; this one carries on.
    let ended =
        accounts::change_own_password(&state, auth.actor(), stored.id, me.session_id, attempt, new)
            .await?;
    if ended > 0 {
        session.success("Your password has been changed. Other sessions have been signed out.");
    } else {
        session.success("Your password has been changed.");
    }
    Ok(redirect_response(&req, paths::HOME))
}
