//! Message templates: what a person drafts, the provider rules a draft must meet before it can
//! be reviewed and sent, and the placeholders a send fills in.
//!
//! - [`validate`] turns a [`TemplateDraft`] (raw form input) into a [`ValidTemplate`], or into
//!   [`FieldErrors`] that name the form field each problem belongs to.
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

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::channel::ChannelKind;
use crate::domain::content::ParameterFormat;
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
// Field errors

/// One problem, and the form field it belongs to: `name`, `body`, `buttons[1].url`,
/// `samples.first_name`, … (button indexes count from 0, as the form's rows do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every problem found in a form, in the order of the form's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }

    /// The messages for one field, to show next to it.
    pub fn for_field(&self, field: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|e| e.field == field)
            .map(|e| e.message.as_str())
            .collect()
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    /// Records an `Err` against `field` and passes an `Ok` on.
    fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.push(field, message)).ok()
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

// ---------------------------------------------------------------------------------------------
// Validation

/// Checks a draft against its channel's rules. Every problem is reported, each against its field.
pub fn validate(kind: ChannelKind, draft: &TemplateDraft) -> Result<ValidTemplate, FieldErrors> {
    let mut errors = FieldErrors::default();
    let name = errors.check("name", TemplateName::parse(&draft.name));
    let language = errors.check("language", Language::parse(kind, &draft.language));
    let category = errors
        .check("category", TemplateCategory::parse(kind, &draft.category))
        .flatten();
    if kind == ChannelKind::Whatsapp && category == Some(TemplateCategory::Authentication) {
        let authentication = authentication::check(&mut errors, draft);
        return match (name, language, authentication) {
            (Some(name), Some(language), Some(auth)) => {
                let body = auth.body_text();
                let slots = slots(None, &body, &[]);
                let samples = check_code_sample(&mut errors, &slots, &draft.samples);
                if !errors.is_empty() {
                    return Err(errors);
                }
                Ok(ValidTemplate {
                    kind,
                    name,
                    language,
                    category,
                    parameter_format: ParameterFormat::Positional,
                    header: None,
                    footer: auth.footer_text(),
                    body,
                    buttons: Vec::new(),
                    image_url: None,
                    samples,
                    authentication: Some(auth),
                })
            }
            _ => Err(errors),
        };
    }
    if !draft.otp.is_blank() {
        errors.push(
            "otp.otp_type",
            "Only WhatsApp authentication templates have a code button: choose the authentication category, or clear these fields.",
        );
    }

    let header = normalise(&draft.header);
    let body = normalise(&draft.body);
    let footer = normalise(&draft.footer);
    let header = (!header.is_empty()).then_some(header);
    let footer = (!footer.is_empty()).then_some(footer);

    let header_styles = match &header {
        Some(text) => check_header(&mut errors, kind, text),
        None => Vec::new(),
    };
    let body_styles = check_body(&mut errors, kind, &body, category);
    if let Some(text) = &footer {
        check_footer(&mut errors, kind, text);
    }
    let parameter_format = check_format(&mut errors, kind, &header_styles, &body_styles);
    let buttons = match kind {
        ChannelKind::Whatsapp => check_whatsapp_buttons(&mut errors, &draft.buttons),
        ChannelKind::Viber => check_viber_button(&mut errors, &draft.buttons),
        ChannelKind::Sms => {
            if draft.buttons.iter().any(|b| !b.is_blank()) {
                errors.push("buttons", "SMS has no buttons: put the link in the text.");
            }
            Vec::new()
        }
    };
    let image_url = check_image(&mut errors, kind, &draft.image_url);

    let urls = button_urls(&buttons);
    let slots = slots(header.as_deref(), &body, &urls);
    let samples = check_samples(&mut errors, kind, &slots, &draft.samples);

    match (name, language) {
        (Some(name), Some(language)) if errors.is_empty() => Ok(ValidTemplate {
            kind,
            name,
            language,
            category,
            parameter_format,
            header,
            body,
            footer,
            buttons,
            image_url,
            samples,
            authentication: None,
        }),
        _ => Err(errors),
    }
}

