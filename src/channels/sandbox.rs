//! The sandbox: a channel that needs no account and no network. It accepts every send and,
//! like a real provider's webhooks would, reports it `delivered` and then `read` after short
//! delays; it approves submitted templates after a short delay; and it lets a person simulate
//! a customer's reply. Its events go to an [`EventSink`] given at construction, and the
//! caller stores them exactly as it stores verified webhook events.
//!
//! Templates are still checked as the real provider of the channel's kind would check them
//! (a WhatsApp sandbox refuses a placeholder without an example), and an SMS sandbox has no
//! provider templates, like Twilio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::time::Instant;

use super::settings::{Fields, SettingSpec, SettingsError};
use super::{
    Address, ChannelAdapter, DeliveryStatus, EventSink, InboundEvent, OutboundMessage,
    ProviderEvent, ProviderTemplateStatus, SendError, SendReceipt, StatusEvent, TemplateAnswer,
    TemplateRef, TemplateStatusEvent, TemplateSubmission, TemplateSubmitted, WebhookError,
    WebhookOutcome, WebhookRequest, infobip_viber, whatsapp,
};
use crate::domain::channel::ChannelKind;
use crate::domain::phone::E164;

const DELIVERED_AFTER: SettingSpec = SettingSpec {
    key: "delivered_after_ms",
    label: "Delivered after (ms)",
    secret: false,
    required: false,
    default: Some("1000"),
};
const READ_AFTER: SettingSpec = SettingSpec {
    key: "read_after_ms",
    label: "Read after (ms)",
    secret: false,
    required: false,
    default: Some("3000"),
};
const APPROVE_AFTER: SettingSpec = SettingSpec {
    key: "approve_after_ms",
    label: "Templates approved after (ms)",
    secret: false,
    required: false,
    default: Some("2000"),
};

/// A simulated WhatsApp messaging limit, to try how broadcasts wait for room under it.
const MESSAGING_LIMIT: SettingSpec = SettingSpec {
    key: "messaging_limit",
    label: "Messaging limit (simulated WhatsApp: customers per 24 hours; empty for none)",
    secret: false,
    required: false,
    default: None,
};

/// The sandbox's optional keys; it has no secrets.
pub const SETTINGS: &[SettingSpec] = &[DELIVERED_AFTER, READ_AFTER, APPROVE_AFTER, MESSAGING_LIMIT];

/// How long the simulated provider takes; all delays count from the send (or submission).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxSettings {
    pub delivered_after: Duration,
    pub read_after: Duration,
    pub approve_after: Duration,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            delivered_after: Duration::from_secs(1),
            read_after: Duration::from_secs(3),
            approve_after: Duration::from_secs(2),
        }
    }
}

impl SandboxSettings {
    pub fn from_json(settings: &Value) -> Result<Self, SettingsError> {
        let none = Value::Null;
        let mut f = Fields::new(settings, &none);
        let millis = |f: &mut Fields, spec: &SettingSpec| -> Duration {
            let raw = f.optional(spec).unwrap_or_default();
            match raw.parse::<u64>() {
                Ok(ms) if ms <= 3_600_000 => Duration::from_millis(ms),
                _ => {
                    f.error(
                        spec.key,
                        format!(
                            "{} is a whole number of milliseconds up to 3600000",
                            spec.label
                        ),
                    );
                    Duration::ZERO
                }
            }
        };
        let delivered_after = millis(&mut f, &DELIVERED_AFTER);
        let read_after = millis(&mut f, &READ_AFTER);
        let approve_after = millis(&mut f, &APPROVE_AFTER);
        f.check(
            READ_AFTER.key,
            read_after >= delivered_after,
            "A message is read after it is delivered",
        );
        let limit = f.optional(&MESSAGING_LIMIT);
        f.check(
            MESSAGING_LIMIT.key,
            limit
                .as_deref()
                .is_none_or(|l| l.parse::<u32>().is_ok_and(|n| n > 0)),
            "The messaging limit is a whole number of customers, or empty for none",
        );
        f.finish(SandboxSettings {
            delivered_after,
            read_after,
            approve_after,
        })
    }
}

/// The sink is gone (Herald is shutting down): the simulated event was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the sandbox's event sink is closed")]
pub struct SinkClosed;

#[derive(Debug, Clone)]
pub struct SandboxAdapter {
    kind: ChannelKind,
    channel_public_id: String,
    settings: SandboxSettings,
    sink: EventSink,
    /// When each template was submitted, so a status query agrees with the approval event.
    submitted: Arc<Mutex<HashMap<String, Instant>>>,
}

impl SandboxAdapter {
    pub fn new(
        kind: ChannelKind,
        channel_public_id: String,
        settings: SandboxSettings,
        sink: EventSink,
    ) -> Self {
        SandboxAdapter {
            kind,
            channel_public_id,
            settings,
            sink,
            submitted: Arc::default(),
        }
    }

