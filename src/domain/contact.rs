//! Contact fields and attributes: what a valid contact looks like, whoever writes it (the
//! contact form, the API, a CSV import).

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::domain::user::Email;

/// The fields every contact has, by the names forms, the API and CSV mappings use.
pub const FIELDS: [&str; 5] = ["phone", "name", "email", "language", "time_zone"];

/// Names an attribute may not take: the fields and what the API returns beside them.
const RESERVED: [&str; 12] = [
    "phone",
    "name",
    "email",
    "language",
    "time_zone",
    "timezone",
    "id",
    "created_at",
    "updated_at",
    "lists",
    "consent",
    "channels",
];

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_ATTRIBUTES: usize = 100;
pub const MAX_ATTRIBUTE_KEY_CHARS: usize = 64;
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 1000;

pub fn parse_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("a name has at most {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("a name cannot contain control characters (tabs, line breaks)".into());
    }
    Ok(name.to_owned())
}

/// An e-mail address, or "" for none.
pub fn parse_email(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() {
        return Ok(String::new());
    }
    Email::parse(raw).map(Email::into_inner)
}

/// A language code like `en`, `pt_BR` or `es-419`, normalised to `pt_BR` form, or "" for none.
pub fn parse_language(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    let mut parts = raw.split(['_', '-']);
    let lang = parts.next().unwrap_or_default();
    let region = parts.next();
    let lang_ok = (2..=3).contains(&lang.len()) && lang.chars().all(|c| c.is_ascii_alphabetic());
    let region_ok = region.is_none_or(|r| {
        (r.len() == 2 && r.chars().all(|c| c.is_ascii_alphabetic()))
            || (r.len() == 3 && r.chars().all(|c| c.is_ascii_digit()))
            || (r.len() == 4 && r.chars().all(|c| c.is_ascii_alphabetic()))
    });
    if !lang_ok || !region_ok || parts.next().is_some() {
        return Err(format!(
            "\"{raw}\" is not a language code (e.g. en, en_US, pt_BR)"
        ));
    }
    Ok(match region {
        Some(r) if r.len() == 4 => format!(
            "{}_{}{}",
            lang.to_lowercase(),
            &r[..1].to_uppercase(),
            r[1..].to_lowercase()
        ),
        Some(r) => format!("{}_{}", lang.to_lowercase(), r.to_uppercase()),
        None => lang.to_lowercase(),
    })
}

/// An IANA time zone like `Europe/Paris` (case-insensitive), or "" for none.
pub fn parse_time_zone(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    chrono_tz::Tz::from_str_insensitive(raw)
        .map(|tz| tz.name().to_owned())
        .map_err(|_| {
            format!("\"{raw}\" is not an IANA time zone (e.g. Europe/Paris, America/New_York)")
        })
}

/// An attribute name: lowercase letters, digits and underscores ("Loyalty Tier" becomes
/// `loyalty_tier`), not one of the contact's own fields.
pub fn parse_attribute_key(raw: &str) -> Result<String, String> {
    let key: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c == ' ' || c == '-' || c == '.' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if key.is_empty() {
        return Err("an attribute needs a name".into());
    }
    if key.chars().count() > MAX_ATTRIBUTE_KEY_CHARS {
        return Err(format!(
            "attribute names have at most {MAX_ATTRIBUTE_KEY_CHARS} characters"
        ));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "attribute \"{}\" may only use letters a-z, digits and underscores",
            raw.trim()
        ));
    }
    if RESERVED.contains(&key.as_str()) {
        return Err(format!(
            "attribute \"{}\" clashes with the contact's own {key} field; map the column to the field or rename it",
            raw.trim()
        ));
    }
    Ok(key)
}

pub fn parse_attribute_value(key: &str, raw: &str) -> Result<String, String> {
    let value = raw.trim();
    if value.chars().count() > MAX_ATTRIBUTE_VALUE_CHARS {
        return Err(format!(
            "attribute {key} has more than {MAX_ATTRIBUTE_VALUE_CHARS} characters"
        ));
    }
    Ok(value.to_owned())
}

