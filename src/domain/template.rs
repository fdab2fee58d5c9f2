//! Message templates: what a person drafts, the provider rules a draft must meet before it can
//! be reviewed and sent, and the placeholders a send fills in.
//!
//! - [`validate`] turns a [`TemplateDraft`] (raw form input) into a [`ValidTemplate`], or into
//!   [`FieldProblems`] that name the form field each problem belongs to.
//! - [`preview`] renders a draft with its sample values even when it is invalid, for a live
//!   preview beside the form.
//! - [`render`] fills a valid template with a recipient's [`Variables`]; [`resolve`] builds those
//!   variables from a contact and a [`VariableMapping`].
//! - [`TemplateState`] holds the review workflow (draft, review, approval) and the provider's
//!   verdict, and says when a template may be sent.
//!
//! Each channel has its own rules:
//! - WhatsApp (Meta *Template components*): name, locale, category, optional text header (≤ 60
//!   characters, one placeholder), body (≤ 1024), optional footer (≤ 60, no placeholders),
//!   buttons, and a sample for every placeholder. Authentication templates are Meta's own shape
//!   instead (see `authentication`): no text of their own, a code button, options. Meta rejects templates whose placeholders are
//!   out of sequence, adjacent, at the very start or end (2388299) or too many for the length of
//!   the text (2388293); Herald says so before submitting.
//! - Viber (Infobip template API): TRANSACTIONAL or OTP, text ≤ 1000 characters, up to 8 named
//!   placeholders with examples ≤ 125 characters, the last word not a placeholder, OTP with a
//!   `{{pin}}`. Promotional Viber messages are free text, not templates.
//! - SMS: a reusable text (≤ 1600 characters, Twilio's limit) with placeholders for
//!   personalisation; it needs no provider approval.
//!
//! Lengths are counted in characters (Unicode scalar values). Text fields are trimmed and their
//! CRLF line breaks (what browsers send from a textarea) become LF.

mod authentication;
mod placeholder;
mod render;
mod review;
mod validation;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::channel::ChannelKind;
use crate::domain::content::ParameterFormat;
use crate::domain::fields::FieldProblems;
use crate::domain::phone::E164;
use crate::domain::sms::SMS_MAX_CHARS;

use placeholder::{Piece, Scan, Style, classify, scan};

pub use authentication::{
    Authentication, CODE_EXPIRATION_MAX_MINUTES, CODE_MAX_CHARS, CODE_VARIABLE, OtpButton, OtpDraft,
};
pub use render::{
    CONTACT_FIELDS, Preview, PreviewButton, RenderError, RenderedTemplate, VariableMapping,
    VariableSource, Variables, check_mapping, preview, render, resolve,
};
pub use review::{
    ProviderApproval, REVIEW_NOTE_MAX, ReviewAction, ReviewError, ReviewStatus, Reviewer,
    TemplateStage, TemplateState, is_sendable,
};
pub use validation::validate;
use validation::{ButtonType, find_markup};

/// Template names, on every channel: Meta's rule (lowercase letters, digits, underscores, at most
/// 512 characters), so a name can go to Meta unchanged and the API can ask for any template by
/// the same kind of name.
pub const NAME_MAX: usize = 512;
pub const WHATSAPP_HEADER_MAX: usize = 60;
pub const WHATSAPP_BODY_MAX: usize = 1024;
pub const WHATSAPP_FOOTER_MAX: usize = 60;
pub const WHATSAPP_BUTTONS_MAX: usize = 10;
pub const WHATSAPP_QUICK_REPLIES_MAX: usize = 10;
pub const WHATSAPP_URL_BUTTONS_MAX: usize = 2;
pub const WHATSAPP_PHONE_BUTTONS_MAX: usize = 1;
pub const WHATSAPP_BUTTON_LABEL_MAX: usize = 25;
pub const WHATSAPP_BUTTON_URL_MAX: usize = 2000;
pub const WHATSAPP_BUTTON_PHONE_MAX: usize = 20;
pub const VIBER_TEXT_MAX: usize = 1000;
pub const VIBER_PARAMS_MAX: usize = 8;
pub const VIBER_PARAM_NAME_MAX: usize = 50;
pub const VIBER_EXAMPLE_MAX: usize = 125;
pub const VIBER_BUTTON_TITLE_MAX: usize = 30;

