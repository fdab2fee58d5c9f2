//! The background side's own error: what the worker, applying provider events, the template
//! sync and the sandbox's reports can fail with. Background loops log it and carry on; the web
//! edge and the application layer turn it into their own errors (the conversions below), so
//! nothing here speaks HTTP.

use crate::service::ServiceError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// What was asked about is gone (a template deleted while it was being submitted); the
    /// words name it for a person.
    #[error("{0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// No connection came from the pool, or the blocking task failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A background task (a send) panicked or was cancelled.
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

pub type DispatchResult<T> = Result<T, DispatchError>;

impl DispatchError {
    /// "`what` was not found."
    pub fn not_found(what: &str) -> Self {
        DispatchError::NotFound(format!("{what} was not found."))
    }
}

impl From<DispatchError> for ServiceError {
    fn from(err: DispatchError) -> Self {
        match err {
            DispatchError::NotFound(message) => ServiceError::NotFound(message),
            DispatchError::Database(e) => e.into(),
            DispatchError::Storage(e) => e.into(),
            DispatchError::Task(e) => ServiceError::internal(e),
        }
    }
}
