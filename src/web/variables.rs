//! A template's variables as a form fills them in, one row per placeholder ("Variable / From /
//! Field / Text or fallback", `templates/_variable_rows.html`), posted as
//! `var.<name>.source|key|text`; and a mapping in words for a page that shows it. The
//! broadcast composer and the reminder rule form share them.

use crate::domain::template::{VariableMapping, VariableSource};

/// One variable of the chosen template, as the form shows and posts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VarRow {
    pub name: String,
    /// `field`, `fallback` or `fixed`.
    pub source: String,
    /// The contact field or attribute (`field`, `fallback`).
    pub key: String,
    /// The text (`fixed`) or the fallback (`fallback`).
    pub text: String,
}

impl VarRow {
    /// A row nothing was chosen for yet: `{{1}}` from the contact's name, the others from a
    /// field still to choose.
    pub fn blank(name: &str) -> Self {
        VarRow {
            name: name.to_owned(),
            source: "field".into(),
            key: if name == "1" {
                "name".into()
            } else {
                String::new()
            },
            text: String::new(),
        }
    }

    /// The row for a variable's source as saved.
    pub fn of(name: &str, source: &VariableSource) -> Self {
        let (source, key, text) = match source {
            VariableSource::Attribute { key } => ("field", key.clone(), String::new()),
            VariableSource::AttributeWithFallback { key, fallback } => {
                ("fallback", key.clone(), fallback.clone())
            }
            VariableSource::Fixed { text } => ("fixed", String::new(), text.clone()),
        };
        VarRow {
            name: name.to_owned(),
            source: source.into(),
            key,
            text,
        }
    }

    /// Where the row says the value comes from.
    pub fn source(&self) -> VariableSource {
        match self.source.as_str() {
            "fixed" => VariableSource::Fixed {
                text: self.text.clone(),
            },
            "fallback" => VariableSource::AttributeWithFallback {
                key: self.key.clone(),
                fallback: self.text.clone(),
            },
            _ => VariableSource::Attribute {
                key: self.key.clone(),
            },
        }
    }
}

