//! Password checks at the web edge, for sign-in and for the change-password form alike:
//! failed checks are throttled per account and per client address (kept in the database, so
//! the limits hold across instances), each attempt is counted and recorded before its password
//! is checked (so parallel guesses cannot all pass the count first), and Argon2 runs under
//! `Passwords`' bound (a few at a time, the rest waiting a bounded time).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

use crate::auth::password::PasswordError;
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::login_attempts::{self, Admission, Limits};
use crate::storage::{DbConnection, now};

/// Failed checks allowed per account (5) and per client address (20) within 15 minutes.
pub const LIMITS: Limits = Limits {
    per_account: 5,
    per_address: 20,
    window: chrono::Duration::minutes(15),
};

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

/// What a throttled check tells the person, e.g. "Too many failed sign-ins for this account.
/// Try again in 12 minutes."
pub fn throttled_message(what: &str, retry_after_secs: u64, per_account: bool) -> String {
    let minutes = retry_after_secs.div_ceil(60).max(1);
    let who = if per_account {
        "this account"
    } else {
        "your address"
    };
    format!(
        "Too many {what} for {who}. Try again in {minutes} minute{}.",
        if minutes == 1 { "" } else { "s" }
    )
}

/// A password check that was counted against the throttle.
pub struct Attempt {
    account_key: String,
    ids: Vec<i64>,
}

impl Attempt {
    /// The password was right: the account's failures are forgiven and this attempt no longer
    /// counts against the address. Meant for the transaction that acts on the success.
    pub fn forget(&self, conn: &mut DbConnection) -> diesel::QueryResult<usize> {
        login_attempts::forget(conn, &self.account_key, &self.ids)
    }
}

pub enum Verdict {
    /// Too many failures lately: nothing was checked.
    Throttled {
        retry_after_secs: u64,
        per_account: bool,
    },
    /// Herald could not check the password in time; the attempt was not counted.
    Busy { retry_after_secs: u64 },
    /// Checked (and counted as a failure until `Attempt::forget`).
    Checked { matches: bool, attempt: Attempt },
}

/// Counts an attempt on `email`'s account from this client, then checks `password` against
/// `stored` (an unknown e-mail is checked against a dummy hash: the same work either way).
pub async fn check_password(
    state: &AppState,
    req: &HttpRequest,
    email: &str,
    password: String,
    stored: String,
) -> Result<Verdict, AppError> {
    let account_key = format!("account:{}", email.trim().to_lowercase());
    let address_key = format!(
        "address:{}",
        client_address(req, state.settings.trust_proxy)
    );
    let keys = (account_key.clone(), address_key);
    let admission = state
        .db
        .run(move |conn| {
            Ok::<_, AppError>(login_attempts::admit(
                conn,
                &keys.0,
                &keys.1,
                LIMITS,
                now(),
            )?)
        })
        .await?;
    let ids = match admission {
        Admission::Throttled {
            retry_after_secs,
            per_account,
        } => {
            return Ok(Verdict::Throttled {
                retry_after_secs,
                per_account,
            });
        }
        Admission::Admitted { ids } => ids,
    };
    match state.passwords.verify(password, stored).await {
        Ok(matches) => Ok(Verdict::Checked {
            matches,
            attempt: Attempt { account_key, ids },
        }),
        Err(PasswordError::Busy { retry_after_secs }) => {
            state
                .db
                .run(move |conn| Ok::<_, AppError>(login_attempts::withdraw(conn, &ids)?))
                .await?;
            Ok(Verdict::Busy { retry_after_secs })
        }
        Err(e) => Err(password_error(e)),
    }
}

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
