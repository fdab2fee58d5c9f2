//! Issue 18: what a provider said, kept for the message detail page. The adapters hand up the
//! provider's answer to a send and the part of a status webhook about one message as text,
//! passed through [`keep`] first: secrets redacted (never stored, never shown) and the length
//! capped, so a large or hostile answer cannot fill the timeline.
//!
//! Redaction works on what the text is: JSON values under a key that names a secret
//! (`access_token`, `auth_token`, `api_key`, `signature`, `password`, ...) are replaced whole;
//! anywhere in the text, the channel's own secrets (which the adapter passes in) are replaced
//! wherever they appear, as are `Bearer`/`Basic` credentials, `key=value` pairs with such a
//! key, Meta access tokens (`EAA...`) and webhook signatures (`sha256=...`). Request headers
//! are never part of a payload.

/// The most of a payload that is kept (bytes of UTF-8); longer ones are cut and marked.
pub const PAYLOAD_CAP: usize = 8 * 1024;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Marks a payload that was cut at [`PAYLOAD_CAP`].
const TRUNCATED: &str = "…[truncated]";

/// A provider's text as kept: redacted (see the module), then capped at [`PAYLOAD_CAP`].
/// `secrets` are the channel's own credentials; blank and very short ones are ignored.
pub fn keep(raw: &str, secrets: &[&str]) -> String {
    cap(&redact(raw, secrets))
}

/// [`keep`] for raw bytes (an HTTP body), read as UTF-8 with bad bytes replaced.
pub fn keep_bytes(raw: &[u8], secrets: &[&str]) -> String {
    keep(&String::from_utf8_lossy(raw), secrets)
}

/// [`keep`] for a JSON value (a webhook's status object), written compactly.
pub fn keep_json(value: &serde_json::Value, secrets: &[&str]) -> String {
    let mut value = value.clone();
    redact_value(&mut value);
    cap(&redact_known(&value.to_string(), secrets))
}

/// Redacts the error texts providers report on status events (they become the message's
/// error column and are shown on its page), as payloads are.
pub fn redact_errors(
    mut events: Vec<super::ProviderEvent>,
    secrets: &[&str],
) -> Vec<super::ProviderEvent> {
    for event in &mut events {
        if let super::ProviderEvent::Status(s) = event
            && let Some(e) = &mut s.error
        {
            e.message = redact(&e.message, secrets);
        }
    }
    events
}

/// Redacts the texts of a send's error (its message, details and words for people), which
/// are kept in the message's error column.
pub fn redact_error(mut e: super::SendError, secrets: &[&str]) -> super::SendError {
    e.message = redact(&e.message, secrets);
    e.details = e.details.map(|d| redact(&d, secrets));
    e.said = e.said.map(|s| redact(&s, secrets));
    e
}

/// The text with every secret replaced by [`REDACTED`].
pub fn redact(raw: &str, secrets: &[&str]) -> String {
    let structured = match serde_json::from_str::<serde_json::Value>(raw) {
        // Written again only when something was redacted: otherwise the provider's own text
        // (its key order, its spacing) is kept as it came.
        Ok(mut value) if value.is_object() || value.is_array() => {
            if redact_value(&mut value) {
                value.to_string()
            } else {
                raw.to_owned()
            }
        }
        _ => redact_words(raw),
    };
    redact_known(&structured, secrets)
}

/// Cuts the text at [`PAYLOAD_CAP`] bytes (on a character boundary), marking the cut, and
/// drops NUL characters (PostgreSQL's text refuses them).
fn cap(text: &str) -> String {
    let text = &text.replace('\0', "");
    if text.len() <= PAYLOAD_CAP {
        return text.to_owned();
    }
    let mut end = PAYLOAD_CAP - TRUNCATED.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATED}", &text[..end])
}

