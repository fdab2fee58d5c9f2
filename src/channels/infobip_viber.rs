//! Viber Business Messages through Infobip (shared/specs/infobip-viber-openapi.json): text and
//! template sends on `POST /viber/2/messages`, template management under
//! `/viber/1/senders/{sender}/templates`, and the delivery-report, seen-report and inbound
//! webhooks.
//!
//! Destinations are digits without `+`. Herald's message id is sent as Infobip's `messageId`
//! (and as `callbackData`), so the reports name our message directly.
//!
//! **Webhook authentication.** Infobip signs nothing by default. Herald therefore defines a
//! shared secret per channel, the `webhook_secret` setting (at least 16 characters, stored
//! encrypted), and accepts an Infobip webhook only when it carries that secret, compared in
//! constant time, either
//! - as the query parameter `secret`: Herald puts it in the report URLs it gives Infobip with
//!   every message (`webhooks.delivery.url`, `webhooks.seen.url`), and an admin adds it to the
//!   inbound-message URL set up in Infobip's portal; or
//! - as the header `X-Herald-Webhook-Secret`, for setups that can add headers (a proxy, or
//!   Infobip's subscription settings).
//!
//! A secret in a URL ends up wherever URLs are logged: Herald's own access-log line records the
//! path only, but tracing-actix-web's request span records `http.target` with the query, so
//! the webhook route must keep the query out of its span (or of the logs). Prefer the header
//! where the setup allows it. Changing the secret takes effect for new sends at once; reports
//! for messages sent before the change carry the old secret and are refused.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::payload;
use super::settings::{Fields, Secret, SettingSpec, SettingsError};
use super::wire::{self, Answer};
use super::{
    Address, ChannelAdapter, DeliveryStatus, ErrorClass, InboundEvent, OutboundMessage,
    ProviderError, ProviderEvent, ProviderTemplateStatus, SendError, SendReceipt, StatusEvent,
    TemplateAnswer, TemplateCategory, TemplateRef, TemplateSubmission, TemplateSubmitted,
    WebhookError, WebhookOutcome, WebhookRequest, example_for, placeholders,
};
use crate::domain::content::MessageContent;

const BASE_URL: SettingSpec = SettingSpec {
    key: "base_url",
    label: "Base URL",
    secret: false,
    required: true,
    default: None,
};
const API_KEY: SettingSpec = SettingSpec {
    key: "api_key",
    label: "API key",
    secret: true,
    required: true,
    default: None,
};
const SENDER: SettingSpec = SettingSpec {
    key: "sender",
    label: "Viber sender",
    secret: false,
    required: true,
    default: None,
};
const WEBHOOK_SECRET: SettingSpec = SettingSpec {
    key: "webhook_secret",
    label: "Webhook secret",
    secret: true,
    required: true,
    default: None,
};

/// Infobip Viber's settings keys; `api_key` and `webhook_secret` are secrets.
pub const SETTINGS: &[SettingSpec] = &[BASE_URL, API_KEY, SENDER, WEBHOOK_SECRET];

/// The header that may carry the webhook secret.
pub const SECRET_HEADER: &str = "X-Herald-Webhook-Secret";
/// The query parameter that may carry the webhook secret.
pub const SECRET_PARAM: &str = "secret";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfobipViberSettings {
    /// The account's API base URL from Infobip's portal (`https://xxxxx.api.infobip.com`).
    pub base_url: String,
    pub api_key: Secret,
    pub sender: String,
    pub webhook_secret: Secret,
}

impl InfobipViberSettings {
    pub fn from_json(settings: &Value, secrets: &Value) -> Result<Self, SettingsError> {
        let mut f = Fields::new(settings, secrets);
        let base_url = f.base_url(&BASE_URL);
        let api_key = f.secret(&API_KEY);
        let sender = f.required(&SENDER);
        let webhook_secret = f.secret(&WEBHOOK_SECRET);
        f.check(
            WEBHOOK_SECRET.key,
            webhook_secret.expose().chars().count() >= 16,
            "Webhook secret must be at least 16 characters (it is the only thing that authenticates Infobip's webhooks)",
        );
        f.finish(InfobipViberSettings {
            base_url,
            api_key,
            sender,
            webhook_secret,
        })
    }
}

