//! WhatsApp Business Platform (Cloud API): template and text sends, template creation and
//! status, and the `messages` / `message_template_status_update` webhooks.
//!
//! Wire facts (shared/reference/whatsapp.md): sends go to
//! `POST /{version}/{phone_number_id}/messages` with a bearer token; errors come back as
//! `{"error": {"code", "message", "error_data": {"details"}}}` and are classified by `code`,
//! never by title or HTTP status; webhooks are signed with `X-Hub-Signature-256`
//! (HMAC-SHA256 of the raw body with the app secret).
//!
//! Herald always sends `recipient_type: "individual"` and `language.policy: "deterministic"`:
//! both are optional in Meta's prose but required by Meta's OpenAPI file, and valid either way.

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::payload;
use super::settings::{Fields, Secret, SettingSpec, SettingsError};
use super::wire::{self, Answer};
use super::{
    Address, ChannelAdapter, DeliveryStatus, ErrorClass, InboundEvent, OutboundMessage,
    PlaceholderExample, ProviderError, ProviderEvent, ProviderTemplateStatus, SendError,
    SendReceipt, StatusEvent, TemplateAnswer, TemplateButton, TemplateCategory, TemplateRef,
    TemplateStatusEvent, TemplateSubmission, TemplateSubmitted, WebhookError, WebhookOutcome,
    WebhookRequest, example_for, placeholders,
};
use crate::domain::content::{ButtonKind, MessageContent, ParameterFormat, TemplateParam};
use crate::domain::template::{Authentication, OtpButton};

const BASE_URL: SettingSpec = SettingSpec {
    key: "base_url",
    label: "Base URL",
    secret: false,
    required: true,
    default: Some("https://graph.facebook.com"),
};
const API_VERSION: SettingSpec = SettingSpec {
    key: "api_version",
    label: "API version",
    secret: false,
    required: true,
    default: Some("v23.0"),
};
const PHONE_NUMBER_ID: SettingSpec = SettingSpec {
    key: "phone_number_id",
    label: "Phone number ID",
    secret: false,
    required: true,
    default: None,
};
const WABA_ID: SettingSpec = SettingSpec {
    key: "waba_id",
    label: "WhatsApp Business Account ID",
    secret: false,
    required: true,
    default: None,
};
const ACCESS_TOKEN: SettingSpec = SettingSpec {
    key: "access_token",
    label: "Access token",
    secret: true,
    required: true,
    default: None,
};
const APP_SECRET: SettingSpec = SettingSpec {
    key: "app_secret",
    label: "App secret",
    secret: true,
    required: true,
    default: None,
};
const VERIFY_TOKEN: SettingSpec = SettingSpec {
    key: "verify_token",
    label: "Webhook verify token",
    secret: true,
    required: true,
    default: None,
};

/// The business's messaging limit: unique customers it may start conversations with (outside
/// a customer-service window) per rolling 24 hours. Broadcasts wait for room under it instead
/// of being refused by Meta.
const MESSAGING_LIMIT: SettingSpec = SettingSpec {
    key: "messaging_limit",
    label: "Messaging limit (customers per 24 hours: 250, 2000, 10000, 100000 or unlimited; read from Meta every hour when it reports it)",
    secret: false,
    required: false,
    default: None,
};

/// The messaging limits Meta gives a business account.
pub const MESSAGING_LIMITS: [&str; 5] = ["250", "2000", "10000", "100000", "unlimited"];

/// A messaging limit tier as Meta names it (`TIER_2K`), as the channel setting stores it.
pub fn limit_of_tier(tier: &str) -> Option<&'static str> {
    Some(match tier.trim().to_ascii_uppercase().as_str() {
        "TIER_50" => "50",
        "TIER_250" => "250",
        "TIER_1K" => "1000",
        "TIER_2K" => "2000",
        "TIER_10K" => "10000",
        "TIER_100K" => "100000",
        "TIER_UNLIMITED" => "unlimited",
        _ => return None,
    })
}