/// Whether a field of this name holds a credential.
pub fn is_secret_name(name: &str) -> bool {
    let folded: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    const PARTS: [&str; 10] = [
        "token",
        "secret",
        "password",
        "passwd",
        "signature",
        "apikey",
        "authorization",
        "credential",
        "cookie",
        "privatekey",
    ];
    PARTS.iter().any(|p| folded.contains(p)) || matches!(folded.as_str(), "sig" | "auth" | "key")
}

/// Redacts a JSON value in place; true when anything changed.
fn redact_value(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut changed = false;
            for (k, v) in map.iter_mut() {
                if is_secret_name(k) && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                    changed = true;
                } else {
                    changed |= redact_value(v);
                }
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| redact_value(v) | changed),
        Value::String(s) => {
            let cleaned = redact_words(s);
            let changed = cleaned != *s;
            *s = cleaned;
            changed
        }
        _ => false,
    }
}

/// Redacts credentials written into free text: what follows `Bearer` or `Basic`, the value
/// of `name=value` or `name: value` with a secret name, Meta access tokens and signatures.
fn redact_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut redact_next = false;
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        if rest.is_empty() {
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        // The scheme word stays (`Authorization: Bearer [redacted]`); its credential goes.
        let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        if bare.eq_ignore_ascii_case("bearer") || bare.eq_ignore_ascii_case("basic") {
            out.push_str(word);
            redact_next = true;
            continue;
        }
        if redact_next {
            redact_next = false;
            out.push_str(REDACTED);
            continue;
        }
        if word.ends_with(':') && is_secret_name(word.trim_end_matches(':')) {
            out.push_str(word);
            redact_next = true;
            continue;
        }
        out.push_str(&redact_word(word));
    }
    out
}

/// One whitespace-free word: `name=value` pairs (also inside a query string) with a secret
/// name lose their value; a Meta token or a signature is replaced whole.
fn redact_word(word: &str) -> String {
    if looks_like_meta_token(word) || looks_like_signature(word) {
        return REDACTED.into();
    }
    if !word.contains('=') {
        return word.to_owned();
    }
    let mut out = String::with_capacity(word.len());
    for (i, pair) in word.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_secret_name(last_name(name)) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            Some((name, value)) if looks_like_signature(pair) || looks_like_meta_token(value) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    out
}

/// The field name at the end of what precedes `=` (`?access_token` -> `access_token`).
fn last_name(name: &str) -> &str {
    name.rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
        .next()
        .unwrap_or(name)
}

/// Meta's user and system access tokens start with `EAA` and run long.
fn looks_like_meta_token(word: &str) -> bool {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    w.starts_with("EAA") && w.len() >= 32 && w.chars().all(|c| c.is_ascii_alphanumeric())
}

/// `sha256=<hex>` or `sha1=<hex>` (Meta's `X-Hub-Signature-256`).
fn looks_like_signature(word: &str) -> bool {
    let w = word.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '='));
    ["sha256=", "sha1="].iter().any(|p| {
        w.strip_prefix(p)
            .is_some_and(|hex| hex.len() >= 16 && hex.chars().all(|c| c.is_ascii_hexdigit()))
    })
}

