//! How times, numbers, windows and message statuses read on the pages, and the small readers
//! of raw form pairs that several handlers share.

use askama::Template;
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::domain::message::MessageStatus;
use crate::domain::window::{self, WindowState};
use crate::storage::messages::MessageRow;
use serde_json::Value;

/// "25 Nov 2026, 16:04 UTC".
pub fn datetime(at: &NaiveDateTime) -> String {
    at.format("%-d %b %Y, %H:%M UTC").to_string()
}

/// "25 Nov 2026, 17:04 CET": a UTC time read in a zone.
pub fn datetime_in(at: &NaiveDateTime, zone: chrono_tz::Tz) -> String {
    at.and_utc()
        .with_timezone(&zone)
        .format("%-d %b %Y, %H:%M %Z")
        .to_string()
}

/// A number of minutes in the largest whole unit: "1 day", "3 hours", "90 minutes".
pub fn minutes_words(minutes: u32) -> String {
    let plural = |n: u32, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match minutes {
        m if m > 0 && m.is_multiple_of(24 * 60) => plural(m / (24 * 60), "day"),
        m if m > 0 && m.is_multiple_of(60) => plural(m / 60, "hour"),
        m => plural(m, "minute"),
    }
}

/// "never", "just now", "5 min ago", "3 h ago", "2 days ago", or the date past a month.
pub fn ago(at: Option<&NaiveDateTime>) -> String {
    ago_at(at, chrono::Utc::now().naive_utc())
}

pub fn ago_at(at: Option<&NaiveDateTime>, now: NaiveDateTime) -> String {
    let Some(at) = at else {
        return "never".into();
    };
    let secs = (now - *at).num_seconds();
    match secs {
        s if s < 60 => "just now".into(),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s if s < 86_400 * 2 => "yesterday".into(),
        s if s < 86_400 * 31 => format!("{} days ago", s / 86_400),
        _ => at.format("%-d %b %Y").to_string(),
    }
}

/// Escapes text for an HTML attribute or element (for the few fragments built without a template).
/// A delay in words: "2 seconds", "500 milliseconds", "3 minutes".
pub fn duration_words(d: std::time::Duration) -> String {
    let plural = |n: u128, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let ms = d.as_millis();
    if ms < 1000 {
        plural(ms, "millisecond")
    } else if ms.is_multiple_of(60_000) {
        plural(ms / 60_000, "minute")
    } else if ms.is_multiple_of(1000) {
        plural(ms / 1000, "second")
    } else {
        format!("{:.1} seconds", d.as_secs_f64())
    }
}

pub fn attr_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&#39;")
}

