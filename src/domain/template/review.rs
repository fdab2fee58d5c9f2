//! The life of a template: drafted, reviewed inside Herald by someone other than its author,
//! then (WhatsApp, Viber) reviewed by the provider. A template may be sent only when both said
//! yes; an SMS text only needs Herald's review, as no provider reviews it.

use serde::{Deserialize, Serialize};

use crate::domain::channel::ChannelKind;
use crate::domain::role::{Permission, Role};

/// Herald's own review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReviewStatus {
    Draft,
    InReview,
    Approved,
    /// Sent back to the author with the reviewer's reason.
    Rejected {
        note: String,
    },
}

impl ReviewStatus {
    /// The name stored in the database; the rejection note is stored beside it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReviewStatus::Draft => "draft",
            ReviewStatus::InReview => "in_review",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Rejected { .. } => "rejected",
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            ReviewStatus::Draft => "Draft",
            ReviewStatus::InReview => "In review",
            ReviewStatus::Approved => "Approved",
            ReviewStatus::Rejected { .. } => "Rejected",
        }
    }

    pub fn note(&self) -> Option<&str> {
        match self {
            ReviewStatus::Rejected { note } => Some(note),
            _ => None,
        }
    }

    /// Rebuilds a status from its stored name and note.
    pub fn from_parts(status: &str, note: Option<&str>) -> Result<Self, String> {
        match status {
            "draft" => Ok(ReviewStatus::Draft),
            "in_review" => Ok(ReviewStatus::InReview),
            "approved" => Ok(ReviewStatus::Approved),
            "rejected" => Ok(ReviewStatus::Rejected {
                note: note.unwrap_or_default().to_owned(),
            }),
            _ => Err(format!(
                "unknown review status \"{status}\": expected draft, in_review, approved or rejected"
            )),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            ReviewStatus::Draft => "still a draft",
            ReviewStatus::InReview => "in review",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Rejected { .. } => "rejected",
        }
    }
}

/// The provider's verdict (Meta for WhatsApp, Infobip for Viber).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ProviderApproval {
    NotSubmitted,
    /// Submitted, in the provider's review (up to 24 hours at Meta).
    Pending,
    Approved,
    Rejected {
        reason: String,
    },
    /// Meta paused it for low quality (sends fail with 132015 until it is unpaused).
    Paused,
    /// Meta disabled it for good (132016), or the provider no longer has it.
    Disabled,
}

impl ProviderApproval {
    /// The name stored in the database; the rejection reason is stored beside it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderApproval::NotSubmitted => "not_submitted",
            ProviderApproval::Pending => "pending",
            ProviderApproval::Approved => "approved",
            ProviderApproval::Rejected { .. } => "rejected",
            ProviderApproval::Paused => "paused",
            ProviderApproval::Disabled => "disabled",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            ProviderApproval::Rejected { reason } => Some(reason),
            _ => None,
        }
    }

    /// Rebuilds a status from its stored name and reason.
    pub fn from_parts(status: &str, reason: Option<&str>) -> Result<Self, String> {
        match status {
            "not_submitted" => Ok(ProviderApproval::NotSubmitted),
            "pending" => Ok(ProviderApproval::Pending),
            "approved" => Ok(ProviderApproval::Approved),
            "rejected" => Ok(ProviderApproval::Rejected {
                reason: reason.unwrap_or_default().to_owned(),
            }),
            "paused" => Ok(ProviderApproval::Paused),
            "disabled" => Ok(ProviderApproval::Disabled),
            _ => Err(format!(
                "unknown provider status \"{status}\": expected not_submitted, pending, approved, rejected, paused or disabled"
            )),
        }
    }
}

/// Something a person does to a template in the review workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewAction {
    /// The author asks for a review (from a draft, or after a rejection).
    Submit,
    /// Back from review to draft, by its author or a reviewer.
    Withdraw,
    Approve,
    Reject {
        note: String,
    },
    /// The content changed: whatever was approved was another text, so the template is a
    /// draft again and must be reviewed and submitted to the provider anew.
    Edit,
}

impl ReviewAction {
    fn describe(&self) -> &'static str {
        match self {
            ReviewAction::Submit => "submitted for review",
            ReviewAction::Withdraw => "withdrawn from review",
            ReviewAction::Approve => "approved",
            ReviewAction::Reject { .. } => "rejected",
            ReviewAction::Edit => "edited",
        }
    }
}

/// The person acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reviewer {
    pub user_id: i64,
    pub role: Role,
}

pub const REVIEW_NOTE_MAX: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("You may not {}.", .0.describe())]
    NotPermitted(Permission),
    #[error(
        "You wrote this template, so someone else must review it. You can withdraw it instead."
    )]
    OwnTemplate,
    #[error("This template is {from}, so it cannot be {action}.")]
    InvalidTransition {
        from: &'static str,
        action: &'static str,
    },
    #[error("Say why the template is rejected, so its author can fix it.")]
    NoteRequired,
    #[error("A review note has at most {REVIEW_NOTE_MAX} characters.")]
    NoteTooLong,
}

