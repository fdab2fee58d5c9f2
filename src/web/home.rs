//! The dashboard: the channels at hand and, for admins, what is left to set up.

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::domain::role::{Permission, Role};
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::channels::{self, Channel};
use crate::storage::{api_keys, users};
use crate::web::chrome::Chrome;
use crate::web::identity::{Auth, perm};
use crate::web::render;

pub struct SetupStep {
    pub done: bool,
    pub text: &'static str,
    pub href: &'static str,
}

#[derive(Template)]
#[template(path = "home.html")]
struct Dashboard {
    chrome: Chrome,
    first_name: String,
    channels: Vec<Channel>,
    all_sandbox: bool,
    steps: Vec<SetupStep>,
    can_manage_channels: bool,
}

pub async fn dashboard(
    auth: Auth<perm::ViewDashboard>,
    state: web::Data<AppState>,
    chrome: Chrome,
) -> Result<HttpResponse, AppError> {
    let role = auth.principal.role();
    let (channels, steps) = state
        .db
        .run(move |conn| {
            let channels = channels::list(conn)?;
            let mut steps = Vec::new();
            if role == Role::Admin {
                let people = users::list(conn)?;
                let has_role = |r: Role| people.iter().any(|u| u.role == r && u.is_active());
                steps = vec![
                    SetupStep {
                        done: has_role(Role::Marketer),
                        text: "Invite a marketer",
                        href: crate::web::paths::USERS,
                    },
                    SetupStep {
                        done: has_role(Role::SupportLead),
                        text: "Invite a support lead to review templates",
                        href: crate::web::paths::USERS,
                    },
                    SetupStep {
                        // Ticked once a real account answered "Test connection", not on adding.
                        done: channels
                            .iter()
                            .any(|c| !c.is_sandbox() && c.tested_ok_at.is_some()),
                        text: "Connect a real WhatsApp, SMS or Viber account",
                        href: crate::web::paths::CHANNELS,
                    },
                    SetupStep {
                        done: !api_keys::list(conn)?.is_empty(),
                        text: "Create an API key for your own systems",
                        href: crate::web::paths::API_KEYS,
                    },
                ];
            }
            Ok::<_, AppError>((channels, steps))
        })
        .await?;
    let first_name = auth
        .user()
        .and_then(|u| u.name.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    render(&Dashboard {
        chrome,
        first_name,
        all_sandbox: channels.iter().all(Channel::is_sandbox),
        channels,
        steps,
        can_manage_channels: role.can(Permission::ManageChannels),
    })
}
