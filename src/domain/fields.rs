//! Problems with what was typed or sent, by field: the one type that forms, the API and the
//! rules use to say what is wrong and where.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem with one field. `field` names it as the form and the API do: `name`,
/// `settings.auth_token`, `body`, `buttons.1.url`…
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// Every problem found, in the order they were found (the order of the form's fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldProblems(Vec<FieldProblem>);

impl FieldProblems {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem with `field`.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldProblem {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Records a problem unless `field` has one already (where a second would only repeat it).
    pub fn add_first(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        if self.get(&field).is_none() {
            self.add(field, message);
        }
    }

    /// Records the error of a parse result against `field` and passes a value on.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.add(field, message)).ok()
    }

    /// The first problem with `field`, to show next to it.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|p| p.field == field)
            .map(|p| p.message.as_str())
    }

    /// Every problem with `field`.
    pub fn for_field(&self, field: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|p| p.field == field)
            .map(|p| p.message.as_str())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldProblem> {
        self.0.iter()
    }

    pub fn into_vec(self) -> Vec<FieldProblem> {
        self.0
    }

    /// `Ok(value)` when nothing was found, the problems otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, FieldProblems> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Every problem on one line, fields named: for an API error's `message`.
    pub fn summary(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for FieldProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldProblems {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_kept_in_order_and_found_by_field() {
        let mut p = FieldProblems::new();
        assert_eq!(p.check("phone", Ok::<_, String>(1)), Some(1));
        assert!(p.is_empty());
        p.add("name", "Enter a name.");
        p.add("name", "Use at most 200 characters.");
        p.add_first("name", "never kept");
        assert_eq!(p.check::<i32>("phone", Err("Not a number.".into())), None);
        assert_eq!(p.get("name"), Some("Enter a name."));
        assert_eq!(p.for_field("name").len(), 2);
        assert_eq!(p.get("email"), None);
        assert_eq!(
            p.summary(),
            "name: Enter a name.; name: Use at most 200 characters.; phone: Not a number."
        );
        assert_eq!(
            serde_json::to_value(&p).unwrap()[2],
            serde_json::json!({"field": "phone", "message": "Not a number."})
        );
    }
}