/// The language codes Infobip accepts for Viber templates (`TemplateLang` in its OpenAPI spec).
pub const VIBER_LANGUAGES: [&str; 42] = [
    "ar", "hy", "be", "bs", "bg", "my", "hr", "cs", "da", "nl", "en", "fi", "fr", "ka", "de", "el",
    "he", "hu", "id", "it", "ja", "ne", "no", "fa", "pl", "ro", "ru", "sr", "sk", "sl", "es", "sv",
    "th", "tr", "uk", "vi", "zh-Hans", "zh-Hant", "pt_BR", "pt_PT", "fr_FR", "es_ES",
];

/// The most characters a template's text (and a rendered message) may have on a channel.
pub fn body_limit(kind: ChannelKind) -> usize {
    match kind {
        ChannelKind::Whatsapp => WHATSAPP_BODY_MAX,
        ChannelKind::Viber => VIBER_TEXT_MAX,
        ChannelKind::Sms => SMS_MAX_CHARS,
    }
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

fn normalise(raw: &str) -> String {
    raw.replace("\r\n", "\n").trim().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Names, languages, categories

/// A template's name: lowercase letters, digits and underscores, at most 512 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateName(String);

impl TemplateName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("Enter a name, e.g. order_update.".into());
        }
        if char_len(name) > NAME_MAX {
            return Err(format!("A name has at most {NAME_MAX} characters."));
        }
        let ok = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            let suggestion = suggest_name(name);
            let example = if suggestion.is_empty() {
                "order_update".to_owned()
            } else {
                suggestion
            };
            return Err(format!(
                "\"{name}\" can only have lowercase letters, digits and underscores, e.g. {example}."
            ));
        }
        Ok(TemplateName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// "Order Update!" -> "order_update".
fn suggest_name(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// A template's locale as its provider spells it: `en`, `en_US`, `pt_BR` (Meta); one of
/// [`VIBER_LANGUAGES`] for Viber.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Language(String);

impl Language {
    /// Accepts `en-us` for `en_US`: the case and the separator are normalised.
    pub fn parse(kind: ChannelKind, raw: &str) -> Result<Self, String> {
        let code = raw.trim();
        if code.is_empty() {
            return Err("Choose a language, e.g. en or en_US.".into());
        }
        if kind == ChannelKind::Viber {
            let key = |s: &str| s.replace('-', "_").to_ascii_lowercase();
            return VIBER_LANGUAGES
                .iter()
                .find(|l| key(l) == key(code))
                .map(|l| Language((*l).to_owned()))
                .ok_or_else(|| {
                    format!(
                        "\"{code}\" is not a language Viber templates support: use one of {}.",
                        VIBER_LANGUAGES.join(", ")
                    )
                });
        }
        let mut parts = code.splitn(2, ['_', '-']);
        let language = parts.next().unwrap_or_default();
        let region = parts.next();
        let language_ok =
            (2..=3).contains(&language.len()) && language.chars().all(|c| c.is_ascii_alphabetic());
        let region_ok = region.is_none_or(|r| {
            (2..=3).contains(&r.len()) && r.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if !language_ok || !region_ok {
            return Err(format!(
                "\"{code}\" is not a locale code: write a language such as en, or a language and region such as en_US or pt_BR."
            ));
        }
        let mut normalised = language.to_ascii_lowercase();
        if let Some(region) = region {
            normalised.push('_');
            normalised.push_str(&region.to_ascii_uppercase());
        }
        Ok(Language(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a template is for. WhatsApp's categories decide its price and Meta's review; Viber's
/// (Infobip) decide its label. SMS snippets have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateCategory {
    Marketing,
    Utility,
    Authentication,
    Transactional,
    Otp,
}

impl TemplateCategory {
    pub const ALL: [TemplateCategory; 5] = [
        TemplateCategory::Marketing,
        TemplateCategory::Utility,
        TemplateCategory::Authentication,
        TemplateCategory::Transactional,
        TemplateCategory::Otp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TemplateCategory::Marketing => "marketing",
            TemplateCategory::Utility => "utility",
            TemplateCategory::Authentication => "authentication",
            TemplateCategory::Transactional => "transactional",
            TemplateCategory::Otp => "otp",
        }
    }

    /// The word the provider's API uses: `MARKETING`, `OTP`, …
    pub fn provider_str(self) -> &'static str {
        match self {
            TemplateCategory::Marketing => "MARKETING",
            TemplateCategory::Utility => "UTILITY",
            TemplateCategory::Authentication => "AUTHENTICATION",
            TemplateCategory::Transactional => "TRANSACTIONAL",
            TemplateCategory::Otp => "OTP",
        }
    }

    /// The categories a channel offers.
    pub fn for_kind(kind: ChannelKind) -> &'static [TemplateCategory] {
        match kind {
            ChannelKind::Whatsapp => &[
                TemplateCategory::Marketing,
                TemplateCategory::Utility,
                TemplateCategory::Authentication,
            ],
            ChannelKind::Viber => &[TemplateCategory::Transactional, TemplateCategory::Otp],
            ChannelKind::Sms => &[],
        }
    }

    /// The category chosen in a form; `None` for SMS, which has none.
    pub fn parse(kind: ChannelKind, raw: &str) -> Result<Option<Self>, String> {
        let word = raw.trim();
        let allowed = Self::for_kind(kind);
        if allowed.is_empty() {
            return if word.is_empty() {
                Ok(None)
            } else {
                Err("SMS texts have no category.".into())
            };
        }
        let choices = allowed
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if word.is_empty() {
            return Err(format!("Choose a category: {choices}."));
        }
        if let Some(found) = allowed
            .iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(word))
        {
            return Ok(Some(*found));
        }
        let note = if kind == ChannelKind::Viber && word.eq_ignore_ascii_case("promotional") {
            " Promotional Viber messages are sent as free text, not as templates."
        } else {
            ""
        };
        Err(format!(
            "\"{word}\" is not a {} category: choose {choices}.{note}",
            kind.label()
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Drafts and valid templates

/// A template as typed into the form, before any rule is checked. Stored as JSON while it is a
/// draft; every field may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TemplateDraft {
    pub name: String,
    pub language: String,
    /// `marketing`, `utility`, `authentication` (WhatsApp); `transactional`, `otp` (Viber);
    /// empty for SMS.
    pub category: String,
    /// WhatsApp text header; empty for none.
    pub header: String,
    pub body: String,
    /// WhatsApp footer; empty for none.
    pub footer: String,
    /// Rows of the button editor; rows left entirely blank are ignored.
    pub buttons: Vec<ButtonDraft>,
    /// Viber image; empty for none.
    pub image_url: String,
    /// A sample value per placeholder, keyed by the placeholder's variable name (see
    /// [`placeholders`]): `1`, `first_name`, `header`, `url_1`.
    pub samples: BTreeMap<String, String>,
    /// WhatsApp authentication templates: the code button and Meta's options.
    pub otp: OtpDraft,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ButtonDraft {
    /// `quick_reply`, `url` or `phone_number`.
    pub kind: String,
    /// The label on the button.
    pub text: String,
    pub url: String,
    pub phone_number: String,
}

impl ButtonDraft {
    fn is_blank(&self) -> bool {
        [&self.kind, &self.text, &self.url, &self.phone_number]
            .iter()
            .all(|s| s.trim().is_empty())
    }
}

/// A button of a valid template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Button {
    /// Sends its label back as the customer's reply.
    QuickReply { text: String },
    /// Opens `url`; on WhatsApp the URL may end in `{{1}}`, filled per message.
    Url { text: String, url: String },
    /// Calls `phone_number` (E.164).
    PhoneNumber { text: String, phone_number: String },
}

impl Button {
    pub fn text(&self) -> &str {
        match self {
            Button::QuickReply { text }
            | Button::Url { text, .. }
            | Button::PhoneNumber { text, .. } => text,
        }
    }

    fn kind_str(&self) -> &'static str {
        match self {
            Button::QuickReply { .. } => "quick_reply",
            Button::Url { .. } => "url",
            Button::PhoneNumber { .. } => "phone_number",
        }
    }
}

/// A template that meets its channel's rules. Only [`validate`] makes one; the fields are read
/// through accessors so nothing can change a rule-checked template into one that is not.
/// Serialisable, to be stored as JSON; what storage reads back was valid when written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidTemplate {
    kind: ChannelKind,
    name: TemplateName,
    language: Language,
    category: Option<TemplateCategory>,
    parameter_format: ParameterFormat,
    header: Option<String>,
    body: String,
    footer: Option<String>,
    buttons: Vec<Button>,
    image_url: Option<String>,
    samples: BTreeMap<String, String>,
    /// A WhatsApp authentication template's settings; its body and footer are Meta's words.
    #[serde(default)]
    authentication: Option<Authentication>,
}

impl ValidTemplate {
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    pub fn name(&self) -> &TemplateName {
        &self.name
    }

    pub fn language(&self) -> &Language {
        &self.language
    }

    pub fn category(&self) -> Option<TemplateCategory> {
        self.category
    }

    pub fn parameter_format(&self) -> ParameterFormat {
        self.parameter_format
    }

    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    pub fn body(&self) -> &str {
        &self.body
    }

    pub fn footer(&self) -> Option<&str> {
        self.footer.as_deref()
    }

    pub fn buttons(&self) -> &[Button] {
        &self.buttons
    }

    pub fn image_url(&self) -> Option<&str> {
        self.image_url.as_deref()
    }

    /// Sample values by variable name, as the provider's review needs them.
    pub fn samples(&self) -> &BTreeMap<String, String> {
        &self.samples
    }

    /// A WhatsApp authentication template's settings (its body and footer are then Meta's
    /// words, shown in English, and its only button is the code button).
    pub fn authentication(&self) -> Option<&Authentication> {
        self.authentication.as_ref()
    }

    /// The form's contents for this template, to edit it.
    pub fn to_draft(&self) -> TemplateDraft {
        if let Some(auth) = &self.authentication {
            return TemplateDraft {
                name: self.name.0.clone(),
                language: self.language.0.clone(),
                category: TemplateCategory::Authentication.as_str().to_owned(),
                samples: self.samples.clone(),
                otp: auth.to_draft(),
                ..TemplateDraft::default()
            };
        }
        TemplateDraft {
            name: self.name.0.clone(),
            language: self.language.0.clone(),
            category: self
                .category
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            header: self.header.clone().unwrap_or_default(),
            body: self.body.clone(),
            footer: self.footer.clone().unwrap_or_default(),
            buttons: self
                .buttons
                .iter()
                .map(|b| {
                    let mut draft = ButtonDraft {
                        kind: b.kind_str().to_owned(),
                        text: b.text().to_owned(),
                        ..ButtonDraft::default()
                    };
                    match b {
                        Button::Url { url, .. } => draft.url = url.clone(),
                        Button::PhoneNumber { phone_number, .. } => {
                            draft.phone_number = phone_number.clone()
                        }
                        Button::QuickReply { .. } => {}
                    }
                    draft
                })
                .collect(),
            image_url: self.image_url.clone().unwrap_or_default(),
            samples: self.samples.clone(),
            otp: OtpDraft::default(),
        }
    }

    /// The (button index, URL) of each URL button, in order.
    fn url_buttons(&self) -> Vec<(u8, &str)> {
        button_urls(&self.buttons)
    }
}

fn button_urls(buttons: &[Button]) -> Vec<(u8, &str)> {
    url_buttons(buttons.iter().map(|b| match b {
        Button::Url { url, .. } => Some(url.as_str()),
        _ => None,
    }))
}

/// Numbers the URL buttons among all buttons; the index is the button's position, as Meta's
/// send API counts it.
fn url_buttons<'a>(buttons: impl Iterator<Item = Option<&'a str>>) -> Vec<(u8, &'a str)> {
    buttons
        .enumerate()
        .filter_map(|(i, url)| Some((u8::try_from(i).ok()?, url?)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Placeholders as variables

/// Where a placeholder sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "component", rename_all = "snake_case")]
pub enum PlaceholderLocation {
    Header,
    Body,
    /// The dynamic end of a URL button's link; `index` counts buttons from 0, as Meta does.
    Button {
        index: u8,
    },
}

/// One placeholder of a template, as the API and the send form list them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlaceholderInfo {
    /// The variable name a send fills: the placeholder's own name in the body (`1`,
    /// `first_name`); `header` for a numbered header placeholder (named ones keep their name, and
    /// share the value of a body placeholder of the same name); `url_1`, `url_2` for the first
    /// and second URL button.
    pub name: String,
    /// As written in the template: `{{1}}`.
    pub placeholder: String,
    pub location: PlaceholderLocation,
    /// The sample value; empty when the draft has none yet.
    pub sample: String,
}

/// One placeholder occurrence that takes a value (repeats of a name in one component are one
/// slot).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot<'a> {
    key: String,
    token: &'a str,
    location: PlaceholderLocation,
}

impl Slot<'_> {
    /// "{{1}}", "{{1}} in the header", "{{1}} in the link of button 2".
    fn describe(&self) -> String {
        match self.location {
            PlaceholderLocation::Body => format!("{{{{{}}}}}", self.token),
            PlaceholderLocation::Header => format!("{{{{{}}}}} in the header", self.token),
            PlaceholderLocation::Button { index } => {
                format!("{{{{{}}}}} in the link of button {}", self.token, index + 1)
            }
        }
    }
}

/// The placeholders of a template's parts in variable order: the header's, the body's
/// (numbered ones by number, named ones by first appearance), then each URL button's.
fn slots<'a>(header: Option<&'a str>, body: &'a str, urls: &[(u8, &'a str)]) -> Vec<Slot<'a>> {
    let mut out: Vec<Slot<'a>> = Vec::new();
    let mut push = |slot: Slot<'a>| {
        if !out
            .iter()
            .any(|s| s.key == slot.key && s.location == slot.location)
        {
            out.push(slot);
        }
    };
    if let Some(header) = header {
        for token in scan(header).placeholders() {
            let key = if is_number(token) {
                "header".to_owned()
            } else {
                token.to_owned()
            };
            push(Slot {
                key,
                token,
                location: PlaceholderLocation::Header,
            });
        }
    }
    let mut body_tokens: Vec<&str> = Vec::new();
    for token in scan(body).placeholders() {
        if !body_tokens.contains(&token) {
            body_tokens.push(token);
        }
    }
    if body_tokens.iter().all(|t| is_number(t)) {
        body_tokens.sort_by_key(|t| t.parse::<u64>().unwrap_or(u64::MAX));
    }
    for token in body_tokens {
        push(Slot {
            key: token.to_owned(),
            token,
            location: PlaceholderLocation::Body,
        });
    }
    for (ordinal, (index, url)) in urls.iter().enumerate() {
        for token in scan(url).placeholders() {
            push(Slot {
                key: format!("url_{}", ordinal + 1),
                token,
                location: PlaceholderLocation::Button { index: *index },
            });
        }
    }
    out
}

fn is_number(token: &str) -> bool {
    !token.is_empty() && token.chars().all(|c| c.is_ascii_digit())
}

/// The variable names a send must fill, each once, in the order a positional list fills them.
fn variable_names(slots: &[Slot<'_>]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for slot in slots {
        if !names.contains(&slot.key) {
            names.push(slot.key.clone());
        }
    }
    names
}

fn placeholder_infos(
    slots: &[Slot<'_>],
    samples: &BTreeMap<String, String>,
) -> Vec<PlaceholderInfo> {
    slots
        .iter()
        .map(|s| PlaceholderInfo {
            name: s.key.clone(),
            placeholder: format!("{{{{{}}}}}", s.token),
            location: s.location,
            sample: samples.get(&s.key).cloned().unwrap_or_default(),
        })
        .collect()
}

/// What a send of this template must fill, with the samples, for `GET /api/v1/templates` and
/// the send form.
pub fn placeholders(template: &ValidTemplate) -> Vec<PlaceholderInfo> {
    let urls = template.url_buttons();
    let slots = slots(template.header(), template.body(), &urls);
    placeholder_infos(&slots, &template.samples)
}

#[cfg(test)]
mod tests;
