//! WhatsApp authentication templates, as Meta's reference builds them: no text of the
//! business's own (Meta writes "<code> is your verification code." in the template's language),
//! optionally Meta's security recommendation ("For your security, do not share this code.")
//! and an expiry footer ("This code expires in 10 minutes."), and one one-time-password
//! button: copy code, or one-tap autofill into an Android app (its package name and app
//! signing key hash). A send fills the code twice: the body's parameter and the button's.

use serde::{Deserialize, Serialize};

use super::{FieldProblems, WHATSAPP_BUTTON_LABEL_MAX, char_len, find_markup, normalise};

/// Meta's limits: a code expires after 1 to 90 minutes; a code has at most 15 characters.
pub const CODE_EXPIRATION_MAX_MINUTES: u8 = 90;
pub const CODE_MAX_CHARS: usize = 15;
/// An Android package name has at most 224 characters (Meta's limit for `package_name`).
pub const PACKAGE_NAME_MAX: usize = 224;
/// An app signing key hash is 11 characters (Android's SMS Retriever hash).
pub const SIGNATURE_HASH_CHARS: usize = 11;

/// The variable a send fills with the code: the body's `{{1}}`.
pub const CODE_VARIABLE: &str = "1";

/// The authentication part of the form; all blank for other templates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OtpDraft {
    /// `copy_code` or `one_tap`.
    pub otp_type: String,
    /// The button's label; Meta's default ("Copy code", "Autofill") when blank.
    pub button_text: String,
    /// One-tap only: the label of the autofill button.
    pub autofill_text: String,
    /// One-tap only: the Android app the code is filled into.
    pub package_name: String,
    /// One-tap only: the app's signing key hash.
    pub signature_hash: String,
    /// Meta's "For your security, do not share this code." after the code.
    pub security_recommendation: bool,
    /// Minutes; blank for no expiry footer.
    pub code_expiration_minutes: String,
}

impl OtpDraft {
    pub fn is_blank(&self) -> bool {
        !self.security_recommendation
            && [
                &self.otp_type,
                &self.button_text,
                &self.autofill_text,
                &self.package_name,
                &self.signature_hash,
                &self.code_expiration_minutes,
            ]
            .iter()
            .all(|s| s.trim().is_empty())
    }
}

/// The one-time-password button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "otp_type", rename_all = "snake_case")]
pub enum OtpButton {
    /// Copies the code to the clipboard.
    CopyCode,
    /// Fills the code into an Android app (Meta falls back to copy code where it cannot).
    OneTap {
        autofill_text: Option<String>,
        package_name: String,
        signature_hash: String,
    },
}

impl OtpButton {
    /// Meta's word: `COPY_CODE`, `ONE_TAP`.
    pub fn provider_str(&self) -> &'static str {
        match self {
            OtpButton::CopyCode => "COPY_CODE",
            OtpButton::OneTap { .. } => "ONE_TAP",
        }
    }

    fn form_str(&self) -> &'static str {
        match self {
            OtpButton::CopyCode => "copy_code",
            OtpButton::OneTap { .. } => "one_tap",
        }
    }
}

/// A valid authentication template's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authentication {
    pub add_security_recommendation: bool,
    pub code_expiration_minutes: Option<u8>,
    pub button: OtpButton,
    /// The button's label; `None` leaves Meta's default.
    pub button_text: Option<String>,
}

impl Authentication {
    /// The text Meta sends (in English; Meta uses the template's language), with the code's
    /// placeholder: what the preview, the history and the send's rendering show.
    pub fn body_text(&self) -> String {
        let mut text = format!("{{{{{CODE_VARIABLE}}}}} is your verification code.");
        if self.add_security_recommendation {
            text.push_str(" For your security, do not share this code.");
        }
        text
    }

    /// The footer Meta adds for an expiry.
    pub fn footer_text(&self) -> Option<String> {
        self.code_expiration_minutes
            .map(|m| format!("This code expires in {m} minutes."))
    }

