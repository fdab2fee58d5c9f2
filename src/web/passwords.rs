//! Password pages' edge helpers: the client address the sign-in throttle counts against, and
//! `Retry-After` on pages answered 429 or 503. The checks themselves are
//! `service::sign_in`'s.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

/// The client's address: the peer's, or the one a proxy put in `X-Forwarded-For` /
/// `Forwarded` when `HERALD_TRUST_PROXY` says such a proxy is in front.
pub fn client_address(req: &HttpRequest, trust_proxy: bool) -> String {
    if trust_proxy && let Some(ip) = req.connection_info().realip_remote_addr() {
        return ip.to_owned();
    }
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Adds `Retry-After` to a page answered 429 or 503.
pub fn with_retry_after(mut res: HttpResponse, secs: u64) -> HttpResponse {
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}
