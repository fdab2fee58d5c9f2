//! Filling a template's placeholders: with a recipient's values for a send, with the samples for
//! a preview, and from a contact's fields through a variable mapping.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::placeholder::{Piece, scan};
use super::{
    Button, ButtonType, CODE_VARIABLE, FieldProblems, PlaceholderInfo, PlaceholderLocation, Slot,
    TemplateCategory, TemplateDraft, ValidTemplate, WHATSAPP_BUTTON_URL_MAX, WHATSAPP_HEADER_MAX,
    body_limit, char_len, normalise, placeholder_infos, slots, url_buttons, validate,
    variable_names,
};
use crate::domain::channel::ChannelKind;
use crate::domain::content::{
    ButtonKind, ButtonParam, MessageContent, ParameterFormat, TemplateContent, TemplateParam,
};
use crate::domain::sms::{self, SmsInfo};

/// The contact fields every contact has; any other key is looked up in its free-form
/// attributes.
pub const CONTACT_FIELDS: [&str; 4] = ["name", "phone", "email", "language"];

/// The values for one send: a list in placeholder order (see [`super::placeholders`]), or a map
/// by variable name. In JSON, `["Alex", "1234"]` or `{"first_name": "Alex"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Variables {
    Positional(Vec<String>),
    Named(BTreeMap<String, String>),
}

/// Why a template could not be filled for a recipient. Each names the variable, in words a
/// person can act on; [`RenderError::code`] is the API's machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("No value for {}.", describe(name))]
    MissingVariable { name: String },
    #[error("The template has no placeholder \"{name}\".")]
    UnknownVariable { name: String },
    #[error("The template takes {expected} values, but {given} were given.")]
    TooManyValues { expected: usize, given: usize },
    #[error("The contact has no \"{attribute}\" for {}.", describe(name))]
    MissingAttribute { name: String, attribute: String },
    #[error("The value for {} is empty.", describe(name))]
    EmptyValue { name: String },
    #[error("The value for {}: {reason}", describe(name))]
    InvalidValue { name: String, reason: String },
    #[error(
        "With these values the {part} has {actual} characters, over the limit of {limit} (the longest value is the one for {}).",
        describe(name)
    )]
    TooLong {
        name: String,
        part: &'static str,
        limit: usize,
        actual: usize,
    },
}

impl RenderError {
    pub fn code(&self) -> &'static str {
        match self {
            RenderError::MissingVariable { .. } => "missing_variable",
            RenderError::UnknownVariable { .. } => "unknown_variable",
            RenderError::TooManyValues { .. } => "too_many_variables",
            RenderError::MissingAttribute { .. } => "missing_attribute",
            RenderError::EmptyValue { .. } => "empty_value",
            RenderError::InvalidValue { .. } => "invalid_value",
            RenderError::TooLong { .. } => "too_long",
        }
    }
}

/// A variable name in words: `{{1}}`, "the header's placeholder", "the link of URL button 1".
fn describe(name: &str) -> String {
    if name == "header" {
        "the header's placeholder".to_owned()
    } else if let Some(n) = name.strip_prefix("url_") {
        format!("the link of URL button {n}")
    } else {
        format!("{{{{{name}}}}}")
    }
}

/// Why a value cannot fill a placeholder on this channel, if it cannot. Meta rejects
/// parameters with line breaks, tabs or more than four spaces in a row.
pub(crate) fn check_value(kind: ChannelKind, value: &str) -> Result<(), String> {
    if kind == ChannelKind::Whatsapp {
        if value.contains(['\n', '\r', '\t']) {
            return Err(
                "WhatsApp does not allow line breaks or tabs in a placeholder's value.".into(),
            );
        }
        if value.contains("     ") {
            return Err(
                "WhatsApp does not allow more than 4 spaces in a row in a placeholder's value."
                    .into(),
            );
        }
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r')
    {
        return Err("it contains a control character.".into());
    }
    Ok(())
}

/// A template filled for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedTemplate {
    /// What the recipient reads (header, body and footer, a blank line apart), for the history.
    pub text: String,
    /// What the channel adapter sends: a template with its parameters (WhatsApp, Viber; the
    /// caller sets `provider_template_id` for Viber) or plain text (SMS).
    pub content: MessageContent,
}

/// The parts of a template with values filled in.
struct Filled {
    header: Option<String>,
    body: String,
    footer: Option<String>,
    buttons: Vec<PreviewButton>,
}

