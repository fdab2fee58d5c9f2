//! Issue 20: `POST /hooks/{slug}`, where a shop or CRM triggers a message. The signature is
//! checked over the raw body as it streams in, before anything is stored (401 when it fails);
//! then the delivery is recorded and handled by `service::automations::triggers` and
//! acknowledged at once. A signed payload Herald cannot use is acknowledged (200) with the
//! reason, so the sender does not retry it for hours; a wrong request (unknown trigger, bad
//! signature) is a 4xx the sender must fix.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use crate::domain::trigger::{Headers, VerifyError};
use crate::error::{AppError, json_error};
use crate::service::automations::triggers::{self, MAX_PAYLOAD, Refusal};
use crate::startup::AppState;

/// The most a sender may send at all: a body past [`MAX_PAYLOAD`] is still read (and its
/// signature checked) so it can be logged as too large, up to this.
const HARD_LIMIT: usize = 8 * MAX_PAYLOAD;

fn headers_of(req: &HttpRequest) -> Headers {
    let mut out = BTreeMap::new();
    for (name, value) in req.headers() {
        if let Ok(v) = value.to_str() {
            out.insert(name.as_str().to_ascii_lowercase(), v.to_owned());
        }
    }
    out
}

fn refusal(r: Refusal) -> Result<HttpResponse, AppError> {
    match r {
        Refusal::Unknown => Ok(json_error(
            StatusCode::NOT_FOUND,
            "unknown_trigger",
            &r.to_string(),
        )),
        Refusal::Disabled => Ok(json_error(
            StatusCode::GONE,
            "trigger_disabled",
            &r.to_string(),
        )),
        Refusal::Unsigned(_) => Ok(json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            &r.to_string(),
        )),
        Refusal::Service(e) => Err(e.into()),
    }
}

/// WooCommerce pings a new webhook with an unsigned form body `webhook_id=N`: it only wants a
/// 200, and nothing is stored or sent for it.
fn is_woocommerce_ping(body: &[u8]) -> bool {
    std::str::from_utf8(body)
        .ok()
        .and_then(|b| b.trim().strip_prefix("webhook_id="))
        .is_some_and(|n| !n.is_empty() && n.len() < 20 && n.bytes().all(|c| c.is_ascii_digit()))
}

pub async fn receive(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    mut payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let headers = headers_of(&req);
    let uri = format!(
        "{}{}",
        state.public_url,
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or(req.path())
    );
    let opened = triggers::open(
        &state,
        path.into_inner(),
        req.method().as_str().to_owned(),
        uri,
        headers.clone(),
    )
    .await;
    let mut hook = match opened {
        Ok(h) => h,
        Err(Refusal::Unsigned(VerifyError::Missing("x-wc-webhook-signature"))) => {
            let mut body = Vec::new();
            while let Some(Ok(chunk)) = payload.next().await {
                body.extend_from_slice(&chunk);
                if body.len() > 64 {
                    break;
                }
            }
            if is_woocommerce_ping(&body) {
                return Ok(HttpResponse::Ok().json(serde_json::json!({"outcome": "ping"})));
            }
            return refusal(Refusal::Unsigned(VerifyError::Missing(
                "x-wc-webhook-signature",
            )));
        }
        Err(r) => return refusal(r),
    };
    let mut body = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| AppError::BadRequest(format!("The body could not be read: {e}")))?;
        total += chunk.len();
        if total > HARD_LIMIT {
            return Ok(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "A trigger's payload is 1 MiB at most.",
            ));
        }
        hook.verification.update(&chunk);
        let room = MAX_PAYLOAD.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    match triggers::receive(&state, hook, headers, body, total > MAX_PAYLOAD).await {
        Ok(received) => Ok(HttpResponse::Ok().json(received)),
        Err(r) => refusal(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_woocommerce_ping_is_recognised() {
        assert!(is_woocommerce_ping(b"webhook_id=42"));
        assert!(!is_woocommerce_ping(b"webhook_id="));
        assert!(!is_woocommerce_ping(b"{\"id\":1}"));
        assert!(!is_woocommerce_ping(b"webhook_id=1&x=2"));
    }
}
