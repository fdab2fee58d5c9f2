//! Password checks at the web edge, for sign-in and for the change-password form alike:
//! failed checks are throttled per account and per client address (kept in the database, so
//! the limits hold across instances), each attempt is counted and recorded before its password
//! is checked (so parallel guesses cannot all pass the count first), and Argon2 runs under
//! `Passwords`' bound (a few at a time, the rest waiting a bounded time).

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::{Semaphore, SemaphorePermit};

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

pub enum Verdict<T> {
    /// Too many failures lately: nothing was checked.
    Throttled {
        retry_after_secs: u64,
        per_account: bool,
    },
    /// Herald could not check the password in time; the attempt was not counted.
    Busy { retry_after_secs: u64 },
    /// Checked (and counted as a failure until `Attempt::forget`), with what `load` returned.
    Checked {
        matches: bool,
        attempt: Attempt,
        loaded: T,
    },
}

/// Turns for the database side of password checks. Every sign-in, even one turned away at
/// once, takes a trip to the database on a blocking thread; 200 connections flooding the
/// sign-in form kept some 200 such threads busy, and `/healthz` waited behind them (p99 over
/// 200 ms). With a few turns the flood waits here, asleep, and the rest of Herald finds the
/// CPU and the database free.
pub struct SignInTurns {
    permits: Semaphore,
    max_wait: Duration,
}

impl SignInTurns {
    pub fn new(turns: usize, max_wait: Duration) -> Self {
        SignInTurns {
            permits: Semaphore::new(turns.max(1)),
            max_wait,
        }
    }

    /// Two turns per core; a sign-in waits 3 s at most for one.
    pub fn per_core() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::new(2 * cores, Duration::from_secs(3))
    }

    async fn take(&self) -> Option<SemaphorePermit<'_>> {
        tokio::time::timeout(self.max_wait, self.permits.acquire())
            .await
            .ok()?
            .ok()
    }
}

/// Counts an attempt on `email`'s account from this client and, once it is admitted, runs
/// `load` in the same trip to the database (so a flood of refused attempts costs one trip
/// each); then checks `password` against the hash `stored` picks from what was loaded. Give
/// `stored` a dummy hash where there is no account: the same work either way.
pub async fn check_password<T: Send + 'static>(
    state: &AppState,
    req: &HttpRequest,
    email: &str,
    password: String,
    load: impl FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
    stored: impl FnOnce(&T) -> String,
) -> Result<Verdict<T>, AppError> {
    let account_key = format!("account:{}", email.trim().to_lowercase());
    let address_key = format!(
        "address:{}",
        client_address(req, state.settings.trust_proxy)
    );
    let keys = (account_key.clone(), address_key);
    let Some(turn) = state.sign_in_turns.take().await else {
        return Ok(Verdict::Busy {
            retry_after_secs: state.sign_in_turns.max_wait.as_secs().max(1),
        });
    };
    let admitted = state
        .db
        .run(
            move |conn| match login_attempts::admit(conn, &keys.0, &keys.1, LIMITS, now())? {
                Admission::Admitted { ids } => Ok(Ok((ids, load(conn)?))),
                Admission::Throttled {
                    retry_after_secs,
                    per_account,
                } => Ok::<_, AppError>(Err(Verdict::Throttled {
                    retry_after_secs,
                    per_account,
                })),
            },
        )
        .await;
    drop(turn);
    let (ids, loaded) = match admitted? {
        Ok(admitted) => admitted,
        Err(throttled) => return Ok(throttled),
    };
    let stored = stored(&loaded);
    match state.passwords.verify(password, stored).await {
        Ok(matches) => Ok(Verdict::Checked {
            matches,
            attempt: Attempt { account_key, ids },
            loaded,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sign_ins_wait_a_bounded_time_for_a_turn() {
        let turns = SignInTurns::new(2, Duration::from_millis(30));
        let first = turns.take().await;
        let second = turns.take().await;
        assert!(first.is_some() && second.is_some());
        assert!(turns.take().await.is_none(), "a third waits, then gives up");
        drop(first);
        assert!(turns.take().await.is_some(), "a turn given back is taken");
    }

    #[test]
    fn throttled_messages_say_how_long() {
        assert_eq!(
            throttled_message("failed sign-ins", 61, true),
            "Too many failed sign-ins for this account. Try again in 2 minutes."
        );
        assert_eq!(
            throttled_message("wrong passwords", 5, false),
            "Too many wrong passwords for your address. Try again in 1 minute."
        );
    }
}
