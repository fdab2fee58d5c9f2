//! Typed channel settings: which keys each provider takes, which are secrets (stored encrypted
//! and never shown again), and field-level validation for the Settings › Channels form and
//! `POST /api/v1/channels`.

use std::fmt;

use serde_json::{Map, Value};

use crate::domain::channel::Provider;

/// One setting key of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    /// The JSON key (ARCHITECTURE.md section 7).
    pub key: &'static str,
    pub label: &'static str,
    /// Stored encrypted in the channel's secrets, never echoed back.
    pub secret: bool,
    pub required: bool,
    pub default: Option<&'static str>,
}

/// The settings keys of a provider, in form order.
pub fn settings_for(provider: Provider) -> &'static [SettingSpec] {
    match provider {
        Provider::WhatsappCloud => super::whatsapp::SETTINGS,
        Provider::Twilio => super::twilio::SETTINGS,
        Provider::Infobip => super::infobip_viber::SETTINGS,
        Provider::Sandbox => super::sandbox::SETTINGS,
    }
}

/// Splits one object of settings (as the API receives it) into the plain settings and the
/// secrets, by the provider's key list. Unknown keys stay with the plain settings.
pub fn split_secrets(provider: Provider, merged: &Map<String, Value>) -> (Value, Value) {
    let specs = settings_for(provider);
    let mut plain = Map::new();
    let mut secret = Map::new();
    for (k, v) in merged {
        if specs.iter().any(|s| s.secret && s.key == k) {
            secret.insert(k.clone(), v.clone());
        } else {
            plain.insert(k.clone(), v.clone());
        }
    }
    (Value::Object(plain), Value::Object(secret))
}

/// Checks a provider's settings and secrets; the errors name the fields.
pub fn validate(
    provider: Provider,
    settings: &Value,
    secrets: &Value,
) -> Result<(), SettingsError> {
    match provider {
        Provider::WhatsappCloud => {
            super::whatsapp::WhatsappSettings::from_json(settings, secrets).map(drop)
        }
        Provider::Twilio => super::twilio::TwilioSettings::from_json(settings, secrets).map(drop),
        Provider::Infobip => {
            super::infobip_viber::InfobipViberSettings::from_json(settings, secrets).map(drop)
        }
        Provider::Sandbox => super::sandbox::SandboxSettings::from_json(settings).map(drop),
    }
}

/// What is obviously wrong with a secret as typed into the channel form or the API, for the
/// provider's documented format (`shared/reference/`): a Twilio auth token is 32 hexadecimal
/// characters; Meta's access tokens and app secrets, Infobip's API keys are long strings
/// without spaces. Checked when a secret is entered, so a channel is not saved with a value
/// that can never work (a value saved earlier is not checked again).
pub fn secret_problem(provider: Provider, key: &str, value: &str) -> Option<String> {
    let chars = value.chars().count();
    let label = settings_for(provider)
        .iter()
        .find(|s| s.key == key)
        .map_or(key, |s| s.label);
    if value.chars().any(char::is_whitespace) {
        return Some(format!(
            "{label} has a space or line break in it: paste it again as one piece"
        ));
    }
    let (minimum, what) = match (provider, key) {
        (Provider::Twilio, "auth_token") => {
            return (chars != 32 || !value.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
                format!(
                    "Auth token is 32 letters and digits (Twilio Console › Account info › Auth Token); this one has {chars} characters"
                )
            });
        }
        (Provider::WhatsappCloud, "access_token") => (
            20,
            "an access token from Meta (a system-user token starting with EAA, usually about 200 characters)",
        ),
        (Provider::WhatsappCloud, "app_secret") => (
            16,
            "the App Secret from the App Dashboard › App settings › Basic (32 characters)",
        ),
        (Provider::WhatsappCloud, "verify_token") => (
            8,
            "a phrase of your own of at least 8 characters, given to Meta with the webhook URL",
        ),
        (Provider::Infobip, "api_key") => (
            16,
            "an API key from the Infobip portal › Developers › API keys",
        ),
        _ => return None,
    };
    (chars < minimum).then(|| {
        format!(
            "{label} should be {what}; this one has {chars} character{}",
            if chars == 1 { "" } else { "s" }
        )
    })
}

/// A credential: kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What is wrong with a channel's settings, field by field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.summary())]
pub struct SettingsError {
    fields: Vec<(&'static str, String)>,
}

impl SettingsError {
    pub fn single(field: &'static str, message: impl Into<String>) -> Self {
        SettingsError {
            fields: vec![(field, message.into())],
        }
    }

