//! Twilio Programmable Messaging (SMS): form-encoded sends with HTTP Basic auth, and the
//! inbound and status-callback webhooks signed with `X-Twilio-Signature`
//! (shared/reference/sms-viber.md sections 1 and 2).
//!
//! Twilio has no idempotency key on message creation, so a timeout or an undocumented 5xx
//! after the POST is `Ambiguous` (never resent), while 429/20429 is documented as "never
//! processed" and is retried. SMS has no provider templates: Herald keeps SMS templates as
//! local snippets and approves them itself, so template calls answer `Unsupported`, and a
//! `MessageContent::Template` goes out as its rendered text.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use super::payload;
use super::settings::{Fields, Secret, SettingSpec, SettingsError};
use super::wire::{self, Answer};
use super::{
    Address, ChannelAdapter, DeliveryStatus, ErrorClass, InboundEvent, OutboundMessage,
    ProviderError, ProviderEvent, SendError, SendReceipt, StatusEvent, TemplateAnswer, TemplateRef,
    TemplateSubmission, TemplateSubmitted, WebhookError, WebhookOutcome, WebhookRequest,
};
use crate::domain::phone::E164;

const BASE_URL: SettingSpec = SettingSpec {
    key: "base_url",
    label: "Base URL",
    secret: false,
    required: true,
    default: Some("https://api.twilio.com"),
};
const ACCOUNT_SID: SettingSpec = SettingSpec {
    key: "account_sid",
    label: "Account SID",
    secret: false,
    required: true,
    default: None,
};
const AUTH_TOKEN: SettingSpec = SettingSpec {
    key: "auth_token",
    label: "Auth token",
    secret: true,
    required: true,
    default: None,
};
const FROM: SettingSpec = SettingSpec {
    key: "from",
    label: "Sender (From)",
    secret: false,
    required: false,
    default: None,
};
const MESSAGING_SERVICE_SID: SettingSpec = SettingSpec {
    key: "messaging_service_sid",
    label: "Messaging service SID",
    secret: false,
    required: false,
    default: None,
};

/// Twilio's settings keys; `auth_token` is the secret. One of `from` and
/// `messaging_service_sid` is required (both may be given: `From` then picks a sender of the
/// service's pool).
pub const SETTINGS: &[SettingSpec] = &[
    BASE_URL,
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM,
    MESSAGING_SERVICE_SID,
];

/// The body to answer an inbound-message webhook with: TwiML that sends no reply.
pub const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioSettings {
    pub base_url: String,
    pub account_sid: String,
    /// Authenticates sends and signs webhooks.
    pub auth_token: Secret,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
}

impl TwilioSettings {
    pub fn from_json(settings: &Value, secrets: &Value) -> Result<Self, SettingsError> {
        let mut f = Fields::new(settings, secrets);
        let base_url = f.base_url(&BASE_URL);
        let account_sid = f.required(&ACCOUNT_SID);
        f.check(
            ACCOUNT_SID.key,
            is_sid(&account_sid, "AC"),
            "Account SID is AC followed by 32 hexadecimal characters",
        );
        let auth_token = f.secret(&AUTH_TOKEN);
        let from = f.optional(&FROM);
        if let Some(from) = &from {
            f.check(FROM.key, is_sender(from), "Sender is an E.164 number (+14155550100), a short code or an alphanumeric sender ID of up to 11 characters");
        }
        let messaging_service_sid = f.optional(&MESSAGING_SERVICE_SID);
        if let Some(sid) = &messaging_service_sid {
            f.check(
                MESSAGING_SERVICE_SID.key,
                is_sid(sid, "MG"),
                "Messaging service SID is MG followed by 32 hexadecimal characters",
            );
        }
        f.check(
            FROM.key,
            from.is_some() || messaging_service_sid.is_some(),
            "Give a sender (From) or a messaging service SID",
        );
        f.finish(TwilioSettings {
            base_url,
            account_sid,
            auth_token,
            from,
            messaging_service_sid,
        })
    }
}

