//! What a failed "Test connection" means for the person setting a channel up: what happened,
//! in words, what to check for this provider, and the provider's own code and words beneath
//! (with its documentation link when it gave one). Transport internals (the reqwest error
//! chain) are reduced to a short reason.

use super::error::{ErrorClass, SendError};
use crate::domain::channel::Provider;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnosis {
    /// What happened, in a sentence.
    pub headline: String,
    /// What to check, most likely first.
    pub checks: Vec<String>,
    /// The provider's code (`20003`, `190`, `HTTP 401`), when it answered with one.
    pub code: Option<String>,
    /// The provider's words, verbatim.
    pub said: Option<String>,
    /// The provider's documentation for this error: an http(s) address only.
    pub link: Option<String>,
}

/// The error codes Herald gives failures that happened before or instead of a provider's answer.
const OWN_CODES: [&str; 6] = [
    "connect",
    "timeout",
    "transport",
    "incomplete_answer",
    "bad_request_setup",
    "unreadable_answer",
];

/// An http(s) address, or nothing: only those become links.
pub fn web_link(text: &str) -> Option<String> {
    let text = text.trim();
    let url = reqwest::Url::parse(text).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host_str().is_some()).then(|| url.to_string())
}

fn credentials(provider: Provider) -> Vec<String> {
    match provider {
        Provider::Twilio => vec![
            "The Account SID (AC followed by 32 characters) and the Auth token, exactly as Twilio Console › Account info shows them.".into(),
            "That the Twilio account is active, not suspended or closed.".into(),
        ],
        Provider::WhatsappCloud => vec![
            "The access token: a system-user token that has not expired and has the whatsapp_business_messaging permission.".into(),
            "The phone number ID and the WhatsApp Business Account ID from the App Dashboard › WhatsApp › API Setup.".into(),
        ],
        Provider::Infobip => vec![
            "The API key (Infobip portal › Developers › API keys), and that it may send Viber messages.".into(),
            "The base URL: your account's own address, such as https://xxxxx.api.infobip.com.".into(),
        ],
        Provider::Sandbox => Vec::new(),
    }
}

fn account(provider: Provider) -> Vec<String> {
    match provider {
        Provider::Twilio => vec![
            "The Account SID: it names the account the Auth token belongs to.".into(),
        ],
        Provider::WhatsappCloud => vec![
            "The phone number ID and the WhatsApp Business Account ID: they are numeric IDs from the App Dashboard › WhatsApp › API Setup, not the phone number.".into(),
            "The API version (such as v23.0).".into(),
        ],
        Provider::Infobip => vec!["The sender name and the base URL of your Infobip account.".into()],
        Provider::Sandbox => Vec::new(),
    }
}

fn base_url_check(provider: Provider, base_url: &str) -> String {
    let default = match provider {
        Provider::WhatsappCloud => Some("https://graph.facebook.com"),
        Provider::Twilio => Some("https://api.twilio.com"),
        Provider::Infobip | Provider::Sandbox => None,
    };
    match default {
        Some(d) if base_url.trim_end_matches('/') != d => format!(
            "The base URL {base_url}: it should be {d} unless you point Herald at a test server."
        ),
        Some(d) => format!("The base URL, {d}."),
        None => format!("The base URL {base_url}."),
    }
}

/// Why a connection could not be made, in words, from the transport error's text.
fn connect_reason(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("dns") || m.contains("resolve") || m.contains("lookup") {
        "its address could not be found (DNS)"
    } else if m.contains("refused") {
        "nothing answered at that address (connection refused)"
    } else if m.contains("certificate") || m.contains("tls") || m.contains("ssl") {
        "the secure connection (TLS) could not be set up"
    } else {
        "the connection could not be made"
    }
}

