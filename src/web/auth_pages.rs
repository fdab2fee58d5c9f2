//! First-run setup, sign in and sign out.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::fields::FieldProblems;
use crate::domain::user::{DisplayName, Email, NewPassword};
use crate::error::AppError;
use crate::service::sign_in::{self, Verdict, throttled_message};
use crate::service::users as accounts;
use crate::startup::AppState;
use crate::web::chrome::Chrome;
use crate::web::errors::safe_next;
use crate::web::errors::with_retry_after;
use crate::web::identity::{MaybeUser, client_address, redirect_response, setup_needed};
use crate::web::session::TypedSession;
use crate::web::{paths, render, render_with_status};

#[derive(Template)]
#[template(path = "auth/setup.html")]
struct SetupPage {
    chrome: Chrome,
    form: SetupForm,
    errors: FieldProblems,
}

#[derive(Debug, Default, Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

pub async fn setup_form(
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    if !setup_needed(&state).await? {
        return Err(AppError::NotFound("Herald is already set up.".into()));
    }
    render(&SetupPage {
        chrome,
        form: SetupForm::default(),
        errors: FieldProblems::default(),
    })
}

pub async fn setup(
    req: HttpRequest,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    form: web::Form<SetupForm>,
) -> Result<HttpResponse, AppError> {
    if !setup_needed(&state).await? {
        return Err(AppError::NotFound("Herald is already set up.".into()));
    }
    let mut form = form.into_inner();
    let mut errors = FieldProblems::default();
    let name = errors.check("name", DisplayName::parse(&form.name));
    let email = errors.check("email", Email::parse(&form.email));
    let pw = errors.check(
        "password",
        NewPassword::parse(&form.password, email.as_ref()),
    );
    if pw.is_some() && form.password != form.password_confirm {
        errors.add("password_confirm", "The two passwords differ.");
    }
    let (Some(name), Some(email), Some(pw), true) = (name, email, pw, errors.is_empty()) else {
        form.password.clear();
        form.password_confirm.clear();
        return render_with_status(
            &SetupPage {
                chrome,
                form,
                errors,
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    };

    let created = accounts::set_up_first_admin(&state, name, email, pw).await?;
    let Some((user, session_token)) = created else {
        return Err(AppError::NotFound("Herald is already set up.".into()));
    };
    state
        .setup_done
        .store(true, std::sync::atomic::Ordering::Relaxed);
    session.sign_in(&session_token)?;
    session.success(format!(
        "Welcome, {}. Herald is ready: invite your team under Settings › Users.",
        user.name
    ));
    tracing::info!(user_id = user.id, "first admin created");
    Ok(redirect_response(&req, paths::HOME))
}

#[derive(Template)]
#[template(path = "auth/login.html")]
struct LoginPage {
    chrome: Chrome,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn login_form(
    req: HttpRequest,
    user: MaybeUser,
    chrome: Chrome,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, AppError> {
    let next = query
        .next
        .as_deref()
        .and_then(safe_next)
        .unwrap_or(paths::HOME)
        .to_owned();
    if user.0.is_some() {
        return Ok(redirect_response(&req, &next));
    }
    render(&LoginPage {
        chrome,
        email: String::new(),
        next,
        error: None,
    })
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let next = safe_next(&form.next).unwrap_or(paths::HOME).to_owned();
    let email = form.email.trim().to_lowercase();
    let page = |chrome, error: &str| LoginPage {
        chrome,
        email: form.email.trim().to_owned(),
        next: next.clone(),
        error: Some(error.to_owned()),
    };
    if email.is_empty() || form.password.is_empty() {
        return render_with_status(
            &page(chrome, "Enter your e-mail address and password."),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }

    // An unknown e-mail costs the same Argon2 check as a wrong password.
    let verdict = sign_in::check_sign_in(
        &state,
        &client_address(&req, state.settings.trust_proxy),
        &email,
        form.password.clone(),
    )
    .await?;

    match verdict {
        Verdict::Throttled {
            retry_after_secs,
            per_account,
        } => {
            let res = render_with_status(
                &page(
                    chrome,
                    &throttled_message("failed sign-ins", retry_after_secs, per_account),
                ),
                StatusCode::TOO_MANY_REQUESTS,
            )?;
            Ok(with_retry_after(res, retry_after_secs))
        }
        Verdict::Busy { retry_after_secs } => {
            let res = render_with_status(
                &page(
                    chrome,
                    "Herald is busy checking sign-ins. Try again in a few seconds.",
                ),
                StatusCode::SERVICE_UNAVAILABLE,
            )?;
            Ok(with_retry_after(res, retry_after_secs))
        }
        // A disabled account gets the wrong-password answer even for its right password:
        // anything else would confirm the password to whoever is guessing.
        Verdict::Checked {
            matches: true,
            attempt,
            loaded: Some(user),
        } if user.is_active() => {
            let session_token = sign_in::sign_in(&state, attempt, user.id).await?;
            session.sign_in(&session_token)?;
            tracing::info!(user_id = user.id, "signed in");
            Ok(redirect_response(&req, &next))
        }
        Verdict::Checked { .. } => render_with_status(
            &page(chrome, "The e-mail address or password is not right."),
            StatusCode::UNAUTHORIZED,
        ),
    }
}

/// Ends the session on the server (a copy of the cookie opens nothing afterwards) and clears
/// the cookie.
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
) -> Result<HttpResponse, AppError> {
    if let Some(session_token) = session.session_token() {
        sign_in::sign_out(&state, &session_token).await?;
    }
    session.sign_out();
    session.flash(
        crate::web::session::FlashLevel::Info,
        "You have signed out.",
    );
    Ok(redirect_response(&req, paths::LOGIN))
}
