//! Turns errors into what the asker can use: the layout's error page for a browser, a toast
//! for htmx, a redirect to sign in for anonymous visitors, the JSON error shape for the API.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use askama::Template;
use tracing_actix_web::RequestId;

use crate::error::{AppError, json_error};
use crate::web::chrome::Chrome;
use crate::web::identity::redirect_response;
use crate::web::{is_htmx, paths};

const X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub status: u16,
    pub title: &'static str,
    pub message: String,
    pub request_id: Option<String>,
}

#[derive(Template)]
#[template(path = "_toast.html")]
struct Toast<'a> {
    message: &'a str,
}

fn title_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request could not be read",
        401 => "Sign in to continue",
        403 => "Not allowed",
        404 => "Page not found",
        405 => "Not allowed here",
        409 => "Conflict",
        413 => "Too large",
        415 => "Unsupported format",
        422 => "Check your input",
        429 => "Too many attempts",
        503 => "Herald is busy",
        s if s >= 500 => "Something went wrong",
        _ => "The request could not be completed",
    }
}

fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "rate_limited",
        s if s >= 500 => "internal",
        _ => "error",
    }
}

/// What to tell the person about an error that did not come from `AppError`.
fn message_for(status: StatusCode, err: Option<&actix_web::Error>) -> String {
    match (status.as_u16(), err) {
        (413, _) => "The request is larger than Herald accepts here.".into(),
        (405, _) => "This address does not accept that kind of request.".into(),
        (404, _) => "There is no page at this address.".into(),
        (s, Some(e)) if s < 500 => e.to_string(),
        (s, _) if s < 500 => title_for(status).into(),
        _ => "Something went wrong on our side. The error has been logged.".into(),
    }
}

/// Where to go after signing in: a path on this site, made only of characters every browser
/// reads the same way. Anything else goes to `/` (the caller's `None` case): another host
/// (`//host`, `/\host`, a scheme), white space and control characters (browsers drop a tab or
/// a line break inside a URL, so `/<TAB>/evil.example` is read as `//evil.example`, and they
/// cannot go into a `Location` header at all), non-ASCII, and percent-encoded control
/// characters (a proxy that decodes them would bring the same trick back).
pub fn safe_next(path: &str) -> Option<&str> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || matches!(bytes.get(1), Some(b'/' | b'\\')) {
        return None;
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => {}
            b'-' | b'.' | b'_' | b'~' | b'/' | b'?' | b'=' | b'&' | b'+' | b',' | b';' | b':'
            | b'@' | b'!' | b'*' | b'$' | b'(' | b')' => {}
            b'%' => {
                let hex = |at: usize| char::from(*bytes.get(at)?).to_digit(16);
                let decoded = hex(i + 1)? * 16 + hex(i + 2)?;
                if char::from_u32(decoded).is_none_or(|c| c.is_ascii_control()) {
                    return None;
                }
                i += 2;
            }
            _ => return None,
        }
        i += 1;
    }
    Some(path)
}

fn login_redirect(req: &HttpRequest) -> HttpResponse {
    let target = if req.method() == actix_web::http::Method::GET && req.path() != paths::HOME {
        let mut next = req.path().to_owned();
        if !req.query_string().is_empty() {
            next.push('?');
            next.push_str(req.query_string());
        }
        format!(
            "{}?next={}",
            paths::LOGIN,
            serde_urlencoded::to_string([("n", next)])
                .map(|s| s.trim_start_matches("n=").to_owned())
                .unwrap_or_default()
        )
    } else {
        paths::LOGIN.to_owned()
    };
    redirect_response(req, &target)
}

fn request_id(req: &HttpRequest) -> Option<String> {
    req.extensions().get::<RequestId>().map(|id| id.to_string())
}

