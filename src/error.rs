//! One error type for requests, with a deliberate status map. Its default rendering is the
//! JSON error shape of the API (`{"error":{"code","message"}}`); for pages, the
//! `web::errors::render` middleware turns the same error into the layout's error page, an
//! htmx toast or a redirect to sign in.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::dispatch::error::DispatchError;
use crate::domain::fields::FieldProblems;
use crate::service::ServiceError;
use crate::storage::StorageError;

#[derive(thiserror::Error)]
pub enum AppError {
    /// A page needs a signed-in person.
    #[error("Sign in to continue.")]
    Unauthenticated,
    /// An API call without a valid key.
    #[error("A valid API key is required: send the header `Authorization: Bearer <key>`.")]
    InvalidApiKey,
    /// Signed in, but the role does not allow it; carries the words for what was attempted.
    #[error("Your role does not allow you to {0}.")]
    Forbidden(&'static str),
    /// Refused for a reason that is not the role (e.g. approving one's own template).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    /// Input that parses but breaks a rule; `code` is machine-readable (snake_case); `fields`
    /// names the fields at fault, when there are any (the API answers them as `"fields"`).
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        fields: FieldProblems,
    },
    #[error("{0}")]
    BadRequest(String),
    /// The state of things does not allow it now; `code` is machine-readable.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("This form has expired or did not come from Herald. Reload the page and try again.")]
    Csrf,
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    #[error("Herald is busy right now; try again in a moment.")]
    Unavailable(#[source] anyhow::Error),
    /// Busy with work of this kind (imports): 503 with `Retry-After`.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    #[error("Something went wrong on our side. The error has been logged.")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn not_found(what: &str) -> Self {
        AppError::NotFound(format!("{what} was not found."))
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            code,
            message: message.into(),
            fields: FieldProblems::default(),
        }
    }

    /// 409 with the generic `conflict` code.
    pub fn conflict(message: impl Into<String>) -> Self {
        AppError::Conflict {
            code: "conflict",
            message: message.into(),
        }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(err.into())
    }

    /// The machine-readable code of the JSON error shape.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated | AppError::InvalidApiKey => "unauthorized",
            AppError::Forbidden(_) | AppError::Refused(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Invalid { code, .. } => code,
            AppError::BadRequest(_) => "bad_request",
            AppError::Conflict { code, .. } => code,
            AppError::Csrf => "csrf_failed",
            AppError::TooManyRequests { .. } => "rate_limited",
            AppError::Unavailable(_) | AppError::Busy { .. } => "unavailable",
            AppError::Internal(_) => "internal",
        }
    }
}

/// The body of every API error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": {"code": "invalid_phone", "message": "\"12\" is not a phone number."}}))]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// Machine-readable, snake_case (`not_found`, `invalid_limit`, `window_closed`...).
    pub code: &'a str,
    /// For people: what is wrong and how to put it right.
    pub message: &'a str,
    /// The fields at fault, each with its first problem, when the error names fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub fields: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

pub fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: ErrorDetail {
            code,
            message,
            fields: None,
        },
    })
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::Unauthenticated | AppError::InvalidApiKey => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::Refused(_) | AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) | AppError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = match self {
            AppError::Invalid { fields, .. } if !fields.is_empty() => {
                // `{"field": "its first problem"}`, in the order they were found.
                let mut named = serde_json::Map::new();
                for p in fields.iter() {
                    named
                        .entry(p.field.clone())
                        .or_insert_with(|| p.message.clone().into());
                }
                HttpResponse::build(self.status_code()).json(ErrorBody {
                    error: ErrorDetail {
                        code: self.code(),
                        message: &self.to_string(),
                        fields: Some(&named),
                    },
                })
            }
            _ => json_error(self.status_code(), self.code(), &self.to_string()),
        };
        match self {
            AppError::TooManyRequests {
                retry_after_secs, ..
            }
            | AppError::Busy {
                retry_after_secs, ..
            } => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            AppError::InvalidApiKey => {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"herald\""),
                );
            }
            _ => {}
        }
        res
    }
}

impl std::fmt::Debug for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            writeln!(f, "Caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(err: diesel::result::Error) -> Self {
        ServiceError::from(err).into()
    }
}

impl From<StorageError> for AppError {
    fn from(err: StorageError) -> Self {
        ServiceError::from(err).into()
    }
}

/// The application layer's refusals become the HTTP answers the API documents.
impl From<ServiceError> for AppError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::NotFound(message) => AppError::NotFound(message),
            ServiceError::Invalid {
                code,
                message,
                fields,
            } => AppError::Invalid {
                code,
                message,
                fields,
            },
            ServiceError::Conflict { code, message } => AppError::Conflict { code, message },
            ServiceError::Forbidden(message) => AppError::Refused(message),
            ServiceError::Busy {
                message,
                retry_after_secs,
            } => AppError::Busy {
                message,
                retry_after_secs,
            },
            ServiceError::Unavailable(err) => AppError::Unavailable(err),
            ServiceError::Internal(err) => AppError::Internal(err),
        }
    }
}

/// Background work a handler waits on (a provider event applied, a template synced) answers
/// as the application layer would.
impl From<DispatchError> for AppError {
    fn from(err: DispatchError) -> Self {
        ServiceError::from(err).into()
    }
}

impl From<anyhow::Error> for AppError {
    fn from(err: anyhow::Error) -> Self {
        AppError::Internal(err)
    }
}

impl From<askama::Error> for AppError {
    fn from(err: askama::Error) -> Self {
        AppError::Internal(anyhow::anyhow!("rendering a template failed: {err}"))
    }
}

impl From<actix_session::SessionInsertError> for AppError {
    fn from(err: actix_session::SessionInsertError) -> Self {
        AppError::Internal(anyhow::anyhow!("writing the session failed: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_map_is_deliberate() {
        let cases: Vec<(AppError, u16, &str)> = vec![
            (AppError::Unauthenticated, 401, "unauthorized"),
            (AppError::InvalidApiKey, 401, "unauthorized"),
            (AppError::Forbidden("manage users"), 403, "forbidden"),
            (AppError::Csrf, 403, "csrf_failed"),
            (AppError::not_found("Contact"), 404, "not_found"),
            (
                AppError::invalid("window_closed", "closed"),
                422,
                "window_closed",
            ),
            (AppError::BadRequest("x".into()), 400, "bad_request"),
            (AppError::conflict("x"), 409, "conflict"),
            (
                AppError::TooManyRequests {
                    message: "slow down".into(),
                    retry_after_secs: 30,
                },
                429,
                "rate_limited",
            ),
            (
                AppError::Unavailable(anyhow::anyhow!("pool")),
                503,
                "unavailable",
            ),
            (
                AppError::Busy {
                    message: "imports".into(),
                    retry_after_secs: 30,
                },
                503,
                "unavailable",
            ),
            (AppError::internal(anyhow::anyhow!("boom")), 500, "internal"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status_code().as_u16(), status, "{err:?}");
            assert_eq!(err.code(), code);
        }
    }

    #[test]
    fn internal_errors_hide_their_cause_from_users_but_not_from_logs() {
        let err = AppError::internal(anyhow::anyhow!("disk on fire"));
        assert!(!err.to_string().contains("disk"));
        assert!(format!("{err:?}").contains("disk on fire"));
    }

    #[test]
    fn database_not_found_is_a_404_and_other_database_errors_are_500() {
        assert_eq!(
            AppError::from(diesel::result::Error::NotFound).status_code(),
            404
        );
        assert_eq!(
            AppError::from(diesel::result::Error::RollbackTransaction).status_code(),
            500
        );
    }

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