impl Filled {
    fn text(&self) -> String {
        [
            self.header.as_deref(),
            Some(self.body.as_str()),
            self.footer.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
    }
}

/// Replaces each placeholder of `text` with its value; one without a value stays as written.
fn fill(text: &str, value_of: impl Fn(&str) -> Option<String>) -> String {
    scan(text)
        .pieces
        .iter()
        .map(|piece| match piece {
            Piece::Text(t) => (*t).to_owned(),
            Piece::Placeholder(token) => {
                value_of(token).unwrap_or_else(|| format!("{{{{{token}}}}}"))
            }
        })
        .collect()
}

/// The variable name of a header placeholder: `header` for a numbered one, its own name
/// otherwise.
fn header_key(token: &str) -> String {
    if super::is_number(token) {
        "header".to_owned()
    } else {
        token.to_owned()
    }
}

/// Percent-encodes what may not appear in a URL (spaces, non-ASCII, quotes, brackets); Meta
/// appends the value to the button's link as is. A `%` is kept, so an encoded value passes
/// unchanged.
fn encode_url_part(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?#[]%".contains(&byte);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One button as the recipient sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewButton {
    /// `quick_reply`, `url`, `phone_number`, or `otp` (an authentication template's code
    /// button).
    pub kind: &'static str,
    pub text: String,
    /// The link with its value filled in, or the number called; `None` for quick replies.
    pub target: Option<String>,
}

/// Fills the parts of a template; `value_of` answers by variable name.
fn fill_parts<'a>(
    kind: ChannelKind,
    header: Option<&str>,
    body: &str,
    footer: Option<&str>,
    buttons: impl Iterator<Item = (&'static str, &'a str, Option<&'a str>)>,
    value_of: &dyn Fn(&str) -> Option<String>,
) -> Filled {
    let header = header.map(|h| fill(h, |token| value_of(&header_key(token))));
    let body = fill(body, value_of);
    let mut url_ordinal = 0;
    let buttons = buttons
        .map(|(button_kind, text, target)| {
            let target = target.map(|t| {
                if button_kind != "url" || kind != ChannelKind::Whatsapp {
                    return t.to_owned();
                }
                url_ordinal += 1;
                let key = format!("url_{url_ordinal}");
                fill(t, |_| value_of(&key).map(|v| encode_url_part(&v)))
            });
            PreviewButton {
                kind: button_kind,
                text: text.to_owned(),
                target,
            }
        })
        .collect();
    Filled {
        header,
        body,
        footer: footer.map(str::to_owned),
        buttons,
    }
}

fn valid_buttons(buttons: &[Button]) -> impl Iterator<Item = (&'static str, &str, Option<&str>)> {
    buttons.iter().map(|b| match b {
        Button::QuickReply { text } => ("quick_reply", text.as_str(), None),
        Button::Url { text, url } => ("url", text.as_str(), Some(url.as_str())),
        Button::PhoneNumber { text, phone_number } => {
            ("phone_number", text.as_str(), Some(phone_number.as_str()))
        }
    })
}

/// Matches the given values to the template's variable names.
fn assign<'v>(
    names: &[String],
    variables: &'v Variables,
) -> Result<BTreeMap<String, &'v str>, RenderError> {
    match variables {
        Variables::Positional(values) => {
            if values.len() > names.len() {
                return Err(RenderError::TooManyValues {
                    expected: names.len(),
                    given: values.len(),
                });
            }
            if let Some(name) = names.get(values.len()) {
                return Err(RenderError::MissingVariable { name: name.clone() });
            }
            Ok(names
                .iter()
                .cloned()
                .zip(values.iter().map(String::as_str))
                .collect())
        }
        Variables::Named(map) => {
            if let Some(unknown) = map.keys().find(|k| !names.contains(k)) {
                return Err(RenderError::UnknownVariable {
                    name: unknown.clone(),
                });
            }
            names
                .iter()
                .map(|name| {
                    map.get(name)
                        .map(|v| (name.clone(), v.as_str()))
                        .ok_or_else(|| RenderError::MissingVariable { name: name.clone() })
                })
                .collect()
        }
    }
}