#[derive(Debug, Clone)]
pub struct InfobipViberAdapter {
    settings: InfobipViberSettings,
    http: reqwest::Client,
    /// The report URL given to Infobip with every message, secret included.
    report_url: String,
}

impl InfobipViberAdapter {
    /// `webhook_url` is `{public_url}/webhooks/infobip/{channel_public_id}`.
    pub fn new(settings: InfobipViberSettings, http: reqwest::Client, webhook_url: String) -> Self {
        let query = serde_urlencoded::to_string([(SECRET_PARAM, settings.webhook_secret.expose())])
            .unwrap_or_default();
        InfobipViberAdapter {
            report_url: format!("{webhook_url}?{query}"),
            settings,
            http,
        }
    }

    /// The webhook URL with the secret, as given to Infobip with every message: the settings
    /// page can show it for the inbound-message URL an admin sets up in Infobip's portal.
    pub fn report_url(&self) -> &str {
        &self.report_url
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url)
    }

    /// `/viber/1/senders/{sender}/templates[/{id}]`, each segment percent-encoded.
    fn templates_url(&self, template_id: Option<&str>) -> Result<reqwest::Url, SendError> {
        let mut segments = vec![
            "viber",
            "1",
            "senders",
            self.settings.sender.as_str(),
            "templates",
        ];
        segments.extend(template_id);
        wire::url_with_segments(&self.settings.base_url, &segments)
    }

    /// The JSON body of a send, exactly as posted to `/viber/2/messages`.
    pub fn message_body(&self, message: &OutboundMessage) -> Result<Value, SendError> {
        let content = match &message.content {
            MessageContent::Text { body } => json!({ "type": "TEXT", "text": body }),
            MessageContent::Template(t) => {
                let Some(template_id) = &t.provider_template_id else {
                    return Err(SendError::new(
                        ErrorClass::TemplateProblem,
                        format!(
                            "template {} has no Infobip template id: submit it for approval first",
                            t.name
                        ),
                    )
                    .with_code("missing_template_id"));
                };
                let mut content = json!({
                    "type": "TEMPLATE",
                    "templateId": template_id,
                    "language": t.language,
                });
                let parameters: Map<String, Value> = t
                    .header
                    .iter()
                    .chain(&t.body)
                    .enumerate()
                    .map(|(i, p)| {
                        let name = p.name.clone().unwrap_or_else(|| (i + 1).to_string());
                        (name, Value::String(p.value.clone()))
                    })
                    .collect();
                if !parameters.is_empty() {
                    content["parameters"] = Value::Object(parameters);
                }
                content
            }
        };
        Ok(json!({
            "messages": [{
                "sender": self.settings.sender,
                "destinations": [{ "to": message.to.digits(), "messageId": message.message_id }],
                "content": content,
                "webhooks": {
                    "delivery": { "url": self.report_url },
                    "seen": { "url": self.report_url },
                    "contentType": "application/json",
                    "callbackData": message.message_id,
                },
            }],
        }))
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Answer, SendError> {
        let request = request.header(
            reqwest::header::AUTHORIZATION,
            format!("App {}", self.settings.api_key.expose()),
        );
        wire::call(request, classify, &self.secrets()).await
    }

    /// The credentials no kept payload may show.
    fn secrets(&self) -> [&str; 2] {
        [
            self.settings.api_key.expose(),
            self.settings.webhook_secret.expose(),
        ]
    }
}

