//! Classified errors: what a failed provider call means for the message (retry, fail, flag
//! `unknown`), decided by the adapter so no caller reads provider text.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a failed provider call is to be treated. Chosen by the adapter from the provider's
/// documented codes; callers only ever branch on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The provider provably did not take the request (connection refused, DNS or TLS failure
    /// before anything was sent, 503, a 5xx documented as not processed): safe to resend.
    Retryable,
    /// Throttled (HTTP 429, WhatsApp 130429, Twilio 20429): resend after `retry_after`.
    RateLimited,
    /// WhatsApp 131047: the customer-service window is closed; only a template may go.
    WindowClosed,
    /// The number cannot receive on this channel (WhatsApp 131026, Twilio 21211/21614).
    InvalidRecipient,
    /// The recipient unsubscribed at the provider (Twilio 21610, after STOP).
    OptedOut,
    /// The template is missing, unapproved, paused or was filled wrongly (WhatsApp 1320xx).
    TemplateProblem,
    /// WhatsApp 131049: the per-user marketing limit; wait a day, retries lengthen the block.
    MarketingLimit,
    /// WhatsApp 131056: too many messages to this one recipient; others are unaffected.
    PairRateLimit,
    /// The provider has no such operation on this channel (e.g. templates on Twilio SMS,
    /// which Herald keeps and approves locally).
    Unsupported,
    /// Any other definite refusal (bad credentials, bad request, unknown code).
    Permanent,
    /// The request may have reached the provider but no answer came (timeout after sending,
    /// connection reset mid-answer, a 5xx not documented as side-effect free). The message is
    /// marked `unknown` and never resent automatically: a duplicate is worse than a flag.
    Ambiguous,
}

/// What the dispatcher does with a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendDisposition {
    /// Queue again; not before `not_before` when the provider said so.
    RetryLater { not_before: Option<Duration> },
    /// Record `failed` with the provider's code and text.
    Failed,
    /// Record `unknown`: it may have been sent.
    Unknown,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 11] = [
        ErrorClass::Retryable,
        ErrorClass::RateLimited,
        ErrorClass::WindowClosed,
        ErrorClass::InvalidRecipient,
        ErrorClass::OptedOut,
        ErrorClass::TemplateProblem,
        ErrorClass::MarketingLimit,
        ErrorClass::PairRateLimit,
        ErrorClass::Unsupported,
        ErrorClass::Permanent,
        ErrorClass::Ambiguous,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::WindowClosed => "window_closed",
            ErrorClass::InvalidRecipient => "invalid_recipient",
            ErrorClass::OptedOut => "opted_out",
            ErrorClass::TemplateProblem => "template_problem",
            ErrorClass::MarketingLimit => "marketing_limit",
            ErrorClass::PairRateLimit => "pair_rate_limit",
            ErrorClass::Unsupported => "unsupported",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Ambiguous => "ambiguous",
        }
    }

    /// True when the provider certainly did not deliver the request: everything but
    /// `Ambiguous`.
    pub fn proves_not_sent(self) -> bool {
        self != ErrorClass::Ambiguous
    }

    /// True when sending the same message again later may succeed. A pair rate limit clears
    /// within seconds (Meta suggests backing off 4^n seconds); a marketing limit does not
    /// (retries lengthen the block), so it is not retryable.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Retryable | ErrorClass::RateLimited | ErrorClass::PairRateLimit
        )
    }

    /// True when the whole channel account is throttled, so the rate limiter should slow down
    /// (not just this message).
    pub fn throttles_channel(self) -> bool {
        self == ErrorClass::RateLimited
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified failure of a provider call. `code` and `message` are the provider's, verbatim
/// (Meta's `(#132000) …`, Twilio's `21211`), so an admin can look them up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {}", self.text())]
pub struct SendError {
    pub class: ErrorClass,
    /// The provider's error code (`131047`, `21610`, `E400`), or Herald's own for transport
    /// failures (`timeout`, `connect`).
    pub code: Option<String>,
    pub message: String,
    /// Extra detail the provider gave beside its message (Meta's `error_data.details`,
    /// Infobip's violations).
    pub details: Option<String>,
    /// What the provider wrote for people to read, verbatim (Meta's `error_user_title` and
    /// `error_user_msg`): shown first, with the code and technical message beneath.
    pub said: Option<String>,
    /// How long the provider asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// The HTTP status of the provider's answer, when one came (`None` for transport
    /// failures): an `Ambiguous` error with an answer is not "no answer".
    pub http_status: Option<u16>,
    /// The provider's answer, as [`super::payload::keep`] keeps it (issue 18); `None` when no
    /// answer came. Boxed: every fallible adapter call returns this error, so it stays small.
    pub payload: Option<Box<String>>,
}

impl SendError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        SendError {
            class,
            code: None,
            message: message.into(),
            details: None,
            said: None,
            retry_after: None,
            http_status: None,
            payload: None,
        }
    }

    /// The provider's answer as kept (see [`super::payload`]).
    pub fn with_payload(mut self, payload: Option<String>) -> Self {
        self.payload = payload.map(Box::new);
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_details(mut self, details: Option<String>) -> Self {
        self.details = details.filter(|d| !d.trim().is_empty());
        self
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// What the provider wrote for people (blank is none).
    pub fn with_said(mut self, said: Option<String>) -> Self {
        self.said = said.filter(|s| !s.trim().is_empty());
        self
    }

    /// The provider's words for people (when it gave any) on the first line, then the code,
    /// message and details on one line, for the error columns and pages.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some(said) = &self.said {
            out.push_str(said);
            out.push('\n');
        }
        if let Some(code) = &self.code {
            out.push_str(code);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        if let Some(details) = &self.details {
            out.push_str(" (");
            out.push_str(details);
            out.push(')');
        }
        out
    }

    /// The text an `unknown` message keeps: whether the provider answered (and what), or
    /// gave no answer at all, then [`SendError::text`].
    pub fn unknown_text(&self) -> String {
        match self.http_status {
            Some(status) => format!(
                "The provider answered HTTP {status} without saying whether it took the message; it may have been sent: {}",
                self.text()
            ),
            None => format!(
                "No answer from the provider; the message may have been sent: {}",
                self.text()
            ),
        }
    }

    /// What the dispatcher does with this failure.
    pub fn disposition(&self) -> SendDisposition {
        if self.class == ErrorClass::Ambiguous {
            SendDisposition::Unknown
        } else if self.class.is_retryable() {
            SendDisposition::RetryLater {
                not_before: self.retry_after,
            }
        } else {
            SendDisposition::Failed
        }
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        SendError::new(ErrorClass::Unsupported, message).with_code("unsupported")
    }
}
