//! Phone numbers: parsed with libphonenumber's rules (the `phonenumber` crate) at the edge, and
//! carried as an `E164` from then on, never as a bare string.

use std::fmt;
use std::str::FromStr;

use phonenumber::Mode;
use phonenumber::country::Id as CountryId;

/// A valid phone number in E.164 form, e.g. `+14155550100`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

/// The country assumed for numbers written in national form ("020 7946 0018").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultCountry(CountryId);

impl DefaultCountry {
    pub fn parse(code: &str) -> Result<Self, String> {
        CountryId::from_str(code.trim().to_ascii_uppercase().as_str())
            .map(DefaultCountry)
            .map_err(|_| format!("\"{code}\" is not a two-letter country code (e.g. US, GB, DE)"))
    }

    pub fn code(&self) -> &str {
        self.0.as_ref()
    }
}

impl Default for DefaultCountry {
    fn default() -> Self {
        DefaultCountry(CountryId::US)
    }
}

impl E164 {
    /// Parses a number written in international form (`+44 20 7946 0018`, `0044…`) or, failing
    /// that, in the national form of `country`. The error says what is wrong with the input.
    pub fn parse(raw: &str, country: Option<DefaultCountry>) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("the phone number is empty".into());
        }
        if trimmed.chars().count() > 40 {
            return Err(format!(
                "\"{}…\" is too long for a phone number",
                truncate(trimmed, 20)
            ));
        }
        if !trimmed.chars().any(|c| c.is_ascii_digit()) {
            return Err(format!("\"{trimmed}\" has no digits"));
        }
        let international = trimmed.starts_with('+') || trimmed.starts_with("00");
        let normalised;
        let input = if let Some(rest) = trimmed.strip_prefix("00") {
            normalised = format!("+{rest}");
            normalised.as_str()
        } else {
            trimmed
        };
        let region = if international {
            None
        } else {
            country.map(|c| c.0)
        };
        if !international && region.is_none() {
            return Err(format!(
                "\"{trimmed}\" has no country code: write it as +<country code><number>"
            ));
        }
        let parsed = phonenumber::parse(region, input)
            .map_err(|_| format!("\"{trimmed}\" is not a phone number"))?;
        if !phonenumber::is_valid(&parsed) {
            return Err(match (international, country) {
                (false, Some(c)) => {
                    format!("\"{trimmed}\" is not a valid phone number in {}", c.code())
                }
                _ => format!("\"{trimmed}\" is not a valid phone number"),
            });
        }
        Ok(E164(parsed.format().mode(Mode::E164).to_string()))
    }

    /// Wraps a value read back from storage, where only valid E.164 numbers are written.
    pub fn from_trusted(stored: String) -> Self {
        E164(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without `+`, as Infobip and WhatsApp's `wa_id` write them.
    pub fn digits(&self) -> &str {
        self.0.trim_start_matches('+')
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Option<DefaultCountry> {
        Some(DefaultCountry::parse("us").unwrap())
    }

    #[test]
    fn international_and_national_forms_agree() {
        let gb = Some(DefaultCountry::parse("GB").unwrap());
        for (raw, country) in [
            ("+44 20 7946 0018", None),
            ("0044 20 7946 0018", None),
            ("020 7946 0018", gb),
            ("+44 (0)20 7946-0018", None),
        ] {
            assert_eq!(
                E164::parse(raw, country).unwrap().as_str(),
                "+442079460018",
                "{raw}"
            );
        }
        assert_eq!(
            E164::parse("(201) 555-0123", us()).unwrap().as_str(),
            "+12015550123"
        );
        assert_eq!(
            E164::parse("+1 201 555 0123", None).unwrap().digits(),
            "12015550123"
        );
    }

    #[test]
    fn bad_numbers_say_why_with_the_value() {
        assert!(E164::parse("", us()).unwrap_err().contains("empty"));
        assert!(
            E164::parse("call me", us())
                .unwrap_err()
                .contains("no digits")
        );
        assert!(
            E164::parse("+1 555 0100", None)
                .unwrap_err()
                .contains("\"+1 555 0100\" is not a valid phone number")
        );
        assert!(E164::parse("12345", us()).unwrap_err().contains("in US"));
        assert!(
            E164::parse("2015550123", None)
                .unwrap_err()
                .contains("no country code")
        );
        assert!(
            E164::parse(&"9".repeat(60), us())
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn country_codes_are_checked() {
        assert_eq!(DefaultCountry::parse("de").unwrap().code(), "DE");
        assert!(DefaultCountry::parse("XX").is_err());
        assert!(
            DefaultCountry::parse("Germany")
                .unwrap_err()
                .contains("Germany")
        );
    }
}