/// WhatsApp's settings keys; `access_token`, `app_secret` and `verify_token` are secrets.
pub const SETTINGS: &[SettingSpec] = &[
    BASE_URL,
    API_VERSION,
    PHONE_NUMBER_ID,
    WABA_ID,
    ACCESS_TOKEN,
    APP_SECRET,
    VERIFY_TOKEN,
    MESSAGING_LIMIT,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatsappSettings {
    pub base_url: String,
    pub api_version: String,
    pub phone_number_id: String,
    pub waba_id: String,
    pub access_token: Secret,
    /// Signs webhook bodies (`X-Hub-Signature-256`).
    pub app_secret: Secret,
    /// Echoed by Meta in the GET verification handshake.
    pub verify_token: Secret,
}

impl WhatsappSettings {
    pub fn from_json(settings: &Value, secrets: &Value) -> Result<Self, SettingsError> {
        let mut f = Fields::new(settings, secrets);
        let base_url = f.base_url(&BASE_URL);
        let api_version = f.required(&API_VERSION);
        f.check(
            API_VERSION.key,
            is_api_version(&api_version),
            "API version looks like v23.0",
        );
        let phone_number_id = f.required(&PHONE_NUMBER_ID);
        f.check(
            PHONE_NUMBER_ID.key,
            is_digits(&phone_number_id),
            "Phone number ID is the number's numeric ID from the App Dashboard, not the phone number",
        );
        let waba_id = f.required(&WABA_ID);
        f.check(
            WABA_ID.key,
            is_digits(&waba_id),
            "WhatsApp Business Account ID is numeric",
        );
        let limit = f.optional(&MESSAGING_LIMIT);
        f.check(
            MESSAGING_LIMIT.key,
            limit
                .as_deref()
                .is_none_or(|l| MESSAGING_LIMITS.contains(&l.trim().replace(',', "").as_str())),
            "The messaging limit is 250, 2000, 10000, 100000 or unlimited (as Meta's WhatsApp Manager shows it)",
        );
        let settings = WhatsappSettings {
            base_url,
            api_version,
            phone_number_id,
            waba_id,
            access_token: f.secret(&ACCESS_TOKEN),
            app_secret: f.secret(&APP_SECRET),
            verify_token: f.secret(&VERIFY_TOKEN),
        };
        f.finish(settings)
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_api_version(s: &str) -> bool {
    s.strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| is_digits(major) && is_digits(minor))
}

#[derive(Debug, Clone)]
pub struct WhatsappAdapter {
    settings: WhatsappSettings,
    http: reqwest::Client,
}

impl WhatsappAdapter {
    pub fn new(settings: WhatsappSettings, http: reqwest::Client) -> Self {
        WhatsappAdapter { settings, http }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/{}/{path}",
            self.settings.base_url, self.settings.api_version
        )
    }

    /// A new version of a template Meta already has: Meta's edit call (`POST /{template-id}`)
    /// with the new category and components (a template's name and language never change).
    /// Meta reviews it again; the template keeps its id.
    async fn edit_template(
        &self,
        provider_template_id: &str,
        mut body: Value,
    ) -> Result<TemplateSubmitted, SendError> {
        if provider_template_id.is_empty()
            || !provider_template_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(SendError::new(
                ErrorClass::Permanent,
                format!(
                    "the template's id at Meta ({provider_template_id:?}) is not one Meta gives"
                ),
            )
            .with_code("bad_request_setup"));
        }
        if let Some(fields) = body.as_object_mut() {
            fields.remove("name");
            fields.remove("language");
        }
        let answer = self
            .call(self.http.post(self.url(provider_template_id)).json(&body))
            .await?;
        if !answer.json::<Edited>().is_some_and(|e| e.success) {
            return Err(answer.unreadable_success());
        }
        Ok(TemplateSubmitted {
            provider_template_id: provider_template_id.to_owned(),
            status: ProviderTemplateStatus::Pending,
        })
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Answer, SendError> {
        let request = request.bearer_auth(self.settings.access_token.expose());
        wire::call(request, classify, &self.secrets()).await
    }

    /// The credentials no kept payload may show.
    fn secrets(&self) -> [&str; 3] {
        [
            self.settings.access_token.expose(),
            self.settings.app_secret.expose(),
            self.settings.verify_token.expose(),
        ]
    }

    /// True when the request's `X-Hub-Signature-256` is this channel's app secret's HMAC of
    /// the body (compared in constant time). One Meta app's webhook names any of its numbers,
    /// so the webhook handler also asks this of each channel an event names: only a channel
    /// whose own secret signed the body may receive its events.
    pub fn signed_by_app(&self, request: &WebhookRequest) -> bool {
        let Some(signature) = request.header("X-Hub-Signature-256") else {
            return false;
        };
        let expected = sign(self.settings.app_secret.expose(), &request.body);
        wire::ct_eq(
            signature.trim().to_ascii_lowercase().as_bytes(),
            expected.as_bytes(),
        )
    }

    /// The number this channel sends from (`metadata.phone_number_id` in Meta's webhooks).
    /// The business's messaging limit as Meta reports it for this number (customers per
    /// rolling 24 hours, or "unlimited"); `None` when Meta does not say. Asks for the current
    /// field, then for the deprecated tier where the current one is refused.
    pub async fn messaging_limit(&self) -> Result<Option<&'static str>, SendError> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Limits {
            whatsapp_business_manager_messaging_limit: Option<String>,
            messaging_limit_tier: Option<String>,
        }
        let mut last_error = None;
        for field in [
            "whatsapp_business_manager_messaging_limit",
            "messaging_limit_tier",
        ] {
            let request = self
                .http
                .get(self.url(&self.settings.phone_number_id))
                .query(&[("fields", field)]);
            match self.call(request).await {
                Ok(answer) => {
                    let limits: Limits = answer.json().unwrap_or_default();
                    return Ok(limits
                        .whatsapp_business_manager_messaging_limit
                        .or(limits.messaging_limit_tier)
                        .as_deref()
                        .and_then(limit_of_tier));
                }
                Err(e) => last_error = Some(e),
            }
        }
        last_error.map_or(Ok(None), Err)
    }

    pub fn phone_number_id(&self) -> &str {
        &self.settings.phone_number_id
    }
}