pub async fn render(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let id_header = request_id(res.request()).and_then(|id| HeaderValue::from_str(&id).ok());
    if let Some(v) = &id_header {
        res.headers_mut().insert(X_REQUEST_ID, v.clone());
    }
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return Ok(res.map_into_left_body());
    }
    let has_error = res.response().error().is_some();
    let empty_body = matches!(
        res.response().body().size(),
        actix_web::body::BodySize::Sized(0)
    );
    if !has_error && !empty_body {
        // A response a handler shaped on purpose (a form re-rendered with 422, say).
        return Ok(res.map_into_left_body());
    }

    let app_error = res
        .response()
        .error()
        .and_then(|e| e.as_error::<AppError>());
    let path = res.request().path().to_owned();

    if path.starts_with("/api/") || path.starts_with("/webhooks/") {
        if app_error.is_some() {
            return Ok(res.map_into_left_body());
        }
        let message = message_for(status, res.response().error());
        let (req, _) = res.into_parts();
        let mut body = json_error(status, code_for(status), &message);
        if let Some(v) = id_header {
            body.headers_mut().insert(X_REQUEST_ID, v);
        }
        return Ok(ServiceResponse::new(req, body).map_into_right_body());
    }

    let message = match app_error {
        Some(e) => e.to_string(),
        None => message_for(status, res.response().error()),
    };
    // The page replaces the response and with it the error: say what went wrong first.
    if status.is_server_error() {
        match app_error {
            Some(e) => tracing::error!(error = ?e, "the request failed"),
            None => tracing::error!(error = ?res.response().error(), "the request failed"),
        }
    }
    let retry_after = res.headers().get(header::RETRY_AFTER).cloned();
    let unauthenticated = matches!(app_error, Some(AppError::Unauthenticated));
    let (req, _) = res.into_parts();

    let mut response = if unauthenticated {
        login_redirect(&req)
    } else if is_htmx(&req) {
        let toast = Toast { message: &message };
        HttpResponse::build(status)
            .content_type(ContentType::html())
            .insert_header(("HX-Retarget", "#flash"))
            .insert_header(("HX-Reswap", "innerHTML"))
            .body(toast.render().unwrap_or_else(|_| message.clone()))
    } else {
        let page = ErrorPage {
            chrome: Chrome::from_request_parts(&req),
            status: status.as_u16(),
            title: title_for(status),
            message,
            request_id: if status.is_server_error() {
                request_id(&req)
            } else {
                None
            },
        };
        match page.render() {
            Ok(html) => {
                let mut r = HttpResponse::build(status)
                    .content_type(ContentType::html())
                    .body(html);
                if let Some(v) = retry_after {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            Err(e) => {
                tracing::error!(error = %e, "rendering the error page failed");
                HttpResponse::build(status)
                    .content_type(ContentType::plaintext())
                    .body(title_for(status))
            }
        }
    };
    if let Some(v) = id_header {
        response.headers_mut().insert(X_REQUEST_ID, v);
    }
    Ok(ServiceResponse::new(req, response).map_into_right_body())
}

// --- issue 18: query parameters refused with 400 ---

/// A refusal of an API call's query parameters (the history's filters and cursor, a NUL in
/// one) as a 400 in the error shape, `code` and `fields` included, rather than the 422 of a
/// body that breaks a rule. Other errors pass through.
pub fn query_refused(err: impl Into<AppError>) -> Result<HttpResponse, AppError> {
    match err.into() {
        err @ (AppError::Invalid { .. } | AppError::BadRequest(_)) => {
            let mut res = actix_web::ResponseError::error_response(&err);
            *res.status_mut() = StatusCode::BAD_REQUEST;
            Ok(res)
        }
        other => Err(other),
    }
}
// --- end issue 18 ---

/// Adds `Retry-After` to a page answered 429 or 503.
pub fn with_retry_after(mut res: HttpResponse, secs: u64) -> HttpResponse {
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// The 422 for a field holding a NUL character.
pub fn nul_error(field: &str) -> AppError {
    AppError::invalid(
        "invalid_field",
        format!(
            "{field}: contains a NUL character (U+0000), which Herald does not accept; remove it"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_only_stays_on_site() {
        for ok in [
            "/",
            "/settings/users",
            "/contacts?q=ann%20lee&list=3",
            "/contacts?q=%2B33%206&page=2",
            "/templates/12/edit?x=a,b;c:d@e!f*g$h(i)~j_k.l-m+n",
        ] {
            assert_eq!(safe_next(ok), Some(ok), "{ok:?}");
        }
        for evil in [
            "",
            "settings",
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/\u{b}/evil.example",
            "/\0/evil.example",
            "/ /evil.example",
            "/x\u{7f}",
            "/contacts\r\nSet-Cookie: a=b",
            "/%09/evil.example",
            "/%0a/evil.example",
            "/%0D/evil.example",
            "/%00",
            "/%7f",
            "/%",
            "/%2",
            "/%zz",
            "/%+1",
            "/caf\u{e9}",
            "/\u{202e}moc.live",
            "/a#fragment",
            "/a\"onmouseover=\"x",
            "/a'b",
            "/a<b>",
        ] {
            assert_eq!(safe_next(evil), None, "{evil:?}");
        }
    }
}
