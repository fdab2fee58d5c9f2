//! Who is asking, and may they? The `identify` middleware resolves the signed-in person for
//! pages; the one `Auth<P>` extractor checks permission `P` against the role table, for a
//! person on the pages and for an API key under `/api/v1`.

use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;

use actix_session::SessionExt;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};

use crate::auth::token;
use crate::domain::audit::{Actor, ActorKind};
use crate::domain::role::{Permission, Role};
pub use crate::domain::role::{Permit, perm};
use crate::error::AppError;
use crate::service::rate_limits::Quota;
use crate::startup::AppState;
use crate::storage::{sessions, users};
use crate::web::session::TypedSession;
use crate::web::{ApiScope, is_htmx, paths};

/// A signed-in person, as loaded for this request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub must_change_password: bool,
    /// The server-side session this request came with.
    pub session_id: i64,
}

impl CurrentUser {
    pub fn can(&self, permission: Permission) -> bool {
        self.role.can(permission)
    }

    pub fn initials(&self) -> String {
        self.name
            .split_whitespace()
            .filter_map(|w| w.chars().next())
            .take(2)
            .flat_map(char::to_uppercase)
            .collect()
    }
}

/// The result of the `identify` middleware, kept in the request's extensions.
#[derive(Debug, Clone)]
pub struct Identity(pub Option<CurrentUser>);

/// An API key that authenticated this request.
#[derive(Debug, Clone)]
pub struct ApiKeyPrincipal {
    pub id: i64,
    pub public_id: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub enum Principal {
    User(CurrentUser),
    ApiKey(ApiKeyPrincipal),
}

impl Principal {
    pub fn role(&self) -> Role {
        match self {
            Principal::User(u) => u.role,
            Principal::ApiKey(k) => k.role,
        }
    }

    pub fn actor(&self) -> Actor {
        match self {
            Principal::User(u) => Actor {
                kind: ActorKind::User,
                id: Some(u.id),
                label: format!("{} <{}>", u.name, u.email),
            },
            Principal::ApiKey(k) => Actor {
                kind: ActorKind::ApiKey,
                id: Some(k.id),
                label: format!("API key \"{}\"", k.name),
            },
        }
    }

    pub fn user(&self) -> Option<&CurrentUser> {
        match self {
            Principal::User(u) => Some(u),
            Principal::ApiKey(_) => None,
        }
    }
}

/// The authenticated principal, proven to hold permission `P`.
pub struct Auth<P> {
    pub principal: Principal,
    _permit: PhantomData<P>,
}

impl<P> Auth<P> {
    pub fn actor(&self) -> Actor {
        self.principal.actor()
    }

    /// The signed-in person (pages only; API keys are not people).
    pub fn user(&self) -> Option<&CurrentUser> {
        self.principal.user()
    }
}

fn check<P: Permit>(principal: Principal) -> Result<Auth<P>, AppError> {
    if principal.role().can(P::PERMISSION) {
        Ok(Auth {
            principal,
            _permit: PhantomData,
        })
    } else {
        Err(AppError::Forbidden(P::PERMISSION.describe()))
    }
}

impl<P: Permit + 'static> FromRequest for Auth<P> {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if req.app_data::<ApiScope>().is_some() {
            let state = req.app_data::<web::Data<AppState>>().cloned();
            let bearer = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let req = req.clone();
            Box::pin(async move {
                let state =
                    state.ok_or_else(|| AppError::internal(anyhow::anyhow!("no app state")))?;
                let (key, quota) = authenticate_api_key(&state, bearer.as_deref()).await?;
                // Issue 19: the key's rate limit, counted before anything else is done; the
                // quota goes on the answer as `RateLimit-*` headers (`rate_limit_headers`).
                if let Some(quota) = quota {
                    req.extensions_mut().insert(quota);
                    if !quota.allowed {
                        return Err(AppError::TooManyRequests {
                            message: format!(
                                "This API key may make {} requests a minute; try again in {} seconds.",
                                quota.limit, quota.reset_secs
                            ),
                            retry_after_secs: quota.reset_secs,
                        });
                    }
                }
                check::<P>(Principal::ApiKey(key))
            })
        } else {
            let identity = req.extensions().get::<Identity>().cloned();
            let result = match identity {
                Some(Identity(Some(user))) => check::<P>(Principal::User(user)),
                _ => Err(AppError::Unauthenticated),
            };
            Box::pin(ready(result))
        }
    }
}