/// The JSON body of a send, exactly as posted to `/messages`.
pub fn message_body(message: &OutboundMessage) -> Value {
    let to = message.to.as_str();
    match &message.content {
        MessageContent::Text { body } => json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": { "preview_url": false, "body": body },
        }),
        MessageContent::Template(t) => {
            let named = t.parameter_format == ParameterFormat::Named;
            let mut components = Vec::new();
            if !t.header.is_empty() {
                components.push(json!({
                    "type": "header",
                    "parameters": text_parameters(&t.header, named),
                }));
            }
            if !t.body.is_empty() {
                components.push(json!({
                    "type": "body",
                    "parameters": text_parameters(&t.body, named),
                }));
            }
            for b in &t.buttons {
                let (sub_type, parameter) = match b.kind {
                    ButtonKind::Url => ("url", json!({ "type": "text", "text": b.value })),
                    ButtonKind::QuickReply => (
                        "quick_reply",
                        json!({ "type": "payload", "payload": b.value }),
                    ),
                };
                components.push(json!({
                    "type": "button",
                    "sub_type": sub_type,
                    "index": b.index.to_string(),
                    "parameters": [parameter],
                }));
            }
            let mut template = json!({
                "name": t.name,
                "language": { "code": t.language, "policy": "deterministic" },
            });
            if !components.is_empty() {
                template["components"] = Value::Array(components);
            }
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": "template",
                "template": template,
            })
        }
    }
}

fn text_parameters(params: &[TemplateParam], named: bool) -> Vec<Value> {
    params
        .iter()
        .map(|p| match (&p.name, named) {
            (Some(name), true) => {
                json!({ "type": "text", "parameter_name": name, "text": p.value })
            }
            _ => json!({ "type": "text", "text": p.value }),
        })
        .collect()
}

/// The JSON body of a template creation (`POST /{waba_id}/message_templates`). Refuses, before
/// anything is sent, a placeholder without an example (Meta rejects those).
pub fn template_body(t: &TemplateSubmission) -> Result<Value, SendError> {
    if let Some(auth) = &t.authentication {
        return Ok(authentication_template_body(t, auth));
    }
    if matches!(
        t.category,
        TemplateCategory::Authentication | TemplateCategory::Otp
    ) {
        return Err(SendError::new(
            ErrorClass::TemplateProblem,
            "an authentication template needs its one-time-password button; Meta writes its text",
        )
        .with_code("missing_otp_button"));
    }
    let named = t.parameter_format == ParameterFormat::Named;
    let mut components = Vec::new();
    if let Some(header) = &t.header_text {
        let mut c = json!({ "type": "HEADER", "format": "TEXT", "text": header });
        if let Some(example) = examples_for("header", header, &t.header_examples, named)? {
            c["example"] = if named {
                json!({ "header_text_named_params": example })
            } else {
                json!({ "header_text": example })
            };
        }
        components.push(c);
    }
    let mut body = json!({ "type": "BODY", "text": t.body_text });
    if let Some(example) = examples_for("body", &t.body_text, &t.body_examples, named)? {
        body["example"] = if named {
            json!({ "body_text_named_params": example })
        } else {
            json!({ "body_text": [example] })
        };
    }
    components.push(body);
    if let Some(footer) = &t.footer_text {
        components.push(json!({ "type": "FOOTER", "text": footer }));
    }
    if !t.buttons.is_empty() {
        let buttons: Vec<Value> = t.buttons.iter().map(button_definition).collect();
        components.push(json!({ "type": "BUTTONS", "buttons": buttons }));
    }
    let category = match t.category {
        TemplateCategory::Marketing => "MARKETING",
        TemplateCategory::Utility | TemplateCategory::Transactional => "UTILITY",
        TemplateCategory::Authentication | TemplateCategory::Otp => "AUTHENTICATION",
    };
    let mut out = json!({
        "name": t.name,
        "language": t.language,
        "category": category,
        "components": components,
    });
    // Positional is Meta's default; only named templates need to say so.
    if named {
        out["parameter_format"] = json!("named");
    }
    Ok(out)
}