/// Replaces every appearance of the channel's own secrets, however they were written in.
fn redact_known(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().map(|s| s.trim()) {
        // A secret of a few characters would redact ordinary words.
        if secret.len() >= 6 && out.contains(secret) {
            out = out.replace(secret, REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_in_json_are_replaced_whole_at_any_depth() {
        let raw = r#"{"error":{"message":"bad","access_token":"abc123"},"list":[{"apiKey":"k-1","id":"7"}],"AuthToken":null,"webhook_secret":"s"}"#;
        let kept = redact(raw, &[]);
        let v: serde_json::Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(v["error"]["access_token"], REDACTED);
        assert_eq!(v["error"]["message"], "bad");
        assert_eq!(v["list"][0]["apiKey"], REDACTED);
        assert_eq!(v["list"][0]["id"], "7");
        // Nothing to hide in a null.
        assert!(v["AuthToken"].is_null());
        assert_eq!(v["webhook_secret"], REDACTED);
    }

    #[test]
    fn the_channels_own_secrets_go_wherever_they_appear() {
        let token = "7d0a4c1f2b3e4d5a6b7c8d9e0f1a2b3c";
        let raw = format!("Authenticate failed for key {token}. {{\"x\": \"{token}\"}}");
        let kept = keep(&raw, &[token, "", "abc"]);
        assert!(!kept.contains(token), "{kept}");
        assert!(kept.contains("Authenticate failed for key [redacted]."));
        // Short or blank "secrets" never redact ordinary words.
        assert!(keep("abc def", &["abc", " "]).contains("abc def"));
    }

    #[test]
    fn credentials_in_free_text_are_redacted() {
        let raw = "Authorization: Bearer sk_live_123 and Basic QUM6dG9rZW4= sent to \
                   https://x.test/cb?id=5&access_token=EAAGabc&sig=1 signature sha256=0123456789abcdef0123 \
                   token EAAGm0PX4ZCpsBAKZCBQ5vZAd0ZCfv4Xx2yQ9kLm1234567890 password: hunter2";
        let kept = redact(raw, &[]);
        for secret in [
            "sk_live_123",
            "QUM6dG9rZW4=",
            "EAAGabc",
            "sig=1",
            "0123456789abcdef0123",
            "EAAGm0PX4ZCpsBAKZCBQ5vZAd0ZCfv4Xx2yQ9kLm1234567890",
            "hunter2",
        ] {
            assert!(!kept.contains(secret), "{secret} survived: {kept}");
        }
        assert!(
            kept.contains("id=5&access_token=[redacted]&sig=[redacted]"),
            "{kept}"
        );
        assert!(
            kept.starts_with("Authorization: Bearer [redacted] and Basic [redacted] sent"),
            "{kept}"
        );
    }

    #[test]
    fn provider_ids_and_ordinary_fields_are_kept() {
        let raw = r#"{"messages":[{"id":"wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA","message_status":"accepted"}],"contacts":[{"wa_id":"16505551234"}]}"#;
        assert_eq!(redact(raw, &[]), raw);
        let twilio = r#"{"AccountSid":"AC0123","MessageSid":"SM1","MessageStatus":"delivered"}"#;
        assert_eq!(redact(twilio, &[]), twilio);
        assert_eq!(
            redact("plain words, no secrets", &[]),
            "plain words, no secrets"
        );
    }

    #[test]
    fn long_payloads_are_capped_on_a_character_boundary() {
        let raw = "é".repeat(PAYLOAD_CAP);
        let kept = keep(&raw, &[]);
        assert!(kept.len() <= PAYLOAD_CAP, "{}", kept.len());
        assert!(kept.ends_with(TRUNCATED));
        assert_eq!(keep("short", &[]), "short");
        let exact = "a".repeat(PAYLOAD_CAP);
        assert_eq!(keep(&exact, &[]), exact);
        assert_eq!(keep("a\0b", &[]), "ab");
    }

    #[test]
    fn json_values_are_redacted_before_they_are_written() {
        let v = serde_json::json!({"id": "SM1", "auth_token": "t0k3n-value", "note": "Bearer abc"});
        let kept = keep_json(&v, &["t0k3n-value"]);
        assert!(!kept.contains("t0k3n-value"));
        assert!(!kept.contains("abc"), "{kept}");
        assert!(kept.contains("\"id\":\"SM1\""));
    }

    #[test]
    fn secret_names_are_recognised_in_any_spelling() {
        for name in [
            "access_token",
            "AuthToken",
            "api_key",
            "X-Hub-Signature-256",
            "hub.verify_token",
            "app_secret",
            "Authorization",
            "sig",
            "key",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "id",
            "status",
            "message_status",
            "AccountSid",
            "author",
            "keyword",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
