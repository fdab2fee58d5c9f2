//! Opt-out and opt-in keywords, and where a consent change came from.

use std::fmt;
use std::str::FromStr;

/// What an inbound message asks for when its whole text is a keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeywordIntent {
    OptOut,
    OptIn,
}

/// Keywords carriers and Twilio treat as opt-out (including REVOKE and OPTOUT, added by the FCC
/// rule) and opt-in. Only a message that is exactly one keyword counts: "STOP please" does not.
pub const OPT_OUT_KEYWORDS: [&str; 8] = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
pub const OPT_IN_KEYWORDS: [&str; 3] = ["START", "YES", "UNSTOP"];

pub fn keyword_intent(text: &str) -> Option<KeywordIntent> {
    let word = text.trim().trim_end_matches(['.', '!']).trim();
    if OPT_OUT_KEYWORDS
        .iter()
        .any(|k| k.eq_ignore_ascii_case(word))
    {
        Some(KeywordIntent::OptOut)
    } else if OPT_IN_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word)) {
        Some(KeywordIntent::OptIn)
    } else {
        None
    }
}

/// Whether a keyword in an inbound message may move consent to `wanted`. The customer's own
/// START is their consent, so a real inbound message always may. A message a person simulated
/// (the sandbox's "simulate a reply") may opt out but never reverse an opt-out: like every
/// other path, that takes an admin, explicitly and audited.
pub fn keyword_may_apply(
    wanted: ConsentStatus,
    current: Option<ConsentStatus>,
    simulated: bool,
) -> bool {
    !(simulated && wanted == ConsentStatus::OptedIn && current == Some(ConsentStatus::OptedOut))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    OptedIn,
    OptedOut,
}

impl ConsentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::OptedIn => "opted_in",
            ConsentStatus::OptedOut => "opted_out",
        }
    }
}

impl FromStr for ConsentStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' '], "_")
            .as_str()
        {
            "opted_in" | "in" | "yes" | "true" | "1" | "subscribed" => Ok(ConsentStatus::OptedIn),
            "opted_out" | "out" | "no" | "false" | "0" | "unsubscribed" => {
                Ok(ConsentStatus::OptedOut)
            }
            _ => Err(format!(
                "\"{s}\" is not a consent value: use opted_in or opted_out"
            )),
        }
    }
}

/// How a consent change came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentSource {
    /// The person texted a keyword.
    Keyword,
    /// Someone changed it in the dashboard.
    Admin,
    Api,
    Import,
    /// The provider told us (e.g. Twilio 21610: the recipient unsubscribed).
    Provider,
}

impl ConsentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentSource::Keyword => "keyword",
            ConsentSource::Admin => "admin",
            ConsentSource::Api => "api",
            ConsentSource::Import => "import",
            ConsentSource::Provider => "provider",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ConsentSource::Keyword => "by keyword",
            ConsentSource::Admin => "in the dashboard",
            ConsentSource::Api => "through the API",
            ConsentSource::Import => "by import",
            ConsentSource::Provider => "reported by the provider",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "keyword" => ConsentSource::Keyword,
            "api" => ConsentSource::Api,
            "import" => ConsentSource::Import,
            "provider" => ConsentSource::Provider,
            _ => ConsentSource::Admin,
        }
    }
}

impl fmt::Display for ConsentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_message_keywords_only() {
        for k in OPT_OUT_KEYWORDS {
            assert_eq!(keyword_intent(k), Some(KeywordIntent::OptOut));
            assert_eq!(
                keyword_intent(&k.to_lowercase()),
                Some(KeywordIntent::OptOut)
            );
        }
        assert_eq!(keyword_intent("  Stop.  "), Some(KeywordIntent::OptOut));
        assert_eq!(keyword_intent("unstop"), Some(KeywordIntent::OptIn));
        assert_eq!(keyword_intent("Yes"), Some(KeywordIntent::OptIn));
        assert_eq!(keyword_intent("STOP please"), None);
        assert_eq!(keyword_intent("don't stop"), None);
        assert_eq!(keyword_intent(""), None);
    }

    #[test]
    fn a_simulated_start_never_reverses_an_opt_out() {
        use ConsentStatus::{OptedIn, OptedOut};
        assert!(keyword_may_apply(OptedIn, Some(OptedOut), false));
        assert!(!keyword_may_apply(OptedIn, Some(OptedOut), true));
        assert!(keyword_may_apply(OptedIn, None, true));
        assert!(keyword_may_apply(OptedOut, Some(OptedIn), true));
        assert!(keyword_may_apply(OptedOut, None, true));
    }

    #[test]
    fn consent_values_parse_leniently() {
        assert_eq!(
            "Opted out".parse::<ConsentStatus>(),
            Ok(ConsentStatus::OptedOut)
        );
        assert_eq!("yes".parse::<ConsentStatus>(), Ok(ConsentStatus::OptedIn));
        assert!(
            "maybe"
                .parse::<ConsentStatus>()
                .unwrap_err()
                .contains("maybe")
        );
    }
}