/// An authentication template's sample code is optional (Meta reviews these templates without
/// examples); one given must be a code Meta would take.
fn check_code_sample(
    errors: &mut FieldErrors,
    slots: &[Slot<'_>],
    given: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut samples = BTreeMap::new();
    for (key, value) in given {
        let value = normalise(value);
        if value.is_empty() {
            continue;
        }
        if !slots.iter().any(|s| &s.key == key) {
            errors.push(
                format!("samples.{key}"),
                format!("There is no placeholder \"{key}\" in this template."),
            );
        } else if let Some(problem) = authentication::code_problem(&value) {
            errors.push(
                format!("samples.{key}"),
                format!("The sample code: {problem}"),
            );
        } else {
            samples.insert(key.clone(), value);
        }
    }
    samples
}

/// Length, markup and brace checks every text field gets.
fn check_text<'a>(
    errors: &mut FieldErrors,
    kind: ChannelKind,
    field: &str,
    what: &str,
    text: &'a str,
    limit: usize,
) -> Scan<'a> {
    let len = char_len(text);
    if len > limit {
        errors.push(
            field,
            format!(
                "{} allows at most {limit} characters in the {what}; this one has {len}.",
                kind.label()
            ),
        );
    }
    if let Some(tag) = find_markup(text) {
        errors.push(field, markup_message(kind, tag));
    }
    let scan = scan(text);
    for problem in &scan.problems {
        errors.push(field, problem.clone());
    }
    scan
}

/// The first thing that looks like an HTML tag: `<b>`, `</i>`, `<script src=…>`.
fn find_markup(text: &str) -> Option<&str> {
    text.match_indices('<').find_map(|(at, _)| {
        let rest = &text[at + 1..];
        let name = rest.strip_prefix('/').unwrap_or(rest);
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return None;
        }
        let end = rest.find(['>', '<', '\n'])?;
        rest[end..]
            .starts_with('>')
            .then(|| &text[at..at + 1 + end + 1])
    })
}

fn markup_message(kind: ChannelKind, tag: &str) -> String {
    let shown: String = tag.chars().take(30).collect();
    let lower = shown.to_ascii_lowercase();
    let code = ["<script", "<iframe", "<object", "<embed", "<style"]
        .iter()
        .any(|t| lower.starts_with(t));
    let mut message = format!(
        "\"{shown}\" looks like HTML. {} shows text exactly as written, so the customer would see the tag itself",
        kind.label()
    );
    if code {
        message.push_str(
            "; code is never run in a message and reviewers reject templates that carry it",
        );
    }
    if kind == ChannelKind::Whatsapp {
        message.push_str(". For formatting use *bold*, _italic_ or ~strikethrough~.");
    } else {
        message.push('.');
    }
    message
}

/// Classifies each placeholder under the channel's naming rules, reporting the ones that break
/// them.
fn classify_all<'a>(
    errors: &mut FieldErrors,
    kind: ChannelKind,
    field: &str,
    scan: &Scan<'a>,
) -> Vec<(&'a str, Style)> {
    scan.placeholders()
        .filter_map(|name| {
            errors
                .check(field, classify(kind, name))
                .map(|style| (name, style))
        })
        .collect()
}

fn check_header(errors: &mut FieldErrors, kind: ChannelKind, text: &str) -> Vec<Style> {
    if kind != ChannelKind::Whatsapp {
        errors.push(
            "header",
            format!(
                "{} templates have no header: put this text in the body.",
                kind.label()
            ),
        );
        return Vec::new();
    }
    let scan = check_text(errors, kind, "header", "header", text, WHATSAPP_HEADER_MAX);
    if text.contains('\n') {
        errors.push("header", "A header is one line: remove the line break.");
    }
    let found = classify_all(errors, kind, "header", &scan);
    if scan.placeholders().count() > 1 {
        errors.push(
            "header",
            "A header can have one placeholder at most (Meta).",
        );
    }
    for (name, style) in &found {
        if matches!(style, Style::Positional(n) if *n != 1) {
            errors.push(
                "header",
                format!("The header numbers its placeholder on its own: write {{{{1}}}} instead of {{{{{name}}}}}."),
            );
        }
    }
    check_meta_placement(errors, "header", "header", &scan);
    found.into_iter().map(|(_, style)| style).collect()
}

