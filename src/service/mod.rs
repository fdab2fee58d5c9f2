//! The application layer: every use case of Herald as one call, the same for a page, the JSON
//! API and background work. A use case checks what it is asked, writes its change and the
//! change's audit entry in one `write_transaction` (see [`write`]), and then announces the
//! change on the event hub. Handlers parse input, call a use case and render its answer; they
//! open no transaction and hold no rule of their own.
//!
//! Every use case takes the [`Services`] context, built once at start and held alike by the
//! web state and the background workers, and answers [`ServiceError`], which the web edge turns
//! into its HTTP error (`error::AppError`) and background code handles itself.

pub mod api_keys;
// Issue 19: the API's objects as JSON, shared with status callbacks.
pub mod api_objects;
// Issue 20: scheduled sends, triggers, reminders.
pub mod automations;
pub mod broadcasts;
// Issue 19: status callbacks to the business.
pub mod callbacks;
pub mod channels;
pub mod contacts;
// Answers read a moment ago: API keys and channels.
pub mod fresh;
// issue 18: the send history
pub mod history;
pub mod imports;
pub mod lists;
pub mod overview;
pub mod paging;
// Issue 19: per-key API rate limits and idempotency keys.
pub mod idempotency;
pub mod rate_limits;
// Issue 18: the message detail page and retention.
pub mod message_detail;
pub mod resends;
pub mod retention;
pub mod reveals;
pub mod sends;
pub mod sign_in;
pub mod templates;
pub mod users;

use std::sync::Arc;

use crate::auth::keys::Keys;
use crate::auth::password::Passwords;
use crate::config::Settings;
use crate::dispatch::hub::EventHub;
use crate::dispatch::metrics::Metrics;
use crate::dispatch::registry::ChannelRegistry;
use crate::dispatch::worker::Dispatcher;
use crate::domain::audit::Actor;
pub use crate::domain::fields::{FieldProblem, FieldProblems};
use crate::storage::{Db, DbConnection, StorageError, audit, write_transaction};

/// What every use case may use, built once at start. Cheap to share (`Arc<Services>`).
pub struct Services {
    pub db: Db,
    pub settings: Settings,
    /// The base URL people and providers reach Herald at (no trailing slash).
    pub public_url: String,
    pub keys: Keys,
    /// Adapters for the stored channels.
    pub channels: Arc<ChannelRegistry>,
    /// Announces changes to live pages (and, on PostgreSQL, to other instances).
    pub hub: EventHub,
    /// This process's outbox worker, woken when a message is queued here.
    pub dispatcher: Dispatcher,
    pub metrics: Arc<Metrics>,
    /// How many contact imports run at once (the rest queue, then are refused as busy).
    pub imports: crate::import::gate::ImportGate,
    /// Argon2 hashing and checking, a bounded number at a time.
    pub passwords: Passwords,
    /// Checked for unknown e-mails, so that a sign-in takes as long either way.
    pub dummy_hash: String,
    /// Turns for the database side of sign-ins, so a flood of them waits asleep.
    pub sign_in_turns: sign_in::SignInTurns,
    /// API keys that authenticated in the last moments (`api_keys::authenticate`).
    pub api_key_cache: api_keys::KeyCache,
    /// Channels looked up by sends in the last moments (`channels::for_send`).
    pub channel_cache: channels::ChannelCache,
    /// Requests counted against each API key's limit (issue 19).
    pub rate_limiter: rate_limits::RateLimiter,
}

/// Why a use case did not do what it was asked. The words are for the person or client who
/// asked; `code`s are the API's machine-readable error codes.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// What was named does not exist (or is not visible to whoever asked).
    #[error("{0}")]
    NotFound(String),
    /// The input breaks a rule; `fields` names the fields at fault when there are any.
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        fields: FieldProblems,
    },
    /// The request is fine but the state of things does not allow it now (a name taken, a
    /// message already resent, a template not in review).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A rule other than the role refuses it for whoever asked (only an admin reverses an
    /// opt-out; nobody approves their own template).
    #[error("{0}")]
    Forbidden(String),
    /// Too much of this work is under way; try again after `retry_after_secs`.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    /// The database (or another resource Herald needs) is not available right now.
    #[error("Herald is busy right now; try again in a moment.")]
    Unavailable(#[source] anyhow::Error),
    /// A fault on Herald's side; logged where it is turned into an answer.
    #[error("Something went wrong on our side. The error has been logged.")]
    Internal(#[source] anyhow::Error),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    /// "`what` was not found."
    pub fn not_found(what: &str) -> Self {
        ServiceError::NotFound(format!("{what} was not found."))
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            code,
            message: message.into(),
            fields: FieldProblems::default(),
        }
    }

    /// Invalid because of the fields named in `fields`; the message lists them.
    pub fn invalid_fields(code: &'static str, fields: FieldProblems) -> Self {
        ServiceError::Invalid {
            code,
            message: fields.summary(),
            fields,
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ServiceError::Internal(err.into())
    }

    /// The field problems of an `Invalid`, for a form to show beside its fields.
    pub fn fields(&self) -> Option<&FieldProblems> {
        match self {
            ServiceError::Invalid { fields, .. } if !fields.is_empty() => Some(fields),
            _ => None,
        }
    }
}

impl From<diesel::result::Error> for ServiceError {
    fn from(err: diesel::result::Error) -> Self {
        match err {
            diesel::result::Error::NotFound => ServiceError::not_found("The record"),
            other => ServiceError::Internal(other.into()),
        }
    }
}

impl From<StorageError> for ServiceError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Pool(_) | StorageError::Lane(_) => ServiceError::Unavailable(err.into()),
            StorageError::Task(_) => ServiceError::Internal(err.into()),
        }
    }
}

