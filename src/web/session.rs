//! Typed access to the session cookie: the id of the server-side session (see
//! `storage::sessions`; the `identify` middleware checks it on every request), the CSRF token
//! and flash messages. The cookie is private (encrypted and authenticated).

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::{Deserialize, Serialize};

use crate::auth::keys::Keys;
use crate::auth::{sealed, token};
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::{DbConnection, now, sessions, write_transaction};

const SESSION_TOKEN: &str = "sid";
const CSRF: &str = "csrf";
const FLASH: &str = "flash";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashLevel {
    Success,
    Info,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flash {
    pub level: FlashLevel,
    pub text: String,
}

impl Flash {
    pub fn class(&self) -> &'static str {
        match self.level {
            FlashLevel::Success => "flash flash-success",
            FlashLevel::Info => "flash flash-info",
            FlashLevel::Error => "flash flash-error",
        }
    }

    pub fn aria_role(&self) -> &'static str {
        match self.level {
            FlashLevel::Error => "alert",
            _ => "status",
        }
    }
}

/// A secret shown exactly once after it was created (a new API key, a temporary password).
/// It waits server-side, sealed, for the session that created it (never in the cookie, where
/// an older copy would show it again), and is deleted as it is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reveal {
    pub title: String,
    pub value: String,
    pub note: String,
}

/// The page a secret is shown on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevealOn {
    Users,
    ApiKeys,
}

impl RevealOn {
    fn as_str(self) -> &'static str {
        match self {
            RevealOn::Users => "users",
            RevealOn::ApiKeys => "api_keys",
        }
    }
}

/// How long a secret waits to be shown: the redirect after creating it takes a moment, and
/// one nobody came to see is not kept.
const REVEAL_WAITS_MINUTES: i64 = 10;

/// A secret sealed under the shown-once key, ready to be kept in the creating transaction.
pub struct SealedReveal(String);

impl Reveal {
    pub fn new(
        title: impl Into<String>,
        value: impl Into<String>,
        note: impl Into<String>,
    ) -> Self {
        Reveal {
            title: title.into(),
            value: value.into(),
            note: note.into(),
        }
    }

    pub fn seal(&self, keys: &Keys) -> Result<SealedReveal, AppError> {
        let json = serde_json::to_string(self).map_err(AppError::internal)?;
        sealed::seal(&keys.reveals, &json)
            .map(SealedReveal)
            .map_err(AppError::internal)
    }
}

impl SealedReveal {
    /// Keeps the secret for `session_id` to see once on `page`.
    pub fn keep(
        &self,
        conn: &mut DbConnection,
        session_id: i64,
        page: RevealOn,
    ) -> diesel::QueryResult<usize> {
        let at = now();
        sessions::add_reveal(
            conn,
            session_id,
            page.as_str(),
            &self.0,
            at,
            at + chrono::Duration::minutes(REVEAL_WAITS_MINUTES),
        )
    }
}

/// Takes the secret waiting for this session on `page`, if any: deleted as it is read, so it
/// is shown once whatever cookie comes back.
pub async fn take_reveal(
    state: &AppState,
    session_id: i64,
    page: RevealOn,
) -> Result<Option<Reveal>, AppError> {
    let taken = state
        .db
        .run(move |conn| {
            Ok::<_, AppError>(write_transaction(conn, |conn| {
                sessions::take_reveal(conn, session_id, page.as_str(), now())
            })?)
        })
        .await?;
    let Some(sealed_json) = taken else {
        return Ok(None);
    };
    let opened = sealed::open(&state.keys.reveals, &sealed_json)
        .map_err(|e| e.to_string())
        .and_then(|json| serde_json::from_str(&json).map_err(|e| e.to_string()));
    match opened {
        Ok(reveal) => Ok(Some(reveal)),
        Err(e) => {
            // Sealed under another HERALD_SECRET_KEY: it cannot be shown, only dropped.
            tracing::warn!(error = %e, "a secret kept to be shown once could not be opened");
            Ok(None)
        }
    }
}

pub struct TypedSession(Session);

impl TypedSession {
    pub fn new(session: Session) -> Self {
        TypedSession(session)
    }

    /// Starts a fresh cookie for a person who just signed in, carrying the token of the
    /// session stored for them (`start`): everything from before (the anonymous CSRF token
    /// included) is dropped and the cookie is re-issued.
    pub fn sign_in(&self, session_token: &str) -> Result<(), AppError> {
        let flashes = self.take_flashes();
        self.0.clear();
        self.0.renew();
        self.0.insert(SESSION_TOKEN, session_token)?;
        self.0.insert(CSRF, token::random_token())?;
        if !flashes.is_empty() {
            self.0.insert(FLASH, flashes)?;
        }
        Ok(())
    }

    /// Forgets who was signed in (and everything else); the cookie is re-issued, so a flash
    /// message added afterwards still reaches the next page.
    pub fn sign_out(&self) {
        self.0.clear();
        self.0.renew();
    }

    /// The token of the server-side session this cookie carries, if any (the database keeps
    /// its hash).
    pub fn session_token(&self) -> Option<String> {
        self.0.get::<String>(SESSION_TOKEN).ok().flatten()
    }

    /// The CSRF token, created on first use.
    pub fn csrf_token(&self) -> String {
        if let Ok(Some(t)) = self.0.get::<String>(CSRF) {
            return t;
        }
        let t = token::random_token();
        // A failed insert only means the form will be refused and can be retried.
        let _ = self.0.insert(CSRF, &t);
        t
    }

    pub fn existing_csrf_token(&self) -> Option<String> {
        self.0.get::<String>(CSRF).ok().flatten()
    }

    pub fn flash(&self, level: FlashLevel, text: impl Into<String>) {
        let mut all = self.peek_flashes();
        all.push(Flash {
            level,
            text: text.into(),
        });
        let _ = self.0.insert(FLASH, all);
    }

    pub fn success(&self, text: impl Into<String>) {
        self.flash(FlashLevel::Success, text);
    }

    pub fn error(&self, text: impl Into<String>) {
        self.flash(FlashLevel::Error, text);
    }

    fn peek_flashes(&self) -> Vec<Flash> {
        self.0
            .get::<Vec<Flash>>(FLASH)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    pub fn take_flashes(&self) -> Vec<Flash> {
        let all = self.peek_flashes();
        if !all.is_empty() {
            self.0.remove(FLASH);
        }
        all
    }
}

/// Stores a new session for `user_id`, lasting `ttl`, and returns its token for the cookie
/// (the database keeps only its hash). Expired sessions are pruned on the way. Meant for the
/// transaction that signs the person in.
pub fn start(
    conn: &mut DbConnection,
    user_id: i64,
    ttl: std::time::Duration,
) -> diesel::QueryResult<String> {
    let session_token = token::random_token();
    let at = now();
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12));
    sessions::prune(conn, at)?;
    sessions::create(
        conn,
        user_id,
        &token::hash_token(&session_token),
        at,
        at + ttl,
    )?;
    Ok(session_token)
}

impl FromRequest for TypedSession {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(TypedSession(req.get_session())))
    }
}