fn check_body(
    errors: &mut FieldErrors,
    kind: ChannelKind,
    text: &str,
    category: Option<TemplateCategory>,
) -> Vec<Style> {
    if text.is_empty() {
        errors.push("body", "Enter the text of the message.");
        return Vec::new();
    }
    let scan = check_text(errors, kind, "body", "text", text, body_limit(kind));
    let found = classify_all(errors, kind, "body", &scan);
    let occurrences: Vec<&str> = scan.placeholders().collect();
    let mut distinct: Vec<&str> = Vec::new();
    for name in &occurrences {
        if distinct.contains(name) {
            // Meta's send fills each placeholder from one value of a list, and its docs do
            // not say whether review accepts a repeat, so Herald asks for each once. Viber
            // and SMS fill a repeat from the same named value.
            if kind == ChannelKind::Whatsapp {
                errors.push(
                    "body",
                    format!("{{{{{name}}}}} is used more than once: WhatsApp expects each placeholder once."),
                );
            }
        } else {
            distinct.push(name);
        }
    }
    check_sequence(errors, "body", &found);
    match kind {
        ChannelKind::Whatsapp => {
            check_meta_placement(errors, "body", "body", &scan);
            check_word_ratio(errors, &scan, occurrences.len());
        }
        ChannelKind::Viber => {
            if distinct.len() > VIBER_PARAMS_MAX {
                errors.push(
                    "body",
                    format!(
                        "Viber templates have at most {VIBER_PARAMS_MAX} placeholders; this one has {}.",
                        distinct.len()
                    ),
                );
            }
            if let Some(last) = occurrences.last()
                && !scan.gaps().last().is_some_and(|g| has_word(g))
            {
                errors.push(
                    "body",
                    format!("The last word cannot be a placeholder (Infobip): add words after {{{{{last}}}}}."),
                );
            }
            if category == Some(TemplateCategory::Otp) && !distinct.contains(&"pin") {
                errors.push(
                    "body",
                    "An OTP template must contain {{pin}}, where the code goes.",
                );
            }
        }
        ChannelKind::Sms => {}
    }
    found.into_iter().map(|(_, style)| style).collect()
}

/// Numbered placeholders must run 1, 2, 3… without gaps: a send fills them from a list.
fn check_sequence(errors: &mut FieldErrors, field: &str, found: &[(&str, Style)]) {
    let numbers: Vec<u32> = found
        .iter()
        .filter_map(|(_, style)| match style {
            Style::Positional(n) => Some(*n),
            Style::Named => None,
        })
        .collect();
    let Some(max) = numbers.iter().max() else {
        return;
    };
    let missing: Vec<String> = (1..*max)
        .filter(|n| !numbers.contains(n))
        .take(5)
        .map(|n| format!("{{{{{n}}}}}"))
        .collect();
    match missing.len() {
        0 => {}
        1 => errors.push(
            field,
            format!(
                "Placeholders must be numbered 1, 2, 3… without gaps: {} is missing.",
                missing[0]
            ),
        ),
        _ => errors.push(
            field,
            format!(
                "Placeholders must be numbered 1, 2, 3… without gaps: {} are missing.",
                missing.join(", ")
            ),
        ),
    }
}

