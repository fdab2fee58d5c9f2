//! Password checks, for sign-in and for the change-password form alike, and the sessions a
//! successful sign-in starts and a sign-out ends:
//! failed checks are throttled per account and per client address (kept in the database, so
//! the limits hold across instances), each attempt is counted and recorded before its password
//! is checked (so parallel guesses cannot all pass the count first), and Argon2 runs under
//! `Passwords`' bound (a few at a time, the rest waiting a bounded time).

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::{ServiceError, ServiceResult, Services};
use crate::auth::password::PasswordError;
use crate::auth::token;
use crate::storage::login_attempts::{self, Admission, Limits};
use crate::storage::{DbConnection, now, sessions, users, write_transaction};

/// Failed checks allowed per account (5) and per client address (20) within 15 minutes.
pub const LIMITS: Limits = Limits {
    per_account: 5,
    per_address: 20,
    window: chrono::Duration::minutes(15),
};

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
    svc: &Services,
    client_address: &str,
    email: &str,
    password: String,
    load: impl FnOnce(&mut DbConnection) -> ServiceResult<T> + Send + 'static,
    stored: impl FnOnce(&T) -> String,
) -> ServiceResult<Verdict<T>> {
    let state = svc;
    let account_key = format!("account:{}", email.trim().to_lowercase());
    let address_key = format!("address:{client_address}");
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
                } => Ok::<_, ServiceError>(Err(Verdict::Throttled {
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
                .run(move |conn| Ok::<_, ServiceError>(login_attempts::withdraw(conn, &ids)?))
                .await?;
            Ok(Verdict::Busy { retry_after_secs })
        }
        Err(e) => Err(e.into()),
    }
}

/// Checks a sign-in: `email`'s account is loaded in the same trip as the attempt is counted,
/// and an unknown e-mail is checked against a dummy hash, so it costs what a wrong password
/// costs. `Checked` carries the account, if there is one.
pub async fn check_sign_in(
    svc: &Services,
    client_address: &str,
    email: &str,
    password: String,
) -> ServiceResult<Verdict<Option<users::User>>> {
    let lookup = email.to_owned();
    let dummy = svc.dummy_hash.clone();
    check_password(
        svc,
        client_address,
        email,
        password,
        move |conn| Ok(users::find_by_email(conn, &lookup)?),
        |user| user.as_ref().map_or(dummy, |u| u.password_hash.clone()),
    )
    .await
}

/// Checks the signed-in person's current password (`user_id`), throttled as a sign-in is:
/// `Checked` carries the account.
pub async fn check_current_password(
    svc: &Services,
    client_address: &str,
    user_id: i64,
    password: String,
) -> ServiceResult<Verdict<users::User>> {
    let Some(user) = svc
        .read(move |conn| Ok(users::find(conn, user_id)?))
        .await?
    else {
        return Err(ServiceError::not_found("Your account"));
    };
    let (email, hash) = (user.email.clone(), user.password_hash.clone());
    check_password(
        svc,
        client_address,
        &email,
        password,
        move |_| Ok(user),
        |_| hash,
    )
    .await
}

/// Hashing or checking a password as a side matter (inviting someone, resetting a password):
/// busy is "try again in a moment", anything else an internal fault.
impl From<PasswordError> for ServiceError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy { .. } => ServiceError::Unavailable(anyhow::Error::new(e)),
            PasswordError::Failed(_) => ServiceError::internal(e),
        }
    }
}

/// Forgives a check whose password was right but whose request was refused for another reason
/// (the new password of a change was not acceptable).
pub async fn forget(svc: &Services, attempt: Attempt) -> ServiceResult<()> {
    svc.db
        .run(move |conn| {
            write_transaction(conn, |conn| attempt.forget(conn))?;
            Ok(())
        })
        .await
}

/// Signs `user_id` in after a right password: the attempt is forgiven, the sign-in recorded
/// and a session started, in one transaction. Returns the session's token for the cookie.
pub async fn sign_in(svc: &Services, attempt: Attempt, user_id: i64) -> ServiceResult<String> {
    let ttl = svc.settings.session_ttl;
    svc.db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                attempt.forget(conn)?;
                users::record_login(conn, user_id)?;
                Ok(start_session(conn, user_id, ttl)?)
            })
        })
        .await
}

/// Ends the session whose cookie carries `session_token`, for every copy of the cookie.
pub async fn sign_out(svc: &Services, session_token: &str) -> ServiceResult<()> {
    let hash = token::hash_token(session_token);
    svc.db
        .run(move |conn| {
            write_transaction(conn, |conn| sessions::delete(conn, &hash))?;
            Ok(())
        })
        .await
}

/// Stores a new session for `user_id`, lasting `ttl`, and returns its token for the cookie
/// (the database keeps only its hash). Expired sessions are pruned on the way. Meant for the
/// transaction that signs the person in.
pub fn start_session(
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
