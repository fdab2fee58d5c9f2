//! CSRF protection for every state-changing request made with the session cookie. The token
//! lives in the (encrypted) session; forms send it as the hidden field `csrf_token`, htmx sends
//! it as the `X-CSRF-Token` header (set once on `<body>`), multipart uploads may put it in the
//! query string. API routes use bearer keys and webhooks use provider signatures instead.

use actix_session::SessionExt;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::web;

use crate::auth::token::tokens_match;
use crate::error::AppError;
use crate::web::session::TypedSession;

pub const HEADER: &str = "X-CSRF-Token";
pub const FIELD: &str = "csrf_token";

fn needs_check(req: &ServiceRequest) -> bool {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let path = req.path();
    !safe
        && !path.starts_with("/api/")
        && !path.starts_with("/webhooks/")
        && !path.starts_with("/hooks/")
}

fn field_from(pairs: &[u8]) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(pairs)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == FIELD)
        .map(|(_, v)| v)
}

pub async fn protect(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if !needs_check(&req) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let expected = TypedSession::new(req.get_session()).existing_csrf_token();

    let mut given = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if given.is_none() {
        given = field_from(req.query_string().as_bytes());
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if given.is_none() && is_form {
        // Read the (size-limited) body, find the field, and put the body back for the handler.
        match req.extract::<web::Bytes>().await {
            Ok(body) => {
                given = field_from(&body);
                req.set_payload(Payload::from(body));
            }
            Err(e) => return Ok(req.error_response(e).map_into_right_body()),
        }
    }

    match (expected, given) {
        (Some(expected), Some(given)) if tokens_match(&expected, &given) => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
        _ => {
            tracing::warn!(path = %req.path(), "CSRF check failed");
            Ok(req.error_response(AppError::Csrf).map_into_right_body())
        }
    }
}
