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
use serde_json::Value;

use crate::error::AppError;

/// Fields whose handler makes any value safe itself: `next` (where to go after signing in)
/// falls back to the home page when it is not a plain same-site path.
const SANITISED_BY_HANDLER: [&str; 1] = ["next"];

/// The 422 for a field holding a NUL character.
pub fn nul_error(field: &str) -> AppError {
    AppError::invalid(
        "invalid_field",
        format!(
            "{field}: contains a NUL character (U+0000), which Herald does not accept; remove it"
        ),
    )
}

/// A field name as it can be shown (a NUL in the name itself is written `\0`).
fn shown(name: &str) -> String {
    name.replace('\0', "\\0")
}

/// The first field of url-encoded pairs (a query string or a form body) with a NUL in its
/// name or value.
pub fn nul_field_in_pairs(encoded: &[u8]) -> Option<String> {
    // Cheap test first: a NUL is sent as `%00` (or, in a body, as the raw byte).
    if !encoded.contains(&0) && !encoded.windows(3).any(|w| w == b"%00") {
        return None;
    }
    // Parsing pairs never fails (invalid UTF-8 becomes U+FFFD), so the field is always found.
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(encoded)
        .ok()?
        .into_iter()
        .find(|(k, v)| {
            (k.contains('\0') || v.contains('\0')) && !SANITISED_BY_HANDLER.contains(&k.as_str())
        })
        .map(|(k, _)| shown(&k))
}

/// The path (`template.variables[1]`, `attributes.city`) of the first JSON string or key with
/// a NUL character.
pub fn nul_field_in_json(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &str) -> Option<String> {
        match value {
            Value::String(s) if s.contains('\0') => Some(path.to_owned()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, &format!("{path}[{i}]"))),
            Value::Object(map) => map.iter().find_map(|(k, v)| {
                let here = if path.is_empty() {
                    shown(k)
                } else {
                    format!("{path}.{}", shown(k))
                };
                if k.contains('\0') {
                    Some(here)
                } else {
                    walk(v, &here)
                }
            }),
            _ => None,
        }
    }
    walk(value, "").map(|p| if p.is_empty() { "body".into() } else { p })
}

/// True when a raw JSON text may hold a NUL: JSON can only carry it escaped.
pub fn json_may_hold_nul(raw: &[u8]) -> bool {
    raw.windows(6).any(|w| w == b"\\u0000")
}

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