fn is_sid(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An E.164 number, a short code, or an alphanumeric sender ID.
fn is_sender(s: &str) -> bool {
    if s.starts_with('+') {
        return E164::parse(s, None).is_ok();
    }
    let short_code = (3..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let alphanumeric = (1..=11).contains(&s.len())
        && s.bytes().any(|b| b.is_ascii_alphabetic())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ');
    short_code || alphanumeric
}

#[derive(Debug, Clone)]
pub struct TwilioAdapter {
    settings: TwilioSettings,
    http: reqwest::Client,
    /// `{public_url}/webhooks/twilio/{channel_public_id}`: where status callbacks go.
    status_callback: String,
}

impl TwilioAdapter {
    pub fn new(settings: TwilioSettings, http: reqwest::Client, status_callback: String) -> Self {
        TwilioAdapter {
            settings,
            http,
            status_callback,
        }
    }

    fn account_url(&self, suffix: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}{suffix}",
            self.settings.base_url, self.settings.account_sid
        )
    }

    /// The form fields of a send, in the order they are posted.
    pub fn form(&self, message: &OutboundMessage) -> Vec<(&'static str, String)> {
        let mut form = vec![("To", message.to.as_str().to_owned())];
        if let Some(from) = &self.settings.from {
            form.push(("From", from.clone()));
        }
        if let Some(sid) = &self.settings.messaging_service_sid {
            form.push(("MessagingServiceSid", sid.clone()));
        }
        form.push(("Body", message.content.rendered().to_owned()));
        form.push(("StatusCallback", self.status_callback.clone()));
        form
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Answer, SendError> {
        let request = request.basic_auth(
            &self.settings.account_sid,
            Some(self.settings.auth_token.expose()),
        );
        wire::call(request, classify, &self.secrets()).await
    }

    /// The credentials no kept payload may show.
    fn secrets(&self) -> [&str; 1] {
        [self.settings.auth_token.expose()]
    }
}

/// The class of a Twilio error code, where the code alone decides it.
pub fn classify_code(code: i64) -> Option<ErrorClass> {
    Some(match code {
        20429 => ErrorClass::RateLimited,
        21610 => ErrorClass::OptedOut,
        // Invalid To; unroutable To; To not a mobile number; To is a landline; unknown
        // handset; landline or unreachable carrier.
        21211 | 21612 | 21614 | 21635 | 30005 | 30006 => ErrorClass::InvalidRecipient,
        _ => return None,
    })
}

/// Twilio's words for the codes a status callback names only by number.
fn describe_code(code: &str) -> &'static str {
    match code {
        "21610" => "The recipient unsubscribed from this sender (replied STOP)",
        "30003" => "Unreachable destination handset",
        "30005" => "Unknown destination handset",
        "30006" => "Landline or unreachable carrier",
        "30007" => "Message filtered by Twilio or the carrier",
        "30008" => "Unknown error",
        _ => "Twilio reported an error",
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
    // RFC 9457 shape of Twilio's newer APIs.
    title: Option<String>,
    detail: Option<String>,
    more_info: Option<String>,
}

fn classify(answer: &Answer) -> SendError {
    let error = answer
        .json::<TwilioError>()
        .filter(|e| e.code.is_some() || e.message.is_some() || e.detail.is_some());
    let Some(error) = error else {
        return answer.unclassified();
    };
    answer.refusal(
        error.code.and_then(classify_code),
        error.code.map(|c| c.to_string()),
        error.message.or(error.detail).or(error.title),
        error.more_info,
    )
}

#[derive(Debug, Deserialize)]
struct Created {
    sid: String,
    status: Option<String>,
}

impl ChannelAdapter for TwilioAdapter {
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let request = self
            .http
            .post(self.account_url("/Messages.json"))
            .form(&self.form(message));
        let answer = self.call(request).await?;
        let payload = Some(answer.kept(&self.secrets()));
        let Some(created) = answer.json::<Created>() else {
            return Err(answer.unreadable_success().with_payload(payload));
        };
        Ok(SendReceipt {
            provider_message_id: created.sid,
            provider_status: created.status,
            payload,
        })
    }

    async fn submit_template(
        &self,
        _template: &TemplateSubmission,
    ) -> Result<TemplateSubmitted, SendError> {
        Err(SendError::unsupported(
            "Twilio SMS has no provider templates: SMS templates are local snippets, approved in Herald",
        ))
    }

    async fn template_status(&self, _template: &TemplateRef) -> Result<TemplateAnswer, SendError> {
        Err(SendError::unsupported(
            "Twilio SMS has no provider templates: SMS templates are local snippets, approved in Herald",
        ))
    }

    fn parse_webhook(&self, request: &WebhookRequest) -> Result<WebhookOutcome, WebhookError> {
        let params = verify(request, self.settings.auth_token.expose())?;
        let secrets = self.secrets();
        parse_params(&params, &secrets)
            .map(|e| WebhookOutcome::Events(payload::redact_errors(vec![e], &secrets)))
    }

    async fn test_connection(&self) -> Result<String, SendError> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Account {
            friendly_name: Option<String>,
            status: Option<String>,
        }
        let answer = self.call(self.http.get(self.account_url(".json"))).await?;
        let account: Account = answer.json().unwrap_or_default();
        Ok(format!(
            "Connected to Twilio account {} ({})",
            account
                .friendly_name
                .unwrap_or_else(|| self.settings.account_sid.clone()),
            account.status.unwrap_or_else(|| "status unknown".into())
        ))
    }
}

/// `X-Twilio-Signature` for a request to `url` with these form parameters: base64 of
/// HMAC-SHA1(auth token, url + each name and value, names sorted, each name's values sorted,
/// exact duplicates once).
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut data = url.to_owned();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    BASE64.encode(wire::hmac_sha1(auth_token.as_bytes(), data.as_bytes()))
}

