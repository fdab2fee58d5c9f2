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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