/// Attributes as stored: a JSON object of strings.
pub type Attributes = BTreeMap<String, String>;

pub fn attributes_from_json(json: &str) -> Attributes {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
        .map(|map| {
            map.into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn attributes_to_json(attributes: &Attributes) -> String {
    serde_json::to_string(attributes).unwrap_or_else(|_| "{}".into())
}

/// Checks a whole set of attributes (names, values, how many).
pub fn parse_attributes<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Attributes, String> {
    let mut out = Attributes::new();
    for (k, v) in pairs {
        let key = parse_attribute_key(k)?;
        let value = parse_attribute_value(&key, v)?;
        out.insert(key, value);
    }
    if out.len() > MAX_ATTRIBUTES {
        return Err(format!("a contact has at most {MAX_ATTRIBUTES} attributes"));
    }
    Ok(out)
}

/// A contact field named in a form, API call or CSV mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Phone,
    Name,
    Email,
    Language,
    TimeZone,
}

impl FromStr for Field {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "phone" => Ok(Field::Phone),
            "name" => Ok(Field::Name),
            "email" => Ok(Field::Email),
            "language" => Ok(Field::Language),
            "time_zone" => Ok(Field::TimeZone),
            _ => Err(format!("unknown contact field \"{s}\"")),
        }
    }
}

/// Text as contact search compares it: compatibility-decomposed (NFKD), without combining
/// marks, lower-cased, with the letters that carry their accent inside them (no decomposition:
/// ł, ø, đ, ß...) spelled as people type them without it. "Łukasz", "ŁUKASZ" and "lukasz" fold
/// alike, "MÜLLER" to "muller", "Zoë" to "zoe", "ΣΩΚΡΆΤΗΣ" and "σωκράτης" to "σωκρατησ".
/// Stored beside each contact (`contacts.search_text`) and applied to every query, so both
/// databases compare folded text byte for byte, whatever their collation.
pub fn fold_for_search(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    use unicode_normalization::char::is_combining_mark;

    let mut out = String::with_capacity(text.len());
    for c in text.nfkd().filter(|c| !is_combining_mark(*c)) {
        for lower in c.to_lowercase() {
            match lower {
                // Final sigma is a position, not a letter.
                'ς' => out.push('σ'),
                'ł' => out.push('l'),
                'ø' => out.push('o'),
                'đ' | 'ð' => out.push('d'),
                'ħ' => out.push('h'),
                'ı' => out.push('i'),
                'ŧ' => out.push('t'),
                'ß' => out.push_str("ss"),
                'æ' => out.push_str("ae"),
                'œ' => out.push_str("oe"),
                'þ' => out.push_str("th"),
                other => out.push(other),
            }
        }
    }
    out
}

