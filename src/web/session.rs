//! Typed access to the session cookie: the id of the server-side session (see
//! `storage::sessions`; the `identify` middleware checks it on every request), the CSRF token
//! and flash messages. The cookie is private (encrypted and authenticated).

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::{Deserialize, Serialize};

use crate::auth::token;
use crate::error::AppError;

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

impl FromRequest for TypedSession {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(TypedSession(req.get_session())))
    }
}
