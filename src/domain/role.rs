//! Roles and what each may do: the one permission table every handler and API route consults.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    SupportLead,
    Marketer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::SupportLead, Role::Marketer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::SupportLead => "support_lead",
            Role::Marketer => "marketer",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Admin => "Admin",
            Role::SupportLead => "Support lead",
            Role::Marketer => "Marketer",
        }
    }

    /// The permission table. Everything a role may do is listed here and nowhere else.
    pub fn can(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::SupportLead => matches!(
                permission,
                ViewDashboard
                    | ViewChannels
                    | ViewContacts
                    | ManageContacts
                    | ViewTemplates
                    | DraftTemplates
                    | ReviewTemplates
                    | SendMessages
                    | ViewBroadcasts
                    | ApproveBroadcasts
            ),
            Role::Marketer => matches!(
                permission,
                ViewDashboard
                    | ViewChannels
                    | ViewContacts
                    | ManageContacts
                    | ImportContacts
                    | ViewTemplates
                    | DraftTemplates
                    | SendMessages
                    | ViewBroadcasts
                    | ManageBroadcasts
            ),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role \"{0}\": expected admin, support_lead or marketer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' '], "_")
            .as_str()
        {
            "admin" => Ok(Role::Admin),
            "support_lead" => Ok(Role::SupportLead),
            "marketer" => Ok(Role::Marketer),
            _ => Err(UnknownRole(s.to_owned())),
        }
    }
}

/// A permission as a type, so a handler's signature says what it needs (`Auth<perm::ManageUsers>`
/// in the web layer).
pub trait Permit {
    const PERMISSION: Permission;
}

/// Declares the `Permission` enum, the words for each, and one marker type per permission in
/// `perm`, from one list.
macro_rules! permissions {
    ($($name:ident => $words:literal),* $(,)?) => {
        /// Things a person or an API key may be allowed to do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Permission {
            $($name),*
        }

        impl Permission {
            /// Words for "you may not ..." messages.
            pub fn describe(self) -> &'static str {
                match self {
                    $(Permission::$name => $words),*
                }
            }
        }

        /// One marker type per `Permission`.
        pub mod perm {
            $(
                pub struct $name;
                impl super::Permit for $name {
                    const PERMISSION: super::Permission = super::Permission::$name;
                }
            )*
        }
    };
}

permissions! {
    ViewDashboard => "view the dashboard",
    ViewChannels => "view channels",
    ManageChannels => "manage channels",
    ViewContacts => "view contacts",
    ManageContacts => "change contacts",
    ImportContacts => "import contacts",
    ViewTemplates => "view templates",
    DraftTemplates => "draft templates",
    ReviewTemplates => "approve or reject templates",
    SendMessages => "send messages",
    ViewBroadcasts => "view broadcasts",
    ManageBroadcasts => "create or change broadcasts",
    ApproveBroadcasts => "approve broadcast launches",
    ViewHistory => "view the send history",
    ResendMessages => "resend messages",
    ManageUsers => "manage users",
    ManageApiKeys => "manage API keys",
    ViewAuditLog => "view the audit log",
    // Issue 18: the retention setting (admins).
    ManageRetention => "change how long message content is kept",
    // Issue 19: status callbacks (admins).
    ManageWebhooks => "manage webhook endpoints",
    // Issue 20: triggers and reminder rules (admins).
    ManageAutomations => "manage triggers and reminder rules",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!("Support lead".parse::<Role>(), Ok(Role::SupportLead));
        assert_eq!("support-lead".parse::<Role>(), Ok(Role::SupportLead));
        assert!("owner".parse::<Role>().is_err());
    }

    #[test]
    fn only_admins_manage_people_keys_and_channels() {
        for p in [
            Permission::ManageUsers,
            Permission::ManageApiKeys,
            Permission::ManageChannels,
            Permission::ViewAuditLog,
            Permission::ViewHistory,
            Permission::ManageRetention,
            Permission::ManageWebhooks,
            Permission::ManageAutomations,
        ] {
            assert!(Role::Admin.can(p));
            assert!(!Role::SupportLead.can(p), "{p:?}");
            assert!(!Role::Marketer.can(p), "{p:?}");
        }
    }

    #[test]
    fn review_and_broadcasts_are_split_between_leads_and_marketers() {
        assert!(Role::SupportLead.can(Permission::ReviewTemplates));
        assert!(!Role::Marketer.can(Permission::ReviewTemplates));
        assert!(Role::Marketer.can(Permission::ManageBroadcasts));
        assert!(!Role::SupportLead.can(Permission::ManageBroadcasts));
        for role in Role::ALL {
            assert!(role.can(Permission::SendMessages));
            assert!(role.can(Permission::DraftTemplates));
        }
    }
}