/// What a contact is found by besides its phone number: its name, e-mail and attribute values,
/// folded, one per line (so that no query, which has no line break, matches across two).
pub fn search_text<'a>(
    name: &str,
    email: &str,
    attribute_values: impl IntoIterator<Item = &'a String>,
) -> String {
    fn add(text: &mut String, part: &str) {
        if !part.is_empty() {
            text.push('\n');
            text.push_str(&fold_for_search(part));
        }
    }
    let mut text = fold_for_search(name);
    add(&mut text, email);
    for value in attribute_values {
        add(&mut text, value);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_folds_case_and_accents_in_every_script() {
        assert_eq!(fold_for_search("Łukasz"), "lukasz");
        assert_eq!(fold_for_search("łukasz"), fold_for_search("ŁUKASZ"));
        assert_eq!(fold_for_search("MÜLLER"), "muller");
        assert_eq!(fold_for_search("Müller"), "muller");
        assert_eq!(fold_for_search("Zoë"), "zoe");
        // Decomposed input (e + combining diaeresis) folds as the composed letter does.
        assert_eq!(fold_for_search("Zoe\u{308}"), "zoe");
        assert_eq!(fold_for_search("ΣΩΚΡΆΤΗΣ"), fold_for_search("σωκράτης"));
        assert_eq!(fold_for_search("σωκράτης"), "σωκρατησ");
        assert_eq!(fold_for_search("Straße"), "strasse");
        assert_eq!(fold_for_search("İSTANBUL"), "istanbul");
        assert_eq!(fold_for_search("ÆRØ"), "aero");
        assert_eq!(fold_for_search("Дмитрий"), "дмитрии");
        assert_eq!(fold_for_search("ＦＵＬＬ ｗｉｄｔｈ"), "full width");
        // Scripts without case pass through, as do digits and punctuation.
        assert_eq!(fold_for_search("山田 #42"), "山田 #42");
    }

    #[test]
    fn search_text_keeps_fields_apart() {
        let attrs = [String::from("Kraków"), String::new(), String::from("VIP")];
        assert_eq!(
            search_text("Anna Müller", "ANNA@example.com", &attrs),
            "anna muller\nanna@example.com\nkrakow\nvip"
        );
        assert_eq!(search_text("", "", &[]), "");
    }

    #[test]
    fn languages_normalise() {
        assert_eq!(parse_language("EN").unwrap(), "en");
        assert_eq!(parse_language("pt-br").unwrap(), "pt_BR");
        assert_eq!(parse_language("es_419").unwrap(), "es_419");
        assert_eq!(parse_language("zh-hant").unwrap(), "zh_Hant");
        assert_eq!(parse_language(" ").unwrap(), "");
        assert!(
            parse_language("english")
                .unwrap_err()
                .contains("\"english\"")
        );
        assert!(parse_language("en_US_x").is_err());
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(parse_time_zone("europe/paris").unwrap(), "Europe/Paris");
        assert_eq!(parse_time_zone("").unwrap(), "");
        assert!(parse_time_zone("CET+1").unwrap_err().contains("IANA"));
    }

    #[test]
    fn attribute_keys_are_normalised_and_must_not_clash() {
        assert_eq!(
            parse_attribute_key(" Loyalty Tier ").unwrap(),
            "loyalty_tier"
        );
        assert_eq!(parse_attribute_key("order-count").unwrap(), "order_count");
        assert!(
            parse_attribute_key("Phone")
                .unwrap_err()
                .contains("clashes with the contact's own phone field")
        );
        assert!(
            parse_attribute_key("Time Zone")
                .unwrap_err()
                .contains("clashes")
        );
        assert!(
            parse_attribute_key("prix€")
                .unwrap_err()
                .contains("letters a-z")
        );
        assert!(parse_attribute_key("").is_err());
        assert!(parse_attribute_key(&"k".repeat(65)).is_err());
    }

    #[test]
    fn attributes_round_trip_through_json() {
        let attrs = parse_attributes([("Tier", "gold"), ("city", " Lyon ")]).unwrap();
        assert_eq!(attrs["tier"], "gold");
        assert_eq!(attrs["city"], "Lyon");
        assert_eq!(attributes_from_json(&attributes_to_json(&attrs)), attrs);
        assert_eq!(attributes_from_json("{\"n\": 3}")["n"], "3");
        assert!(attributes_from_json("not json").is_empty());
        let too_many: Vec<(String, String)> = (0..101)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(parse_attributes(too_many.iter().map(|(k, v)| (k.as_str(), v.as_str()))).is_err());
    }

    #[test]
    fn names_and_emails() {
        assert_eq!(parse_name("  Zoë Müller ").unwrap(), "Zoë Müller");
        assert!(parse_name("a\tb").is_err());
        assert_eq!(parse_email("").unwrap(), "");
        assert_eq!(parse_email("A@B.co").unwrap(), "a@b.co");
        assert!(parse_email("nope").is_err());
    }
}
