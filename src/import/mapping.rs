//! Which CSV column goes where: fields, attributes, consent. Guessed from the header, shown in a
//! preview, and adjusted by the person importing.

use std::collections::HashSet;

use crate::domain::channel::ChannelKind;
use crate::domain::contact::parse_attribute_key;

use super::records::{FieldValue, RecordReader, sniff_delimiter, truncate};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Ignore,
    Phone,
    Name,
    FirstName,
    LastName,
    Email,
    Language,
    TimeZone,
    Attribute(String),
    Consent(ChannelKind),
}

impl Target {
    /// The value used in forms: `phone`, `attribute`, `consent:sms`...
    pub fn form_value(&self) -> String {
        match self {
            Target::Ignore => "ignore".into(),
            Target::Phone => "phone".into(),
            Target::Name => "name".into(),
            Target::FirstName => "first_name".into(),
            Target::LastName => "last_name".into(),
            Target::Email => "email".into(),
            Target::Language => "language".into(),
            Target::TimeZone => "time_zone".into(),
            Target::Attribute(_) => "attribute".into(),
            Target::Consent(k) => format!("consent:{}", k.as_str()),
        }
    }

    /// Parses a form value; `attribute_name` is used for `attribute`.
    pub fn from_form(value: &str, attribute_name: &str) -> Result<Target, String> {
        Ok(match value {
            "ignore" | "" => Target::Ignore,
            "phone" => Target::Phone,
            "name" => Target::Name,
            "first_name" => Target::FirstName,
            "last_name" => Target::LastName,
            "email" => Target::Email,
            "language" => Target::Language,
            "time_zone" => Target::TimeZone,
            "attribute" => Target::Attribute(parse_attribute_key(attribute_name)?),
            other => match other.strip_prefix("consent:") {
                Some(kind) => Target::Consent(kind.parse()?),
                None => return Err(format!("unknown column target \"{other}\"")),
            },
        })
    }

    pub fn attribute_name(&self) -> Option<&str> {
        match self {
            Target::Attribute(k) => Some(k),
            _ => None,
        }
    }
}

/// The choices a mapping form offers, in order: (form value, label).
pub const CHOICES: [(&str, &str); 13] = [
    ("ignore", "Ignore this column"),
    ("phone", "Phone number"),
    ("name", "Name"),
    ("first_name", "First name (joined into the name)"),
    ("last_name", "Last name (joined into the name)"),
    ("email", "E-mail"),
    ("language", "Language"),
    ("time_zone", "Time zone"),
    ("attribute", "Attribute"),
    ("consent:sms", "Consent: SMS"),
    ("consent:whatsapp", "Consent: WhatsApp"),
    ("consent:viber", "Consent: Viber"),
    ("", ""),
];

fn normalise_header(h: &str) -> String {
    h.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Columns Herald's contact export writes that no import sets (the contact's own timestamps):
/// ignored, so an export imports back as it is.
const EXPORT_ONLY: [&str; 2] = ["createdat", "updatedat"];

/// A first guess from a header cell.
pub fn guess(header: &str) -> Target {
    match normalise_header(header).as_str() {
        "phone" | "phonenumber" | "mobile" | "mobilenumber" | "mobilephone" | "msisdn"
        | "number" | "cell" | "cellphone" | "telephone" | "tel" | "whatsapp" | "whatsappnumber"
        | "e164" => Target::Phone,
        "name" | "fullname" | "contactname" | "customername" | "displayname" => Target::Name,
        "firstname" | "givenname" | "first" | "forename" => Target::FirstName,
        "lastname" | "surname" | "familyname" | "last" => Target::LastName,
        "email" | "emailaddress" | "mail" | "email1" => Target::Email,
        "language" | "lang" | "locale" | "languagecode" => Target::Language,
        "timezone" | "tz" | "zone" => Target::TimeZone,
        "smsconsent" | "consentsms" | "smsoptin" | "smsstatus" => Target::Consent(ChannelKind::Sms),
        "whatsappconsent" | "consentwhatsapp" | "whatsappoptin" => {
            Target::Consent(ChannelKind::Whatsapp)
        }
        "viberconsent" | "consentviber" | "viberoptin" => Target::Consent(ChannelKind::Viber),
        h if EXPORT_ONLY.contains(&h) => Target::Ignore,
        _ => match parse_attribute_key(&sanitise_key(header)) {
            Ok(key) => Target::Attribute(key),
            Err(_) => Target::Ignore,
        },
    }
}