/// An authentication template as Meta's reference creates one: a body with only
/// `add_security_recommendation` (Meta writes the text), a footer with only
/// `code_expiration_minutes` when the code expires, and one `OTP` button (`COPY_CODE`, or
/// `ONE_TAP` with the app's package name and signing key hash).
fn authentication_template_body(t: &TemplateSubmission, auth: &Authentication) -> Value {
    let mut components = vec![json!({
        "type": "BODY",
        "add_security_recommendation": auth.add_security_recommendation,
    })];
    if let Some(minutes) = auth.code_expiration_minutes {
        components.push(json!({ "type": "FOOTER", "code_expiration_minutes": minutes }));
    }
    let mut button = json!({ "type": "OTP", "otp_type": auth.button.provider_str() });
    if let Some(text) = &auth.button_text {
        button["text"] = json!(text);
    }
    if let OtpButton::OneTap {
        autofill_text,
        package_name,
        signature_hash,
    } = &auth.button
    {
        if let Some(autofill) = autofill_text {
            button["autofill_text"] = json!(autofill);
        }
        button["package_name"] = json!(package_name);
        button["signature_hash"] = json!(signature_hash);
    }
    components.push(json!({ "type": "BUTTONS", "buttons": [button] }));
    json!({
        "name": t.name,
        "language": t.language,
        "category": "AUTHENTICATION",
        "components": components,
    })
}

fn button_definition(b: &TemplateButton) -> Value {
    match b {
        TemplateButton::QuickReply { text } => json!({ "type": "QUICK_REPLY", "text": text }),
        TemplateButton::Url {
            text,
            url,
            example_suffix,
        } => {
            let mut v = json!({ "type": "URL", "text": text, "url": url });
            if let (Some(suffix), Some(name)) = (example_suffix, placeholders(url).first()) {
                v["example"] = json!([url.replace(&format!("{{{{{name}}}}}"), suffix)]);
            }
            v
        }
        TemplateButton::PhoneNumber { text, phone_number } => {
            json!({ "type": "PHONE_NUMBER", "text": text, "phone_number": phone_number })
        }
    }
}

/// The example values of a text's placeholders in Meta's shape: a list of values in number
/// order (positional) or `[{param_name, example}]` (named); `None` when it has none.
fn examples_for(
    part: &str,
    text: &str,
    examples: &[PlaceholderExample],
    named: bool,
) -> Result<Option<Value>, SendError> {
    let mut names = placeholders(text);
    if names.is_empty() {
        return Ok(None);
    }
    if !named {
        names.sort_by_key(|n| n.parse::<u32>().unwrap_or(u32::MAX));
    }
    let mut values = Vec::with_capacity(names.len());
    for name in &names {
        let example = example_for(part, name, examples)?;
        values.push(if named {
            json!({ "param_name": name, "example": example })
        } else {
            json!(example)
        });
    }
    Ok(Some(Value::Array(values)))
}

/// The `X-Hub-Signature-256` value Meta sends for this body.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        wire::hex(&wire::hmac_sha256(app_secret.as_bytes(), body))
    )
}

