//! Secrets shown once (a new API key, a temporary password): kept sealed beside the session
//! that created them, never in the cookie, and deleted in the transaction that shows them.

use serde::{Deserialize, Serialize};

use super::{ServiceError, ServiceResult, Services};
use crate::auth::keys::Keys;
use crate::auth::sealed;
use crate::storage::{DbConnection, now, sessions, write_transaction};

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
    /// Issue 19: a status-callback endpoint's signing secret.
    Webhooks,
}

impl RevealOn {
    fn as_str(self) -> &'static str {
        match self {
            RevealOn::Users => "users",
            RevealOn::ApiKeys => "api_keys",
            RevealOn::Webhooks => "webhooks",
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

    pub fn seal(&self, keys: &Keys) -> ServiceResult<SealedReveal> {
        let json = serde_json::to_string(self).map_err(ServiceError::internal)?;
        sealed::seal(&keys.reveals, &json)
            .map(SealedReveal)
            .map_err(ServiceError::internal)
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
pub async fn take(
    state: &Services,
    session_id: i64,
    page: RevealOn,
) -> ServiceResult<Option<Reveal>> {
    let taken = state
        .db
        .run(move |conn| {
            Ok::<_, ServiceError>(write_transaction(conn, |conn| {
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