/// 1284 -> "1,284".
pub fn thousands(n: impl std::borrow::Borrow<i64>) -> String {
    let n = *n.borrow();
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The first value of a form field (empty when absent), from a form read as raw pairs (a form
/// that may repeat fields).
pub fn field_of(pairs: &[(String, String)], name: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// NUL characters in raw input: found and named for the 422 (`web::edge` for pages, the API's
// extractors for the API).

/// Fields whose handler makes any value safe itself: `next` (where to go after signing in)
/// falls back to the home page when it is not a plain same-site path.
const SANITISED_BY_HANDLER: [&str; 1] = ["next"];

/// A field name as it can be shown (a NUL in the name itself is written `\0`).
fn shown(name: &str) -> String {
    name.replace('\0', "\\0")
}

/// The first field of url-encoded pairs (a query string or a form body) with a NUL in its
/// name or value.
pub fn nul_field_in_pairs(encoded: &[u8]) -> Option<String> {
    // Cheap test first: a NUL is sent as `%00` (or, in a body, as the raw byte).
    if !encoded.contains(&0) && !encoded.windows(3).any(|w| w == b"%00") {
        return None;
    }
    // Parsing pairs never fails (invalid UTF-8 becomes U+FFFD), so the field is always found.
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(encoded)
        .ok()?
        .into_iter()
        .find(|(k, v)| {
            (k.contains('\0') || v.contains('\0')) && !SANITISED_BY_HANDLER.contains(&k.as_str())
        })
        .map(|(k, _)| shown(&k))
}

/// The path (`template.variables[1]`, `attributes.city`) of the first JSON string or key with
/// a NUL character.
pub fn nul_field_in_json(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &str) -> Option<String> {
        match value {
            Value::String(s) if s.contains('\0') => Some(path.to_owned()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, &format!("{path}[{i}]"))),
            Value::Object(map) => map.iter().find_map(|(k, v)| {
                let here = if path.is_empty() {
                    shown(k)
                } else {
                    format!("{path}.{}", shown(k))
                };
                if k.contains('\0') {
                    Some(here)
                } else {
                    walk(v, &here)
                }
            }),
            _ => None,
        }
    }
    walk(value, "").map(|p| if p.is_empty() { "body".into() } else { p })
}

/// True when a raw JSON text may hold a NUL: JSON can only carry it escaped.
pub fn json_may_hold_nul(raw: &[u8]) -> bool {
    raw.windows(6).any(|w| w == b"\\u0000")
}

// ---------------------------------------------------------------------------------------------
// Live badges: rendered into pages and re-rendered by the event stream (`web::events`).

/// A channel's window for one contact, as a badge: "open, 23 h 12 min left" (counting down in
/// the browser, see app.js) or "closed, templates only".
#[derive(Template, Debug, Clone)]
#[template(path = "live/_window.html")]
pub struct WindowBadge {
    pub state: WindowState,
    pub label: String,
}

impl WindowBadge {
    pub fn new(state: WindowState, now: DateTime<Utc>) -> Self {
        WindowBadge {
            label: window_label(state, now),
            state,
        }
    }
}

/// Describes a window for people: "open, 23 h 12 min left", "closed, templates only".
pub fn window_label(state: WindowState, now: DateTime<Utc>) -> String {
    match state {
        WindowState::Open { until } => {
            format!("open, {}", window::remaining_label(until, now))
        }
        WindowState::Closed { .. } => "closed, templates only".into(),
        WindowState::NotApplicable => "no window (free text allowed)".into(),
    }
}

/// A message's status with the provider's reason when it failed.
#[derive(Template, Debug, Clone)]
#[template(path = "live/_message_status.html")]
pub struct MessageStatusView {
    pub status: &'static str,
    pub label: &'static str,
    pub error: Option<String>,
}

impl MessageStatusView {
    pub fn new(status: MessageStatus, code: Option<&str>, message: Option<&str>) -> Self {
        let shows_error = matches!(
            status,
            MessageStatus::Failed | MessageStatus::Unknown | MessageStatus::Skipped
        );
        let error = match (code, message) {
            _ if !shows_error => None,
            (Some(c), Some(m)) => Some(format!("{m} ({c})")),
            (None, Some(m)) => Some(m.to_owned()),
            (Some(c), None) => Some(c.to_owned()),
            (None, None) => None,
        };
        MessageStatusView {
            status: status.as_str(),
            label: status.label(),
            error,
        }
    }

    pub fn of(row: &MessageRow) -> Self {
        Self::new(
            row.status(),
            row.error_code.as_deref(),
            row.error_message.as_deref(),
        )
    }
}

/// One server-sent event; every line of `data` gets its own `data:` field.
pub fn sse_event(name: &str, data: &str) -> bytes::Bytes {
    let mut out = format!("event: {name}\n");
    for line in data.lines() {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    if data.is_empty() {
        out.push_str("data: \n");
    }
    out.push('\n');
    bytes::Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_read_as_words() {
        use std::time::Duration;
        assert_eq!(duration_words(Duration::from_secs(2)), "2 seconds");
        assert_eq!(duration_words(Duration::from_secs(1)), "1 second");
        assert_eq!(duration_words(Duration::from_millis(1500)), "1.5 seconds");
        assert_eq!(
            duration_words(Duration::from_millis(250)),
            "250 milliseconds"
        );
        assert_eq!(duration_words(Duration::from_secs(120)), "2 minutes");
    }

    #[test]
    fn minutes_read_in_their_largest_whole_unit() {
        assert_eq!(minutes_words(1440), "1 day");
        assert_eq!(minutes_words(2880), "2 days");
        assert_eq!(minutes_words(120), "2 hours");
        assert_eq!(minutes_words(90), "90 minutes");
        assert_eq!(minutes_words(0), "0 minutes");
        let at = NaiveDateTime::parse_from_str("2026-11-25 16:04:00", "%F %T").unwrap();
        assert_eq!(
            datetime_in(&at, chrono_tz::Europe::Berlin),
            "25 Nov 2026, 17:04 CET"
        );
    }

    #[test]
    fn relative_times() {
        let now = NaiveDateTime::parse_from_str("2026-11-25 16:00:00", "%F %T").unwrap();
        let at = |s: i64| now - chrono::Duration::seconds(s);
        assert_eq!(ago_at(None, now), "never");
        assert_eq!(ago_at(Some(&at(5)), now), "just now");
        assert_eq!(ago_at(Some(&at(300)), now), "5 min ago");
        assert_eq!(ago_at(Some(&at(7200)), now), "2 h ago");
        assert_eq!(ago_at(Some(&at(90_000)), now), "yesterday");
        assert_eq!(ago_at(Some(&at(86_400 * 3)), now), "3 days ago");
        assert_eq!(ago_at(Some(&at(86_400 * 60)), now), "26 Sep 2026");
        assert_eq!(datetime(&now), "25 Nov 2026, 16:00 UTC");
    }

    #[test]
    fn numbers_group_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1284), "1,284");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
    }
}