impl ReviewError {
    pub fn code(&self) -> &'static str {
        match self {
            ReviewError::NotPermitted(_) => "forbidden",
            ReviewError::OwnTemplate => "own_template",
            ReviewError::InvalidTransition { .. } => "invalid_transition",
            ReviewError::NoteRequired => "note_required",
            ReviewError::NoteTooLong => "note_too_long",
        }
    }
}

/// Where a template stands, in Herald and at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateState {
    pub review: ReviewStatus,
    pub provider: ProviderApproval,
}

impl Default for TemplateState {
    fn default() -> Self {
        TemplateState {
            review: ReviewStatus::Draft,
            provider: ProviderApproval::NotSubmitted,
        }
    }
}

impl TemplateState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The state after `actor` does `action` to a template written by `author_id`, or why they
    /// may not. Approving and rejecting take someone other than the author (four eyes), even
    /// an admin: that is the point of the review.
    pub fn apply(
        &self,
        action: ReviewAction,
        actor: &Reviewer,
        author_id: i64,
    ) -> Result<TemplateState, ReviewError> {
        let permit = |permission| {
            if actor.role.can(permission) {
                Ok(())
            } else {
                Err(ReviewError::NotPermitted(permission))
            }
        };
        let invalid = || ReviewError::InvalidTransition {
            from: self.review.describe(),
            action: action.describe(),
        };
        let is_author = actor.user_id == author_id;
        let review = match &action {
            ReviewAction::Submit => {
                permit(Permission::DraftTemplates)?;
                match self.review {
                    ReviewStatus::Draft | ReviewStatus::Rejected { .. } => ReviewStatus::InReview,
                    _ => return Err(invalid()),
                }
            }
            ReviewAction::Withdraw => {
                if !is_author {
                    permit(Permission::ReviewTemplates)?;
                }
                match self.review {
                    ReviewStatus::InReview => ReviewStatus::Draft,
                    _ => return Err(invalid()),
                }
            }
            ReviewAction::Approve | ReviewAction::Reject { .. } => {
                permit(Permission::ReviewTemplates)?;
                if self.review != ReviewStatus::InReview {
                    return Err(invalid());
                }
                if is_author {
                    return Err(ReviewError::OwnTemplate);
                }
                match &action {
                    ReviewAction::Reject { note } => {
                        let note = note.trim();
                        if note.is_empty() {
                            return Err(ReviewError::NoteRequired);
                        }
                        if note.chars().count() > REVIEW_NOTE_MAX {
                            return Err(ReviewError::NoteTooLong);
                        }
                        ReviewStatus::Rejected {
                            note: note.to_owned(),
                        }
                    }
                    _ => ReviewStatus::Approved,
                }
            }
            ReviewAction::Edit => {
                permit(Permission::DraftTemplates)?;
                ReviewStatus::Draft
            }
        };
        let provider = match action {
            ReviewAction::Edit => ProviderApproval::NotSubmitted,
            _ => self.provider.clone(),
        };
        Ok(TemplateState { review, provider })
    }

    /// The provider's verdict, from its webhook or a status poll. The provider has the last word
    /// about its own review, so any status is taken as it comes.
    pub fn with_provider(&self, provider: ProviderApproval) -> TemplateState {
        TemplateState {
            review: self.review.clone(),
            provider,
        }
    }

    /// Approved in Herald and not yet given to the provider: the channel adapter submits it next.
    pub fn awaits_provider_submission(&self, kind: ChannelKind) -> bool {
        kind != ChannelKind::Sms
            && self.review == ReviewStatus::Approved
            && self.provider == ProviderApproval::NotSubmitted
    }

    pub fn is_sendable(&self, kind: ChannelKind) -> bool {
        self.why_not_sendable(kind).is_none()
    }

    /// Why a send with this template is refused (the API's `template_not_approved`), or `None`
    /// when it may be sent.
    pub fn why_not_sendable(&self, kind: ChannelKind) -> Option<String> {
        match &self.review {
            ReviewStatus::Draft => {
                return Some("The template is still a draft: submit it for review first.".into());
            }
            ReviewStatus::InReview => {
                return Some("The template is waiting for review in Herald.".into());
            }
            ReviewStatus::Rejected { note } => {
                return Some(format!("The template was rejected in review: {note}"));
            }
            ReviewStatus::Approved => {}
        }
        if kind == ChannelKind::Sms {
            return None;
        }
        let provider = if kind == ChannelKind::Whatsapp {
            "Meta"
        } else {
            "Viber"
        };
        match &self.provider {
            ProviderApproval::Approved => None,
            ProviderApproval::NotSubmitted => Some(format!(
                "The template is approved in Herald but not submitted to {provider} yet."
            )),
            ProviderApproval::Pending => Some(format!(
                "The template is waiting for {provider}'s review, which can take up to 24 hours."
            )),
            ProviderApproval::Rejected { reason } => {
                Some(format!("{provider} rejected the template: {reason}"))
            }
            ProviderApproval::Paused => Some(format!(
                "{provider} paused the template for low quality (error 132015): edit it or wait until it is unpaused."
            )),
            ProviderApproval::Disabled => Some(format!(
                "{provider} disabled the template (error 132016): create a new one."
            )),
        }
    }
}

