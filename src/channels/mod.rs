//! Channel adapters: the only code that speaks to WhatsApp (Cloud API), Twilio, Infobip (Viber
//! Business Messages) and the built-in sandbox. They speak HTTP (reqwest) and never touch the
//! database: the dispatcher hands them a rendered message and records what they answer; the
//! webhook handlers hand them a raw request and store the events they return.
//!
//! Every failure is classified here ([`ErrorClass`]) so that no caller ever reads provider text
//! to decide whether to retry, fail or flag a message as `unknown`.
//!
//! ```no_run
//! # async fn demo(config: herald::channels::ChannelConfig, env: herald::channels::AdapterEnv,
//! #               msg: herald::channels::OutboundMessage) {
//! use herald::channels::{Adapter, ChannelAdapter, SendDisposition};
//! // Settings were validated when the channel was saved; a failure here is a stored-data bug.
//! let Ok(adapter) = Adapter::from_config(&config, &env) else { return };
//! match adapter.send(&msg).await {
//!     Ok(receipt) => { /* sent: store receipt.provider_message_id */ }
//!     Err(e) => match e.disposition() {
//!         SendDisposition::RetryLater { not_before } => { /* queued again */ }
//!         SendDisposition::Failed => { /* failed with e.code / e.text() */ }
//!         SendDisposition::Unknown => { /* unknown: never resent automatically */ }
//!     },
//! }
//! # }
//! ```

pub mod clean;
pub mod infobip_viber;
pub mod sandbox;
pub mod twilio;
pub mod whatsapp;

mod settings;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod webhook_robustness;
mod wire;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::channel::{ChannelKind, Provider};
use crate::domain::content::{MessageContent, ParameterFormat};
use crate::domain::phone::E164;

pub use settings::{Secret, SettingSpec, SettingsError, settings_for, split_secrets, validate};

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------

/// One message to one recipient, already allowed by the policy and rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// Herald's public message id. Adapters pass it to providers that take a correlation id
    /// (Infobip `messageId` and `callbackData`), so their reports name our message.
    pub message_id: String,
    pub to: E164,
    pub content: MessageContent,
}

/// What the provider answered when it took a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SendReceipt {
    /// The id the provider's status webhooks will name (wamid, Twilio `SM…` sid, Infobip
    /// messageId).
    pub provider_message_id: String,
    /// The provider's own word for the state it took the message in (`accepted`,
    /// `held_for_quality_assessment`, `queued`, `PENDING_ACCEPTED`), for the timeline.
    pub provider_status: Option<String>,
}

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
        }
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

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// What a template is for. WhatsApp knows marketing, utility and authentication; Viber
/// (Infobip) knows transactional and OTP, and maps utility to transactional and
/// authentication to OTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateCategory {
    Marketing,
    Utility,
    Authentication,
    Transactional,
    Otp,
}

/// A template button as the business defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TemplateButton {
    QuickReply {
        text: String,
    },
    /// `url` may end with one placeholder (`https://shop.example/track/{{1}}`);
    /// `example_suffix` is a sample value for it, required by WhatsApp when it does.
    Url {
        text: String,
        url: String,
        example_suffix: Option<String>,
    },
    PhoneNumber {
        text: String,
        phone_number: String,
    },
}

/// A sample value for one placeholder, shown to the provider's reviewers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceholderExample {
    /// `1`, `2`… for positional templates, `first_name` for named ones.
    pub placeholder: String,
    pub value: String,
}

/// A template to submit for approval, flat and provider-neutral; `domain/template.rs` maps
/// into it. Each adapter takes what its provider knows:
/// - WhatsApp: everything (header, body, footer, buttons, examples, parameter format);
/// - Infobip Viber: `category` (transactional or OTP), `language` (one of Infobip's codes,
///   e.g. `en`, `pt_BR`), `body_text` with `{{name}}` placeholders and `body_examples` (one
///   per placeholder, sent as `params[]`); Viber templates have no header, footer, buttons
///   or name at Infobip, so those are refused rather than silently dropped;
/// - Twilio SMS: nothing (`ErrorClass::Unsupported`; SMS templates are local).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSubmission {
    pub name: String,
    pub language: String,
    pub category: TemplateCategory,
    pub parameter_format: ParameterFormat,
    pub header_text: Option<String>,
    pub body_text: String,
    pub footer_text: Option<String>,
    pub buttons: Vec<TemplateButton>,
    /// Samples for the header's placeholder(s).
    pub header_examples: Vec<PlaceholderExample>,
    /// Samples for the body's placeholders.
    pub body_examples: Vec<PlaceholderExample>,
    /// The provider's id of the template this one replaces (an earlier version the provider
    /// took). WhatsApp edits that template (`POST /{template-id}`): Meta refuses a second
    /// template with the same name and language. Infobip has no edit call and gets a new
    /// template.
    pub replaces: Option<String>,
    /// A WhatsApp authentication template's settings: then the body, footer and buttons are
    /// Meta's (security recommendation, expiry, one-time-password button), and the text
    /// fields above are empty.
    pub authentication: Option<crate::domain::template::Authentication>,
}