/// Does a stretch of text hold a word (anything alphanumeric), not just spaces or punctuation?
fn has_word(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

/// Meta rejects a header or body that starts or ends with a placeholder ("leading or trailing
/// parameters not allowed", error 2388299) and placeholders next to each other. Meta counts a
/// placeholder followed only by punctuation ("… gate {{2}}.") as trailing, and two placeholders
/// separated only by a space or punctuation as adjacent, so Herald asks for a word in each place.
fn check_meta_placement(errors: &mut FieldErrors, field: &str, what: &str, scan: &Scan<'_>) {
    let names: Vec<&str> = scan.placeholders().collect();
    let (Some(first), Some(last)) = (names.first(), names.last()) else {
        return;
    };
    let gaps = scan.gaps();
    if !gaps.first().is_some_and(|g| has_word(g)) {
        errors.push(
            field,
            format!("The {what} cannot start with a placeholder: add words before {{{{{first}}}}} (Meta error 2388299)."),
        );
    }
    if !gaps.last().is_some_and(|g| has_word(g)) {
        errors.push(
            field,
            format!("The {what} cannot end with a placeholder, even followed by punctuation: add words after {{{{{last}}}}} (Meta error 2388299)."),
        );
    }
    for (i, pair) in names.windows(2).enumerate() {
        if !has_word(&gaps[i + 1]) {
            errors.push(
                field,
                format!(
                    "{{{{{}}}}} and {{{{{}}}}} are next to each other: put words between placeholders (Meta rejects adjacent parameters).",
                    pair[0], pair[1]
                ),
            );
        }
    }
}

/// Meta rejects a body with too many placeholders for its length ("parameters words ratio exceeds
/// limit", 2388293) without publishing the ratio. Integrators who measured it (Syniverse,
/// Mercuri, Maqsam) agree on at least 2 × P + 1 other words for P placeholders; Herald asks for
/// that. A word is a run of text without spaces containing a letter or digit.
fn check_word_ratio(errors: &mut FieldErrors, scan: &Scan<'_>, placeholders: usize) {
    if placeholders == 0 {
        return;
    }
    let words: usize = scan
        .gaps()
        .iter()
        .map(|g| g.split_whitespace().filter(|w| has_word(w)).count())
        .sum();
    let needed = 2 * placeholders + 1;
    if words < needed {
        errors.push(
            "body",
            format!(
                "Too many placeholders for the length of the text: with {placeholders} placeholder{} Meta expects at least {needed} other words, and this text has {words} (Meta error 2388293).",
                if placeholders == 1 { "" } else { "s" }
            ),
        );
    }
}

fn check_footer(errors: &mut FieldErrors, kind: ChannelKind, text: &str) {
    if kind != ChannelKind::Whatsapp {
        errors.push(
            "footer",
            format!(
                "{} templates have no footer: put this text in the body.",
                kind.label()
            ),
        );
        return;
    }
    let scan = check_text(errors, kind, "footer", "footer", text, WHATSAPP_FOOTER_MAX);
    if scan.placeholders().next().is_some() {
        errors.push("footer", "The footer cannot have placeholders (Meta).");
    }
}

/// One style of placeholder in the whole template: a send gives either a list or a map.
fn check_format(
    errors: &mut FieldErrors,
    kind: ChannelKind,
    header: &[Style],
    body: &[Style],
) -> ParameterFormat {
    if kind == ChannelKind::Viber {
        return ParameterFormat::Named;
    }
    let is_named = |s: &Style| matches!(s, Style::Named);
    let first = body.first().or(header.first());
    let Some(first) = first else {
        return ParameterFormat::Positional;
    };
    let named = is_named(first);
    for (field, styles) in [("body", body), ("header", header)] {
        if styles.iter().any(|s| is_named(s) != named) {
            errors.push(
                field,
                "Do not mix numbered ({{1}}) and named ({{first_name}}) placeholders: use one kind in the whole template.",
            );
        }
    }
    if named {
        ParameterFormat::Named
    } else {
        ParameterFormat::Positional
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ButtonType {
    QuickReply,
    Url,
    PhoneNumber,
}

impl ButtonType {
    /// Meta's limit per type: 10 quick replies, 2 URL buttons, 1 phone button.
    fn limit(self) -> (usize, &'static str) {
        match self {
            ButtonType::QuickReply => (WHATSAPP_QUICK_REPLIES_MAX, "quick-reply buttons"),
            ButtonType::Url => (WHATSAPP_URL_BUTTONS_MAX, "link buttons"),
            ButtonType::PhoneNumber => (WHATSAPP_PHONE_BUTTONS_MAX, "phone button"),
        }
    }

    fn parse(raw: &str) -> Result<Self, String> {
        match raw
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' '], "_")
            .as_str()
        {
            "quick_reply" => Ok(ButtonType::QuickReply),
            "url" => Ok(ButtonType::Url),
            "phone_number" | "phone" => Ok(ButtonType::PhoneNumber),
            "" => Err("Choose the button's type: quick_reply, url or phone_number.".into()),
            other => Err(format!(
                "\"{other}\" is not a button type Herald supports: use quick_reply, url or phone_number."
            )),
        }
    }
}

fn check_label(
    errors: &mut FieldErrors,
    field: &str,
    kind: ChannelKind,
    raw: &str,
    limit: usize,
) -> String {
    let label = normalise(raw);
    if label.is_empty() {
        errors.push(field, "Enter the button's label.");
    }
    let len = char_len(&label);
    if len > limit {
        errors.push(
            field,
            format!("A button label has at most {limit} characters; this one has {len}."),
        );
    }
    if label.contains('\n') {
        errors.push(field, "A button label is one line.");
    }
    if label.contains("{{") || label.contains("}}") {
        errors.push(field, "A button label cannot have placeholders.");
    }
    if let Some(tag) = find_markup(&label) {
        errors.push(field, markup_message(kind, tag));
    }
    label
}

/// Checks the form of a link, recording any problem against `field`, and returns it trimmed;
/// the placeholder rules are the caller's.
fn check_link(
    errors: &mut FieldErrors,
    field: &str,
    raw: &str,
    https_only: bool,
    limit: usize,
) -> String {
    let url = raw.trim().to_owned();
    let problem = link_problem(&url, https_only, limit);
    if let Some(problem) = problem {
        errors.push(field, problem);
    }
    url
}

fn link_problem(url: &str, https_only: bool, limit: usize) -> Option<String> {
    if url.is_empty() {
        return Some("Enter the link, starting with https://.".into());
    }
    let len = char_len(url);
    if len > limit {
        return Some(format!(
            "A link has at most {limit} characters; this one has {len}."
        ));
    }
    if url.chars().any(char::is_whitespace) {
        return Some("A link cannot contain spaces.".into());
    }
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("https://") {
        rest
    } else if let Some(rest) = lower.strip_prefix("http://").filter(|_| !https_only) {
        rest
    } else if https_only {
        return Some(format!("\"{url}\" must start with https://."));
    } else {
        return Some(format!("\"{url}\" must start with https:// or http://."));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains("{{") {
        return Some(format!(
            "\"{url}\" needs a domain after the scheme, before any placeholder."
        ));
    }
    None
}

/// A fixed https link (Viber's button and image): Infobip takes no placeholders there.
fn check_fixed_link(errors: &mut FieldErrors, field: &str, raw: &str) -> String {
    let url = check_link(errors, field, raw, true, WHATSAPP_BUTTON_URL_MAX);
    if url.contains("{{") {
        errors.push(field, "This link cannot have placeholders.");
    }
    url
}

fn check_whatsapp_buttons(errors: &mut FieldErrors, drafts: &[ButtonDraft]) -> Vec<Button> {
    let kind = ChannelKind::Whatsapp;
    let mut buttons = Vec::new();
    let mut counts: BTreeMap<ButtonType, usize> = BTreeMap::new();
    // Meta groups quick replies together: the run of quick-reply / other buttons may change
    // only once.
    let mut switches = 0;
    let mut previous_quick: Option<bool> = None;
    for (i, draft) in drafts.iter().enumerate().filter(|(_, b)| !b.is_blank()) {
        let field = |part: &str| format!("buttons[{i}].{part}");
        let label = check_label(
            errors,
            &field("text"),
            kind,
            &draft.text,
            WHATSAPP_BUTTON_LABEL_MAX,
        );
        let Some(button_type) = errors.check(&field("kind"), ButtonType::parse(&draft.kind)) else {
            continue;
        };
        let quick = button_type == ButtonType::QuickReply;
        if previous_quick.is_some_and(|p| p != quick) {
            switches += 1;
            if switches == 2 {
                errors.push(
                    field("kind"),
                    "Quick-reply buttons must be next to each other, before or after the other buttons (Meta groups them).",
                );
            }
        }
        previous_quick = Some(quick);
        let count = counts.entry(button_type).or_insert(0);
        *count += 1;
        let (max, what) = button_type.limit();
        if *count == max + 1 {
            errors.push(
                field("kind"),
                format!("A template has at most {max} {what}."),
            );
        }
        match button_type {
            ButtonType::QuickReply => buttons.push(Button::QuickReply { text: label }),
            ButtonType::Url => buttons.push(Button::Url {
                text: label,
                url: check_whatsapp_url(errors, &field("url"), &draft.url),
            }),
            ButtonType::PhoneNumber => buttons.push(Button::PhoneNumber {
                text: label,
                phone_number: check_phone(errors, &field("phone_number"), &draft.phone_number),
            }),
        }
    }
    let total = drafts.iter().filter(|b| !b.is_blank()).count();
    if total > WHATSAPP_BUTTONS_MAX {
        errors.push(
            "buttons",
            format!("A template has at most {WHATSAPP_BUTTONS_MAX} buttons; this one has {total}."),
        );
    }
    buttons
}

/// Meta: a URL button's link may end in one placeholder, `{{1}}`, which a send fills (with an
/// example required at review).
fn check_whatsapp_url(errors: &mut FieldErrors, field: &str, raw: &str) -> String {
    let url = check_link(errors, field, raw, false, WHATSAPP_BUTTON_URL_MAX);
    let scan = scan(&url);
    for problem in &scan.problems {
        errors.push(field, problem.clone());
    }
    let names: Vec<&str> = scan.placeholders().collect();
    if names.len() > 1 {
        errors.push(field, "A link can have one placeholder, at its end.");
    }
    if names.iter().any(|n| *n != "1") {
        errors.push(field, "Write the link's placeholder as {{1}}.");
    }
    if !names.is_empty() && !matches!(scan.pieces.last(), Some(Piece::Placeholder(_))) {
        errors.push(
            field,
            "The placeholder must be at the very end of the link: Meta appends the value to it.",
        );
    }
    url
}
/// Meta: a phone button calls a number of at most 20 characters; Herald stores it as E.164.
fn check_phone(errors: &mut FieldErrors, field: &str, raw: &str) -> String {
    let number = raw.trim();
    if number.is_empty() {
        errors.push(
            field,
            "Enter the number the button calls, e.g. +14155550100.",
        );
    } else if char_len(number) > WHATSAPP_BUTTON_PHONE_MAX {
        errors.push(
            field,
            format!(
                "A phone number on a button has at most {WHATSAPP_BUTTON_PHONE_MAX} characters."
            ),
        );
    } else if let Some(e164) = errors.check(field, E164::parse(number, None)) {
        return e164.into_inner();
    }
    number.to_owned()
}
/// Viber (Infobip): one button, with a title of at most 30 characters, opening an https link.
fn check_viber_button(errors: &mut FieldErrors, drafts: &[ButtonDraft]) -> Vec<Button> {
    let kind = ChannelKind::Viber;
    let rows: Vec<(usize, &ButtonDraft)> = drafts
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.is_blank())
        .collect();
    if rows.len() > 1 {
        errors.push("buttons", "A Viber message has one button at most.");
    }
    let Some((i, draft)) = rows.first() else {
        return Vec::new();
    };
    let field = |part: &str| format!("buttons[{i}].{part}");
    let kind_word = draft.kind.trim();
    if !kind_word.is_empty() && !kind_word.eq_ignore_ascii_case("url") {
        errors.push(
            field("kind"),
            "A Viber button opens a link: its type is url.",
        );
    }
    let text = check_label(
        errors,
        &field("text"),
        kind,
        &draft.text,
        VIBER_BUTTON_TITLE_MAX,
    );
    let url = check_fixed_link(errors, &field("url"), &draft.url);
    vec![Button::Url { text, url }]
}

fn check_image(errors: &mut FieldErrors, kind: ChannelKind, raw: &str) -> Option<String> {
    if raw.trim().is_empty() {
        return None;
    }
    if kind != ChannelKind::Viber {
        errors.push(
            "image_url",
            format!(
                "{} templates here have no image; only Viber ones do.",
                kind.label()
            ),
        );
        return None;
    }
    Some(check_fixed_link(errors, "image_url", raw))
}

/// A sample for every placeholder: Meta and Infobip review templates with their examples, and
/// the live preview shows them. SMS texts need none, but their samples still feed the preview.
fn check_samples(
    errors: &mut FieldErrors,
    kind: ChannelKind,
    slots: &[Slot<'_>],
    given: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut samples = BTreeMap::new();
    for slot in slots {
        if samples.contains_key(&slot.key) {
            continue;
        }
        let field = format!("samples.{}", slot.key);
        let value = given
            .get(&slot.key)
            .map(|v| normalise(v))
            .unwrap_or_default();
        if value.is_empty() {
            if kind != ChannelKind::Sms {
                errors.push(
                    field,
                    format!(
                        "Enter a sample value for {}: the provider reviews the template with it.",
                        slot.describe()
                    ),
                );
            }
            continue;
        }
        if let Err(reason) = render::check_value(kind, &value) {
            errors.push(
                field.clone(),
                format!("The sample for {}: {reason}", slot.describe()),
            );
        }
        let len = char_len(&value);
        if kind == ChannelKind::Viber && len > VIBER_EXAMPLE_MAX {
            errors.push(
                field,
                format!("A Viber example has at most {VIBER_EXAMPLE_MAX} characters; this one has {len}."),
            );
        }
        samples.insert(slot.key.clone(), value);
    }
    for (key, value) in given {
        if !value.trim().is_empty() && !slots.iter().any(|s| &s.key == key) {
            errors.push(
                format!("samples.{key}"),
                format!("There is no placeholder \"{key}\" in this template."),
            );
        }
    }
    samples
}

#[cfg(test)]
mod tests;
