//! Issue 20, triggers: a shop or CRM posts JSON to `/hooks/{slug}` and a message goes out. Here
//! the pure rules: how each sender signs its requests ([`Scheme`], [`Verification`]), and how a
//! trigger's [`Mapping`] reads a payload (JSON Pointer paths, RFC 6901, through serde_json's
//! `pointer`) into a recipient, contact fields, template variables and conditions.
//!
//! Signatures are computed over the raw body as it streams in (so an oversized body is still
//! verified before anything is recorded about it) and compared in constant time.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a signed timestamp may be from now (HubSpot v3, Standard Webhooks).
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

/// How a trigger's caller proves it is who it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the body.
    Shopify,
    /// `X-WC-Webhook-Signature`: base64 HMAC-SHA256 of the body.
    Woocommerce,
    /// HubSpot request signature v3: base64 HMAC-SHA256 of method + URI + body + timestamp.
    Hubspot,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1,<base64>` …).
    StandardWebhooks,
    /// A shared key in `Authorization: Bearer …` or `X-Api-Key`.
    ApiKey,
}

impl Scheme {
    pub const ALL: [Scheme; 5] = [
        Scheme::Shopify,
        Scheme::Woocommerce,
        Scheme::Hubspot,
        Scheme::StandardWebhooks,
        Scheme::ApiKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Shopify => "shopify",
            Scheme::Woocommerce => "woocommerce",
            Scheme::Hubspot => "hubspot",
            Scheme::StandardWebhooks => "standard_webhooks",
            Scheme::ApiKey => "api_key",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Scheme::Shopify => "Shopify",
            Scheme::Woocommerce => "WooCommerce",
            Scheme::Hubspot => "HubSpot (signature v3)",
            Scheme::StandardWebhooks => "Standard Webhooks",
            Scheme::ApiKey => "API key",
        }
    }

    pub fn parse(s: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|x| x.as_str() == s.trim())
    }

    /// The header that names a delivery, the same on every retry of it (lower case).
    pub fn delivery_id_header(self) -> Option<&'static str> {
        match self {
            Scheme::Shopify => Some("x-shopify-webhook-id"),
            Scheme::Woocommerce => Some("x-wc-webhook-delivery-id"),
            Scheme::StandardWebhooks => Some("webhook-id"),
            Scheme::Hubspot | Scheme::ApiKey => None,
        }
    }

    /// Herald makes the secret (the sender is told it) rather than the sender's platform.
    pub fn herald_generates_secret(self) -> bool {
        matches!(
            self,
            Scheme::Woocommerce | Scheme::StandardWebhooks | Scheme::ApiKey
        )
    }

    /// Checks a secret as it will be used; the words say what is wrong.
    pub fn check_secret(self, secret: &str) -> Result<(), String> {
        if secret.trim().is_empty() {
            return Err(format!("{} needs a secret.", self.label()));
        }
        if secret.len() > 500 {
            return Err("The secret is too long (500 characters at most).".into());
        }
        if self == Scheme::StandardWebhooks && standard_webhooks_key(secret).is_none() {
            return Err(
                "A Standard Webhooks secret is written whsec_ followed by base64 (for example whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw)."
                    .into(),
            );
        }
        Ok(())
    }
}

/// The key bytes of a Standard Webhooks secret (`whsec_` + base64).
fn standard_webhooks_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.trim().strip_prefix("whsec_")?;
    STANDARD.decode(encoded).ok().filter(|k| !k.is_empty())
}

/// Why a request is refused (401): the words go back to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("The {0} header is missing.")]
    Missing(&'static str),
    #[error("The {0} header is not in the expected form.")]
    Malformed(&'static str),
    #[error("The request's timestamp is more than 5 minutes away from now.")]
    Stale,
    #[error("The signature does not match this trigger's secret.")]
    Mismatch,
}

/// A request's headers, names in lower case.
pub type Headers = BTreeMap<String, String>;

fn header<'a>(headers: &'a Headers, name: &'static str) -> Result<&'a str, VerifyError> {
    headers
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::Missing(name))
}

/// A signature check under way: [`Verification::update`] with each piece of the body, then
/// [`Verification::finish`].
pub struct Verification {
    mac: Option<Hmac<Sha256>>,
    /// Signatures any one of which may match (base64-decoded).
    expected: Vec<Vec<u8>>,
    /// What is signed after the body (HubSpot's timestamp).
    suffix: Vec<u8>,
    /// The API key scheme's outcome, known from the headers alone.
    key_ok: Option<bool>,
}

impl Verification {
    /// Starts checking a request to `uri` (the public URL the sender called, for HubSpot).
    pub fn start(
        scheme: Scheme,
        secret: &str,
        method: &str,
        uri: &str,
        headers: &Headers,
        now: DateTime<Utc>,
    ) -> Result<Verification, VerifyError> {
        let decode = |name: &'static str, v: &str| {
            STANDARD
                .decode(v.trim())
                .map_err(|_| VerifyError::Malformed(name))
        };
        let mac = |key: &[u8]| {
            <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|_| VerifyError::Mismatch)
        };
        match scheme {
            Scheme::Shopify | Scheme::Woocommerce => {
                let name = if scheme == Scheme::Shopify {
                    "x-shopify-hmac-sha256"
                } else {
                    "x-wc-webhook-signature"
                };
                let given = decode(name, header(headers, name)?)?;
                Ok(Verification {
                    mac: Some(mac(secret.as_bytes())?),
                    expected: vec![given],
                    suffix: Vec::new(),
                    key_ok: None,
                })
            }
            Scheme::Hubspot => {
                let given = decode(
                    "x-hubspot-signature-v3",
                    header(headers, "x-hubspot-signature-v3")?,
                )?;
                let ts = header(headers, "x-hubspot-request-timestamp")?;
                let millis: i64 = ts
                    .parse()
                    .map_err(|_| VerifyError::Malformed("x-hubspot-request-timestamp"))?;
                if (now.timestamp_millis() - millis).abs() > TIMESTAMP_TOLERANCE_SECS * 1000 {
                    return Err(VerifyError::Stale);
                }
                let mut m = mac(secret.as_bytes())?;
                m.update(method.as_bytes());
                m.update(uri.as_bytes());
                Ok(Verification {
                    mac: Some(m),
                    expected: vec![given],
                    suffix: ts.as_bytes().to_vec(),
                    key_ok: None,
                })
            }
            Scheme::StandardWebhooks => {
                let id = header(headers, "webhook-id")?;
                let ts = header(headers, "webhook-timestamp")?;
                let secs: i64 = ts
                    .parse()
                    .map_err(|_| VerifyError::Malformed("webhook-timestamp"))?;
                if (now.timestamp() - secs).abs() > TIMESTAMP_TOLERANCE_SECS {
                    return Err(VerifyError::Stale);
                }
                let expected: Vec<Vec<u8>> = header(headers, "webhook-signature")?
                    .split_whitespace()
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .filter_map(|s| STANDARD.decode(s).ok())
                    .collect();
                if expected.is_empty() {
                    return Err(VerifyError::Malformed("webhook-signature"));
                }
                let key = standard_webhooks_key(secret).ok_or(VerifyError::Mismatch)?;
                let mut m = mac(&key)?;
                m.update(format!("{id}.{ts}.").as_bytes());
                Ok(Verification {
                    mac: Some(m),
                    expected,
                    suffix: Vec::new(),
                    key_ok: None,
                })
            }
            Scheme::ApiKey => {
                let given = headers
                    .get("authorization")
                    .and_then(|v| v.trim().strip_prefix("Bearer "))
                    .or_else(|| headers.get("x-api-key").map(String::as_str))
                    .map(str::trim)
                    .ok_or(VerifyError::Missing("authorization"))?;
                let ok = given.len() == secret.len()
                    && bool::from(given.as_bytes().ct_eq(secret.as_bytes()));
                Ok(Verification {
                    mac: None,
                    expected: Vec::new(),
                    suffix: Vec::new(),
                    key_ok: Some(ok),
                })
            }
        }
    }

    /// Feeds the next piece of the raw body.
    pub fn update(&mut self, chunk: &[u8]) {
        if let Some(m) = self.mac.as_mut() {
            m.update(chunk);
        }
    }

    /// Whether the request is signed with the trigger's secret.
    pub fn finish(self) -> Result<(), VerifyError> {
        if let Some(ok) = self.key_ok {
            return if ok {
                Ok(())
            } else {
                Err(VerifyError::Mismatch)
            };
        }
        let Some(mut m) = self.mac else {
            return Err(VerifyError::Mismatch);
        };
        m.update(&self.suffix);
        let computed = m.finalize().into_bytes();
        let mut matched = false;
        for given in &self.expected {
            // Every candidate is compared, in constant time each.
            matched |= given.len() == computed.len() && bool::from(given.ct_eq(&computed));
        }
        if matched {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }
}

/// Signs `body` as `scheme` would (for the "try it" steps, tests and the benchmark): the
/// headers to send with it.
pub fn sign(
    scheme: Scheme,
    secret: &str,
    method: &str,
    uri: &str,
    body: &[u8],
    delivery_id: &str,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let hmac = |key: &[u8], parts: &[&[u8]]| -> String {
        let mut m = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        for p in parts {
            m.update(p);
        }
        STANDARD.encode(m.finalize().into_bytes())
    };
    let key = secret.as_bytes();
    match scheme {
        Scheme::Shopify => vec![
            ("X-Shopify-Hmac-Sha256".into(), hmac(key, &[body])),
            ("X-Shopify-Webhook-Id".into(), delivery_id.into()),
            ("X-Shopify-Topic".into(), "orders/create".into()),
        ],
        Scheme::Woocommerce => vec![
            ("X-WC-Webhook-Signature".into(), hmac(key, &[body])),
            ("X-WC-Webhook-Delivery-ID".into(), delivery_id.into()),
        ],
        Scheme::Hubspot => {
            let ts = now.timestamp_millis().to_string();
            vec![
                (
                    "X-HubSpot-Signature-v3".into(),
                    hmac(
                        key,
                        &[method.as_bytes(), uri.as_bytes(), body, ts.as_bytes()],
                    ),
                ),
                ("X-HubSpot-Request-Timestamp".into(), ts),
            ]
        }
        Scheme::StandardWebhooks => {
            let ts = now.timestamp().to_string();
            let k = standard_webhooks_key(secret).unwrap_or_default();
            let signed = format!("{delivery_id}.{ts}.");
            vec![
                ("webhook-id".into(), delivery_id.into()),
                ("webhook-timestamp".into(), ts),
                (
                    "webhook-signature".into(),
                    format!("v1,{}", hmac(&k, &[signed.as_bytes(), body])),
                ),
            ]
        }
        Scheme::ApiKey => vec![("Authorization".into(), format!("Bearer {secret}"))],
    }
}

// ---------------------------------------------------------------------------------------------
// Mapping

/// Where a template variable's value comes from: a path, or a path with a fallback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VariableSource {
    Path(String),
    WithFallback {
        path: String,
        #[serde(default)]
        fallback: Option<String>,
    },
}

impl VariableSource {
    fn path(&self) -> &str {
        match self {
            VariableSource::Path(p) | VariableSource::WithFallback { path: p, .. } => p,
        }
    }

    fn fallback(&self) -> Option<&str> {
        match self {
            VariableSource::Path(_) => None,
            VariableSource::WithFallback { fallback, .. } => fallback.as_deref(),
        }
    }
}

/// Only when the value at `path` is (or is not) something, or is present at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub path: String,
    /// The value, as text (`"paid"`, `"42"`, `"true"`), must be this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// … must be one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    /// … must not be this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<String>,
    /// There must (or must not) be a non-empty value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// How a payload becomes a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The recipient's phone number.
    pub phone: String,
    /// For numbers written in national form (two letters, e.g. "US").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_country: Option<String>,
    /// The contact's name, kept on the contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Contact attributes to set: attribute name -> path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Template variables (`"1"` or a name) -> path, or `{"path", "fallback"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, VariableSource>,
    /// All must hold, or the event is skipped with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Send this many minutes after the event instead of at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_minutes: Option<u32>,
    /// Events with the same value here replace each other's delayed send (a later one cancels
    /// what an earlier one scheduled: an order cancelled before its confirmation went).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_key: Option<String>,
    /// De-duplicate on the value at this path when the sender gives no delivery id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
}