/// The rows among a form's fields (`var.<name>.source`, `.key`, `.text`), by name.
pub fn read<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<VarRow> {
    let mut rows: Vec<VarRow> = Vec::new();
    for (k, v) in pairs {
        let Some((name, part)) = k
            .strip_prefix("var.")
            .and_then(|rest| rest.rsplit_once('.'))
        else {
            continue;
        };
        let at = match rows.iter().position(|r| r.name == name) {
            Some(at) => at,
            None => {
                rows.push(VarRow {
                    name: name.to_owned(),
                    ..VarRow::default()
                });
                rows.len() - 1
            }
        };
        let row = &mut rows[at];
        match part {
            "source" => row.source = v.to_owned(),
            "key" => row.key = v.trim().to_owned(),
            "text" => row.text = v.to_owned(),
            _ => {}
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// The rows of a saved mapping.
pub fn rows_of(mapping: &VariableMapping) -> Vec<VarRow> {
    mapping.iter().map(|(n, s)| VarRow::of(n, s)).collect()
}

/// The mapping the rows ask for.
pub fn mapping(rows: &[VarRow]) -> VariableMapping {
    rows.iter().map(|r| (r.name.clone(), r.source())).collect()
}

/// One row per placeholder of the chosen template, in its order, keeping what was typed for
/// a name (rows of another template's placeholders are dropped).
pub fn for_placeholders(names: &[String], typed: &[VarRow]) -> Vec<VarRow> {
    names
        .iter()
        .map(|name| {
            typed
                .iter()
                .find(|v| &v.name == name)
                .cloned()
                .unwrap_or_else(|| VarRow::blank(name))
        })
        .collect()
}

/// What the Field column offers as (value, label): the CSV's columns (`column:<name>`), the
/// contact fields and attributes (`attributes.` left off) that can fill a variable, and any
/// other key a row has (made through the API, or an attribute no contact has yet).
pub fn key_choices(
    columns: &[String],
    fields: &[String],
    rows: &[VarRow],
) -> Vec<(String, String)> {
    let columns = columns
        .iter()
        .map(|c| (format!("column:{c}"), format!("CSV column: {c}")));
    let fields = fields
        .iter()
        .filter(|f| {
            !["consent", "window", "last_", "created_at"]
                .iter()
                .any(|p| f.starts_with(p))
        })
        .map(|f| (f.trim_start_matches("attributes.").to_owned(), f.clone()));
    let mut keys: Vec<(String, String)> = columns.chain(fields).collect();
    for r in rows {
        if !r.key.is_empty() && !keys.iter().any(|(k, _)| *k == r.key) {
            keys.push((r.key.clone(), r.key.clone()));
        }
    }
    keys
}

/// A variable's source in words: `{{1}}: contact attribute name, else "there"`.
pub fn words(name: &str, source: &VariableSource) -> String {
    let from = match source {
        VariableSource::Attribute { key } => format!("contact attribute {key}"),
        VariableSource::AttributeWithFallback { key, fallback } => {
            format!("contact attribute {key}, else \"{fallback}\"")
        }
        VariableSource::Fixed { text } => format!("always \"{text}\""),
    };
    format!("{{{{{name}}}}}: {from}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posted_rows_read_back_as_the_mapping_they_show() {
        let rows = read([
            ("name", "Day before"),
            ("var.2.source", "fixed"),
            ("var.2.text", "Dr Who"),
            ("var.1.source", "fallback"),
            ("var.1.key", " name "),
            ("var.1.text", "there"),
            ("var.3.key", "city"),
        ]);
        assert_eq!(
            rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["1", "2", "3"]
        );
        let m = mapping(&rows);
        assert_eq!(
            m.get("1"),
            Some(&VariableSource::AttributeWithFallback {
                key: "name".into(),
                fallback: "there".into()
            })
        );
        assert_eq!(
            m.get("3"),
            Some(&VariableSource::Attribute { key: "city".into() })
        );
        assert_eq!(rows_of(&m), rows_of(&mapping(&rows_of(&m))));
        assert_eq!(mapping(&rows_of(&m)), m);
    }

    #[test]
    fn rows_follow_the_templates_placeholders_keeping_what_was_typed() {
        let typed = vec![VarRow {
            name: "2".into(),
            source: "fixed".into(),
            key: String::new(),
            text: "Dr Who".into(),
        }];
        let rows = for_placeholders(&["1".into(), "2".into()], &typed);
        assert_eq!(rows[0], VarRow::blank("1"));
        assert_eq!(rows[0].key, "name");
        assert_eq!(rows[1], typed[0]);
        assert!(
            for_placeholders(&["first".into()], &typed)[0]
                .key
                .is_empty()
        );
    }

    #[test]
    fn a_mapping_reads_as_words() {
        let fallback = VariableSource::AttributeWithFallback {
            key: "name".into(),
            fallback: "there".into(),
        };
        assert_eq!(
            words("1", &fallback),
            "{{1}}: contact attribute name, else \"there\""
        );
        assert_eq!(
            words("2", &VariableSource::Fixed { text: "Dr".into() }),
            "{{2}}: always \"Dr\""
        );
    }

    #[test]
    fn the_field_column_offers_columns_then_fields_that_hold_values() {
        let mut typed = VarRow::blank("1");
        typed.key = "nickname".into();
        let keys = key_choices(
            &["ref".into()],
            &["name".into(), "consent".into(), "attributes.city".into()],
            &[typed, VarRow::blank("2")],
        );
        assert_eq!(
            keys,
            [
                ("column:ref".to_owned(), "CSV column: ref".to_owned()),
                ("name".to_owned(), "name".to_owned()),
                ("city".to_owned(), "attributes.city".to_owned()),
                ("nickname".to_owned(), "nickname".to_owned()),
            ]
        );
    }
}
