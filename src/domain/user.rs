//! People who sign in to Herald: e-mail, display name and the password policy.

use std::fmt;
use std::str::FromStr;

/// A normalised (trimmed, lower-cased) e-mail address, used as the sign-in name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("Enter an e-mail address.".into());
        }
        if trimmed.len() > 254 {
            return Err("An e-mail address has at most 254 characters.".into());
        }
        match email_address::EmailAddress::from_str(trimmed) {
            Ok(_) if trimmed.contains('@') && !trimmed.contains(['<', '>', ' ']) => {
                Ok(Email(trimmed.to_lowercase()))
            }
            _ => Err(format!("\"{trimmed}\" is not a valid e-mail address.")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person's (or an API key's) display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("Enter a name.".into());
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(format!(
                "A name has at most {} characters.",
                Self::MAX_CHARS
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("A name cannot contain control characters.".into());
        }
        Ok(DisplayName(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A password that meets the policy; the plain text never leaves this type except to be hashed.
pub struct NewPassword(String);

impl NewPassword {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str, email: Option<&Email>) -> Result<Self, String> {
        let count = raw.chars().count();
        if count < Self::MIN_CHARS {
            return Err(format!(
                "Use at least {} characters (this one has {count}).",
                Self::MIN_CHARS
            ));
        }
        if count > Self::MAX_CHARS {
            return Err(format!("Use at most {} characters.", Self::MAX_CHARS));
        }
        if raw.trim().is_empty() {
            return Err("A password cannot be only spaces.".into());
        }
        if email.is_some_and(|e| raw.trim().eq_ignore_ascii_case(e.as_str())) {
            return Err("The password cannot be the e-mail address.".into());
        }
        Ok(NewPassword(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn bad_emails_are_rejected_with_the_value() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "<a@b.c>",
        ] {
            let err = Email::parse(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(Email::parse("nope").unwrap_err().contains("\"nope\""));
    }

    #[test]
    fn names_are_bounded() {
        assert!(DisplayName::parse("  ").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse("tab\there").is_err());
        assert_eq!(DisplayName::parse(" Zoë ").unwrap().as_str(), "Zoë");
    }

    #[test]
    fn password_policy() {
        let email = Email::parse("ada@example.com").unwrap();
        assert!(
            NewPassword::parse("short", None)
                .unwrap_err()
                .contains("has 5")
        );
        assert!(NewPassword::parse(&"x".repeat(129), None).is_err());
        assert!(NewPassword::parse("          ", None).is_err());
        assert!(NewPassword::parse("ADA@example.com", Some(&email)).is_err());
        assert!(NewPassword::parse("correct horse battery", Some(&email)).is_ok());
        assert_eq!(
            format!("{:?}", NewPassword::parse("0123456789", None).unwrap()),
            "NewPassword(***)"
        );
    }
}