/// Checks the signature and returns the signed parameters. Tried against the URL as given and
/// with its default port added or removed, as Twilio's own SDKs do. A JSON body (the URL then
/// carries `bodySHA256`) is signed through the URL alone, and its hash is checked separately.
fn verify(
    request: &WebhookRequest,
    auth_token: &str,
) -> Result<Vec<(String, String)>, WebhookError> {
    let signature = request
        .header("X-Twilio-Signature")
        .ok_or(WebhookError::BadSignature)?
        .trim();
    let body_hash = request.query_param("bodySHA256");
    let params: Vec<(String, String)> = if request.is_get() || body_hash.is_some() {
        Vec::new()
    } else {
        serde_urlencoded::from_bytes(&request.body).map_err(|_| WebhookError::BadSignature)?
    };
    let mut urls = vec![request.url.clone()];
    urls.extend(alternate_port(&request.url));
    let signed = urls.iter().any(|url| {
        wire::ct_eq(
            sign(auth_token, url, &params).as_bytes(),
            signature.as_bytes(),
        )
    });
    if !signed {
        return Err(WebhookError::BadSignature);
    }
    if let Some(hash) = body_hash {
        if !wire::ct_eq(
            wire::sha256_hex(&request.body).as_bytes(),
            hash.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(WebhookError::BadSignature);
        }
        let json: Value = serde_json::from_slice(&request.body)
            .map_err(|e| WebhookError::Malformed(format!("not JSON: {e}")))?;
        let Value::Object(map) = json else {
            return Err(WebhookError::Malformed(
                "the JSON body is not an object".into(),
            ));
        };
        return Ok(map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect());
    }
    if request.is_get() {
        return Ok(request.query_pairs());
    }
    Ok(params)
}

/// The URL with its default port added (when absent) or removed (when present).
fn alternate_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let colon = if host_port.starts_with('[') {
        host_port.find("]:").map(|i| i + 1)
    } else {
        host_port.rfind(':')
    };
    match colon {
        Some(i) if &host_port[i + 1..] == default => {
            Some(format!("{scheme}://{}{tail}", &authority[..host_start + i]))
        }
        Some(_) => None,
        None => Some(format!("{scheme}://{authority}:{default}{tail}")),
    }
}

/// A status callback's form fields as a JSON object, for the message's timeline (issue 18).
fn form_payload(params: &[(String, String)], secrets: &[&str]) -> String {
    let fields: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    payload::keep_json(&serde_json::Value::Object(fields), secrets)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Reads a status callback or an inbound message from the signed parameters.
fn parse_params(
    params: &[(String, String)],
    secrets: &[&str],
) -> Result<ProviderEvent, WebhookError> {
    let sid = param(params, "MessageSid")
        .or_else(|| param(params, "SmsMessageSid"))
        .or_else(|| param(params, "SmsSid"))
        .ok_or_else(|| WebhookError::Malformed("MessageSid is missing".into()))?;
    let status_word = param(params, "MessageStatus");
    if let Some(word) = status_word.filter(|w| !matches!(*w, "received" | "receiving")) {
        let status = match word {
            "queued" | "accepted" | "scheduled" | "sending" | "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "failed" | "undelivered" | "canceled" => DeliveryStatus::Failed,
            other => {
                return Ok(ProviderEvent::Unrecognised {
                    description: format!("Twilio status `{other}` for {sid}"),
                });
            }
        };
        let error = param(params, "ErrorCode")
            .filter(|c| *c != "0")
            .map(|code| ProviderError {
                code: code.to_owned(),
                message: param(params, "ErrorMessage")
                    .unwrap_or_else(|| describe_code(code))
                    .to_owned(),
                class: code
                    .parse()
                    .ok()
                    .and_then(classify_code)
                    .unwrap_or(ErrorClass::Permanent),
            });
        return Ok(ProviderEvent::Status(StatusEvent {
            event_id: format!("twilio:{sid}:{word}"),
            provider_message_id: sid.to_owned(),
            status,
            at: Utc::now(),
            error,
            account: None,
            payload: Some(form_payload(params, secrets)),
        }));
    }
    let from = param(params, "From")
        .ok_or_else(|| WebhookError::Malformed("an inbound message without From".into()))?;
    let media: u32 = param(params, "NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let text = match param(params, "Body") {
        Some(body) => body.to_owned(),
        None if media > 0 => "[media]".to_owned(),
        None => String::new(),
    };
    Ok(ProviderEvent::Inbound(InboundEvent {
        event_id: format!("twilio:in:{sid}"),
        from: Address::parse(from.trim_start_matches("whatsapp:")),
        text,
        received_at: Utc::now(),
        provider_message_id: sid.to_owned(),
        profile_name: param(params, "ProfileName").map(str::to_owned),
        account: None,
    }))
}

#[cfg(test)]
mod tests;