    /// `(key, message)` pairs, for showing next to each field.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.fields.iter().map(|(k, m)| (*k, m.as_str()))
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| *k == field)
            .map(|(_, m)| m.as_str())
    }

    fn summary(&self) -> String {
        self.fields
            .iter()
            .map(|(k, m)| format!("{k}: {m}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Reads settings (and secrets, which win when a key is in both) and collects every problem
/// before answering, so a form shows all of them at once. Required values come back empty when
/// missing; `finish` refuses to build anything then.
pub(crate) struct Fields<'a> {
    settings: &'a Value,
    secrets: &'a Value,
    errors: Vec<(&'static str, String)>,
}

impl<'a> Fields<'a> {
    pub fn new(settings: &'a Value, secrets: &'a Value) -> Self {
        Fields {
            settings,
            secrets,
            errors: Vec::new(),
        }
    }

    fn raw(&self, key: &str) -> Option<&'a Value> {
        self.secrets
            .get(key)
            .filter(|v| !v.is_null())
            .or_else(|| self.settings.get(key).filter(|v| !v.is_null()))
    }

    /// A text value, trimmed; numbers are accepted as text (ids are often pasted as numbers).
    pub fn optional(&mut self, spec: &SettingSpec) -> Option<String> {
        let value = match self.raw(spec.key) {
            None => None,
            Some(Value::String(s)) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                self.error(spec.key, format!("{} must be text", spec.label));
                return None;
            }
        };
        value.or_else(|| spec.default.map(str::to_owned))
    }

    pub fn required(&mut self, spec: &SettingSpec) -> String {
        match self.optional(spec) {
            Some(v) => v,
            None => {
                if !self.errors.iter().any(|(k, _)| *k == spec.key) {
                    self.error(spec.key, format!("{} is required", spec.label));
                }
                String::new()
            }
        }
    }

    pub fn secret(&mut self, spec: &SettingSpec) -> Secret {
        Secret(self.required(spec))
    }

    /// An `http(s)://host[:port][/path]` base URL without query, returned without its
    /// trailing slash.
    pub fn base_url(&mut self, spec: &SettingSpec) -> String {
        let raw = self.required(spec);
        if raw.is_empty() {
            return raw;
        }
        match reqwest::Url::parse(&raw) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some()
                    && url.query().is_none()
                    && url.fragment().is_none() =>
            {
                raw.trim_end_matches('/').to_owned()
            }
            _ => {
                self.error(
                    spec.key,
                    format!(
                        "{} must be an http:// or https:// address without a query, e.g. {}",
                        spec.label,
                        spec.default.unwrap_or("https://api.example.com")
                    ),
                );
                String::new()
            }
        }
    }

    pub fn error(&mut self, field: &'static str, message: impl Into<String>) {
        self.errors.push((field, message.into()));
    }

    /// Records an error on `field` unless `ok` (and unless the field is already in error).
    pub fn check(&mut self, field: &'static str, ok: bool, message: impl Into<String>) {
        if !ok && !self.errors.iter().any(|(k, _)| *k == field) {
            self.error(field, message);
        }
    }

    pub fn finish<T>(self, value: T) -> Result<T, SettingsError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(SettingsError {
                fields: self.errors,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_provider_lists_its_secrets() {
        let secrets = |p| -> Vec<&str> {
            settings_for(p)
                .iter()
                .filter(|s| s.secret)
                .map(|s| s.key)
                .collect()
        };
        assert_eq!(
            secrets(Provider::WhatsappCloud),
            vec!["access_token", "app_secret", "verify_token"]
        );
        assert_eq!(secrets(Provider::Twilio), vec!["auth_token"]);
        assert_eq!(
            secrets(Provider::Infobip),
            vec!["api_key", "webhook_secret"]
        );
        assert!(secrets(Provider::Sandbox).is_empty());
    }

    #[test]
    fn merged_settings_are_split_by_secrecy() {
        let merged = json!({"account_sid": "AC1", "auth_token": "t", "from": "+1"});
        let Value::Object(map) = merged else {
            unreachable!()
        };
        let (plain, secret) = split_secrets(Provider::Twilio, &map);
        assert_eq!(plain, json!({"account_sid": "AC1", "from": "+1"}));
        assert_eq!(secret, json!({"auth_token": "t"}));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secrets_that_cannot_work_are_refused_by_their_format() {
        let twilio = |v| secret_problem(Provider::Twilio, "auth_token", v);
        assert!(twilio("x").unwrap().contains("32 letters and digits"));
        assert!(twilio("x").unwrap().contains("has 1 characters"));
        let not_hex = "g".repeat(32);
        assert!(twilio(&not_hex).is_some(), "not hexadecimal");
        assert_eq!(twilio("0123456789abcdef0123456789ABCDEF"), None);
        let meta = |k, v| secret_problem(Provider::WhatsappCloud, k, v);
        assert!(meta("access_token", "EAA1").unwrap().contains("EAA"));
        assert_eq!(meta("access_token", "EAAG-meta-access-token-0001"), None);
        assert!(
            meta("access_token", "EAAG meta access token 0001")
                .unwrap()
                .contains("space")
        );
        assert!(meta("app_secret", "s").is_some());
        assert!(meta("verify_token", "v").is_some());
        assert!(secret_problem(Provider::Infobip, "api_key", "k").is_some());
        assert_eq!(
            secret_problem(Provider::Infobip, "api_key", "infobip-api-key-0001"),
            None
        );
        assert_eq!(
            secret_problem(Provider::Infobip, "webhook_secret", "x"),
            None,
            "checked elsewhere"
        );
    }

    #[test]
    fn errors_name_every_bad_field() {
        let err = validate(
            Provider::WhatsappCloud,
            &json!({"base_url": "ftp://x", "phone_number_id": true}),
            &json!({}),
        )
        .unwrap_err();
        assert!(err.get("base_url").unwrap().contains("http"));
        assert!(err.get("phone_number_id").unwrap().contains("text"));
        assert!(err.get("access_token").unwrap().contains("required"));
        assert!(err.to_string().contains("waba_id: "));
    }
}