/// The JSON body of a template creation.
pub fn template_body(t: &TemplateSubmission) -> Result<Value, SendError> {
    let category = match t.category {
        TemplateCategory::Utility | TemplateCategory::Transactional => "TRANSACTIONAL",
        TemplateCategory::Authentication | TemplateCategory::Otp => "OTP",
        TemplateCategory::Marketing => {
            return Err(SendError::unsupported(
                "Viber templates are transactional or OTP; promotional Viber messages are sent as free text",
            ));
        }
    };
    if t.header_text.is_some() || t.footer_text.is_some() || !t.buttons.is_empty() {
        return Err(SendError::new(
            ErrorClass::TemplateProblem,
            "Viber templates have a body only: no header, footer or buttons",
        )
        .with_code("unsupported_component"));
    }
    let params = placeholders(&t.body_text)
        .into_iter()
        .map(|name| {
            let example = example_for("body", &name, &t.body_examples)?;
            Ok(json!({ "type": "TEXT", "name": name, "example": example }))
        })
        .collect::<Result<Vec<_>, SendError>>()?;
    Ok(json!({
        "category": category,
        "body": [{ "language": t.language, "template": t.body_text }],
        "params": params,
    }))
}

/// Infobip's status names for a message it refused outright, by what they mean for us.
fn classify_status_name(name: &str) -> ErrorClass {
    match name {
        "REJECTED_DESTINATION"
        | "REJECTED_DESTINATION_NOT_REGISTERED"
        | "REJECTED_INVALID_DESTINATION"
        | "REJECTED_PREFIX_MISSING"
        | "REJECTED_NETWORK"
        | "MISSING_TO" => ErrorClass::InvalidRecipient,
        "REJECTED_DND" => ErrorClass::OptedOut,
        "REJECTED_FLOODING_FILTER" => ErrorClass::PairRateLimit,
        _ => ErrorClass::Permanent,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ApiError {
    error_code: Option<String>,
    description: Option<String>,
    action: Option<String>,
    violations: Vec<Violation>,
    request_error: Option<RequestError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Violation {
    property: Option<String>,
    violation: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RequestError {
    service_exception: Option<ServiceException>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ServiceException {
    message_id: Option<String>,
    text: Option<String>,
}

fn classify(answer: &Answer) -> SendError {
    let Some(error) = answer.json::<ApiError>() else {
        return answer.unclassified();
    };
    let legacy = error.request_error.and_then(|r| r.service_exception);
    let code = error
        .error_code
        .or_else(|| legacy.as_ref().and_then(|l| l.message_id.clone()))
        .unwrap_or_else(|| format!("http_{}", answer.status));
    let mut details: Vec<String> = error
        .violations
        .into_iter()
        .map(|v| {
            format!(
                "{}: {}",
                v.property.unwrap_or_default(),
                v.violation.unwrap_or_default()
            )
        })
        .collect();
    details.extend(error.action);
    answer.refusal(
        (code == "E429").then_some(ErrorClass::RateLimited),
        Some(code),
        error.description.or_else(|| legacy.and_then(|l| l.text)),
        Some(details.join("; ")),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SendResponse {
    messages: Vec<SentMessage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SentMessage {
    message_id: Option<String>,
    status: Option<ReportStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ReportStatus {
    group_name: Option<String>,
    name: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TemplateInfo {
    template_id: Option<String>,
    status: Option<String>,
}

impl ChannelAdapter for InfobipViberAdapter {
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let body = self.message_body(message)?;
        let answer = self
            .call(self.http.post(self.url("/viber/2/messages")).json(&body))
            .await?;
        let payload = Some(answer.kept(&self.secrets()));
        let parsed: Option<SendResponse> = answer.json();
        let Some(sent) = parsed.and_then(|r| r.messages.into_iter().next()) else {
            return Err(answer.unreadable_success().with_payload(payload));
        };
        let status = sent.status.unwrap_or_default();
        // Infobip answers 200 even for a destination it refuses at once.
        if status.group_name.as_deref() == Some("REJECTED") {
            let name = status.name.unwrap_or_else(|| "REJECTED".into());
            return Err(SendError::new(
                classify_status_name(&name),
                status
                    .description
                    .unwrap_or_else(|| "Infobip rejected the message".into()),
            )
            .with_code(name)
            .with_payload(payload));
        }
        Ok(SendReceipt {
            provider_message_id: sent
                .message_id
                .unwrap_or_else(|| message.message_id.clone()),
            provider_status: status.name.or(status.group_name),
            payload,
        })
    }

    async fn submit_template(
        &self,
        template: &TemplateSubmission,
    ) -> Result<TemplateSubmitted, SendError> {
        let body = template_body(template)?;
        let answer = self
            .call(self.http.post(self.templates_url(None)?).json(&body))
            .await?;
        let info: TemplateInfo = answer.json().ok_or_else(|| answer.unreadable_success())?;
        let Some(id) = info.template_id else {
            return Err(answer.unreadable_success());
        };
        Ok(TemplateSubmitted::from_answer(id, info.status))
    }

    async fn template_status(&self, template: &TemplateRef) -> Result<TemplateAnswer, SendError> {
        let TemplateRef::ProviderId(id) = template else {
            return Err(SendError::unsupported(
                "Infobip knows Viber templates by id only",
            ));
        };
        let url = self.templates_url(Some(id))?;
        let answer = self.call(self.http.get(url)).await?;
        // Infobip's Viber templates have no name; the id is what the answer is about.
        answer
            .json::<TemplateInfo>()
            .and_then(|t| {
                Some(TemplateAnswer {
                    status: ProviderTemplateStatus::from_word(&t.status?, None),
                    provider_template_id: t.template_id,
                    name: None,
                    language: None,
                })
            })
            .ok_or_else(|| answer.unreadable_success())
    }

    fn parse_webhook(&self, request: &WebhookRequest) -> Result<WebhookOutcome, WebhookError> {
        let secret = self.settings.webhook_secret.expose().as_bytes();
        let by_header = request
            .header(SECRET_HEADER)
            .is_some_and(|h| wire::ct_eq(h.trim().as_bytes(), secret));
        let by_query = || {
            request
                .query_param(SECRET_PARAM)
                .is_some_and(|q| wire::ct_eq(q.as_bytes(), secret))
        };
        if !(by_header || by_query()) {
            return Err(WebhookError::BadSignature);
        }
        if !request.is_post() {
            return Err(WebhookError::Malformed(format!(
                "unexpected method {}",
                request.method
            )));
        }
        let secrets = self.secrets();
        parse_events(&request.body, &secrets)
            .map(|events| WebhookOutcome::Events(payload::redact_errors(events, &secrets)))
    }

    async fn test_connection(&self) -> Result<String, SendError> {
        // Logs are read-only; the pull *reports* endpoint would consume reports.
        let request = self
            .http
            .get(self.url("/viber/2/logs"))
            .query(&[("sender", self.settings.sender.as_str()), ("limit", "1")]);
        self.call(request).await?;
        Ok(format!(
            "Connected to Infobip (Viber sender {})",
            self.settings.sender
        ))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Reports {
    results: Option<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Report {
    message_id: Option<String>,
    status: Option<ReportStatus>,
    error: Option<ReportError>,
    done_at: Option<String>,
    sent_at: Option<String>,
    seen_at: Option<String>,
    sender: Option<String>,
    received_at: Option<String>,
    message: Option<InboundContent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReportError {
    id: Option<i64>,
    name: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct InboundContent {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    file_name: Option<String>,
}

/// Reads `{"results": [...]}`: delivery reports, seen reports and inbound messages share the
/// envelope and are told apart by their fields.
fn parse_events(body: &[u8], secrets: &[&str]) -> Result<Vec<ProviderEvent>, WebhookError> {
    let reports: Reports = wire::webhook_json(body)?;
    let results = reports
        .results
        .ok_or_else(|| WebhookError::malformed("no results array"))?;
    let mut events = Vec::with_capacity(results.len());
    for raw in results {
        // The result object as Infobip wrote it, for its message's timeline.
        let kept = payload::keep_json(&raw, secrets);
        let r: Report = serde_json::from_value(raw)
            .map_err(|e| WebhookError::malformed(format!("a result: {e}")))?;
        let id = r
            .message_id
            .clone()
            .ok_or_else(|| WebhookError::malformed("a result has no messageId"))?;
        if let Some(seen) = &r.seen_at {
            events.push(ProviderEvent::Status(StatusEvent {
                event_id: format!("infobip:{id}:SEEN"),
                provider_message_id: id,
                status: DeliveryStatus::Read,
                at: infobip_time(Some(seen)),
                error: None,
                account: None,
                payload: Some(kept),
            }));
        } else if let Some(status) = r.status {
            events.push(delivery_event(
                id,
                status,
                r.error,
                r.done_at.or(r.sent_at),
                kept,
            ));
        } else if let (Some(message), Some(sender)) = (r.message, r.sender) {
            let text = match message.kind.as_deref() {
                Some("TEXT") => message.text.unwrap_or_default(),
                Some("FILE") => match message.file_name.or(message.text) {
                    Some(name) => format!("[file] {name}"),
                    None => "[file]".into(),
                },
                other => format!("[{}]", other.unwrap_or("message").to_ascii_lowercase()),
            };
            events.push(ProviderEvent::Inbound(InboundEvent {
                event_id: format!("infobip:in:{id}"),
                from: Address::parse(&sender),
                text,
                received_at: infobip_time(r.received_at.as_deref()),
                provider_message_id: id,
                profile_name: None,
                account: None,
            }));
        } else {
            events.push(ProviderEvent::Unrecognised {
                description: format!("Infobip result for {id} is not a report or a message"),
            });
        }
    }
    Ok(events)
}

fn delivery_event(
    id: String,
    status: ReportStatus,
    error: Option<ReportError>,
    at: Option<String>,
    payload: String,
) -> ProviderEvent {
    let group = status.group_name.clone().unwrap_or_default();
    let name = status.name.clone().unwrap_or_else(|| group.clone());
    let delivery = match group.as_str() {
        "DELIVERED" => DeliveryStatus::Delivered,
        "PENDING" | "ACCEPTED" => DeliveryStatus::Sent,
        "UNDELIVERABLE" | "EXPIRED" | "REJECTED" => DeliveryStatus::Failed,
        other => {
            return ProviderEvent::Unrecognised {
                description: format!("Infobip status group `{other}` for {id}"),
            };
        }
    };
    let error = (delivery == DeliveryStatus::Failed).then(|| {
        // Error id 0 is NO_ERROR: the status then says what happened (e.g. EXPIRED).
        let real_error = error.filter(|e| e.id.unwrap_or(0) != 0);
        let (code, message) = match real_error {
            Some(e) => (
                e.name.unwrap_or_else(|| name.clone()),
                e.description.or(status.description.clone()),
            ),
            None => (name.clone(), status.description.clone()),
        };
        ProviderError {
            class: classify_status_name(&name),
            message: message.unwrap_or_else(|| format!("Infobip reported {name}")),
            code,
        }
    });
    ProviderEvent::Status(StatusEvent {
        event_id: format!("infobip:{id}:{name}"),
        provider_message_id: id,
        status: delivery,
        at: infobip_time(at.as_deref()),
        error,
        account: None,
        payload: Some(payload),
    })
}

/// Infobip writes `2023-02-03T00:01:01.000+0000` (offset without a colon); RFC 3339 is
/// accepted too. Unreadable times are taken as the time of receipt.
fn infobip_time(s: Option<&str>) -> DateTime<Utc> {
    s.and_then(|s| {
        DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
            .or_else(|_| DateTime::parse_from_rfc3339(s))
            .ok()
    })
    .map(|t| t.with_timezone(&Utc))
    .unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests;
