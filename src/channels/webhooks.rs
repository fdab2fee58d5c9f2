//! Webhooks: a provider's callback as received, and the verified events adapters turn it into
//! (inbound messages, delivery statuses, template verdicts).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::phone::E164;

use super::{ErrorClass, ProviderTemplateStatus};

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
    /// The part of the webhook about this message (Meta's status object, Twilio's form
    /// fields, Infobip's result object), as [`super::payload::keep`] keeps it (issue 18).
    pub payload: Option<String>,
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