/// Which template to ask about: by the provider's id, or by name and language (WhatsApp only;
/// Infobip knows templates by id alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateRef {
    ProviderId(String),
    NameLanguage { name: String, language: String },
}

/// A template's review state at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ProviderTemplateStatus {
    Pending,
    Approved,
    Rejected {
        reason: Option<String>,
    },
    Paused {
        reason: Option<String>,
    },
    Disabled {
        reason: Option<String>,
    },
    /// Any other state the provider reports (IN_APPEAL, FLAGGED, REINSTATED, ARCHIVED…),
    /// verbatim, for the template page to show.
    Other(String),
}

impl ProviderTemplateStatus {
    /// Maps the status words WhatsApp and Infobip use (`APPROVED`, `REJECTED`, `DECLINED`,
    /// `PAUSED`, …) with the reason given beside them.
    pub(crate) fn from_word(word: &str, reason: Option<String>) -> Self {
        match word.trim().to_ascii_uppercase().as_str() {
            "PENDING" => ProviderTemplateStatus::Pending,
            "APPROVED" => ProviderTemplateStatus::Approved,
            "REJECTED" | "DECLINED" => ProviderTemplateStatus::Rejected { reason },
            "PAUSED" => ProviderTemplateStatus::Paused { reason },
            "DISABLED" => ProviderTemplateStatus::Disabled { reason },
            _ => ProviderTemplateStatus::Other(word.to_owned()),
        }
    }
}

/// A provider's answer about one template: its status, and which template the answer says it
/// is about (whatever the provider named; any may be missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateAnswer {
    pub provider_template_id: Option<String>,
    pub name: Option<String>,
    pub language: Option<String>,
    pub status: ProviderTemplateStatus,
}

impl TemplateAnswer {
    /// An answer that names only a status (the sandbox's, which answers for itself).
    pub fn status_only(status: ProviderTemplateStatus) -> Self {
        TemplateAnswer {
            provider_template_id: None,
            name: None,
            language: None,
            status,
        }
    }

    /// True when the answer is about this template: everything it names agrees (the id; the
    /// name; the language, `en-US` being `en_US`), and it names the id or the name and
    /// language. An answer about another template must never become this one's verdict.
    pub fn is_about(&self, provider_template_id: &str, name: &str, language: &str) -> bool {
        let same_language = |a: &str| {
            a.replace('-', "_")
                .eq_ignore_ascii_case(&language.replace('-', "_"))
        };
        let id = self
            .provider_template_id
            .as_deref()
            .map(|i| i == provider_template_id);
        let named = self.name.as_deref().map(|n| n == name);
        let lang = self.language.as_deref().map(same_language);
        if [id, named, lang].contains(&Some(false)) {
            return false;
        }
        id == Some(true) || (named == Some(true) && lang == Some(true))
    }

    /// What the answer names, for a log line or a message.
    pub fn describe(&self) -> String {
        format!(
            "id {}, name {}, language {}",
            self.provider_template_id.as_deref().unwrap_or("(none)"),
            self.name.as_deref().unwrap_or("(none)"),
            self.language.as_deref().unwrap_or("(none)"),
        )
    }
}

/// The provider's answer to a template submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSubmitted {
    pub provider_template_id: String,
    pub status: ProviderTemplateStatus,
}

