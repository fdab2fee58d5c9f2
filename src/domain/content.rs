//! What a message says, as the channel adapters receive it: free text, or a template with its
//! parameters already filled in. `domain/template.rs` produces the template form; adapters turn
//! it into each provider's wire format.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageContent {
    Text { body: String },
    Template(TemplateContent),
}

impl MessageContent {
    /// The text the recipient reads, for history, timelines and the sandbox.
    pub fn rendered(&self) -> &str {
        match self {
            MessageContent::Text { body } => body,
            MessageContent::Template(t) => &t.rendered,
        }
    }
}

/// How a template names its placeholders: `{{1}}`, `{{2}}` or `{{first_name}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParameterFormat {
    Positional,
    Named,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateContent {
    /// The template's name at the provider (WhatsApp), e.g. `order_update`.
    pub name: String,
    /// Locale code as the provider knows it, e.g. `en_US`.
    pub language: String,
    /// The provider's own id for the template where it sends by id (Infobip Viber `templateId`).
    pub provider_template_id: Option<String>,
    pub parameter_format: ParameterFormat,
    /// Values for the text header's placeholder (WhatsApp allows one).
    pub header: Vec<TemplateParam>,
    /// Values for the body's placeholders, in placeholder order.
    pub body: Vec<TemplateParam>,
    /// Values for dynamic buttons (URL suffixes, quick-reply payloads).
    pub buttons: Vec<ButtonParam>,
    /// The whole message as the recipient will read it, placeholders filled.
    pub rendered: String,
    /// A broadcast's window-aware mode (WhatsApp): this free text is sent instead when the
    /// recipient's customer-service window is open at send time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateParam {
    /// The placeholder's name for named templates (`first_name`); `None` for positional ones.
    pub name: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonKind {
    Url,
    QuickReply,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ButtonParam {
    /// The button's position in the template, from 0.
    pub index: u8,
    pub kind: ButtonKind,
    /// The URL suffix (for `Url`) or the payload (for `QuickReply`).
    pub value: String,
}

/// The longest free text each kind of channel takes, in characters: WhatsApp's text message
/// body (4096), Infobip's Viber text (1000), and the 1,600 characters providers split into SMS
/// segments.
pub fn free_text_limit(kind: crate::domain::channel::ChannelKind) -> usize {
    use crate::domain::channel::ChannelKind;
    match kind {
        ChannelKind::Whatsapp => 4096,
        ChannelKind::Viber => crate::domain::template::VIBER_TEXT_MAX,
        ChannelKind::Sms => crate::domain::sms::SMS_MAX_CHARS,
    }
}

/// Why a free text cannot be sent as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextProblem {
    #[error("Write the message first.")]
    Empty,
    #[error("The message has {actual} characters; {channel} allows at most {limit}.")]
    TooLong {
        channel: &'static str,
        limit: usize,
        actual: usize,
    },
}

impl TextProblem {
    pub fn code(&self) -> &'static str {
        match self {
            TextProblem::Empty => "empty_text",
            TextProblem::TooLong { .. } => "too_long",
        }
    }
}

/// Checks a free text against the channel's limits (what the provider would refuse).
pub fn check_free_text(
    kind: crate::domain::channel::ChannelKind,
    text: &str,
) -> Result<(), TextProblem> {
    if text.trim().is_empty() {
        return Err(TextProblem::Empty);
    }
    let actual = text.chars().count();
    let limit = free_text_limit(kind);
    if actual > limit {
        return Err(TextProblem::TooLong {
            channel: kind.label(),
            limit,
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::channel::ChannelKind;

    #[test]
    fn free_text_limits_follow_each_channel() {
        assert!(check_free_text(ChannelKind::Whatsapp, &"a".repeat(4096)).is_ok());
        assert_eq!(
            check_free_text(ChannelKind::Whatsapp, &"a".repeat(4097)),
            Err(TextProblem::TooLong {
                channel: "WhatsApp",
                limit: 4096,
                actual: 4097
            })
        );
        assert_eq!(
            check_free_text(ChannelKind::Viber, &"é".repeat(1001))
                .unwrap_err()
                .code(),
            "too_long"
        );
        assert!(check_free_text(ChannelKind::Sms, &"a".repeat(1600)).is_ok());
        assert_eq!(
            check_free_text(ChannelKind::Sms, "  \n").unwrap_err(),
            TextProblem::Empty
        );
    }
}