/// Fills a valid template with one recipient's values, checking them against the channel's
/// rules and the filled text against its length limits (WhatsApp body 1024 and header 60
/// characters, Viber 1000, SMS 1600; a WhatsApp button link 2000).
pub fn render(
    template: &ValidTemplate,
    variables: &Variables,
) -> Result<RenderedTemplate, RenderError> {
    let kind = template.kind();
    let urls = template.url_buttons();
    let slots = slots(template.header(), template.body(), &urls);
    let names = variable_names(&slots);
    let values = assign(&names, variables)?;
    for name in &names {
        let value = values.get(name).copied().unwrap_or_default();
        if value.trim().is_empty() {
            return Err(RenderError::EmptyValue { name: name.clone() });
        }
        check_value(kind, value).map_err(|reason| RenderError::InvalidValue {
            name: name.clone(),
            reason,
        })?;
    }
    if template.authentication().is_some() {
        let code = values.get(CODE_VARIABLE).copied().unwrap_or_default();
        if let Some(reason) = super::authentication::code_problem(code) {
            return Err(RenderError::InvalidValue {
                name: CODE_VARIABLE.to_owned(),
                reason,
            });
        }
    }
    let value_of = |name: &str| values.get(name).map(|v| (*v).to_owned());
    let filled = fill_parts(
        kind,
        template.header(),
        template.body(),
        template.footer(),
        valid_buttons(template.buttons()),
        &value_of,
    );

    // Each filled part against its limit; a part that is too long names its longest value.
    type InPart = fn(&PlaceholderLocation) -> bool;
    let mut parts: Vec<(&'static str, usize, &str, InPart)> = Vec::new();
    if let Some(header) = &filled.header {
        parts.push(("header", WHATSAPP_HEADER_MAX, header, |l| {
            *l == PlaceholderLocation::Header
        }));
    }
    parts.push(("text", body_limit(kind), &filled.body, |l| {
        *l == PlaceholderLocation::Body
    }));
    for button in filled.buttons.iter().filter(|b| b.kind == "url") {
        if let Some(url) = &button.target {
            parts.push(("button link", WHATSAPP_BUTTON_URL_MAX, url, |l| {
                matches!(l, PlaceholderLocation::Button { .. })
            }));
        }
    }
    for (part, limit, text, in_part) in parts {
        let actual = char_len(text);
        if actual > limit {
            let longest = slots
                .iter()
                .filter(|s| in_part(&s.location))
                .max_by_key(|s| values.get(&s.key).map_or(0, |v| char_len(v)))
                .map(|s| s.key.clone())
                .unwrap_or_default();
            return Err(RenderError::TooLong {
                name: longest,
                part,
                limit,
                actual,
            });
        }
    }

    let text = filled.text();
    let content = match kind {
        ChannelKind::Sms => MessageContent::Text { body: text.clone() },
        ChannelKind::Whatsapp | ChannelKind::Viber => {
            MessageContent::Template(template_content(template, &slots, &values, &text))
        }
    };
    Ok(RenderedTemplate { text, content })
}

/// The parameters in the order the provider expects: the header's, the body's (numbered ones by
/// number; named ones carry their names), and each URL button's suffix by button index.
fn template_content(
    template: &ValidTemplate,
    slots: &[Slot<'_>],
    values: &BTreeMap<String, &str>,
    text: &str,
) -> TemplateContent {
    let named = template.parameter_format() == ParameterFormat::Named;
    let value = |slot: &Slot<'_>| {
        values
            .get(&slot.key)
            .copied()
            .unwrap_or_default()
            .to_owned()
    };
    let params = |location: PlaceholderLocation| {
        slots
            .iter()
            .filter(|s| s.location == location)
            .map(|s| TemplateParam {
                name: named.then(|| s.token.to_owned()),
                value: value(s),
            })
            .collect()
    };
    let buttons = if template.authentication().is_some() {
        // Meta fills an authentication template's code button like a link button's suffix
        // (`sub_type: url`, index 0), with the code itself, unencoded.
        vec![ButtonParam {
            index: 0,
            kind: ButtonKind::Url,
            value: values
                .get(CODE_VARIABLE)
                .copied()
                .unwrap_or_default()
                .to_owned(),
        }]
    } else {
        slots
            .iter()
            .filter_map(|s| match s.location {
                PlaceholderLocation::Button { index } => Some(ButtonParam {
                    index,
                    kind: ButtonKind::Url,
                    value: encode_url_part(&value(s)),
                }),
                _ => None,
            })
            .collect()
    };
    TemplateContent {
        name: template.name().as_str().to_owned(),
        language: template.language().as_str().to_owned(),
        provider_template_id: None,
        parameter_format: template.parameter_format(),
        header: params(PlaceholderLocation::Header),
        body: params(PlaceholderLocation::Body),
        buttons,
        rendered: text.to_owned(),
        window_text: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Preview

/// A template rendered with its sample values, for a live preview beside the form. Works on an
/// invalid draft: placeholders without a sample and malformed ones are shown as written, and
/// `problems` lists what validation would say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub header: Option<String>,
    pub body: String,
    pub footer: Option<String>,
    pub buttons: Vec<PreviewButton>,
    pub image_url: Option<String>,
    /// Header, body and footer as one text.
    pub text: String,
    /// The placeholders found so far, with their samples, so the form can offer a sample field
    /// for each.
    pub placeholders: Vec<PlaceholderInfo>,
    /// Empty when the draft is valid.
    pub problems: FieldProblems,
    /// For SMS: encoding and segments of the text filled with the samples.
    pub sms: Option<SmsInfo>,
}

/// Renders a draft of a `kind` template with its samples, as far as it can be rendered.
pub fn preview(kind: ChannelKind, draft: &TemplateDraft) -> Preview {
    let whatsapp = kind == ChannelKind::Whatsapp;
    if whatsapp
        && TemplateCategory::parse(kind, &draft.category)
            .ok()
            .flatten()
            == Some(TemplateCategory::Authentication)
    {
        return preview_authentication(draft);
    }
    let optional = |raw: &str| Some(normalise(raw)).filter(|t| !t.is_empty());
    let header = optional(&draft.header).filter(|_| whatsapp);
    let footer = optional(&draft.footer).filter(|_| whatsapp);
    let body = normalise(&draft.body);
    let image_url = optional(&draft.image_url).filter(|_| kind == ChannelKind::Viber);

    let rows: Vec<(&'static str, String, Option<String>)> = draft
        .buttons
        .iter()
        .filter(|b| !b.is_blank() && kind != ChannelKind::Sms)
        .map(|b| {
            let text = normalise(&b.text);
            match ButtonType::parse(&b.kind) {
                Ok(ButtonType::PhoneNumber) => {
                    ("phone_number", text, Some(b.phone_number.trim().to_owned()))
                }
                Ok(ButtonType::QuickReply) => ("quick_reply", text, None),
                Ok(ButtonType::Url) => ("url", text, Some(b.url.trim().to_owned())),
                // A Viber button is always a link; a WhatsApp row without a valid type shows
                // as a plain button until its type is chosen.
                Err(_) if kind == ChannelKind::Viber => {
                    ("url", text, Some(b.url.trim().to_owned()))
                }
                Err(_) => ("quick_reply", text, None),
            }
        })
        .collect();
    let urls = if whatsapp {
        url_buttons(
            rows.iter()
                .map(|(k, _, target)| target.as_deref().filter(|_| *k == "url")),
        )
    } else {
        Vec::new()
    };
    let slots = slots(header.as_deref(), &body, &urls);

    let samples: BTreeMap<String, String> = draft
        .samples
        .iter()
        .map(|(k, v)| (k.clone(), normalise(v)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let value_of = |name: &str| samples.get(name).cloned();
    let filled = fill_parts(
        kind,
        header.as_deref(),
        &body,
        footer.as_deref(),
        rows.iter()
            .map(|(k, text, target)| (*k, text.as_str(), target.as_deref())),
        &value_of,
    );
    let text = filled.text();
    Preview {
        sms: (kind == ChannelKind::Sms).then(|| sms::analyse(&text)),
        placeholders: placeholder_infos(&slots, &samples),
        problems: validate(kind, draft).err().unwrap_or_default(),
        header: filled.header,
        body: filled.body,
        footer: filled.footer,
        buttons: filled.buttons,
        image_url,
        text,
    }
}

/// An authentication template's preview: Meta's words, the code button, the sample code.
fn preview_authentication(draft: &TemplateDraft) -> Preview {
    let (body, footer, label) = super::authentication::preview_parts(&draft.otp);
    let slots = slots(None, &body, &[]);
    let samples: BTreeMap<String, String> = draft
        .samples
        .iter()
        .map(|(k, v)| (k.clone(), normalise(v)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let value_of = |name: &str| samples.get(name).cloned();
    let filled = fill_parts(
        ChannelKind::Whatsapp,
        None,
        &body,
        footer.as_deref(),
        std::iter::once(("otp", label.as_str(), None)),
        &value_of,
    );
    let text = filled.text();
    Preview {
        sms: None,
        placeholders: placeholder_infos(&slots, &samples),
        problems: validate(ChannelKind::Whatsapp, draft)
            .err()
            .unwrap_or_default(),
        header: None,
        body: filled.body,
        footer: filled.footer,
        buttons: filled.buttons,
        image_url: None,
        text,
    }
}

impl ValidTemplate {
    /// The template rendered with its samples.
    pub fn preview(&self) -> Preview {
        preview(self.kind(), &self.to_draft())
    }
}

// ---------------------------------------------------------------------------------------------
// Variables from contacts

/// Where a placeholder's value comes from when sending to a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum VariableSource {
    /// A contact field (`name`, `phone`, `email`, `language`) or attribute (`city`).
    Attribute { key: String },
    /// The same text for every recipient.
    Fixed { text: String },
    /// A contact field or attribute, and this text for contacts that have none.
    AttributeWithFallback { key: String, fallback: String },
}

/// The source of each placeholder's value, by variable name.
pub type VariableMapping = BTreeMap<String, VariableSource>;

/// The values for one contact. `contact_fields` answers a field or attribute key with the
/// contact's value, or `None` when the contact has none; a blank value counts as none.
pub fn resolve(
    mapping: &VariableMapping,
    contact_fields: &impl Fn(&str) -> Option<String>,
) -> Result<Variables, RenderError> {
    let lookup = |key: &str| contact_fields(key.trim()).filter(|v| !v.trim().is_empty());
    let mut values = BTreeMap::new();
    for (name, source) in mapping {
        let value = match source {
            VariableSource::Fixed { text } => text.clone(),
            VariableSource::Attribute { key } => {
                lookup(key).ok_or_else(|| RenderError::MissingAttribute {
                    name: name.clone(),
                    attribute: key.trim().to_owned(),
                })?
            }
            VariableSource::AttributeWithFallback { key, fallback } => {
                lookup(key).unwrap_or_else(|| fallback.clone())
            }
        };
        if value.trim().is_empty() {
            return Err(RenderError::EmptyValue { name: name.clone() });
        }
        values.insert(name.clone(), value);
    }
    Ok(Variables::Named(values))
}

/// Checks a mapping before a send or a broadcast starts, so a missing or unknown variable is
/// found once in the form rather than once per recipient. Errors are against
/// `variables.<name>`.
pub fn check_mapping(
    template: &ValidTemplate,
    mapping: &VariableMapping,
) -> Result<(), FieldProblems> {
    let mut errors = FieldProblems::default();
    let infos = super::placeholders(template);
    let mut seen: Vec<&str> = Vec::new();
    for info in &infos {
        if seen.contains(&info.name.as_str()) {
            continue;
        }
        seen.push(&info.name);
        let field = format!("variables.{}", info.name);
        match mapping.get(&info.name) {
            None => errors.add(
                field,
                format!(
                    "Choose a contact field or a fixed text for {}.",
                    describe(&info.name)
                ),
            ),
            Some(VariableSource::Attribute { key }) if key.trim().is_empty() => {
                errors.add(field, "Choose the contact field to use.")
            }
            Some(VariableSource::Fixed { text }) => {
                if text.trim().is_empty() {
                    errors.add(field, "Enter the text to use.");
                } else if let Err(reason) = check_value(template.kind(), text) {
                    errors.add(field, reason);
                }
            }
            Some(VariableSource::AttributeWithFallback { key, fallback }) => {
                if key.trim().is_empty() {
                    errors.add(field.clone(), "Choose the contact field to use.");
                }
                if fallback.trim().is_empty() {
                    errors.add(
                        field,
                        "Enter the text to use when the contact has no value.",
                    );
                } else if let Err(reason) = check_value(template.kind(), fallback) {
                    errors.add(field, reason);
                }
            }
            Some(VariableSource::Attribute { .. }) => {}
        }
    }
    for name in mapping.keys() {
        if !seen.contains(&name.as_str()) {
            errors.add(
                format!("variables.{name}"),
                format!("The template has no placeholder \"{name}\"."),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