impl TemplateSubmitted {
    /// From the provider's answer: its id and status word (a new template is pending when the
    /// answer names no status).
    pub(crate) fn from_answer(provider_template_id: String, status: Option<String>) -> Self {
        TemplateSubmitted {
            provider_template_id,
            status: status
                .map(|s| ProviderTemplateStatus::from_word(&s, None))
                .unwrap_or(ProviderTemplateStatus::Pending),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

/// A provider's callback as received, before anything is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The public URL the provider called: Herald's `HERALD_PUBLIC_URL` + path + query. Twilio
    /// signs exactly this string, so it must be rebuilt as the provider saw it, not as a
    /// proxy forwarded it.
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// The raw body; signatures are computed over these exact bytes.
    pub body: Vec<u8>,
}

impl WebhookRequest {
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        WebhookRequest {
            method: method.to_ascii_uppercase(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_get(&self) -> bool {
        self.method.eq_ignore_ascii_case("GET")
    }

    pub fn is_post(&self) -> bool {
        self.method.eq_ignore_ascii_case("POST")
    }

    /// The URL's query parameters, decoded.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let query = self
            .url
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or_default())
            .unwrap_or_default();
        serde_urlencoded::from_str(query).unwrap_or_default()
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// What a verified webhook means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Answer 200 with exactly this body (WhatsApp's GET `hub.challenge` verification).
    Challenge(String),
    /// Store these (de-duplicated by `event_id`) and answer 200.
    Events(Vec<ProviderEvent>),
}

/// Why a webhook was refused. The signature is checked before anything else is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Missing or wrong signature (or shared secret): answer 401 and store nothing (403 for a
    /// wrong verify token on WhatsApp's GET handshake).
    #[error("the webhook's signature is missing or wrong")]
    BadSignature,
    /// Signed correctly but not understood: log it and answer 200, so the provider does not
    /// retry it for days.
    #[error("the webhook could not be read: {0}")]
    Malformed(String),
}

impl WebhookError {
    pub fn malformed(what: impl Into<String>) -> Self {
        WebhookError::Malformed(what.into())
    }
}

/// Who wrote to us: a phone number when it parses, the provider's raw string otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Phone(E164),
    Raw(String),
}

impl Address {
    /// Parses an international number, with or without its `+` (WhatsApp and Infobip send
    /// digits only).
    pub fn parse(raw: &str) -> Self {
        let trimmed = raw.trim();
        let candidate = if trimmed.starts_with('+') {
            trimmed.to_owned()
        } else {
            format!("+{trimmed}")
        };
        match E164::parse(&candidate, None) {
            Ok(phone) => Address::Phone(phone),
            Err(_) => Address::Raw(raw.to_owned()),
        }
    }

    pub fn phone(&self) -> Option<&E164> {
        match self {
            Address::Phone(p) => Some(p),
            Address::Raw(_) => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Phone(p) => p.fmt(f),
            Address::Raw(r) => f.write_str(r),
        }
    }
}

/// How far a sent message got. Statuses only move forward; that rule is the message state
/// machine's, not the adapters'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// A failure reported asynchronously (a failed status), classified like a send error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub code: String,
    pub message: String,
    pub class: ErrorClass,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundEvent {
    /// Stable across the provider's retries of the same delivery.
    pub event_id: String,
    pub from: Address,
    /// The text, or a readable placeholder (`[image]`) for what is not text.
    pub text: String,
    pub received_at: DateTime<Utc>,
    pub provider_message_id: String,
    /// The sender's profile name where the provider gives one (WhatsApp).
    pub profile_name: Option<String>,
    /// The provider's id of the receiving account where one webhook URL serves several
    /// (WhatsApp's `metadata.phone_number_id`: one app, many numbers); `None` otherwise.
    pub account: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    /// Provider message id + status: the same status twice is one event.
    pub event_id: String,
    pub provider_message_id: String,
    pub status: DeliveryStatus,
    pub at: DateTime<Utc>,
    pub error: Option<ProviderError>,
    /// As [`InboundEvent::account`].
    pub account: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateStatusEvent {
    pub event_id: String,
    pub provider_template_id: String,
    pub name: Option<String>,
    pub language: Option<String>,
    pub status: ProviderTemplateStatus,
    pub reason: Option<String>,
}

/// One verified fact from a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEvent {
    Inbound(InboundEvent),
    Status(StatusEvent),
    TemplateStatus(TemplateStatusEvent),
    /// Signed and well-formed, but nothing Herald acts on (a quality-score change, a status
    /// word we do not map): log it and answer 200, never 500, or the provider retries for days.
    Unrecognised {
        description: String,
    },
}

impl ProviderEvent {
    /// The de-duplication key (`None` for unrecognised events, which are only logged).
    pub fn event_id(&self) -> Option<&str> {
        match self {
            ProviderEvent::Inbound(e) => Some(&e.event_id),
            ProviderEvent::Status(e) => Some(&e.event_id),
            ProviderEvent::TemplateStatus(e) => Some(&e.event_id),
            ProviderEvent::Unrecognised { .. } => None,
        }
    }