impl From<anyhow::Error> for ServiceError {
    fn from(err: anyhow::Error) -> Self {
        ServiceError::Internal(err)
    }
}

/// A change being written: the connection inside the transaction, and who is making it. Its
/// audit entry goes through [`Change::audit`], so it is part of the same transaction.
pub struct Change<'a> {
    pub conn: &'a mut DbConnection,
    pub actor: &'a Actor,
}

impl Change<'_> {
    /// Records the audit entry of this change, inside its transaction: if anything after this
    /// fails, the entry goes with the change.
    pub fn audit(
        &mut self,
        action: &str,
        subject_kind: &str,
        subject_id: Option<&str>,
        details: serde_json::Value,
    ) -> ServiceResult<()> {
        audit::record(
            self.conn,
            self.actor,
            action,
            subject_kind,
            subject_id,
            details,
        )?;
        failpoint::after_audit(self.actor)
    }
}

/// One unit of work: `work` runs inside `write_transaction` (on SQLite `BEGIN IMMEDIATE`, so
/// colliding writers wait their turn instead of failing with "database is locked"), with the
/// actor for its audit entries; an error anywhere rolls back the change and its entries
/// together. Blocking: call it inside `Db::run` (or use [`Services::write`]).
pub fn write<T>(
    conn: &mut DbConnection,
    actor: &Actor,
    work: impl FnOnce(&mut Change<'_>) -> ServiceResult<T>,
) -> ServiceResult<T> {
    write_transaction(conn, |conn| work(&mut Change { conn, actor }))
}

impl Services {
    /// [`write`] on a pooled connection, on the blocking pool.
    pub async fn write<T, F>(&self, actor: Actor, work: F) -> ServiceResult<T>
    where
        F: FnOnce(&mut Change<'_>) -> ServiceResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.db.run(move |conn| write(conn, &actor, work)).await
    }

    /// Reads on a pooled connection, on the blocking pool (no transaction is opened).
    pub async fn read<T, F>(&self, work: F) -> ServiceResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ServiceResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.db.run(work).await
    }
}

/// A fault that tests inject right after an audit entry is written, to prove that the entry
/// and its change commit or roll back together. Compiled into test builds only.
pub mod failpoint {
    #[cfg(test)]
    use super::ServiceError;
    use super::ServiceResult;
    use crate::domain::audit::Actor;

    #[cfg(test)]
    static FAIL_FOR: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    /// Makes every change by an actor with this label fail right after its audit entry.
    #[cfg(test)]
    pub fn fail_after_audit(actor_label: &str) {
        if let Ok(mut labels) = FAIL_FOR.lock() {
            labels.push(actor_label.to_owned());
        }
    }

    #[cfg(test)]
    pub(super) fn after_audit(actor: &Actor) -> ServiceResult<()> {
        let armed = FAIL_FOR
            .lock()
            .map(|labels| labels.contains(&actor.label))
            .unwrap_or(false);
        if armed {
            return Err(ServiceError::internal(anyhow::anyhow!(
                "injected failure after the audit entry"
            )));
        }
        Ok(())
    }

    #[cfg(not(test))]
    #[inline(always)]
    pub(super) fn after_audit(_actor: &Actor) -> ServiceResult<()> {
        Ok(())
    }
}

/// For the application layer's unit tests: a fresh migrated SQLite database in a temporary
/// directory (removed when the directory is dropped).
#[cfg(test)]
pub(crate) mod testing {
    use crate::storage::{self, Db};

    pub fn sqlite_db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let db = Db::connect(&url, 4).expect("open the database");
        storage::run_migrations(&mut db.get().expect("connection")).expect("migrate");
        (dir, db)
    }

    /// How many audit entries the actor labelled `label` has.
    pub fn audit_entries_by(conn: &mut crate::storage::DbConnection, label: &str) -> usize {
        storage::audit::page(conn, None, 1000)
            .expect("audit page")
            .iter()
            .filter(|e| e.actor_label == label)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testing::audit_entries_by as entries;

    #[test]
    fn a_change_and_its_audit_entry_commit_or_roll_back_together() {
        let (_dir, db) = testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let kept = Actor::system("unit-of-work: kept");
        write(&mut conn, &kept, |change| {
            change.audit("test.kept", "test", None, serde_json::json!({}))
        })
        .expect("committed");
        assert_eq!(entries(&mut conn, &kept.label), 1);

        let failing = Actor::system("unit-of-work: failing");
        failpoint::fail_after_audit(&failing.label);
        let err = write(&mut conn, &failing, |change| {
            change.audit("test.lost", "test", None, serde_json::json!({}))
        })
        .unwrap_err();
        assert!(matches!(err, ServiceError::Internal(_)), "{err:?}");
        assert_eq!(entries(&mut conn, &failing.label), 0, "rolled back");
    }
}