/// Where a template version stands, in one word: Herald's review and the provider's verdict
/// together, as the templates page shows and filters them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateStage {
    Draft,
    InReview,
    /// Sent back by Herald's reviewer.
    Rejected,
    /// Approved in Herald, not (yet) accepted for review by the provider.
    Approved,
    /// In the provider's review.
    Pending,
    /// Approved in Herald and, where there is one, by the provider: sends may use it.
    Sendable,
    ProviderRejected,
    Paused,
    Disabled,
    /// A newer version of the same template became sendable and replaced this one.
    Superseded,
}

impl TemplateStage {
    pub const ALL: [TemplateStage; 10] = [
        TemplateStage::Draft,
        TemplateStage::InReview,
        TemplateStage::Rejected,
        TemplateStage::Approved,
        TemplateStage::Pending,
        TemplateStage::Sendable,
        TemplateStage::ProviderRejected,
        TemplateStage::Paused,
        TemplateStage::Disabled,
        TemplateStage::Superseded,
    ];

    /// The stage of a version in `state` on a `kind` channel (never `Superseded`: replacing a
    /// version is a fact about its template, not about its own state).
    pub fn of(kind: ChannelKind, state: &TemplateState) -> TemplateStage {
        match &state.review {
            ReviewStatus::Draft => return TemplateStage::Draft,
            ReviewStatus::InReview => return TemplateStage::InReview,
            ReviewStatus::Rejected { .. } => return TemplateStage::Rejected,
            ReviewStatus::Approved => {}
        }
        if state.is_sendable(kind) {
            return TemplateStage::Sendable;
        }
        match state.provider {
            ProviderApproval::NotSubmitted | ProviderApproval::Approved => TemplateStage::Approved,
            ProviderApproval::Pending => TemplateStage::Pending,
            ProviderApproval::Rejected { .. } => TemplateStage::ProviderRejected,
            ProviderApproval::Paused => TemplateStage::Paused,
            ProviderApproval::Disabled => TemplateStage::Disabled,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TemplateStage::Draft => "draft",
            TemplateStage::InReview => "in_review",
            TemplateStage::Rejected => "rejected",
            TemplateStage::Approved => "approved",
            TemplateStage::Pending => "pending",
            TemplateStage::Sendable => "sendable",
            TemplateStage::ProviderRejected => "provider_rejected",
            TemplateStage::Paused => "paused",
            TemplateStage::Disabled => "disabled",
            TemplateStage::Superseded => "superseded",
        }
    }

    pub fn parse(word: &str) -> Option<TemplateStage> {
        Self::ALL.into_iter().find(|s| s.as_str() == word.trim())
    }

    /// Words for a badge; `provider` names who reviews it ("Meta", "Viber").
    pub fn label(self, provider: &str) -> String {
        match self {
            TemplateStage::Draft => "Draft".into(),
            TemplateStage::InReview => "In review".into(),
            TemplateStage::Rejected => "Rejected in review".into(),
            TemplateStage::Approved => format!("Approved, not yet at {provider}"),
            TemplateStage::Pending => format!("Waiting for {provider}"),
            TemplateStage::Sendable => "Sendable".into(),
            TemplateStage::ProviderRejected => format!("Rejected by {provider}"),
            TemplateStage::Paused => format!("Paused by {provider}"),
            TemplateStage::Disabled => format!("Disabled by {provider}"),
            TemplateStage::Superseded => "Replaced by a newer version".into(),
        }
    }

    /// Content can still change in place: nothing about it was approved yet.
    pub fn is_editable_in_place(self) -> bool {
        matches!(
            self,
            TemplateStage::Draft | TemplateStage::InReview | TemplateStage::Rejected
        )
    }
}

/// Only when Herald's reviewer and the provider both approved it; for SMS, Herald's approval
/// alone.
pub fn is_sendable(kind: ChannelKind, review: &ReviewStatus, provider: &ProviderApproval) -> bool {
    TemplateState {
        review: review.clone(),
        provider: provider.clone(),
    }
    .is_sendable(kind)
}