/// A header turned into something that can be an attribute name ("Prix (€)" -> "prix").
pub fn sanitise_key(header: &str) -> String {
    let mut key = String::new();
    for c in header.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            key.push(c);
        } else if !key.ends_with('_') && !key.is_empty() {
            key.push('_');
        }
    }
    key.trim_end_matches('_').to_owned()
}

/// A complete, checked mapping: one target per column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub targets: Vec<Target>,
}

impl Mapping {
    /// Checks that exactly one column is the phone number and no field or attribute is mapped
    /// twice. Errors name the columns.
    pub fn new(targets: Vec<Target>, headers: &[String]) -> Result<Mapping, String> {
        let col = |i: usize| {
            headers
                .get(i)
                .map(|h| format!("column {} (\"{}\")", i + 1, truncate(h, 40)))
                .unwrap_or_else(|| format!("column {}", i + 1))
        };
        let phones: Vec<usize> = targets
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == Target::Phone)
            .map(|(i, _)| i)
            .collect();
        match phones.as_slice() {
            [] => return Err("choose the column that holds the phone number".into()),
            [_] => {}
            [a, b, ..] => {
                return Err(format!(
                    "{} and {} are both mapped to the phone number",
                    col(*a),
                    col(*b)
                ));
            }
        }
        let mut seen: HashSet<String> = HashSet::new();
        for (i, t) in targets.iter().enumerate() {
            if *t == Target::Ignore {
                continue;
            }
            let key = match t {
                Target::Attribute(k) => format!("attribute {k}"),
                other => other.form_value(),
            };
            if !seen.insert(key.clone()) {
                return Err(format!(
                    "{} maps to {key}, which another column already uses",
                    col(i)
                ));
            }
        }
        if seen.contains("name") && (seen.contains("first_name") || seen.contains("last_name")) {
            return Err(
                "map either a full-name column or first/last name columns, not both".into(),
            );
        }
        Ok(Mapping { targets })
    }

    /// The mapping guessed from the header row, for the API (which has no form): headers that
    /// cannot be an attribute name are an error naming the column.
    pub fn from_headers(headers: &[String]) -> Result<Mapping, String> {
        let mut targets = Vec::with_capacity(headers.len());
        for (i, h) in headers.iter().enumerate() {
            let t = guess(h);
            if t == Target::Ignore
                && !h.trim().is_empty()
                && !EXPORT_ONLY.contains(&normalise_header(h).as_str())
            {
                return Err(format!(
                    "column {} (\"{}\") cannot be an attribute name: {}",
                    i + 1,
                    truncate(h, 40),
                    parse_attribute_key(&sanitise_key(h))
                        .err()
                        .unwrap_or_default()
                ));
            }
            targets.push(t);
        }
        Mapping::new(targets, headers)
    }

    pub fn attribute_keys(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter_map(|t| t.attribute_name().map(str::to_owned))
            .collect()
    }
}

/// What the mapping form shows before an import starts.
#[derive(Debug, Clone)]
pub struct Preview {
    pub delimiter: u8,
    pub headers: Vec<String>,
    /// Up to five data rows, cell by cell.
    pub rows: Vec<Vec<String>>,
    pub guesses: Vec<Target>,
    /// The sample is not valid UTF-8.
    pub not_utf8: bool,
}

impl Preview {
    pub fn delimiter_label(&self) -> &'static str {
        match self.delimiter {
            b';' => "semicolon",
            b'\t' => "tab",
            _ => "comma",
        }
    }
}

