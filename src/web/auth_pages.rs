//! First-run setup, sign in and sign out.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Duration;
use serde::Deserialize;

use crate::auth::password::PasswordError;
use crate::domain::audit::{Actor, ActorKind};
use crate::domain::role::Role;
use crate::domain::user::{DisplayName, Email, NewPassword};
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::{audit, login_attempts, now, users};
use crate::web::chrome::Chrome;
use crate::web::errors::safe_next;
use crate::web::identity::{MaybeUser, redirect_response, setup_needed};
use crate::web::passwords::{password_error, with_retry_after};
use crate::web::session::TypedSession;
use crate::web::{FieldErrors, paths, render, render_with_status};

/// Failed sign-ins allowed per account, and per client address, within the window.
pub const ACCOUNT_LIMIT: i64 = 5;
pub const ADDRESS_LIMIT: i64 = 20;
pub const THROTTLE_WINDOW_MINUTES: i64 = 15;

#[derive(Template)]
#[template(path = "auth/setup.html")]
struct SetupPage {
    chrome: Chrome,
    form: SetupForm,
    errors: FieldErrors,
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
        errors: FieldErrors::default(),
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
    let mut errors = FieldErrors::default();
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

    let hash = state
        .passwords
        .hash(pw.expose().to_owned())
        .await
        .map_err(password_error)?;
    let created = state
        .db
        .run(move |conn| {
            let user = users::create_first_admin(
                conn,
                &users::NewUser {
                    email: email.as_str(),
                    name: name.as_str(),
                    role: Role::Admin,
                    password_hash: &hash,
                    must_change_password: false,
                },
            );
            match user {
                Ok(u) => {
                    audit::record(
                        conn,
                        &Actor {
                            kind: ActorKind::User,
                            id: Some(u.id),
                            label: format!("{} <{}>", u.name, u.email),
                        },
                        "setup.completed",
                        "user",
                        Some(&u.id.to_string()),
                        serde_json::json!({"role": "admin"}),
                    )?;
                    Ok(Some(u))
                }
                Err(users::SetupError::AlreadySetUp) => Ok(None),
                Err(users::SetupError::Database(e)) => Err(AppError::from(e)),
            }
        })
        .await?;
    let Some(user) = created else {
        return Err(AppError::NotFound("Herald is already set up.".into()));
    };
    state
        .setup_done
        .store(true, std::sync::atomic::Ordering::Relaxed);
    session.sign_in(user.id, user.session_epoch)?;
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

fn client_address(req: &HttpRequest, trust_proxy: bool) -> String {
    if trust_proxy && let Some(ip) = req.connection_info().realip_remote_addr() {
        return ip.to_owned();
    }
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

enum LoginOutcome {
    Throttled {
        retry_after_secs: u64,
        per_account: bool,
    },
    WrongCredentials,
    Disabled,
    /// The password could not be checked in time (too many checks under way).
    Busy {
        retry_after_secs: u64,
    },
    SignedIn(users::User),
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

    let account_key = format!("account:{email}");
    let address_key = format!(
        "address:{}",
        client_address(&req, state.settings.trust_proxy)
    );
    let outcome = attempt_login(
        &state,
        email,
        form.password.clone(),
        account_key,
        address_key,
    )
    .await?;

    match outcome {
        LoginOutcome::Throttled {
            retry_after_secs,
            per_account,
        } => {
            let minutes = retry_after_secs.div_ceil(60).max(1);
            let who = if per_account {
                "this account"
            } else {
                "your address"
            };
            let res = render_with_status(
                &page(
                    chrome,
                    &format!(
                        "Too many failed sign-ins for {who}. Try again in {minutes} minute{}.",
                        if minutes == 1 { "" } else { "s" }
                    ),
                ),
                StatusCode::TOO_MANY_REQUESTS,
            )?;
            Ok(with_retry_after(res, retry_after_secs))
        }
        LoginOutcome::Busy { retry_after_secs } => {
            let res = render_with_status(
                &page(
                    chrome,
                    "Herald is busy checking sign-ins. Try again in a few seconds.",
                ),
                StatusCode::SERVICE_UNAVAILABLE,
            )?;
            Ok(with_retry_after(res, retry_after_secs))
        }
        LoginOutcome::WrongCredentials => render_with_status(
            &page(chrome, "The e-mail address or password is not right."),
            StatusCode::UNAUTHORIZED,
        ),
        LoginOutcome::Disabled => render_with_status(
            &page(
                chrome,
                "This account is disabled. Ask an admin to enable it.",
            ),
            StatusCode::FORBIDDEN,
        ),
        LoginOutcome::SignedIn(user) => {
            session.sign_in(user.id, user.session_epoch)?;
            tracing::info!(user_id = user.id, "signed in");
            Ok(redirect_response(&req, &next))
        }
    }
}

/// Throttle check, password check (always paying for one Argon2 verification, even for
/// unknown e-mails), then bookkeeping.
async fn attempt_login(
    state: &AppState,
    email: String,
    password: String,
    account_key: String,
    address_key: String,
) -> Result<LoginOutcome, AppError> {
    let window = Duration::minutes(THROTTLE_WINDOW_MINUTES);
    let keys = (account_key.clone(), address_key.clone());
    let (user, throttle) = state
        .db
        .run(move |conn| {
            let at = now();
            let since = at - window;
            let retry = |oldest: Option<chrono::NaiveDateTime>| {
                let until = oldest.unwrap_or(at) + window;
                u64::try_from((until - at).num_seconds().max(1)).unwrap_or(60)
            };
            let (account_failures, account_oldest) =
                login_attempts::failures_since(conn, &keys.0, since)?;
            let (address_failures, address_oldest) =
                login_attempts::failures_since(conn, &keys.1, since)?;
            let throttle = if account_failures >= ACCOUNT_LIMIT {
                Some((retry(account_oldest), true))
            } else if address_failures >= ADDRESS_LIMIT {
                Some((retry(address_oldest), false))
            } else {
                None
            };
            let user = users::find_by_email(conn, &email)?;
            Ok::<_, AppError>((user, throttle))
        })
        .await?;
    if let Some((retry_after_secs, per_account)) = throttle {
        return Ok(LoginOutcome::Throttled {
            retry_after_secs,
            per_account,
        });
    }

    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_hash.clone());
    let matches = match state.passwords.verify(password, stored).await {
        Ok(matches) => matches,
        Err(PasswordError::Busy { retry_after_secs }) => {
            return Ok(LoginOutcome::Busy { retry_after_secs });
        }
        Err(e) => return Err(password_error(e)),
    };

    match user {
        Some(user) if matches => {
            if !user.is_active() {
                return Ok(LoginOutcome::Disabled);
            }
            let id = user.id;
            state
                .db
                .run(move |conn| {
                    login_attempts::clear(conn, &account_key)?;
                    users::record_login(conn, id)?;
                    Ok::<_, AppError>(())
                })
                .await?;
            Ok(LoginOutcome::SignedIn(user))
        }
        _ => {
            state
                .db
                .run(move |conn| {
                    let at = now();
                    login_attempts::record_failure(conn, &[&account_key, &address_key], at)?;
                    login_attempts::prune(conn, at - Duration::days(1))?;
                    Ok::<_, AppError>(())
                })
                .await?;
            Ok(LoginOutcome::WrongCredentials)
        }
    }
}

pub async fn logout(req: HttpRequest, session: TypedSession) -> HttpResponse {
    session.sign_out();
    session.flash(
        crate::web::session::FlashLevel::Info,
        "You have signed out.",
    );
    redirect_response(&req, paths::LOGIN)
}
