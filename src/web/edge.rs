//! Input checks every handler needs, made once at the edge. A NUL character (U+0000) is never
//! meaningful in what people or clients send Herald, and PostgreSQL refuses it in text (an
//! insert or even a `WHERE` comparison fails), so a NUL anywhere in a query string, a form or a
//! JSON body is refused with a 422 that names the field, before any handler sees it:
//!
//! - pages: the [`refuse_nul`] middleware reads the query string and url-encoded bodies;
//! - the API: `web::api::Body` and `web::api::Params` make the same checks, after `Auth` (the
//!   API authenticates and authorises first, always);
//! - an address whose path holds an encoded NUL (`%00`) names no resource: 404, like any other
//!   unknown address;
//! - uploads (the contact import) check their own fields and cells (`import::validate`);
//! - provider webhooks strip NUL themselves and keep the event (`web/webhooks.rs`).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web;

use crate::error::AppError;
use crate::web::errors::nul_error;
use crate::web::format::nul_field_in_pairs;

/// An encoded NUL in the path (`/contacts/%00`): the router would decode it into an id.
fn path_holds_nul(path: &str) -> bool {
    path.contains("%00") || path.contains('\0')
}

fn is_form(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
}

/// Refuses a NUL in the path (404), the query string or a url-encoded body (422 naming the
/// field). The API checks its queries and bodies itself, after authentication; webhooks
/// strip NUL from what providers send.
pub async fn refuse_nul(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if path_holds_nul(req.path()) {
        let err = AppError::NotFound("There is no page at this address.".into());
        return Ok(req.error_response(err).map_into_right_body());
    }
    let path = req.path();
    let checks_input = !["/api/", "/webhooks/", "/assets/"]
        .iter()
        .any(|p| path.starts_with(p));
    if checks_input {
        if let Some(field) = nul_field_in_pairs(req.query_string().as_bytes()) {
            return Ok(req.error_response(nul_error(&field)).map_into_right_body());
        }
        if is_form(&req) {
            // Read the (size-limited) body and put it back for the handler, as CSRF does.
            let body = match req.extract::<web::Bytes>().await {
                Ok(body) => body,
                Err(e) => return Ok(req.error_response(e).map_into_right_body()),
            };
            let found = nul_field_in_pairs(&body);
            req.set_payload(Payload::from(body));
            if let Some(field) = found {
                return Ok(req.error_response(nul_error(&field)).map_into_right_body());
            }
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::format::{json_may_hold_nul, nul_field_in_json};
    use serde_json::json;

    #[test]
    fn pairs_name_the_field_with_a_nul() {
        assert_eq!(nul_field_in_pairs(b"q=ada&list="), None);
        assert_eq!(
            nul_field_in_pairs(b"q=ada&list=x%00y").as_deref(),
            Some("list")
        );
        assert_eq!(nul_field_in_pairs(b"email=a\0b").as_deref(), Some("email"));
        assert_eq!(nul_field_in_pairs(b"a%00b=1").as_deref(), Some("a\\0b"));
        // `%2500` is a percent sign followed by 00, not a NUL.
        assert_eq!(nul_field_in_pairs(b"q=%2500"), None);
        assert_eq!(nul_field_in_pairs(b"next=%00&email=a"), None);
    }

    #[test]
    fn json_paths_name_the_field_with_a_nul() {
        assert_eq!(nul_field_in_json(&json!({"text": "hi"})), None);
        assert_eq!(
            nul_field_in_json(&json!({"text": "a\u{0}b"})).as_deref(),
            Some("text")
        );
        assert_eq!(
            nul_field_in_json(&json!({"template": {"variables": ["ok", "x\u{0}"]}})).as_deref(),
            Some("template.variables[1]")
        );
        assert_eq!(
            nul_field_in_json(&json!({"attributes": {"c\u{0}": "v"}})).as_deref(),
            Some("attributes.c\\0")
        );
        assert_eq!(nul_field_in_json(&json!("\u{0}")).as_deref(), Some("body"));
        assert!(json_may_hold_nul(br#"{"text":"a\u0000"}"#));
        assert!(!json_may_hold_nul(br#"{"text":"a"}"#));
    }
}