    /// The button's label as the customer sees it.
    pub fn button_label(&self) -> String {
        self.button_text
            .clone()
            .unwrap_or_else(|| "Copy code".into())
    }

    pub fn to_draft(&self) -> OtpDraft {
        let mut draft = OtpDraft {
            otp_type: self.button.form_str().to_owned(),
            button_text: self.button_text.clone().unwrap_or_default(),
            security_recommendation: self.add_security_recommendation,
            code_expiration_minutes: self
                .code_expiration_minutes
                .map(|m| m.to_string())
                .unwrap_or_default(),
            ..OtpDraft::default()
        };
        if let OtpButton::OneTap {
            autofill_text,
            package_name,
            signature_hash,
        } = &self.button
        {
            draft.autofill_text = autofill_text.clone().unwrap_or_default();
            draft.package_name = package_name.clone();
            draft.signature_hash = signature_hash.clone();
        }
        draft
    }
}

/// An optional one-line label of at most 25 characters (`None` when blank).
fn check_label(errors: &mut FieldProblems, field: &str, raw: &str) -> Option<String> {
    let label = normalise(raw);
    if label.is_empty() {
        return None;
    }
    let len = char_len(&label);
    if len > WHATSAPP_BUTTON_LABEL_MAX {
        errors.add(
            field,
            format!(
                "A button label has at most {WHATSAPP_BUTTON_LABEL_MAX} characters; this one has {len}."
            ),
        );
    }
    if label.contains('\n') {
        errors.add(field, "A button label is one line.");
    }
    if label.contains("{{") || label.contains("}}") {
        errors.add(field, "A button label cannot have placeholders.");
    }
    if find_markup(&label).is_some() {
        errors.add(field, "A button label is plain text, not HTML.");
    }
    Some(label)
}

/// `com.example.app`: two or more dot-separated parts, each a letter then letters, digits or
/// underscores (Android's rule).
fn package_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some(
            "Enter the Android package name of the app the code is filled into, e.g. com.example.shop."
                .into(),
        );
    }
    let len = char_len(name);
    if len > PACKAGE_NAME_MAX {
        return Some(format!(
            "A package name has at most {PACKAGE_NAME_MAX} characters; this one has {len}."
        ));
    }
    let parts: Vec<&str> = name.split('.').collect();
    let part_ok = |p: &&str| {
        let mut chars = p.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if parts.len() < 2 || !parts.iter().all(part_ok) {
        return Some(format!(
            "\"{name}\" is not an Android package name: parts of letters, digits and _ separated by dots, each starting with a letter, e.g. com.example.shop."
        ));
    }
    None
}

/// The app signing key hash: 11 characters of base64 (`+` and `/` may be written `%2B` and
/// `%2F`, as in Meta's example); kept as written.
fn signature_problem(hash: &str) -> Option<String> {
    if hash.is_empty() {
        return Some(
            "Enter the app's signing key hash (11 characters, from Android's SMS Retriever tools)."
                .into(),
        );
    }
    let decoded = hash
        .replace("%2F", "/")
        .replace("%2f", "/")
        .replace("%2B", "+")
        .replace("%2b", "+");
    let ok = char_len(&decoded) == SIGNATURE_HASH_CHARS
        && decoded
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
    (!ok).then(|| {
        format!(
            "\"{hash}\" is not an app signing key hash: it has {SIGNATURE_HASH_CHARS} characters of letters, digits, + and /."
        )
    })
}

