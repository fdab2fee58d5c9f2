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
pub mod diagnosis;
pub mod infobip_viber;
// Issue 18: provider answers and webhook payloads kept per message.
pub mod payload;
pub mod sandbox;
pub mod twilio;
pub mod whatsapp;

mod error;
mod settings;
mod templates;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod webhook_robustness;
mod webhooks;
pub(crate) mod wire;

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::domain::channel::{ChannelKind, Provider};
use crate::domain::content::MessageContent;
use crate::domain::phone::E164;

pub use error::{ErrorClass, SendDisposition, SendError};
pub use settings::{
    Secret, SettingSpec, SettingsError, secret_problem, settings_for, split_secrets, validate,
};
pub use templates::{
    PlaceholderExample, ProviderTemplateStatus, TemplateAnswer, TemplateButton, TemplateCategory,
    TemplateRef, TemplateSubmission, TemplateSubmitted,
};
pub use webhooks::{
    Address, DeliveryStatus, InboundEvent, ProviderError, ProviderEvent, StatusEvent,
    TemplateStatusEvent, WebhookError, WebhookOutcome, WebhookRequest,
};

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
    /// The provider's answer, as [`payload::keep`] keeps it (secrets redacted, capped), for
    /// the message's timeline (issue 18).
    pub payload: Option<String>,
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

impl Adapter {
    /// The WhatsApp business's messaging limit as Meta reports it (see
    /// [`whatsapp::WhatsappAdapter::messaging_limit`]); `None` for other providers.
    pub async fn messaging_limit(&self) -> Result<Option<&'static str>, SendError> {
        match self {
            Adapter::Whatsapp(a) => a.messaging_limit().await,
            _ => Ok(None),
        }
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