async fn authenticate_api_key(
    state: &AppState,
    bearer: Option<&str>,
) -> Result<(ApiKeyPrincipal, Option<Quota>), AppError> {
    let key = bearer
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|k| k.starts_with(token::API_KEY_PREFIX))
        .ok_or(AppError::InvalidApiKey)?;
    let found = crate::service::api_keys::authenticate(state, key)
        .await?
        .ok_or(AppError::InvalidApiKey)?;
    let quota = crate::service::rate_limits::check(state, &found).await?;
    Ok((
        ApiKeyPrincipal {
            id: found.id,
            public_id: found.public_id,
            name: found.name,
            role: found.role,
        },
        quota,
    ))
}

/// Issue 19: puts the API key's `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
/// on every API answer, refusals (429) included, once `Auth<P>` has counted the request.
pub async fn rate_limit_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let quota = res.request().extensions().get::<Quota>().copied();
    if let Some(q) = quota {
        let headers = res.headers_mut();
        for (name, value) in [
            ("ratelimit-limit", u64::from(q.limit)),
            ("ratelimit-remaining", u64::from(q.remaining)),
            ("ratelimit-reset", q.reset_secs),
        ] {
            headers.insert(
                header::HeaderName::from_static(name),
                header::HeaderValue::from(value),
            );
        }
    }
    Ok(res)
}

/// Paths that never need a person: the API (keys), provider webhooks, assets, probes.
/// Paths machines call (the API, providers' webhooks, shops' and CRMs' trigger events): no
/// session, no setup or password-change redirect (a shop must never be sent to a sign-in page).
fn is_machine_path(path: &str) -> bool {
    ["/api/", "/webhooks/", "/hooks/", "/assets/"]
        .iter()
        .any(|p| path.starts_with(p))
        || matches!(path, "/healthz" | "/metrics" | "/favicon.ico")
}

/// Paths that stay reachable while a person must first change their password.
fn allowed_before_password_change(path: &str) -> bool {
    matches!(path, paths::ACCOUNT_PASSWORD | paths::LOGOUT)
}