/// The longest delay (the same bound as a scheduled send).
pub const MAX_DELAY_MINUTES: u32 = 30 * 24 * 60;

fn check_pointer(field: &str, path: &str, problems: &mut Vec<(String, String)>) {
    if !(path.is_empty() || path.starts_with('/')) {
        problems.push((
            field.to_owned(),
            format!(
                "\"{path}\" is not a JSON Pointer: it starts with / (for example /customer/phone)."
            ),
        ));
    }
}

impl Mapping {
    /// Checks the mapping against the template variables the message needs (`None` for
    /// free text): every path is a JSON Pointer, every variable mapped is one the template
    /// has and every one it has is mapped. Problems come as (field, words).
    pub fn check(&self, template_variables: Option<&[String]>) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.phone.trim().is_empty() {
            problems.push((
                "mapping.phone".into(),
                "Say where the phone number is in the payload, for example /customer/phone.".into(),
            ));
        } else {
            check_pointer("mapping.phone", &self.phone, &mut problems);
        }
        if let Some(c) = &self.default_country
            && crate::domain::phone::DefaultCountry::parse(c).is_err()
        {
            problems.push((
                "mapping.default_country".into(),
                format!("\"{c}\" is not a two-letter country code (for example US, GB, DE)."),
            ));
        }
        if let Some(p) = &self.name {
            check_pointer("mapping.name", p, &mut problems);
        }
        for (attr, p) in &self.attributes {
            if attr.trim().is_empty() || attr.len() > 64 {
                problems.push((
                    "mapping.attributes".into(),
                    "Attribute names are 1 to 64 characters.".into(),
                ));
            }
            check_pointer(&format!("mapping.attributes.{attr}"), p, &mut problems);
        }
        for (name, source) in &self.variables {
            check_pointer(
                &format!("mapping.variables.{name}"),
                source.path(),
                &mut problems,
            );
        }
        for (i, c) in self.conditions.iter().enumerate() {
            check_pointer(&format!("mapping.conditions.{i}"), &c.path, &mut problems);
            if c.equals.is_none()
                && c.one_of.is_none()
                && c.not_equals.is_none()
                && c.present.is_none()
            {
                problems.push((
                    format!("mapping.conditions.{i}"),
                    "A condition says what the value must be: equals, one_of, not_equals or present."
                        .into(),
                ));
            }
        }
        for (field, p) in [
            ("delay_key", &self.delay_key),
            ("dedup_key", &self.dedup_key),
        ] {
            if let Some(p) = p {
                check_pointer(&format!("mapping.{field}"), p, &mut problems);
            }
        }
        if self.delay_minutes.is_some_and(|m| m > MAX_DELAY_MINUTES) {
            problems.push((
                "mapping.delay_minutes".into(),
                "The delay is 30 days at most.".into(),
            ));
        }
        match template_variables {
            Some(names) => {
                for name in self.variables.keys() {
                    if !names.contains(name) {
                        problems.push((
                            format!("mapping.variables.{name}"),
                            format!(
                                "The template has no variable \"{name}\"; it has {}.",
                                list_or_none(names)
                            ),
                        ));
                    }
                }
                for name in names {
                    if !self.variables.contains_key(name) {
                        problems.push((
                            format!("mapping.variables.{name}"),
                            format!("Say where the template's variable \"{name}\" comes from."),
                        ));
                    }
                }
            }
            None => {
                if !self.variables.is_empty() {
                    problems.push((
                        "mapping.variables".into(),
                        "Free text has no variables: map variables for a template only.".into(),
                    ));
                }
            }
        }
        problems
    }

    /// Whether the payload meets every condition; `Err` says which one it does not.
    pub fn conditions_hold(&self, payload: &Value) -> Result<(), String> {
        self.conditions
            .iter()
            .try_for_each(|c| condition_holds(c, payload))
    }

    /// Reads the payload. `Err` says why no message can be made of it (the phone or a
    /// variable without a fallback missing).
    pub fn apply(&self, payload: &Value) -> Result<Mapped, String> {
        let phone = text_at(payload, &self.phone)
            .ok_or_else(|| format!("The payload has no phone number at {}.", self.phone))?;
        let mut variables = BTreeMap::new();
        for (name, source) in &self.variables {
            let value = text_at(payload, source.path()).or_else(|| {
                source
                    .fallback()
                    .map(str::to_owned)
                    .filter(|f| !f.is_empty())
            });
            match value {
                Some(v) => {
                    variables.insert(name.clone(), v);
                }
                None => {
                    return Err(format!(
                        "The payload has no value at {} for the variable \"{name}\", and it has no fallback.",
                        source.path()
                    ));
                }
            }
        }
        Ok(Mapped {
            phone,
            name: self.name.as_deref().and_then(|p| text_at(payload, p)),
            attributes: self
                .attributes
                .iter()
                .filter_map(|(k, p)| text_at(payload, p).map(|v| (k.clone(), v)))
                .collect(),
            variables,
            delay_key: self.delay_key.as_deref().and_then(|p| text_at(payload, p)),
        })
    }

    /// The payload's own de-duplication key, when the mapping names one.
    pub fn dedup_value(&self, payload: &Value) -> Option<String> {
        self.dedup_key.as_deref().and_then(|p| text_at(payload, p))
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The value at `path` as text: strings as they are, numbers and booleans written out;
/// absent, null, empty, arrays and objects are `None`.
pub fn text_at(payload: &Value, path: &str) -> Option<String> {
    let text = match payload.pointer(path)? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

fn condition_holds(c: &Condition, payload: &Value) -> Result<(), String> {
    let value = text_at(payload, &c.path);
    let shown = value.as_deref().unwrap_or("nothing");
    if let Some(want) = c.present
        && value.is_some() != want
    {
        return Err(if want {
            format!("Skipped: the payload has no value at {}.", c.path)
        } else {
            format!("Skipped: the payload has {shown} at {}.", c.path)
        });
    }
    if let Some(want) = &c.equals
        && value.as_deref() != Some(want.as_str())
    {
        return Err(format!("Skipped: {} is {shown}, not {want}.", c.path));
    }
    if let Some(list) = &c.one_of
        && !value.as_ref().is_some_and(|v| list.contains(v))
    {
        return Err(format!(
            "Skipped: {} is {shown}, not one of {}.",
            c.path,
            list.join(", ")
        ));
    }
    if let Some(not) = &c.not_equals
        && value.as_deref() == Some(not.as_str())
    {
        return Err(format!("Skipped: {} is {not}.", c.path));
    }
    Ok(())
}

/// What a payload said, read through a mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The phone number as written in the payload.
    pub phone: String,
    pub name: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub variables: BTreeMap<String, String>,
    pub delay_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(String, String)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    }

    fn verify(scheme: Scheme, secret: &str, h: &Headers, body: &[u8]) -> Result<(), VerifyError> {
        let mut v = Verification::start(
            scheme,
            secret,
            "POST",
            "https://herald.example/hooks/abc",
            h,
            Utc::now(),
        )?;
        // In two pieces, as a body streams in.
        let (a, b) = body.split_at(body.len() / 2);
        v.update(a);
        v.update(b);
        v.finish()
    }

    #[test]
    fn every_scheme_accepts_its_own_signature_and_refuses_a_wrong_one() {
        let body = br#"{"id":1,"phone":"+14155550100"}"#;
        for scheme in Scheme::ALL {
            let secret = if scheme == Scheme::StandardWebhooks {
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            } else {
                "shh-its-a-secret"
            };
            let signed = sign(
                scheme,
                secret,
                "POST",
                "https://herald.example/hooks/abc",
                body,
                "d-1",
                Utc::now(),
            );
            let h = headers(&signed);
            assert_eq!(verify(scheme, secret, &h, body), Ok(()), "{scheme:?}");
            let other = if scheme == Scheme::StandardWebhooks {
                "whsec_c2VjcmV0LXR3bw=="
            } else {
                "another-secret!!"
            };
            assert_eq!(
                verify(scheme, other, &h, body),
                Err(VerifyError::Mismatch),
                "{scheme:?}"
            );
            if scheme != Scheme::ApiKey {
                assert_eq!(
                    verify(scheme, secret, &h, br#"{"id":2,"phone":"+14155550100"}"#),
                    Err(VerifyError::Mismatch),
                    "{scheme:?}: a changed body"
                );
            }
            assert!(
                verify(scheme, secret, &Headers::new(), body).is_err(),
                "{scheme:?} unsigned"
            );
        }
    }

    #[test]
    fn old_timestamps_are_refused() {
        let body = b"{}";
        let old = Utc::now() - chrono::Duration::minutes(6);
        for (scheme, secret) in [
            (Scheme::Hubspot, "secret"),
            (Scheme::StandardWebhooks, "whsec_c2VjcmV0"),
        ] {
            let h = headers(&sign(
                scheme,
                secret,
                "POST",
                "https://herald.example/hooks/abc",
                body,
                "d",
                old,
            ));
            assert_eq!(verify(scheme, secret, &h, body), Err(VerifyError::Stale));
        }
    }

    #[test]
    fn standard_webhooks_accepts_any_of_several_signatures() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = b"{\"a\":1}";
        let mut h = headers(&sign(
            Scheme::StandardWebhooks,
            secret,
            "POST",
            "",
            body,
            "msg_1",
            Utc::now(),
        ));
        let sig = h["webhook-signature"].clone();
        h.insert("webhook-signature".into(), format!("v1,AAAA {sig}"));
        assert_eq!(verify(Scheme::StandardWebhooks, secret, &h, body), Ok(()));
    }

    fn order() -> Value {
        json!({
            "id": 820982911946154508_i64,
            "name": "#1001",
            "financial_status": "paid",
            "total_price": "199.00",
            "customer": {"first_name": "Ada", "phone": "+1 415 555 0100"},
            "line_items": [{"title": "Lamp"}]
        })
    }

    fn mapping() -> Mapping {
        serde_json::from_value(json!({
            "phone": "/customer/phone",
            "name": "/customer/first_name",
            "attributes": {"last_order": "/name"},
            "variables": {"1": "/customer/first_name", "2": {"path": "/tracking", "fallback": "soon"}},
            "conditions": [{"path": "/financial_status", "equals": "paid"}],
            "delay_key": "/id"
        }))
        .expect("mapping")
    }

    #[test]
    fn a_mapping_reads_the_payload() {
        let m = mapping().apply(&order()).expect("mapped");
        assert_eq!(m.phone, "+1 415 555 0100");
        assert_eq!(m.name.as_deref(), Some("Ada"));
        assert_eq!(m.attributes["last_order"], "#1001");
        assert_eq!(m.variables["1"], "Ada");
        assert_eq!(m.variables["2"], "soon", "the fallback");
        assert_eq!(m.delay_key.as_deref(), Some("820982911946154508"));
        assert_eq!(
            text_at(&order(), "/line_items/0/title").as_deref(),
            Some("Lamp")
        );
    }

    #[test]
    fn conditions_and_missing_values_say_why_nothing_is_sent() {
        let mut pending = order();
        pending["financial_status"] = json!("pending");
        let why = mapping().conditions_hold(&pending).unwrap_err();
        assert!(why.contains("pending, not paid"), "{why}");
        assert_eq!(mapping().conditions_hold(&order()), Ok(()));
        let mut no_phone = order();
        no_phone["customer"]["phone"] = Value::Null;
        let why = mapping().apply(&no_phone).unwrap_err();
        assert!(why.contains("no phone number at /customer/phone"), "{why}");
        let mut no_name = order();
        no_name["customer"]["first_name"] = json!("");
        let why = mapping().apply(&no_name).unwrap_err();
        assert!(why.contains("variable \"1\""), "{why}");
    }

    #[test]
    fn a_mapping_is_checked_against_the_templates_variables() {
        let names = vec!["1".to_owned(), "2".to_owned()];
        assert!(mapping().check(Some(&names)).is_empty());
        let problems = mapping().check(Some(&["1".to_owned()]));
        assert!(
            problems
                .iter()
                .any(|(f, w)| f == "mapping.variables.2" && w.contains("no variable \"2\"")),
            "{problems:?}"
        );
        let problems = mapping().check(Some(&["1".to_owned(), "2".to_owned(), "3".to_owned()]));
        assert!(
            problems.iter().any(|(f, _)| f == "mapping.variables.3"),
            "{problems:?}"
        );
        let mut bad = mapping();
        bad.phone = "customer.phone".into();
        bad.default_country = Some("Narnia".into());
        let fields: Vec<String> = bad
            .check(Some(&names))
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, vec!["mapping.phone", "mapping.default_country"]);
        assert!(
            !mapping().check(None).is_empty(),
            "free text has no variables"
        );
    }
}