/// The class of a Cloud API error code, where the code alone decides it.
pub fn classify_code(code: i64) -> Option<ErrorClass> {
    Some(match code {
        130429 => ErrorClass::RateLimited,
        // App-level and WABA-level management rate limits.
        4 | 80007 => ErrorClass::RateLimited,
        131047 => ErrorClass::WindowClosed,
        131026 => ErrorClass::InvalidRecipient,
        131049 => ErrorClass::MarketingLimit,
        131056 => ErrorClass::PairRateLimit,
        132000 | 132001 | 132005 | 132007 | 132012 | 132015 | 132016 => ErrorClass::TemplateProblem,
        // "Temporarily unavailable" and "account in maintenance (up to a minute)": refused.
        2 | 131057 => ErrorClass::Retryable,
        _ => return None,
    })
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: GraphError,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GraphError {
    message: Option<String>,
    title: Option<String>,
    code: Option<i64>,
    error_data: Option<ErrorData>,
    /// What Meta writes for people ("Variables can't be at the start or end of the
    /// template"), beside the technical `message` ("Invalid parameter").
    error_user_title: Option<String>,
    error_user_msg: Option<String>,
}

impl GraphError {
    /// Meta's words for people, verbatim: the title and the message on one line.
    fn said(&self) -> Option<String> {
        fn clean(s: &Option<String>) -> Option<&str> {
            s.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        match (clean(&self.error_user_title), clean(&self.error_user_msg)) {
            (Some(title), Some(msg)) => Some(format!("{title}: {msg}")),
            (one, other) => one.or(other).map(str::to_owned),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorData {
    details: Option<String>,
}

fn classify(answer: &Answer) -> SendError {
    let Some(ErrorEnvelope { error }) = answer.json::<ErrorEnvelope>() else {
        return answer.unclassified();
    };
    let said = error.said();
    answer
        .refusal(
            error.code.and_then(classify_code),
            error.code.map(|c| c.to_string()),
            error.message.or(error.title),
            error.error_data.and_then(|d| d.details),
        )
        .with_said(said)
}

#[derive(Debug, Deserialize)]
struct SendResponse {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Debug, Deserialize)]
struct SentMessage {
    id: String,
    message_status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CreatedTemplate {
    id: Value,
    status: Option<String>,
}

/// Meta's answer to an edit: `{"success": true}`.
#[derive(Debug, Deserialize)]
struct Edited {
    success: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TemplateInfo {
    id: Option<Value>,
    name: Option<String>,
    language: Option<String>,
    status: Option<String>,
    rejected_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TemplateList {
    data: Vec<TemplateInfo>,
}

impl TemplateInfo {
    /// The status, with the id, name and language the answer names (to check it is about the
    /// template asked for).
    fn answer(self) -> Option<TemplateAnswer> {
        let reason = self.rejected_reason.filter(|r| r != "NONE");
        let status = ProviderTemplateStatus::from_word(&self.status?, reason);
        Some(TemplateAnswer {
            provider_template_id: self.id.as_ref().map(value_text),
            name: self.name,
            language: self.language,
            status,
        })
    }
}

const TEMPLATE_FIELDS: &str = "id,name,language,status,rejected_reason";

impl ChannelAdapter for WhatsappAdapter {
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let url = self.url(&format!("{}/messages", self.settings.phone_number_id));
        let answer = self
            .call(self.http.post(url).json(&message_body(message)))
            .await?;
        let payload = Some(answer.kept(&self.secrets()));
        let parsed: Option<SendResponse> = answer.json();
        let Some(sent) = parsed.and_then(|r| r.messages.into_iter().next()) else {
            return Err(answer.unreadable_success().with_payload(payload));
        };
        Ok(SendReceipt {
            provider_message_id: sent.id,
            provider_status: sent.message_status,
            payload,
        })
    }

    async fn submit_template(
        &self,
        template: &TemplateSubmission,
    ) -> Result<TemplateSubmitted, SendError> {
        let body = template_body(template)?;
        if let Some(id) = &template.replaces {
            return self.edit_template(id, body).await;
        }
        let url = self.url(&format!("{}/message_templates", self.settings.waba_id));
        let answer = self.call(self.http.post(url).json(&body)).await?;
        let Some(created) = answer.json::<CreatedTemplate>() else {
            return Err(answer.unreadable_success());
        };
        let provider_template_id = match created.id {
            Value::String(s) => s,
            other => other.to_string(),
        };
        Ok(TemplateSubmitted::from_answer(
            provider_template_id,
            created.status,
        ))
    }

    async fn template_status(&self, template: &TemplateRef) -> Result<TemplateAnswer, SendError> {
        let info = match template {
            TemplateRef::ProviderId(id) => {
                let url = wire::url_with_segments(
                    &self.settings.base_url,
                    &[&self.settings.api_version, id],
                )?;
                let request = self.http.get(url).query(&[("fields", TEMPLATE_FIELDS)]);
                let answer = self.call(request).await?;
                answer
                    .json::<TemplateInfo>()
                    .ok_or_else(|| answer.unreadable_success())?
            }
            TemplateRef::NameLanguage { name, language } => {
                let url = self.url(&format!("{}/message_templates", self.settings.waba_id));
                let request = self
                    .http
                    .get(url)
                    .query(&[("name", name.as_str()), ("fields", TEMPLATE_FIELDS)]);
                let answer = self.call(request).await?;
                let list = answer
                    .json::<TemplateList>()
                    .ok_or_else(|| answer.unreadable_success())?;
                list.data
                    .into_iter()
                    .find(|t| {
                        t.name.as_deref() == Some(name) && t.language.as_deref() == Some(language)
                    })
                    .ok_or_else(|| {
                        SendError::new(
                            ErrorClass::TemplateProblem,
                            format!("WhatsApp has no template {name} in {language}"),
                        )
                        .with_code("template_not_found")
                    })?
            }
        };
        info.answer().ok_or_else(|| {
            SendError::new(
                ErrorClass::Permanent,
                "WhatsApp's answer about the template carries no status",
            )
            .with_code("no_status")
        })
    }

    fn parse_webhook(&self, request: &WebhookRequest) -> Result<WebhookOutcome, WebhookError> {
        if request.is_get() {
            return verify_subscription(request, self.settings.verify_token.expose());
        }
        if !request.is_post() {
            return Err(WebhookError::Malformed(format!(
                "unexpected method {}",
                request.method
            )));
        }
        if !self.signed_by_app(request) {
            return Err(WebhookError::BadSignature);
        }
        let secrets = self.secrets();
        parse_events(&request.body, &secrets)
            .map(|events| WebhookOutcome::Events(payload::redact_errors(events, &secrets)))
    }

    async fn test_connection(&self) -> Result<String, SendError> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct NumberInfo {
            display_phone_number: Option<String>,
            verified_name: Option<String>,
        }
        let request = self
            .http
            .get(self.url(&self.settings.phone_number_id))
            .query(&[("fields", "display_phone_number,verified_name")]);
        let answer = self.call(request).await?;
        let info: NumberInfo = answer.json().unwrap_or_default();
        Ok(match (info.display_phone_number, info.verified_name) {
            (Some(number), Some(name)) => format!("Connected to WhatsApp number {number} ({name})"),
            (Some(number), None) => format!("Connected to WhatsApp number {number}"),
            _ => format!(
                "Connected to the WhatsApp Cloud API (phone number ID {})",
                self.settings.phone_number_id
            ),
        })
    }
}

/// Meta's GET handshake: echo `hub.challenge` when the verify token matches.
fn verify_subscription(
    request: &WebhookRequest,
    verify_token: &str,
) -> Result<WebhookOutcome, WebhookError> {
    let mode = request.query_param("hub.mode");
    let token = request.query_param("hub.verify_token").unwrap_or_default();
    if mode.as_deref() != Some("subscribe")
        || !wire::ct_eq(token.as_bytes(), verify_token.as_bytes())
    {
        return Err(WebhookError::BadSignature);
    }
    request
        .query_param("hub.challenge")
        .map(WebhookOutcome::Challenge)
        .ok_or_else(|| WebhookError::Malformed("hub.challenge is missing".into()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Payload {
    object: Option<String>,
    entry: Vec<Entry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Entry {
    time: Option<Value>,
    changes: Vec<Change>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Change {
    field: Option<String>,
    value: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MessagesValue {
    metadata: Option<WaMetadata>,
    contacts: Vec<WaContact>,
    messages: Vec<WaMessage>,
    statuses: Vec<WaStatus>,
    errors: Vec<WaError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WaMetadata {
    phone_number_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WaContact {
    wa_id: Option<String>,
    profile: Option<WaProfile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WaProfile {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WaMessage {
    from: Option<String>,
    id: Option<String>,
    timestamp: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<WaText>,
    button: Option<WaText>,
    interactive: Option<Value>,
    image: Option<WaMedia>,
    video: Option<WaMedia>,
    document: Option<WaMedia>,
    reaction: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WaText {
    body: Option<String>,
    text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WaMedia {
    caption: Option<String>,
    filename: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WaStatus {
    id: Option<String>,
    status: Option<String>,
    timestamp: Option<Value>,
    errors: Vec<WaError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WaError {
    code: Option<i64>,
    title: Option<String>,
    message: Option<String>,
    error_data: Option<ErrorData>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TemplateUpdate {
    event: Option<String>,
    message_template_id: Option<Value>,
    message_template_name: Option<String>,
    message_template_language: Option<String>,
    reason: Option<String>,
    rejection_info: Option<RejectionInfo>,
    other_info: Option<OtherInfo>,
    disable_info: Option<Value>,
    previous_quality_score: Option<String>,
    new_quality_score: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RejectionInfo {
    reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OtherInfo {
    title: Option<String>,
    description: Option<String>,
}

/// Reads a signed POST body into events. Unknown fields and types become `Unrecognised`
/// events; only a body that is not the documented envelope, or an item without its id, is
/// `Malformed`.
fn parse_events(body: &[u8], secrets: &[&str]) -> Result<Vec<ProviderEvent>, WebhookError> {
    let payload: Payload = wire::webhook_json(body)?;
    if let Some(object) = payload
        .object
        .as_deref()
        .filter(|o| *o != "whatsapp_business_account")
    {
        return Ok(vec![ProviderEvent::Unrecognised {
            description: format!("WhatsApp webhook for object {object}"),
        }]);
    }
    let mut events = Vec::new();
    for entry in payload.entry {
        let time = entry.time.as_ref().map(value_text);
        for change in entry.changes {
            let field = change.field.unwrap_or_default();
            match field.as_str() {
                "messages" => {
                    // Each status object as Meta wrote it, for its message's timeline.
                    let raw_statuses: Vec<String> = change
                        .value
                        .get("statuses")
                        .and_then(Value::as_array)
                        .map(|list| {
                            list.iter()
                                .map(|s| payload::keep_json(s, secrets))
                                .collect()
                        })
                        .unwrap_or_default();
                    let value: MessagesValue = serde_json::from_value(change.value)
                        .map_err(|e| WebhookError::malformed(format!("messages value: {e}")))?;
                    messages_events(value, raw_statuses, &mut events)?;
                }
                "message_template_status_update" | "message_template_quality_update" => {
                    // What tells two verdicts apart: everything Meta said (event, reason,
                    // details), not only the event word and the second it was sent.
                    let digest = wire::sha256_hex(change.value.to_string().as_bytes());
                    let update: TemplateUpdate = serde_json::from_value(change.value)
                        .map_err(|e| WebhookError::malformed(format!("{field} value: {e}")))?;
                    events.push(template_event(&field, update, time.as_deref(), &digest)?);
                }
                other => events.push(ProviderEvent::Unrecognised {
                    description: format!("WhatsApp webhook field `{other}` is not handled"),
                }),
            }
        }
    }
    Ok(events)
}

fn messages_events(
    value: MessagesValue,
    raw_statuses: Vec<String>,
    events: &mut Vec<ProviderEvent>,
) -> Result<(), WebhookError> {
    let account = value.metadata.and_then(|m| m.phone_number_id);
    for m in value.messages {
        let id =
            m.id.clone()
                .ok_or_else(|| WebhookError::malformed("a message has no id"))?;
        let from = m
            .from
            .clone()
            .ok_or_else(|| WebhookError::malformed("a message has no sender"))?;
        let profile_name = value
            .contacts
            .iter()
            .find(|c| c.wa_id.as_deref() == Some(from.as_str()))
            .or(value.contacts.first())
            .and_then(|c| c.profile.as_ref())
            .and_then(|p| p.name.clone());
        events.push(ProviderEvent::Inbound(InboundEvent {
            event_id: format!("wa:msg:{id}"),
            from: Address::parse(&from),
            received_at: unix_time(m.timestamp.as_ref()),
            text: inbound_text(&m),
            provider_message_id: id,
            profile_name,
            account: account.clone(),
        }));
    }
    let mut raw_statuses = raw_statuses.into_iter();
    for s in value.statuses {
        let payload = raw_statuses.next();
        let id =
            s.id.ok_or_else(|| WebhookError::malformed("a status has no message id"))?;
        let word = s.status.unwrap_or_default();
        let status = match word.as_str() {
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "failed" => DeliveryStatus::Failed,
            other => {
                events.push(ProviderEvent::Unrecognised {
                    description: format!("WhatsApp status `{other}` for {id}"),
                });
                continue;
            }
        };
        events.push(ProviderEvent::Status(StatusEvent {
            event_id: format!("wa:status:{id}:{word}"),
            at: unix_time(s.timestamp.as_ref()),
            error: s.errors.into_iter().next().map(provider_error),
            provider_message_id: id,
            status,
            account: account.clone(),
            payload,
        }));
    }
    for e in value.errors {
        let e = provider_error(e);
        events.push(ProviderEvent::Unrecognised {
            description: format!("WhatsApp reported an error: {} {}", e.code, e.message),
        });
    }
    Ok(())
}

fn provider_error(e: WaError) -> ProviderError {
    let class = e
        .code
        .and_then(classify_code)
        .unwrap_or(ErrorClass::Permanent);
    let message = e.message.or(e.title).unwrap_or_default();
    let message = match e.error_data.and_then(|d| d.details) {
        Some(details) if details != message => format!("{message} ({details})"),
        _ => message,
    };
    ProviderError {
        code: e.code.map(|c| c.to_string()).unwrap_or_default(),
        message,
        class,
    }
}

/// The text of an inbound message, or a readable stand-in for what is not text.
fn inbound_text(m: &WaMessage) -> String {
    let kind = m.kind.as_deref().unwrap_or("unknown");
    let with_caption = |label: &str, media: &Option<WaMedia>| {
        let extra = media
            .as_ref()
            .and_then(|x| x.caption.clone().or(x.filename.clone()));
        match extra {
            Some(c) => format!("[{label}] {c}"),
            None => format!("[{label}]"),
        }
    };
    match kind {
        "text" => m
            .text
            .as_ref()
            .and_then(|t| t.body.clone())
            .unwrap_or_default(),
        "button" => m
            .button
            .as_ref()
            .and_then(|b| b.text.clone())
            .unwrap_or_else(|| "[button]".into()),
        "interactive" => m
            .interactive
            .as_ref()
            .and_then(|i| {
                ["button_reply", "list_reply"]
                    .iter()
                    .find_map(|k| i.get(k)?.get("title")?.as_str().map(str::to_owned))
            })
            .unwrap_or_else(|| "[interactive]".into()),
        "image" => with_caption("image", &m.image),
        "video" => with_caption("video", &m.video),
        "document" => with_caption("document", &m.document),
        "reaction" => m
            .reaction
            .as_ref()
            .and_then(|r| r.get("emoji")?.as_str().map(|e| format!("[reaction] {e}")))
            .unwrap_or_else(|| "[reaction]".into()),
        other => format!("[{other}]"),
    }
}

/// A template status change as an event. Its id is the template, the event word, the entry's
/// time and a digest of the whole change: a redelivery (the same bytes) is one event, while two
/// different verdicts sent within one second (another reason, other details) are two. The same
/// verdict on the same template in the same second is indistinguishable (Meta's payload names
/// no version) and applying it again would change nothing.
fn template_event(
    field: &str,
    u: TemplateUpdate,
    time: Option<&str>,
    digest: &str,
) -> Result<ProviderEvent, WebhookError> {
    let id = u
        .message_template_id
        .as_ref()
        .map(value_text)
        .ok_or_else(|| WebhookError::malformed("a template update has no message_template_id"))?;
    if field == "message_template_quality_update" {
        return Ok(ProviderEvent::Unrecognised {
            description: format!(
                "template quality update: {} ({}) {} -> {}",
                u.message_template_name.as_deref().unwrap_or(&id),
                u.message_template_language.as_deref().unwrap_or("?"),
                u.previous_quality_score.as_deref().unwrap_or("?"),
                u.new_quality_score.as_deref().unwrap_or("?"),
            ),
        });
    }
    let event = u
        .event
        .ok_or_else(|| WebhookError::malformed("a template status update has no event"))?;
    let code = u.reason.filter(|r| r != "NONE" && !r.is_empty());
    let detail = u
        .rejection_info
        .and_then(|r| r.reason)
        .or_else(|| u.other_info.and_then(|o| o.description.or(o.title)))
        .or_else(|| {
            u.disable_info
                .as_ref()
                .and_then(|d| d.get("disable_date"))
                .map(|d| format!("disabled on {}", value_text(d)))
        });
    let reason = match (code, detail) {
        (Some(c), Some(d)) => Some(format!("{c}: {d}")),
        (c, d) => c.or(d),
    };
    Ok(ProviderEvent::TemplateStatus(TemplateStatusEvent {
        event_id: format!("wa:tpl:{id}:{event}:{}:{digest}", time.unwrap_or("-")),
        provider_template_id: id,
        name: u.message_template_name,
        language: u.message_template_language,
        status: ProviderTemplateStatus::from_word(&event, reason.clone()),
        reason,
    }))
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Meta's timestamps are Unix seconds, as a string or a number; a missing or unreadable one is
/// taken as the time of receipt rather than refusing the whole batch.
fn unix_time(v: Option<&Value>) -> DateTime<Utc> {
    v.and_then(|v| match v {
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    })
    .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
    .unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests;