    /// The receiving account the provider named, where it names one (see
    /// [`InboundEvent::account`]).
    pub fn account(&self) -> Option<&str> {
        match self {
            ProviderEvent::Inbound(e) => e.account.as_deref(),
            ProviderEvent::Status(e) => e.account.as_deref(),
            ProviderEvent::TemplateStatus(_) | ProviderEvent::Unrecognised { .. } => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The trait and its registry
// ---------------------------------------------------------------------------------------------

/// What every channel adapter does. Futures are `Send` so the dispatcher can run them on any
/// worker thread.
pub trait ChannelAdapter {
    /// Sends one message. Errors are classified; see [`SendError::disposition`].
    fn send(
        &self,
        message: &OutboundMessage,
    ) -> impl Future<Output = Result<SendReceipt, SendError>> + Send;

    /// Submits a template for the provider's review.
    fn submit_template(
        &self,
        template: &TemplateSubmission,
    ) -> impl Future<Output = Result<TemplateSubmitted, SendError>> + Send;

    /// Asks the provider for a template's review state (webhooks are preferred: Meta's
    /// management API allows only a few hundred calls an hour). The answer says which
    /// template it is about; callers check it with [`TemplateAnswer::is_about`].
    fn template_status(
        &self,
        template: &TemplateRef,
    ) -> impl Future<Output = Result<TemplateAnswer, SendError>> + Send;

    /// Verifies and reads a webhook. Pure: no I/O, so the handler can answer quickly.
    fn parse_webhook(&self, request: &WebhookRequest) -> Result<WebhookOutcome, WebhookError>;

    /// One cheap authenticated GET, for the "test connection" button; says what it found.
    fn test_connection(&self) -> impl Future<Output = Result<String, SendError>> + Send;
}

/// Where the sandbox (and only the sandbox) publishes the events a provider would post to a
/// webhook: `(channel public id, event)`.
pub type EventSink = tokio::sync::mpsc::Sender<(String, ProviderEvent)>;

/// A channel as stored, provider-neutral: what [`Adapter::from_config`] needs.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub kind: ChannelKind,
    pub provider: Provider,
    pub public_id: String,
    /// Non-secret settings (`base_url`, `phone_number_id`, …).
    pub settings: serde_json::Value,
    /// Decrypted secrets (`access_token`, `auth_token`, …); see [`SettingSpec::secret`].
    pub secrets: serde_json::Value,
}

/// What all adapters share.
#[derive(Debug, Clone)]
pub struct AdapterEnv {
    /// `HERALD_PUBLIC_URL`, without a trailing slash: the base of the webhook URLs given to
    /// providers (Twilio's StatusCallback, Infobip's report URLs).
    pub public_url: String,
    /// One pooled client for every channel; build it with [`http_client`].
    pub http: reqwest::Client,
    /// Where sandbox channels publish their simulated events.
    pub sandbox_events: EventSink,
}

/// The HTTP client the adapters expect: bounded connect and total times (a send that hangs
/// becomes `Ambiguous` instead of blocking a worker) and a `User-Agent` of the form Meta's
/// OpenAPI file requires.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .build()
}

/// The path a provider posts its webhooks to for this channel (`None` for the sandbox, which
/// receives none). The web layer mounts these routes.
pub fn webhook_path(provider: Provider, channel_public_id: &str) -> Option<String> {
    let segment = match provider {
        Provider::Sandbox => return None,
        Provider::WhatsappCloud => "whatsapp",
        Provider::Twilio => "twilio",
        Provider::Infobip => "infobip",
    };
    Some(format!("/webhooks/{segment}/{channel_public_id}"))
}

/// One adapter per provider; dispatches the trait without `dyn` (async fns in traits are not
/// object safe, and a closed set needs no boxing).
#[derive(Debug, Clone)]
pub enum Adapter {
    Whatsapp(whatsapp::WhatsappAdapter),
    Twilio(twilio::TwilioAdapter),
    InfobipViber(infobip_viber::InfobipViberAdapter),
    Sandbox(sandbox::SandboxAdapter),
}

impl Adapter {
    /// Builds the adapter for a stored channel, validating its settings (the same checks the
    /// settings form runs).
    pub fn from_config(config: &ChannelConfig, env: &AdapterEnv) -> Result<Adapter, SettingsError> {
        if config.provider != Provider::Sandbox && config.kind.real_provider() != config.provider {
            return Err(SettingsError::single(
                "provider",
                format!(
                    "{} channels go through {}, not {}",
                    config.kind.label(),
                    config.kind.real_provider().label(),
                    config.provider.label()
                ),
            ));
        }
        let public_url = env.public_url.trim_end_matches('/');
        Ok(match config.provider {
            Provider::WhatsappCloud => Adapter::Whatsapp(whatsapp::WhatsappAdapter::new(
                whatsapp::WhatsappSettings::from_json(&config.settings, &config.secrets)?,
                env.http.clone(),
            )),
            Provider::Twilio => Adapter::Twilio(twilio::TwilioAdapter::new(
                twilio::TwilioSettings::from_json(&config.settings, &config.secrets)?,
                env.http.clone(),
                format!("{public_url}/webhooks/twilio/{}", config.public_id),
            )),
            Provider::Infobip => Adapter::InfobipViber(infobip_viber::InfobipViberAdapter::new(
                infobip_viber::InfobipViberSettings::from_json(&config.settings, &config.secrets)?,
                env.http.clone(),
                format!("{public_url}/webhooks/infobip/{}", config.public_id),
            )),
            Provider::Sandbox => Adapter::Sandbox(sandbox::SandboxAdapter::new(
                config.kind,
                config.public_id.clone(),
                sandbox::SandboxSettings::from_json(&config.settings)?,
                env.sandbox_events.clone(),
            )),
        })
    }
}

/// Runs the same expression on whichever adapter this is.
macro_rules! each_adapter {
    ($adapter:expr, $a:ident => $call:expr) => {
        match $adapter {
            Adapter::Whatsapp($a) => $call,
            Adapter::Twilio($a) => $call,
            Adapter::InfobipViber($a) => $call,
            Adapter::Sandbox($a) => $call,
        }
    };
}

impl ChannelAdapter for Adapter {
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        each_adapter!(self, a => a.send(message).await)
    }

