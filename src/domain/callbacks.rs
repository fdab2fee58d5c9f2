//! Status callbacks to the business, by the Standard Webhooks specification: the event types an
//! endpoint may want, its `whsec_` signing secrets and the `v1` signature, which addresses a
//! callback may go to (server-side request forgery), how an answer is judged, and when to try
//! again.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::retry::RetryPolicy;

/// What an endpoint may be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    MessageQueued,
    MessageSent,
    MessageDelivered,
    MessageRead,
    MessageFailed,
    MessageUnknown,
    MessageInbound,
    ContactOptedOut,
    ContactOptedIn,
    BroadcastCompleted,
    BroadcastPaused,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        EventType::MessageQueued,
        EventType::MessageSent,
        EventType::MessageDelivered,
        EventType::MessageRead,
        EventType::MessageFailed,
        EventType::MessageUnknown,
        EventType::MessageInbound,
        EventType::ContactOptedOut,
        EventType::ContactOptedIn,
        EventType::BroadcastCompleted,
        EventType::BroadcastPaused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageQueued => "message.queued",
            EventType::MessageSent => "message.sent",
            EventType::MessageDelivered => "message.delivered",
            EventType::MessageRead => "message.read",
            EventType::MessageFailed => "message.failed",
            EventType::MessageUnknown => "message.unknown",
            EventType::MessageInbound => "message.inbound",
            EventType::ContactOptedOut => "contact.opted_out",
            EventType::ContactOptedIn => "contact.opted_in",
            EventType::BroadcastCompleted => "broadcast.completed",
            EventType::BroadcastPaused => "broadcast.paused",
        }
    }

    /// What the event reports, for the dashboard.
    pub fn describe(self) -> &'static str {
        match self {
            EventType::MessageQueued => "a message was queued",
            EventType::MessageSent => "the provider took a message",
            EventType::MessageDelivered => "a message reached the phone",
            EventType::MessageRead => "a message was read",
            EventType::MessageFailed => "a message failed",
            EventType::MessageUnknown => "a message's outcome is unknown",
            EventType::MessageInbound => "a customer wrote in",
            EventType::ContactOptedOut => "a contact opted out",
            EventType::ContactOptedIn => "a contact opted in",
            EventType::BroadcastCompleted => "a broadcast completed",
            EventType::BroadcastPaused => "a broadcast paused",
        }
    }

    /// The kind of object the event's `data` is.
    pub fn subject(self) -> Subject {
        match self {
            EventType::ContactOptedOut | EventType::ContactOptedIn => Subject::Contact,
            EventType::BroadcastCompleted | EventType::BroadcastPaused => Subject::Broadcast,
            EventType::MessageInbound => Subject::Inbound,
            _ => Subject::Message,
        }
    }
}

/// Whose JSON an event carries in `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Message,
    Inbound,
    Contact,
    Broadcast,
}

impl FromStr for EventType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        EventType::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "\"{s}\" is not an event type: use {}.",
                    EventType::ALL.map(EventType::as_str).join(", ")
                )
            })
    }
}

/// The event types of a request: at least one, each known, no repeats kept (sorted).
pub fn parse_events<S: AsRef<str>>(raw: &[S]) -> Result<Vec<EventType>, String> {
    let mut events = Vec::new();
    for r in raw {
        let e: EventType = r.as_ref().parse()?;
        if !events.contains(&e) {
            events.push(e);
        }
    }
    if events.is_empty() {
        return Err("Choose at least one event type.".into());
    }
    events.sort();
    Ok(events)
}

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A fresh signing secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The HMAC key of a `whsec_` secret (the base64 after the prefix).
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    match STANDARD.decode(b64.trim()) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err("the signing secret is not base64 after whsec_".into()),
    }
}

/// `v1,<base64 of HMAC-SHA256 of "id.timestamp.body">` under `key`.
pub fn sign(key: &[u8], webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(webhook_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per key, space-separated (the new secret's
/// first, then the one being rotated out while it still signs).
pub fn signature_header(keys: &[Vec<u8>], webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| sign(k, webhook_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a callback may not go to this address, unless the endpoint allows private networks:
/// loopback, link-local, private, shared (CGNAT), unique-local, unspecified, multicast,
/// broadcast and documentation ranges, and the IPv4-mapped forms of all of them.
pub fn refused_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_private() {
                Some("a private address")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else if v4.is_unspecified() || a == 0 {
                Some("an unspecified address")
            } else if v4.is_multicast() || v4.is_broadcast() || a >= 240 {
                Some("a multicast or reserved address")
            } else if a == 100 && (64..128).contains(&b) {
                Some("a shared (carrier-grade NAT) address")
            } else if v4.is_documentation() {
                Some("a documentation address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_address(IpAddr::V4(v4));
            }
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("an unspecified address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if v6.is_unicast_link_local() {
                Some("a link-local address")
            } else if v6.is_unique_local() {
                Some("a unique-local (private) address")
            } else {
                None
            }
        }
    }
}

/// The longest endpoint URL accepted.
pub const URL_MAX: usize = 2000;

/// An endpoint URL that may be saved: `http` or `https`, with a host, no credentials, and (unless
/// `allow_private`) no host that is, or is named as, a refused address. Names that resolve to
/// refused addresses are caught when they are looked up (before saving and before each call).
pub fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("Give the URL Herald should post events to.".into());
    }
    if raw.len() > URL_MAX {
        return Err(format!("The URL is longer than {URL_MAX} characters."));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("\"{raw}\" is not a URL: {e}."))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("The URL must start with https:// (or http://).".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "Put no user name or password in the URL: verify the signature instead.".into(),
        );
    }
    let Some(host) = url.host() else {
        return Err("The URL has no host.".into());
    };
    if allow_private {
        return Ok(url);
    }
    let refused = match host {
        url::Host::Ipv4(ip) => refused_address(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => refused_address(IpAddr::V6(ip)),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost")).then_some("a loopback address")
        }
    };
    match refused {
        Some(why) => Err(private_refusal(why)),
        None => Ok(url),
    }
}

/// The message for a URL that leads to a refused address.
pub fn private_refusal(why: &str) -> String {
    format!(
        "The URL leads to {why}: Herald posts only to public addresses unless the endpoint allows private networks."
    )
}

/// What an endpoint's answer means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: done.
    Delivered,
    /// A timeout, a connection error, 429 or 5xx: try again later.
    Retry,
    /// 410 Gone: the endpoint is disabled.
    Gone,
    /// Any other answer (other 4xx, 3xx: redirects are not followed): this delivery fails.
    Failed,
}

