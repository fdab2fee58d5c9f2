//! What every adapter needs on the wire: running a request and classifying transport failures,
//! reading `Retry-After`, and constant-time signature checks.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ErrorClass, SendError};

/// A provider's answer, read in full.
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, or `None` when it is not.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The start of the body, for error messages when it is not the documented shape.
    pub fn excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return format!("HTTP {} with an empty body", self.status);
        }
        let cut: String = trimmed.chars().take(600).collect();
        if cut.len() < trimmed.len() {
            format!("HTTP {}: {cut}…", self.status)
        } else {
            format!("HTTP {}: {cut}", self.status)
        }
    }

    /// The body as the message's timeline keeps it: secrets redacted, capped (issue 18).
    pub fn kept(&self, secrets: &[&str]) -> String {
        super::payload::keep_bytes(&self.body, secrets)
    }

    /// The class an HTTP status alone implies, for answers without a known provider code.
    pub fn status_class(&self) -> ErrorClass {
        match self.status {
            429 => ErrorClass::RateLimited,
            // 503 means "not processed, come back later"; 408 means the server gave up
            // reading the request: neither acted on it.
            503 | 408 => ErrorClass::Retryable,
            // Any other 5xx may have come after the provider acted: do not resend blindly.
            500..=599 => ErrorClass::Ambiguous,
            _ => ErrorClass::Permanent,
        }
    }

    /// A refusal in a shape the adapter does not know: classified by the HTTP status alone,
    /// the body kept as the message.
    pub fn unclassified(&self) -> SendError {
        let mut e = SendError::new(self.status_class(), self.excerpt())
            .with_code(format!("http_{}", self.status))
            .with_retry_after(self.retry_after);
        e.http_status = Some(self.status);
        e
    }

    /// A refusal with the provider's own code (the class from `code_class` when the code is
    /// known, else from the HTTP status), keeping `Retry-After`.
    pub fn refusal(
        &self,
        code_class: Option<ErrorClass>,
        code: Option<String>,
        message: Option<String>,
        details: Option<String>,
    ) -> SendError {
        let mut e = SendError::new(
            code_class.unwrap_or_else(|| self.status_class()),
            message.unwrap_or_else(|| self.excerpt()),
        )
        .with_details(details)
        .with_retry_after(self.retry_after);
        e.code = code;
        e.http_status = Some(self.status);
        e
    }

    /// A 2xx answer that cannot be read: the provider probably took the message, but we do not
    /// know its id.
    pub fn unreadable_success(&self) -> SendError {
        let mut e = SendError::new(
            ErrorClass::Ambiguous,
            format!(
                "the provider accepted the request but its answer could not be read ({})",
                self.excerpt()
            ),
        )
        .with_code("unreadable_answer");
        e.http_status = Some(self.status);
        e
    }
}

/// Sends a request and reads the whole answer. A failure before the request left (connect,
/// DNS, TLS) is `Retryable`; any later failure is `Ambiguous`.
pub(crate) async fn execute(request: reqwest::RequestBuilder) -> Result<Answer, SendError> {
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = response.bytes().await.map_err(|e| {
        SendError::new(
            ErrorClass::Ambiguous,
            format!("the provider's answer (HTTP {status}) was cut off: {e}"),
        )
        .with_code("incomplete_answer")
    })?;
    Ok(Answer {
        status,
        retry_after,
        body: body.to_vec(),
    })
}

/// `base` with these path segments appended, each percent-encoded (ids and sender names come
/// from people and providers).
pub(crate) fn url_with_segments(base: &str, segments: &[&str]) -> Result<reqwest::Url, SendError> {
    let bad = || {
        SendError::new(
            ErrorClass::Permanent,
            format!("the base URL {base} cannot take a path"),
        )
        .with_code("bad_request_setup")
    };
    let mut url = reqwest::Url::parse(base).map_err(|_| bad())?;
    url.path_segments_mut()
        .map_err(|_| bad())?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// `execute`, then any non-2xx answer classified by the provider's `classify`, with the answer
/// kept as its payload (`secrets`, the channel's credentials, redacted).
pub(crate) async fn call(
    request: reqwest::RequestBuilder,
    classify: fn(&Answer) -> SendError,
    secrets: &[&str],
) -> Result<Answer, SendError> {
    let answer = execute(request).await?;
    if answer.is_success() {
        Ok(answer)
    } else {
        let refusal = super::payload::redact_error(classify(&answer), secrets);
        Err(refusal.with_payload(Some(answer.kept(secrets))))
    }
}

/// A signed webhook body as JSON; anything else is `Malformed`.
pub(crate) fn webhook_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, super::WebhookError> {
    serde_json::from_slice(body)
        .map_err(|e| super::WebhookError::Malformed(format!("not JSON: {e}")))
}

/// Classifies a reqwest error from `send()`.
pub(crate) fn transport_error(e: reqwest::Error) -> SendError {
    let detail = error_chain(&e);
    if e.is_builder() {
        // Nothing was sent: the request could not even be built (a bad base URL).
        SendError::new(
            ErrorClass::Permanent,
            format!("the request could not be built: {detail}"),
        )
        .with_code("bad_request_setup")
    } else if e.is_connect() {
        // Connection refused, DNS and TLS failures all happen before the request is written.
        SendError::new(
            ErrorClass::Retryable,
            format!("could not connect to the provider: {detail}"),
        )
        .with_code("connect")
    } else if e.is_timeout() {
        SendError::new(
            ErrorClass::Ambiguous,
            format!(
                "no answer from the provider in time; it may have received the request: {detail}"
            ),
        )
        .with_code("timeout")
    } else {
        SendError::new(
            ErrorClass::Ambiguous,
            format!("the connection failed after the request was sent: {detail}"),
        )
        .with_code("transport")
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `Retry-After` as seconds or as an HTTP date; capped at a day so a bad header cannot park a
/// message for ever.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    const CAP: u64 = 24 * 3600;
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(CAP)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs((secs as u64).min(CAP)))
}

/// Constant-time equality; unequal lengths are simply unequal.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

pub(crate) fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    match Hmac::<sha1::Sha1>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("99999999"),
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let d = parse_retry_after(&later).unwrap();
        assert!((110..=120).contains(&d.as_secs()), "{d:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn statuses_alone_classify_conservatively() {
        let answer = |status| Answer {
            status,
            retry_after: None,
            body: vec![],
        };
        assert_eq!(answer(429).status_class(), ErrorClass::RateLimited);
        assert_eq!(answer(503).status_class(), ErrorClass::Retryable);
        assert_eq!(answer(500).status_class(), ErrorClass::Ambiguous);
        assert_eq!(answer(502).status_class(), ErrorClass::Ambiguous);
        assert_eq!(answer(400).status_class(), ErrorClass::Permanent);
        assert_eq!(answer(401).status_class(), ErrorClass::Permanent);
        assert_eq!(answer(204).excerpt(), "HTTP 204 with an empty body");
    }

    #[test]
    fn constant_time_compare_handles_lengths() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