    async fn submit_template(
        &self,
        template: &TemplateSubmission,
    ) -> Result<TemplateSubmitted, SendError> {
        each_adapter!(self, a => a.submit_template(template).await)
    }

    async fn template_status(&self, template: &TemplateRef) -> Result<TemplateAnswer, SendError> {
        each_adapter!(self, a => a.template_status(template).await)
    }

    fn parse_webhook(&self, request: &WebhookRequest) -> Result<WebhookOutcome, WebhookError> {
        each_adapter!(self, a => a.parse_webhook(request))
    }

    async fn test_connection(&self) -> Result<String, SendError> {
        each_adapter!(self, a => a.test_connection().await)
    }
}

/// The example value given for one placeholder; a missing one is refused before anything is
/// sent, because every provider rejects templates without samples.
pub(crate) fn example_for<'a>(
    part: &str,
    placeholder: &str,
    examples: &'a [PlaceholderExample],
) -> Result<&'a str, SendError> {
    examples
        .iter()
        .find(|e| e.placeholder == placeholder)
        .map(|e| e.value.as_str())
        .ok_or_else(|| {
            SendError::new(
                ErrorClass::TemplateProblem,
                format!("the {part} placeholder {{{{{placeholder}}}}} has no example value"),
            )
            .with_code("missing_example")
        })
}

