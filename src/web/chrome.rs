//! What every page's layout needs: the signed-in person, navigation, the CSRF token, flash
//! messages, and whether htmx asked for a partial (content only) or a full page.

use std::future::{Ready, ready};

use actix_session::SessionExt;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::domain::role::Permission;
use crate::web::assets::{AssetUrls, URLS};
use crate::web::identity::{CurrentUser, Identity};
use crate::web::session::{Flash, TypedSession};
use crate::web::{is_htmx, paths};

pub struct Chrome {
    pub user: Option<CurrentUser>,
    pub csrf: String,
    /// Flash messages are taken from the session only when a page is rendered, so that a
    /// handler that fails or redirects does not swallow them.
    session: TypedSession,
    /// htmx asked for the page (boosted navigation): send the content without the shell.
    pub partial: bool,
    pub path: String,
    pub assets: &'static AssetUrls,
}

pub struct NavItem {
    pub label: &'static str,
    pub href: &'static str,
    pub active: bool,
}

struct Area {
    label: &'static str,
    href: &'static str,
    needs: Permission,
}

const MAIN: &[Area] = &[
    Area {
        label: "Dashboard",
        href: paths::HOME,
        needs: Permission::ViewDashboard,
    },
    Area {
        label: "Contacts",
        href: "/contacts",
        needs: Permission::ViewContacts,
    },
    Area {
        label: "Templates",
        href: "/templates",
        needs: Permission::ViewTemplates,
    },
    Area {
        label: "Send",
        href: "/send",
        needs: Permission::SendMessages,
    },
    Area {
        label: "Broadcasts",
        href: "/broadcasts",
        needs: Permission::ViewBroadcasts,
    },
    // Issue 20: triggers (and reminder rules).
    Area {
        label: "Automations",
        href: paths::AUTOMATIONS,
        needs: Permission::ManageAutomations,
    },
    Area {
        label: "History",
        href: "/history",
        needs: Permission::ViewHistory,
    },
];

const SETTINGS: &[Area] = &[
    Area {
        label: "Channels",
        href: paths::CHANNELS,
        needs: Permission::ManageChannels,
    },
    Area {
        label: "Users",
        href: paths::USERS,
        needs: Permission::ManageUsers,
    },
    Area {
        label: "API keys",
        href: paths::API_KEYS,
        needs: Permission::ManageApiKeys,
    },
    Area {
        label: "Webhooks",
        href: paths::WEBHOOKS,
        needs: Permission::ManageWebhooks,
    },
    Area {
        label: "Audit log",
        href: paths::AUDIT,
        needs: Permission::ViewAuditLog,
    },
    // Issue 18: retention.
    Area {
        label: "Retention",
        href: paths::RETENTION,
        needs: Permission::ManageRetention,
    },
    // Issue 19: the API reference (anyone signed in).
    Area {
        label: "API reference",
        href: paths::API_REFERENCE,
        needs: Permission::ViewDashboard,
    },
];

/// Areas whose pages exist in this build; the others show in the navigation as coming.
pub fn area_is_built(_href: &str) -> bool {
    true
}

impl Chrome {
    fn items(&self, areas: &[Area]) -> Vec<NavItem> {
        let Some(user) = &self.user else {
            return Vec::new();
        };
        areas
            .iter()
            .filter(|a| user.can(a.needs))
            .map(|a| NavItem {
                label: a.label,
                href: a.href,
                active: if a.href == paths::HOME {
                    self.path == paths::HOME
                } else {
                    self.path.starts_with(a.href)
                },
            })
            .collect()
    }

    pub fn nav(&self) -> Vec<NavItem> {
        self.items(MAIN)
    }

    pub fn settings_nav(&self) -> Vec<NavItem> {
        self.items(SETTINGS)
    }

    pub fn is_built(&self, item: &NavItem) -> bool {
        area_is_built(item.href)
    }

    pub fn flashes(&self) -> Vec<Flash> {
        self.session.take_flashes()
    }

    pub fn signed_in(&self) -> bool {
        self.user.is_some()
    }

    pub fn from_request_parts(req: &HttpRequest) -> Chrome {
        let session = TypedSession::new(req.get_session());
        let history_restore = req.headers().contains_key("HX-History-Restore-Request");
        Chrome {
            user: req.extensions().get::<Identity>().and_then(|i| i.0.clone()),
            csrf: session.csrf_token(),
            session,
            partial: is_htmx(req) && !history_restore,
            path: req.path().to_owned(),
            assets: &URLS,
        }
    }
}

impl FromRequest for Chrome {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Chrome::from_request_parts(req)))
    }
}