/// Explains a failed connection test on `provider`'s channel pointed at `base_url`.
pub fn diagnose(provider: Provider, base_url: &str, e: &SendError) -> Diagnosis {
    let name = provider.label();
    let host = reqwest::Url::parse(base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| base_url.to_owned());
    let own = e.code.as_deref().filter(|c| OWN_CODES.contains(c));
    let network = || {
        vec![
            format!("That this server can reach {host}: its network, firewall, proxy and DNS."),
            base_url_check(provider, base_url),
        ]
    };
    if let Some(code) = own {
        let (headline, checks) = match code {
            "connect" => (
                format!(
                    "Herald could not reach {name} at {host}: {}. Nothing was sent.",
                    connect_reason(&e.message)
                ),
                network(),
            ),
            "bad_request_setup" => (
                format!("Herald could not make a request to {name} from the base URL {base_url}."),
                vec![base_url_check(provider, base_url)],
            ),
            "timeout" => (format!("{name} did not answer in time."), {
                let mut c = network();
                c.push(format!("Whether {name} reports an outage; then try again."));
                c
            }),
            _ => (
                format!("The connection to {name} broke off before its answer could be read."),
                {
                    let mut c = network();
                    c.push("Try again in a moment.".into());
                    c
                },
            ),
        };
        return Diagnosis {
            headline,
            checks,
            ..Diagnosis::default()
        };
    }

    let code = e.code.clone();
    let numeric = code.as_deref().and_then(|c| c.parse::<i64>().ok());
    let status = e.http_status;
    let credentials_refused = matches!(status, Some(401 | 403))
        || matches!(
            (provider, numeric),
            (Provider::Twilio, Some(20003)) | (Provider::WhatsappCloud, Some(190))
        );
    let not_found =
        status == Some(404) || matches!((provider, numeric), (Provider::Twilio, Some(20404)));
    let (headline, checks) = if credentials_refused {
        (
            format!(
                "{name} refused the credentials: it does not accept this account and token together."
            ),
            credentials(provider),
        )
    } else if not_found {
        (
            format!("{name} does not know the account or number these settings name."),
            {
                let mut c = account(provider);
                c.push(base_url_check(provider, base_url));
                c
            },
        )
    } else if e.class == ErrorClass::RateLimited {
        (
            format!("{name} is limiting requests from this account right now."),
            vec!["Wait a minute and test again.".into()],
        )
    } else if matches!(status, Some(500..=599)) {
        (
            format!(
                "{name} had a problem of its own (HTTP {}).",
                status.unwrap_or(500)
            ),
            vec![
                format!("Whether {name} reports an outage; then test again."),
                base_url_check(provider, base_url),
            ],
        )
    } else {
        (format!("{name} refused the request."), {
            let mut c = credentials(provider);
            c.push(base_url_check(provider, base_url));
            c
        })
    };

    // The provider's code and words, and its link: Twilio gives `more_info`; otherwise the
    // provider's page of error codes.
    let shown_code = match (&code, status) {
        (Some(c), _) if c.starts_with("http_") => status.map(|s| format!("HTTP {s}")),
        (Some(c), _) => Some(c.clone()),
        (None, Some(s)) => Some(format!("HTTP {s}")),
        (None, None) => None,
    };
    let details_link = e.details.as_deref().and_then(web_link);
    let link = details_link.clone().or_else(|| match (provider, numeric) {
        (Provider::Twilio, Some(n)) => Some(format!("https://www.twilio.com/docs/errors/{n}")),
        (Provider::WhatsappCloud, Some(_)) => Some(
            "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes".into(),
        ),
        _ => None,
    });
    let mut said = String::new();
    if let Some(s) = &e.said {
        said.push_str(s.trim());
        said.push_str(" — ");
    }
    said.push_str(e.message.trim());
    if let (Some(d), None) = (&e.details, &details_link) {
        said.push_str(" (");
        said.push_str(d.trim());
        said.push(')');
    }
    Diagnosis {
        headline,
        checks,
        code: shown_code,
        said: Some(said).filter(|s| !s.is_empty()),
        link,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twilio_auth_failure() -> SendError {
        let mut e = SendError::new(ErrorClass::Permanent, "Authenticate")
            .with_code("20003")
            .with_details(Some("https://www.twilio.com/docs/errors/20003".into()));
        e.http_status = Some(401);
        e
    }

    #[test]
    fn refused_credentials_say_which_settings_to_check_and_keep_the_providers_words() {
        let d = diagnose(
            Provider::Twilio,
            "https://api.twilio.com",
            &twilio_auth_failure(),
        );
        assert!(
            d.headline.contains("refused the credentials"),
            "{}",
            d.headline
        );
        assert!(
            d.checks
                .iter()
                .any(|c| c.contains("Account SID") && c.contains("Auth token"))
        );
        assert_eq!(d.code.as_deref(), Some("20003"));
        assert_eq!(d.said.as_deref(), Some("Authenticate"));
        assert_eq!(
            d.link.as_deref(),
            Some("https://www.twilio.com/docs/errors/20003")
        );
    }

    #[test]
    fn a_dns_failure_reads_as_words_without_the_error_chain() {
        let e = SendError::new(
            ErrorClass::Retryable,
            "could not connect to the provider: error sending request for url (https://nowhere.invalid/x): client error (Connect): dns error: failed to lookup address",
        )
        .with_code("connect");
        let d = diagnose(Provider::Twilio, "https://nowhere.invalid", &e);
        assert_eq!(
            d.headline,
            "Herald could not reach Twilio at nowhere.invalid: its address could not be found (DNS). Nothing was sent."
        );
        assert!(!format!("{d:?}").contains("client error"));
        assert!(d.checks.iter().any(|c| c.contains("network")));
        assert!(
            d.checks
                .iter()
                .any(|c| c.contains("https://api.twilio.com"))
        );
        assert_eq!((d.code, d.said, d.link), (None, None, None));
    }

    #[test]
    fn only_web_addresses_become_links() {
        assert_eq!(web_link("javascript:alert(1)"), None);
        assert_eq!(web_link("not a link"), None);
        assert_eq!(
            web_link("https://x.test/a").as_deref(),
            Some("https://x.test/a")
        );
        let mut e = SendError::new(ErrorClass::Permanent, "Bad")
            .with_code("E400")
            .with_details(Some("javascript:alert(1)".into()));
        e.http_status = Some(400);
        let d = diagnose(Provider::Infobip, "https://x.api.infobip.com", &e);
        assert_eq!(d.link, None);
        assert_eq!(d.said.as_deref(), Some("Bad (javascript:alert(1))"));
    }

    #[test]
    fn whatsapp_token_errors_and_unknown_numbers_are_told_apart() {
        let mut expired =
            SendError::new(ErrorClass::Permanent, "Error validating access token").with_code("190");
        expired.http_status = Some(400);
        let d = diagnose(
            Provider::WhatsappCloud,
            "https://graph.facebook.com",
            &expired,
        );
        assert!(d.checks[0].contains("access token"));
        assert!(
            d.link
                .unwrap()
                .starts_with("https://developers.facebook.com/")
        );
        let mut missing = SendError::new(ErrorClass::Permanent, "Not found").with_code("http_404");
        missing.http_status = Some(404);
        let d = diagnose(
            Provider::WhatsappCloud,
            "https://graph.facebook.com",
            &missing,
        );
        assert!(d.headline.contains("does not know"));
        assert_eq!(d.code.as_deref(), Some("HTTP 404"));
    }
}
