//! Templates: the list with its filters, the form per kind of channel with a live preview, the
//! template page (versions, status, review actions, history), and the review workflow's
//! buttons. Every change is a call of `service::templates`; these modules parse, call and
//! render. Shared here: the words for stages and reviewers, and who is acting.

mod form;
mod list;
mod page;
mod review;

pub use form::{create, edit_form, new_form, preview, update};
pub use list::index;
pub use page::{show, status};
pub use review::{approve, author_action, reject, resubmit, sync};

use crate::domain::channel::{ChannelKind, Provider};
use crate::domain::template::{Reviewer, TemplateStage};
use crate::error::AppError;
use crate::storage::channels::Channel;
use crate::web::identity::{Auth, CurrentUser};

pub const PATH: &str = "/templates";

/// Who reviews templates for this channel, in words: "Meta", "Viber", "the sandbox"; empty
/// for SMS, which only Herald reviews.
pub fn reviewer_name(channel: &Channel) -> &'static str {
    match (channel.kind, channel.provider) {
        (ChannelKind::Sms, _) => "",
        (_, Provider::Sandbox) => "the sandbox",
        (ChannelKind::Whatsapp, _) => "Meta",
        (ChannelKind::Viber, _) => "Viber",
    }
}

/// How long the provider's review takes, when known, as a sentence.
fn review_time(channel: &Channel) -> String {
    match (channel.kind, channel.provider) {
        (ChannelKind::Sms, _) => String::new(),
        (_, Provider::Sandbox) => {
            // The sandbox's own delay, as its settings say.
            let delay = serde_json::from_str(&channel.settings)
                .ok()
                .and_then(|s| crate::channels::sandbox::SandboxSettings::from_json(&s).ok())
                .unwrap_or_default()
                .approve_after;
            format!(
                "The sandbox approves after {}.",
                crate::web::format::duration_words(delay)
            )
        }
        (ChannelKind::Whatsapp, _) => "Meta's review takes up to 24 hours.".into(),
        (ChannelKind::Viber, _) => String::new(),
    }
}

fn stage_label(stage: TemplateStage, channel: &Channel) -> String {
    let name = reviewer_name(channel);
    stage.label(if name.is_empty() {
        "the provider"
    } else {
        name
    })
}

fn stage_class(stage: TemplateStage) -> &'static str {
    match stage {
        TemplateStage::Sendable => "badge badge-ok",
        TemplateStage::Draft | TemplateStage::Superseded => "badge badge-muted",
        TemplateStage::InReview | TemplateStage::Approved | TemplateStage::Pending => {
            "badge badge-warn"
        }
        TemplateStage::Rejected
        | TemplateStage::ProviderRejected
        | TemplateStage::Paused
        | TemplateStage::Disabled => "badge badge-danger",
    }
}

fn reviewer(user: &CurrentUser) -> Reviewer {
    Reviewer {
        user_id: user.id,
        role: user.role,
    }
}

/// The signed-in person (these pages are for people; API keys have the JSON API).
fn person<P>(auth: &Auth<P>) -> Result<&CurrentUser, AppError> {
    auth.user()
        .ok_or_else(|| AppError::Refused("Templates are reviewed by people, signed in.".into()))
}
