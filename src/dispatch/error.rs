//! The background side's own error: what the worker, applying provider events, the template
//! sync and the sandbox's reports can fail with. Background loops log it and carry on; the web
//! edge and the application layer turn it into their own errors (the conversions below), so
//! nothing here speaks HTTP.

use crate::error::AppError;
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

impl From<DispatchError> for AppError {
    fn from(err: DispatchError) -> Self {
        ServiceError::from(err).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;

    #[test]
    fn the_web_edge_answers_as_it_did_for_the_same_faults() {
        let gone = AppError::from(DispatchError::not_found("This template"));
        assert_eq!(gone.status_code(), 404);
        assert_eq!(gone.to_string(), "This template was not found.");
        let missing_row = AppError::from(DispatchError::from(diesel::result::Error::NotFound));
        assert_eq!(missing_row.status_code(), 404);
        let broken = AppError::from(DispatchError::from(
            diesel::result::Error::RollbackTransaction,
        ));
        assert_eq!(broken.status_code(), 500);
        assert!(matches!(
            ServiceError::from(DispatchError::not_found("x")),
            ServiceError::NotFound(_)
        ));
    }
}