/// Placeholder names in a template text, in order of appearance (`{{1}}`, `{{first_name}}`).
pub(crate) fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ambiguous_errors_leave_doubt() {
        for class in ErrorClass::ALL {
            assert_eq!(class.proves_not_sent(), class != ErrorClass::Ambiguous);
        }
        let e = SendError::new(ErrorClass::Ambiguous, "timed out").with_code("timeout");
        assert_eq!(e.disposition(), SendDisposition::Unknown);
        let e = SendError::new(ErrorClass::RateLimited, "slow down")
            .with_retry_after(Some(Duration::from_secs(7)));
        assert_eq!(
            e.disposition(),
            SendDisposition::RetryLater {
                not_before: Some(Duration::from_secs(7))
            }
        );
        for class in [
            ErrorClass::WindowClosed,
            ErrorClass::InvalidRecipient,
            ErrorClass::OptedOut,
            ErrorClass::TemplateProblem,
            ErrorClass::MarketingLimit,
            ErrorClass::Unsupported,
            ErrorClass::Permanent,
        ] {
            assert_eq!(
                SendError::new(class, "no").disposition(),
                SendDisposition::Failed
            );
        }
        assert!(ErrorClass::PairRateLimit.is_retryable());
        assert!(!ErrorClass::PairRateLimit.throttles_channel());
        assert!(ErrorClass::RateLimited.throttles_channel());
    }

    #[test]
    fn error_text_keeps_the_providers_words() {
        let e = SendError::new(
            ErrorClass::TemplateProblem,
            "(#132000) Number of parameters",
        )
        .with_code("132000")
        .with_details(Some("body: 2 vs 1".into()));
        assert_eq!(
            e.text(),
            "132000: (#132000) Number of parameters (body: 2 vs 1)"
        );
        assert!(e.to_string().starts_with("template_problem: 132000"));
    }

    #[test]
    fn a_template_answer_is_ours_only_when_everything_it_names_agrees() {
        let answer =
            |id: Option<&str>, name: Option<&str>, language: Option<&str>| TemplateAnswer {
                provider_template_id: id.map(str::to_owned),
                name: name.map(str::to_owned),
                language: language.map(str::to_owned),
                status: ProviderTemplateStatus::Approved,
            };
        let ours = |a: TemplateAnswer| a.is_about("111", "order_update", "en_US");
        assert!(ours(answer(
            Some("111"),
            Some("order_update"),
            Some("en_US")
        )));
        assert!(ours(answer(Some("111"), None, None)));
        assert!(ours(answer(None, Some("order_update"), Some("en-US"))));
        // Another template, by id or by name: not ours, whatever else agrees.
        assert!(!ours(answer(Some("222"), Some("promo"), Some("en_US"))));
        assert!(!ours(answer(
            Some("222"),
            Some("order_update"),
            Some("en_US")
        )));
        assert!(!ours(answer(Some("111"), Some("promo"), None)));
        assert!(!ours(answer(None, Some("order_update"), Some("de"))));
        // Too little to tell.
        assert!(!ours(answer(None, Some("order_update"), None)));
        assert!(!ours(answer(None, None, None)));
    }

    #[test]
    fn placeholders_are_found_once_in_order() {
        assert_eq!(
            placeholders("Hi {{first_name}}, order {{2}} {{ first_name }} {{"),
            vec!["first_name", "2"]
        );
        assert!(placeholders("no placeholders }}{{").is_empty());
    }

    #[test]
    fn addresses_parse_with_or_without_plus() {
        assert_eq!(
            Address::parse("16505551234").phone().map(|p| p.as_str()),
            Some("+16505551234")
        );
        assert_eq!(Address::parse("+442079460018").to_string(), "+442079460018");
        assert_eq!(
            Address::parse("givenClient"),
            Address::Raw("givenClient".into())
        );
    }

    #[test]
    fn webhook_requests_read_headers_and_query() {
        let r = WebhookRequest::new("get", "https://h.example/w?hub.mode=subscribe&x=a%20b#frag")
            .with_header("X-Thing", "1");
        assert!(r.is_get());
        assert_eq!(r.header("x-thing"), Some("1"));
        assert_eq!(r.query_param("x").as_deref(), Some("a b"));
        assert_eq!(r.query_param("hub.mode").as_deref(), Some("subscribe"));
        assert_eq!(r.query_param("nope"), None);
    }

    #[test]
    fn webhook_paths_follow_the_provider() {
        assert_eq!(
            webhook_path(Provider::Twilio, "abc").as_deref(),
            Some("/webhooks/twilio/abc")
        );
        assert_eq!(webhook_path(Provider::Sandbox, "abc"), None);
    }
}