/// The client's address: the peer's, or the one a proxy put in `X-Forwarded-For` /
/// `Forwarded` when `HERALD_TRUST_PROXY` says such a proxy is in front.
pub fn client_address(req: &HttpRequest, trust_proxy: bool) -> String {
    if trust_proxy && let Some(ip) = req.connection_info().realip_remote_addr() {
        return ip.to_owned();
    }
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// A redirect that works for plain requests (303) and for htmx (which needs `HX-Redirect`).
pub fn redirect_response(req: &HttpRequest, to: &str) -> HttpResponse {
    if is_htmx(req) {
        HttpResponse::Ok()
            .insert_header(("HX-Redirect", to))
            .finish()
    } else {
        HttpResponse::SeeOther()
            .insert_header((header::LOCATION, to))
            .finish()
    }
}

/// Resolves the signed-in person from the session for every page request, sends everyone to
/// the setup page while Herald has no users, and holds people with an admin-set password on
/// the change-password page.
pub async fn identify(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let path = req.path().to_owned();
    if is_machine_path(&path) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req
            .error_response(AppError::internal(anyhow::anyhow!("no app state")))
            .map_into_right_body());
    };
    let session = TypedSession::new(req.get_session());

    let user = match resolve_user(&state, &session).await {
        Ok(u) => u,
        Err(e) => return Ok(req.error_response(e).map_into_right_body()),
    };

    if user.is_none() && path != paths::SETUP {
        match setup_needed(&state).await {
            Ok(true) => {
                let res = redirect_response(req.request(), paths::SETUP);
                return Ok(req.into_response(res).map_into_right_body());
            }
            Ok(false) => {}
            Err(e) => return Ok(req.error_response(e).map_into_right_body()),
        }
    }
    if let Some(u) = &user
        && u.must_change_password
        && !allowed_before_password_change(&path)
    {
        let res = redirect_response(req.request(), paths::ACCOUNT_PASSWORD);
        return Ok(req.into_response(res).map_into_right_body());
    }
    req.extensions_mut().insert(Identity(user));
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// True while no account exists. Once one does, the answer is cached for good: accounts are
/// disabled, never deleted, so setup can never be needed again.
pub async fn setup_needed(state: &AppState) -> Result<bool, AppError> {
    if state.setup_done.load(Ordering::Relaxed) {
        return Ok(false);
    }
    let exists = state
        .db
        .run(|conn| Ok::<_, AppError>(users::any_exists(conn)?))
        .await?;
    if exists {
        state.setup_done.store(true, Ordering::Relaxed);
    }
    Ok(!exists)
}

/// The person whose session the cookie names, in one query for session and account. A session
/// that was revoked (password changed, account disabled), has expired or is unknown (signed
/// out) leaves the visitor anonymous, and the cookie is cleared, with a word on why.
async fn resolve_user(
    state: &AppState,
    session: &TypedSession,
) -> Result<Option<CurrentUser>, AppError> {
    let Some(session_token) = session.session_token() else {
        return Ok(None);
    };
    let hash = token::hash_token(&session_token);
    let at = crate::storage::now();
    let found = state
        .db
        .run(move |conn| {
            let found = sessions::find_with_user(conn, &hash)?;
            if let Some((s, u)) = &found
                && usable(s, u, at)
            {
                sessions::touch(conn, s, at)?;
            }
            Ok::<_, AppError>(found)
        })
        .await?;
    let Some((s, u)) = found else {
        session.sign_out();
        return Ok(None);
    };
    if usable(&s, &u, at) {
        return Ok(Some(CurrentUser {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            must_change_password: u.must_change_password,
            session_id: s.id,
        }));
    }
    session.sign_out();
    if !u.is_active() {
        session.error("Your account has been disabled. Ask an admin to enable it.");
    } else if s.revoked_at.is_some() {
        session.flash(
            crate::web::session::FlashLevel::Info,
            "Your password or access changed. Sign in again.",
        );
    } else {
        session.flash(
            crate::web::session::FlashLevel::Info,
            "Your session expired. Sign in again.",
        );
    }
    Ok(None)
}

fn usable(s: &sessions::Session, u: &users::User, at: chrono::NaiveDateTime) -> bool {
    s.revoked_at.is_none() && s.expires_at > at && u.is_active()
}

/// The current person for handlers that serve both signed-in and anonymous visitors.
pub struct MaybeUser(pub Option<CurrentUser>);

impl FromRequest for MaybeUser {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let user = req.extensions().get::<Identity>().and_then(|i| i.0.clone());
        ready(Ok(MaybeUser(user)))
    }
}

#[cfg(test)]
mod tests {
    use super::is_machine_path;

    #[test]
    fn machine_paths_skip_the_session_and_the_setup_redirect() {
        for path in [
            "/api/v1/messages",
            "/webhooks/twilio/ch_1",
            "/hooks/shop-orders-1a2b",
            "/assets/app.css",
            "/healthz",
        ] {
            assert!(is_machine_path(path), "{path}");
        }
        for path in ["/", "/history", "/hooksmith", "/automations", "/setup"] {
            assert!(!is_machine_path(path), "{path}");
        }
    }
}