/// Judges an answer (`None`: no answer came).
pub fn verdict(status: Option<u16>) -> Verdict {
    match status {
        None => Verdict::Retry,
        Some(s) if (200..300).contains(&s) => Verdict::Delivered,
        Some(410) => Verdict::Gone,
        Some(429) => Verdict::Retry,
        Some(s) if s >= 500 => Verdict::Retry,
        Some(_) => Verdict::Failed,
    }
}

/// How long Herald keeps trying one delivery, and how long an endpoint may fail before it is
/// disabled.
pub const KEEP_TRYING: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The retry policy of deliveries: full-jitter exponential backoff from `base`, doubling up to
/// an hour between tries, for as long as [`KEEP_TRYING`] allows (so no attempt cap here), and
/// an endpoint's `Retry-After` honoured up to an hour.
pub fn retry_policy(base: Duration) -> RetryPolicy {
    RetryPolicy {
        base,
        factor: 2,
        cap: Duration::from_secs(60 * 60),
        max_attempts: u32::MAX,
        max_retry_after: Duration::from_secs(60 * 60),
    }
}

/// The longest response excerpt kept per attempt.
pub const EXCERPT_BYTES: usize = 1024;

/// The first bytes of a response as text for the log: at most [`EXCERPT_BYTES`], invalid UTF-8
/// replaced, NUL shown as `\0` (databases refuse it in text).
pub fn excerpt(body: &[u8]) -> String {
    let head = &body[..body.len().min(EXCERPT_BYTES)];
    String::from_utf8_lossy(head).replace('\0', "\\0")
}

/// The public id of a test event: `msg_` + a fresh random id.
pub fn new_webhook_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn event_types_round_trip_and_are_checked() {
        for e in EventType::ALL {
            assert_eq!(e.as_str().parse::<EventType>(), Ok(e));
        }
        assert!("message.bounced".parse::<EventType>().is_err());
        assert_eq!(
            parse_events(&["message.sent", "message.read", "message.sent"]).unwrap(),
            vec![EventType::MessageSent, EventType::MessageRead]
        );
        assert!(parse_events::<&str>(&[]).is_err());
    }

    #[test]
    fn secrets_are_whsec_base64_and_sign_as_the_specification_says() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(secret_key(&s).unwrap().len(), 32);
        // The specification's own example (standard-webhooks, spec/standard-webhooks.md).
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let both = signature_header(&[key.clone(), key], "msg_1", 1, b"{}");
        assert_eq!(both.split(' ').count(), 2);
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "10.1.2.3".parse().unwrap(),
            "172.16.0.1".parse().unwrap(),
            "192.168.1.1".parse().unwrap(),
            "169.254.169.254".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            "100.64.0.1".parse().unwrap(),
            "224.0.0.1".parse().unwrap(),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            "::".parse().unwrap(),
            "fe80::1".parse().unwrap(),
            "fd00::1".parse().unwrap(),
            "ff02::1".parse().unwrap(),
            "::ffff:127.0.0.1".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
        ] {
            assert!(refused_address(ip).is_some(), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert_eq!(refused_address(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_before_saving() {
        assert!(check_url("https://example.com/hooks", false).is_ok());
        for bad in [
            "",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "http://127.0.0.1:9000/",
            "http://[::1]/",
            "http://localhost/",
            "http://api.localhost./x",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest",
            "not a url",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:9000/", true).is_ok());
    }

    #[test]
    fn answers_are_judged_as_the_specification_says() {
        assert_eq!(verdict(Some(200)), Verdict::Delivered);
        assert_eq!(verdict(Some(204)), Verdict::Delivered);
        assert_eq!(verdict(None), Verdict::Retry);
        assert_eq!(verdict(Some(429)), Verdict::Retry);
        assert_eq!(verdict(Some(503)), Verdict::Retry);
        assert_eq!(verdict(Some(410)), Verdict::Gone);
        assert_eq!(verdict(Some(400)), Verdict::Failed);
        assert_eq!(verdict(Some(301)), Verdict::Failed);
    }

    #[test]
    fn excerpts_are_short_and_nul_safe() {
        assert_eq!(excerpt(b"ok\0\xff"), "ok\\0\u{fffd}");
        assert!(excerpt(&[b'a'; 5000]).len() <= EXCERPT_BYTES);
    }

    #[test]
    fn retries_keep_going_with_the_cap() {
        let p = retry_policy(Duration::from_secs(5));
        assert!(p.next_attempt(100, None, 1.0).is_some());
        assert_eq!(
            p.next_attempt(100, None, 1.0),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            p.next_attempt(1, Some(Duration::from_secs(120)), 0.0),
            Some(Duration::from_secs(120))
        );
    }
}
