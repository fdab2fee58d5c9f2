//! Who did something, for the audit log.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User,
    ApiKey,
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::ApiKey => "api_key",
            ActorKind::System => "system",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "user" => ActorKind::User,
            "api_key" => ActorKind::ApiKey,
            _ => ActorKind::System,
        }
    }
}

/// The person, API key or background task behind an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<i64>,
    /// A readable name kept with the entry, so the log still reads well after renames.
    pub label: String,
}

impl Actor {
    pub fn system(label: &str) -> Self {
        Actor {
            kind: ActorKind::System,
            id: None,
            label: label.to_owned(),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}