/// Checks the authentication part of a WhatsApp draft whose category is authentication, and
/// that the parts Meta writes itself are left empty.
pub(super) fn check(
    errors: &mut FieldProblems,
    draft: &super::TemplateDraft,
) -> Option<Authentication> {
    let meta_writes = "Meta writes the text of authentication templates (\"123456 is your verification code.\") in the template's language";
    if !draft.header.trim().is_empty() {
        errors.add(
            "header",
            format!("An authentication template has no header: {meta_writes}."),
        );
    }
    if !draft.body.trim().is_empty() {
        errors.add(
            "body",
            format!("An authentication template has no text of your own: {meta_writes}. Leave the text empty and choose the options below."),
        );
    }
    if !draft.footer.trim().is_empty() {
        errors.add(
            "footer",
            "An authentication template's footer is the code's expiry: set \"Code expires after\" instead.",
        );
    }
    if draft.buttons.iter().any(|b| !b.is_blank()) {
        errors.add(
            "buttons",
            "An authentication template has one button, the code button: choose it under \"One-time password\".",
        );
    }
    if !draft.image_url.trim().is_empty() {
        errors.add("image_url", "An authentication template has no image.");
    }

    let otp = &draft.otp;
    let code_expiration_minutes = match otp.code_expiration_minutes.trim() {
        "" => None,
        raw => match raw.parse::<u8>() {
            Ok(m) if (1..=CODE_EXPIRATION_MAX_MINUTES).contains(&m) => Some(m),
            _ => {
                errors.add(
                    "otp.code_expiration_minutes",
                    format!("A code expires after 1 to {CODE_EXPIRATION_MAX_MINUTES} minutes (Meta); leave it empty for no expiry line."),
                );
                None
            }
        },
    };
    let button_text = check_label(errors, "otp.button_text", &otp.button_text);
    let one_tap_only = [
        ("otp.autofill_text", &otp.autofill_text),
        ("otp.package_name", &otp.package_name),
        ("otp.signature_hash", &otp.signature_hash),
    ];
    let button = match otp
        .otp_type
        .trim()
        .to_ascii_lowercase()
        .replace(['-', ' '], "_")
        .as_str()
    {
        "copy_code" => {
            for (field, value) in one_tap_only {
                if !value.trim().is_empty() {
                    errors.add(
                        field,
                        "Only a one-tap button fills the code into an app: choose one-tap, or clear this field.",
                    );
                }
            }
            Some(OtpButton::CopyCode)
        }
        "one_tap" => {
            let autofill_text = check_label(errors, "otp.autofill_text", &otp.autofill_text);
            let package_name = otp.package_name.trim().to_owned();
            if let Some(problem) = package_problem(&package_name) {
                errors.add("otp.package_name", problem);
            }
            let signature_hash = otp.signature_hash.trim().to_owned();
            if let Some(problem) = signature_problem(&signature_hash) {
                errors.add("otp.signature_hash", problem);
            }
            Some(OtpButton::OneTap {
                autofill_text,
                package_name,
                signature_hash,
            })
        }
        "" => {
            errors.add(
                "otp.otp_type",
                "Choose the code button: copy code, or one-tap autofill into your Android app.",
            );
            None
        }
        other => {
            errors.add(
                "otp.otp_type",
                format!("\"{other}\" is not a code button: choose copy_code or one_tap."),
            );
            None
        }
    };
    Some(Authentication {
        add_security_recommendation: otp.security_recommendation,
        code_expiration_minutes,
        button: button?,
        button_text,
    })
}

/// Why a value cannot be an authentication code, if it cannot.
pub(super) fn code_problem(value: &str) -> Option<String> {
    let len = char_len(value);
    if len > CODE_MAX_CHARS {
        return Some(format!(
            "a one-time code has at most {CODE_MAX_CHARS} characters (Meta); this one has {len}."
        ));
    }
    if value.chars().any(char::is_whitespace) {
        return Some("a one-time code has no spaces.".into());
    }
    None
}

/// What a draft's authentication template looks like as far as it can tell, valid or not: the
/// body, the footer and the button's label, for the live preview.
pub(super) fn preview_parts(otp: &OtpDraft) -> (String, Option<String>, String) {
    let minutes = otp
        .code_expiration_minutes
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|m| (1..=CODE_EXPIRATION_MAX_MINUTES).contains(m));
    let shown = Authentication {
        add_security_recommendation: otp.security_recommendation,
        code_expiration_minutes: minutes,
        button: OtpButton::CopyCode,
        button_text: Some(normalise(&otp.button_text)).filter(|t| !t.is_empty()),
    };
    (shown.body_text(), shown.footer_text(), shown.button_label())
}
