//! Password work at the web edge: Argon2 runs under `Passwords`' bound (a few at a time, the
//! rest waiting a bounded time), and what to answer when Herald is too busy to run it.

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderValue};

use crate::auth::password::PasswordError;
use crate::error::AppError;

/// For handlers that hash as a side matter (inviting someone, resetting a password): busy is a
/// 503 ("try again in a moment"), anything else a 500.
pub fn password_error(e: PasswordError) -> AppError {
    match e {
        PasswordError::Busy { .. } => AppError::Unavailable(anyhow::Error::new(e)),
        PasswordError::Failed(_) => AppError::internal(e),
    }
}

/// Adds `Retry-After` to a page answered 429 or 503.
pub fn with_retry_after(mut res: HttpResponse, secs: u64) -> HttpResponse {
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}