    /// A customer's reply, as if it had come through the provider's webhook: published to the
    /// sink and returned.
    pub async fn simulate_reply(
        &self,
        from: E164,
        text: &str,
    ) -> Result<ProviderEvent, SinkClosed> {
        let id = uuid::Uuid::new_v4();
        let event = ProviderEvent::Inbound(InboundEvent {
            event_id: format!("sandbox:in:{id}"),
            from: Address::Phone(from),
            text: text.to_owned(),
            received_at: Utc::now(),
            provider_message_id: format!("sandbox-in-{id}"),
            profile_name: None,
            account: None,
        });
        self.sink
            .send((self.channel_public_id.clone(), event.clone()))
            .await
            .map_err(|_| SinkClosed)?;
        Ok(event)
    }

    fn sms_templates_are_local() -> SendError {
        SendError::unsupported(
            "SMS has no provider templates: SMS templates are local snippets, approved in Herald",
        )
    }
}

fn status_event(provider_message_id: &str, status: DeliveryStatus) -> ProviderEvent {
    let at = Utc::now();
    // What a provider's webhook would say about the message, so the detail page shows the
    // sandbox's reports as it shows a real provider's (issue 18).
    let payload = serde_json::json!({
        "id": provider_message_id,
        "status": status.as_str(),
        "timestamp": at.timestamp().to_string(),
        "simulated": true,
    });
    ProviderEvent::Status(StatusEvent {
        event_id: format!("sandbox:{provider_message_id}:{}", status.as_str()),
        provider_message_id: provider_message_id.to_owned(),
        status,
        at,
        error: None,
        account: None,
        payload: Some(crate::channels::payload::keep_json(&payload, &[])),
    })
}

impl ChannelAdapter for SandboxAdapter {
    async fn send(&self, _message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let id = format!("sandbox-{}", uuid::Uuid::new_v4());
        let sink = self.sink.clone();
        let channel = self.channel_public_id.clone();
        let SandboxSettings {
            delivered_after,
            read_after,
            ..
        } = self.settings;
        let provider_id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delivered_after).await;
            let delivered = status_event(&provider_id, DeliveryStatus::Delivered);
            if sink.send((channel.clone(), delivered)).await.is_err() {
                return;
            }
            tokio::time::sleep(read_after.saturating_sub(delivered_after)).await;
            let read = status_event(&provider_id, DeliveryStatus::Read);
            let _ = sink.send((channel, read)).await;
        });
        let answer = serde_json::json!({"id": id, "status": "accepted", "simulated": true});
        Ok(SendReceipt {
            provider_message_id: id,
            provider_status: Some("accepted".into()),
            payload: Some(answer.to_string()),
        })
    }

    async fn submit_template(
        &self,
        template: &TemplateSubmission,
    ) -> Result<TemplateSubmitted, SendError> {
        match self.kind {
            ChannelKind::Sms => return Err(Self::sms_templates_are_local()),
            ChannelKind::Whatsapp => drop(whatsapp::template_body(template)?),
            ChannelKind::Viber => drop(infobip_viber::template_body(template)?),
        }
        let id = format!("sandbox-tpl-{}", uuid::Uuid::new_v4());
        if let Ok(mut submitted) = self.submitted.lock() {
            submitted.insert(id.clone(), Instant::now());
        }
        let event = ProviderEvent::TemplateStatus(TemplateStatusEvent {
            event_id: format!("sandbox:tpl:{id}:APPROVED"),
            provider_template_id: id.clone(),
            name: Some(template.name.clone()),
            language: Some(template.language.clone()),
            status: ProviderTemplateStatus::Approved,
            reason: None,
        });
        let sink = self.sink.clone();
        let channel = self.channel_public_id.clone();
        let delay = self.settings.approve_after;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = sink.send((channel, event)).await;
        });
        Ok(TemplateSubmitted {
            provider_template_id: id,
            status: ProviderTemplateStatus::Pending,
        })
    }

    async fn template_status(&self, template: &TemplateRef) -> Result<TemplateAnswer, SendError> {
        if self.kind == ChannelKind::Sms {
            return Err(Self::sms_templates_are_local());
        }
        let submitted_at = match template {
            TemplateRef::ProviderId(id) => {
                self.submitted.lock().ok().and_then(|s| s.get(id).copied())
            }
            TemplateRef::NameLanguage { .. } => None,
        };
        // The sandbox approves everything; templates it does not remember (submitted before a
        // restart) were approved long ago.
        let status = match submitted_at {
            Some(at) if at.elapsed() < self.settings.approve_after => {
                ProviderTemplateStatus::Pending
            }
            _ => ProviderTemplateStatus::Approved,
        };
        // The sandbox answers about exactly what it was asked.
        Ok(match template {
            TemplateRef::ProviderId(id) => TemplateAnswer {
                provider_template_id: Some(id.clone()),
                ..TemplateAnswer::status_only(status)
            },
            TemplateRef::NameLanguage { name, language } => TemplateAnswer {
                name: Some(name.clone()),
                language: Some(language.clone()),
                ..TemplateAnswer::status_only(status)
            },
        })
    }

    fn parse_webhook(&self, _request: &WebhookRequest) -> Result<WebhookOutcome, WebhookError> {
        Err(WebhookError::Malformed(
            "the sandbox receives no webhooks: its events come from the sandbox itself".into(),
        ))
    }

    async fn test_connection(&self) -> Result<String, SendError> {
        Ok("The sandbox is always connected: nothing leaves Herald".into())
    }
}

#[cfg(test)]
mod tests;