/// Reads the start of a file (its first kilobytes) for the mapping form.
pub fn preview(sample: &[u8]) -> Result<Preview, String> {
    if sample.iter().all(|b| b.is_ascii_whitespace()) {
        return Err("the file is empty".into());
    }
    let delimiter = sniff_delimiter(sample.strip_prefix(b"\xef\xbb\xbf").unwrap_or(sample));
    let mut reader = RecordReader::new(sample, delimiter);
    let header = reader
        .next_record()
        .map_err(|e| format!("the file could not be read: {e}"))?
        .ok_or("the file is empty")?;
    let mut not_utf8 = false;
    let cell = |f: &FieldValue, not_utf8: &mut bool| match f {
        FieldValue::Text(s) => truncate(crate::csv_out::restore(s), 60),
        FieldValue::NotUtf8(s) => {
            *not_utf8 = true;
            truncate(s, 60)
        }
        FieldValue::TooLong(n) => format!("({n} bytes)"),
    };
    let headers: Vec<String> = header
        .fields
        .iter()
        .map(|f| cell(f, &mut not_utf8))
        .collect();
    let mut rows = Vec::new();
    // The sample may end mid-record: only complete records before the last are shown.
    let mut pending = None;
    while rows.len() < 5 {
        match reader.next_record() {
            Ok(Some(r)) => {
                if let Some(prev) = pending.replace(r) {
                    rows.push(prev);
                }
            }
            _ => break,
        }
    }
    if rows.len() < 5
        && sample.ends_with(b"\n")
        && let Some(last) = pending
    {
        rows.push(last);
    }
    let rows = rows
        .iter()
        .map(|r| r.fields.iter().map(|f| cell(f, &mut not_utf8)).collect())
        .collect();
    let guesses = headers.iter().map(|h| guess(h)).collect();
    Ok(Preview {
        delimiter,
        headers,
        rows,
        guesses,
        not_utf8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_guessed() {
        assert_eq!(guess("Phone Number"), Target::Phone);
        assert_eq!(guess("E-mail"), Target::Email);
        assert_eq!(guess("First Name"), Target::FirstName);
        assert_eq!(guess("Time zone"), Target::TimeZone);
        assert_eq!(guess("SMS consent"), Target::Consent(ChannelKind::Sms));
        assert_eq!(
            guess("Loyalty Tier"),
            Target::Attribute("loyalty_tier".into())
        );
        assert_eq!(guess("Prix (€)"), Target::Attribute("prix".into()));
        assert_eq!(guess("€€€"), Target::Ignore);
    }

    #[test]
    fn a_mapping_needs_exactly_one_phone_and_no_doubles() {
        let h: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert!(
            Mapping::new(vec![Target::Name, Target::Ignore, Target::Email], &h)
                .unwrap_err()
                .contains("phone")
        );
        assert!(
            Mapping::new(vec![Target::Phone, Target::Phone, Target::Email], &h)
                .unwrap_err()
                .contains("column 1 (\"a\") and column 2 (\"b\")")
        );
        let dup = Mapping::new(
            vec![
                Target::Phone,
                Target::Attribute("tier".into()),
                Target::Attribute("tier".into()),
            ],
            &h,
        );
        assert!(dup.unwrap_err().contains("column 3"));
        assert!(Mapping::new(vec![Target::Phone, Target::Name, Target::FirstName], &h).is_err());
        assert!(Mapping::new(vec![Target::Phone, Target::FirstName, Target::LastName], &h).is_ok());
    }

    #[test]
    fn clashing_attribute_names_are_refused_in_forms() {
        let err = Target::from_form("attribute", "Phone").unwrap_err();
        assert!(err.contains("clashes"), "{err}");
        assert_eq!(
            Target::from_form("consent:viber", "").unwrap(),
            Target::Consent(ChannelKind::Viber)
        );
        assert!(Target::from_form("consent:fax", "").is_err());
    }

    #[test]
    fn api_mappings_come_from_headers() {
        let h: Vec<String> = ["mobile", "Name", "tier"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = Mapping::from_headers(&h).unwrap();
        assert_eq!(
            m.targets,
            [
                Target::Phone,
                Target::Name,
                Target::Attribute("tier".into())
            ]
        );
        let bad: Vec<String> = ["phone", "€€"].iter().map(|s| s.to_string()).collect();
        assert!(
            Mapping::from_headers(&bad)
                .unwrap_err()
                .contains("column 2")
        );
    }

    #[test]
    fn previews_show_the_first_rows() {
        let p = preview(b"\xef\xbb\xbfphone;name\n+14155550100;Ada\n+14155550101;Bob\n+1415555")
            .unwrap();
        assert_eq!(p.delimiter, b';');
        assert_eq!(p.headers, ["phone", "name"]);
        assert_eq!(p.rows.len(), 2, "the cut-off last record is not shown");
        assert_eq!(p.guesses, [Target::Phone, Target::Name]);
        assert!(!p.not_utf8);
        assert!(preview(b"  \n").unwrap_err().contains("empty"));
        assert!(preview(b"name\nZo\xeb\n").unwrap().not_utf8);
    }
}
