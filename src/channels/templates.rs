//! Template submission and the provider's answers: what Herald sends a provider for review
//! and what the provider says about it.

use serde::{Deserialize, Serialize};

use crate::domain::content::ParameterFormat;

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
