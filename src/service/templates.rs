//! Templates: drafting and editing (every edit checked against the channel's rules), Herald's
//! review (submit, withdraw, approve, reject) and the provider's side (submit after approval,
//! resubmit, sync now). The review rules are the domain's (`domain::template::review`), the
//! state is storage's (`storage::templates`), provider calls are the dispatcher's
//! (`dispatch::templates`). Each change is one unit of work with its audit entry, and is then
//! announced to live pages.

use serde_json::json;

use crate::dispatch::hub::HubEvent;
use crate::dispatch::templates as provider;
pub use crate::dispatch::templates::{Submitted, Synced};
use crate::domain::audit::Actor;
use crate::domain::fields::FieldProblems;
use crate::domain::template::{
    ReviewAction, ReviewError, Reviewer, TemplateDraft, TemplateStage, validate,
};
use crate::service::{Change, ServiceError, ServiceResult, Services};
use crate::storage::DbConnection;
use crate::storage::audit::AuditEntry;
use crate::storage::channels::{self, Channel};
use crate::storage::templates::{
    self as store, AUDIT_SUBJECT, Edited, Listed, Reviewed, StatusFilter, Template, TemplateError,
    TemplateFilter, Version,
};

/// The code of a draft that breaks its channel's rules (422, with the fields at fault).
pub const INVALID: &str = "invalid_template";
/// The template changed while the person was editing or reviewing it (409): reload, then
/// act again.
pub const CHANGED_MEANWHILE: &str = "template_changed";

impl From<TemplateError> for ServiceError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::Db(e) => e.into(),
            // The name (and language) is the field at fault.
            TemplateError::Duplicate { .. } => name_problem("duplicate_template", e.to_string()),
            TemplateError::Locked(m) => name_problem("locked", m),
            TemplateError::Review(r) => match r {
                ReviewError::OwnTemplate | ReviewError::NotPermitted(_) => {
                    ServiceError::Forbidden(r.to_string())
                }
                ReviewError::InvalidTransition { .. } => {
                    ServiceError::conflict("conflict", r.to_string())
                }
                ReviewError::NoteRequired | ReviewError::NoteTooLong => {
                    let mut fields = FieldProblems::new();
                    fields.add("note", r.to_string());
                    ServiceError::Invalid {
                        code: r.code(),
                        message: r.to_string(),
                        fields,
                    }
                }
            },
            TemplateError::Conflict(m) => ServiceError::conflict(CHANGED_MEANWHILE, m),
        }
    }
}

fn name_problem(code: &'static str, message: String) -> ServiceError {
    let mut fields = FieldProblems::new();
    fields.add("name", message.clone());
    ServiceError::Invalid {
        code,
        message,
        fields,
    }
}

/// Tells live pages a template changed.
fn announce(svc: &Services, template_id: i64) {
    svc.hub.publish(HubEvent::Template { template_id });
}

fn template_or_not_found(conn: &mut DbConnection, public_id: &str) -> ServiceResult<Template> {
    store::find_by_public_id(conn, public_id)?
        .ok_or_else(|| ServiceError::not_found("This template"))
}

fn channel_of(conn: &mut DbConnection, template: &Template) -> ServiceResult<Channel> {
    channels::find(conn, template.channel_id)?
        .ok_or_else(|| ServiceError::not_found("The template's channel"))
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// The list's filters, parsed.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// A channel's public id; empty for every channel.
    pub channel: String,
    pub status: Option<StatusFilter>,
    pub category: String,
    pub language: String,
}

/// The templates matching a filter, with what the filters offer.
pub struct TemplateList {
    pub templates: Vec<Listed>,
    /// Every template, filtered or not.
    pub total: i64,
    pub channels: Vec<Channel>,
    pub languages: Vec<String>,
}

pub async fn list(svc: &Services, filter: ListFilter) -> ServiceResult<TemplateList> {
    svc.read(move |conn| {
        let all_channels = channels::list(conn)?;
        let channel_id = match filter.channel.trim() {
            "" => None,
            id => Some(
                all_channels
                    .iter()
                    .find(|c| c.public_id == id)
                    .map(|c| c.id)
                    .ok_or_else(|| ServiceError::not_found("This channel"))?,
            ),
        };
        let store_filter = TemplateFilter {
            channel_id,
            status: filter.status,
            category: Some(filter.category.trim().to_owned()).filter(|c| !c.is_empty()),
            language: Some(filter.language.trim().to_owned()).filter(|l| !l.is_empty()),
            name: None,
        };
        Ok(TemplateList {
            templates: store::list(conn, &store_filter)?,
            total: store::count(conn)?,
            channels: all_channels,
            languages: store::languages(conn)?,
        })
    })
    .await
}

/// The channel a new template is drafted for, by its public id; `None` when there is none.
pub async fn channel_for_draft(
    svc: &Services,
    public_id: String,
) -> ServiceResult<Option<Channel>> {
    svc.read(move |conn| Ok(channels::find_by_public_id(conn, public_id.trim())?))
        .await
}

/// A template, its channel and versions (newest first).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub template: Template,
    pub channel: Channel,
    pub versions: Vec<Version>,
}

impl Loaded {
    /// The newest version.
    pub fn current(&self) -> Option<&Version> {
        self.versions
            .iter()
            .find(|v| Some(v.id) == self.template.current_version_id)
    }

    /// The newest version, or a not-found when the template has no content.
    pub fn current_or_not_found(&self) -> ServiceResult<&Version> {
        self.current()
            .ok_or_else(|| ServiceError::not_found("This template's content"))
    }

    /// Was any version approved in Herald? Then the name and language stay.
    pub fn ever_approved(&self) -> bool {
        self.versions.iter().any(|v| {
            !matches!(
                v.stage,
                TemplateStage::Draft | TemplateStage::InReview | TemplateStage::Rejected
            )
        })
    }
}

fn load_in(conn: &mut DbConnection, public_id: &str) -> ServiceResult<Loaded> {
    let template = template_or_not_found(conn, public_id)?;
    let channel = channel_of(conn, &template)?;
    let versions = store::versions(conn, template.id)?;
    Ok(Loaded {
        template,
        channel,
        versions,
    })
}

pub async fn load(svc: &Services, public_id: String) -> ServiceResult<Loaded> {
    svc.read(move |conn| load_in(conn, &public_id)).await
}

/// The template's audit entries, newest first.
pub async fn history(svc: &Services, template: Template) -> ServiceResult<Vec<AuditEntry>> {
    svc.read(move |conn| Ok(store::history(conn, &template)?))
        .await
}

// ---------------------------------------------------------------------------------------------
// Drafting and editing
// ---------------------------------------------------------------------------------------------

fn checked(
    channel: &Channel,
    draft: &TemplateDraft,
) -> ServiceResult<crate::domain::template::ValidTemplate> {
    validate(channel.kind, draft).map_err(|fields| ServiceError::invalid_fields(INVALID, fields))
}

/// Saves a new template on `channel` (version 1, a draft) with its audit entry, inside
/// `change`'s transaction.
fn create_in(
    change: &mut Change<'_>,
    channel: &Channel,
    draft: &TemplateDraft,
) -> ServiceResult<Template> {
    let valid = checked(channel, draft)?;
    let template = store::create(change.conn, channel, &valid, change.actor)?;
    change.audit(
        "template.drafted",
        AUDIT_SUBJECT,
        Some(&template.public_id),
        json!({
            "version": 1,
            "name": template.name,
            "language": template.language,
            "channel": channel.name,
        }),
    )?;
    Ok(template)
}

/// Drafts a new template on `channel`. Refused as `invalid_template` (every field at fault)
/// or `duplicate_template` (the name, in that language, is taken on the channel).
pub async fn create_draft(
    svc: &Services,
    actor: Actor,
    channel: Channel,
    draft: TemplateDraft,
) -> ServiceResult<Template> {
    let template = svc
        .write(actor, move |change| create_in(change, &channel, &draft))
        .await?;
    announce(svc, template.id);
    Ok(template)
}

/// Saves new content for the template inside `change`'s transaction: in place while the
/// newest version was never approved, as a new draft version otherwise. `editing` is the
/// version number the form was opened on (`None`: the newest).
fn edit_in(
    change: &mut Change<'_>,
    public_id: &str,
    editing: Option<i32>,
    draft: &TemplateDraft,
    by: &Reviewer,
) -> ServiceResult<(Template, Edited)> {
    let loaded = load_in(change.conn, public_id)?;
    let valid = checked(&loaded.channel, draft)?;
    let editing = editing.or(loaded.current().map(|v| v.number)).unwrap_or(0);
    let template = loaded.template;
    let (name, language) = (valid.name().as_str(), valid.language().as_str());
    let renamed = name != template.name || language != template.language;
    let edited = store::edit(change.conn, &template, editing, &valid, change.actor, by)?;
    let mut details = json!({
        "version": edited.version().number,
        "new_version": matches!(edited, Edited::NewVersion(_)),
    });
    if renamed {
        details["renamed"] = json!(format!("{name} ({language})"));
    }
    change.audit(
        "template.edited",
        AUDIT_SUBJECT,
        Some(&template.public_id),
        details,
    )?;
    Ok((template, edited))
}

/// Edits a template. Refused as `invalid_template` (fields), `duplicate_template` or `locked`
/// (at the name), or `template_changed` when someone saved or reviewed it meanwhile.
pub async fn edit(
    svc: &Services,
    actor: Actor,
    by: Reviewer,
    public_id: String,
    editing: Option<i32>,
    draft: TemplateDraft,
) -> ServiceResult<Edited> {
    let (template, edited) = svc
        .write(actor, move |change| {
            edit_in(change, &public_id, editing, &draft, &by)
        })
        .await?;
    announce(svc, template.id);
    Ok(edited)
}

// ---------------------------------------------------------------------------------------------
// Herald's review
// ---------------------------------------------------------------------------------------------

fn review_audit_action(action: &ReviewAction) -> &'static str {
    match action {
        ReviewAction::Submit => "template.submitted",
        ReviewAction::Withdraw => "template.withdrawn",
        ReviewAction::Approve => "template.approved",
        ReviewAction::Reject { .. } => "template.rejected",
        ReviewAction::Edit => "template.edited",
    }
}

/// Applies a review action to the newest version (`version` is the number the person saw),
/// with its audit entry, inside `change`'s transaction.
fn review_in(
    change: &mut Change<'_>,
    public_id: &str,
    version: i32,
    action: ReviewAction,
    approval_note: Option<&str>,
    by: &Reviewer,
) -> ServiceResult<Reviewed> {
    let template = template_or_not_found(change.conn, public_id)?;
    let audit_action = review_audit_action(&action);
    let judging = matches!(action, ReviewAction::Approve | ReviewAction::Reject { .. });
    let done = store::review(
        change.conn,
        &template,
        version,
        action,
        approval_note,
        by,
        change.actor,
    )?;
    let mut details = json!({ "version": done.version.number });
    if let Some(note) = &done.version.review_note
        && judging
    {
        details["note"] = json!(note);
    }
    change.audit(
        audit_action,
        AUDIT_SUBJECT,
        Some(&template.public_id),
        details,
    )?;
    Ok(done)
}

async fn review(
    svc: &Services,
    actor: Actor,
    by: Reviewer,
    public_id: String,
    version: i32,
    action: ReviewAction,
    approval_note: Option<String>,
) -> ServiceResult<Reviewed> {
    let done = svc
        .write(actor, move |change| {
            review_in(
                change,
                &public_id,
                version,
                action,
                approval_note.as_deref(),
                &by,
            )
        })
        .await?;
    announce(svc, done.template.id);
    Ok(done)
}

/// The author submits the newest version for review in Herald.
pub async fn submit_for_review(
    svc: &Services,
    actor: Actor,
    by: Reviewer,
    public_id: String,
    version: i32,
) -> ServiceResult<Reviewed> {
    review(
        svc,
        actor,
        by,
        public_id,
        version,
        ReviewAction::Submit,
        None,
    )
    .await
}

/// The author takes the newest version back out of review: a draft again.
pub async fn withdraw(
    svc: &Services,
    actor: Actor,
    by: Reviewer,
    public_id: String,
    version: i32,
) -> ServiceResult<Reviewed> {
    review(
        svc,
        actor,
        by,
        public_id,
        version,
        ReviewAction::Withdraw,
        None,
    )
    .await
}

/// What an approval did.
pub struct Approved {
    pub reviewed: Reviewed,
    /// What the provider said to the submission that follows the approval (WhatsApp, Viber);
    /// `None` when nothing goes to a provider (SMS). An error here comes after the approval
    /// was saved.
    pub submission: Option<ServiceResult<Submitted>>,
}

/// Approves the newest version (someone who did not write it) and, where the channel has a
/// provider, submits it there at once: approve, then submit, whoever asks.
pub async fn approve(
    svc: &Services,
    actor: Actor,
    by: Reviewer,
    public_id: String,
    version: i32,
    note: String,
) -> ServiceResult<Approved> {
    let reviewed = review(
        svc,
        actor.clone(),
        by,
        public_id,
        version,
        ReviewAction::Approve,
        Some(note),
    )
    .await?;
    let submission = if reviewed.awaits_provider() {
        Some(submit_to_provider(svc, &actor, reviewed.version.id).await)
    } else {
        None
    };
    Ok(Approved {
        reviewed,
        submission,
    })
}

/// Rejects the newest version with a note its author sees. Refused as `note_required` or
/// `note_too_long` at the field `note`.
pub async fn reject(
    svc: &Services,
    actor: Actor,
    by: Reviewer,
    public_id: String,
    version: i32,
    note: String,
) -> ServiceResult<Reviewed> {
    review(
        svc,
        actor,
        by,
        public_id,
        version,
        ReviewAction::Reject { note },
        None,
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// The provider's side
// ---------------------------------------------------------------------------------------------

async fn submit_to_provider(
    svc: &Services,
    actor: &Actor,
    version_id: i64,
) -> ServiceResult<Submitted> {
    Ok(provider::submit(&svc.db, &svc.hub, &svc.channels, version_id, actor).await?)
}

/// What a resubmission did.
pub struct Resubmitted {
    pub channel: Channel,
    /// The number of the version submitted.
    pub version: i32,
    pub outcome: Submitted,
}

/// Submits the newest version to the provider again (after the provider refused it, or a
/// submission that never got an answer). `Submitted::NotNeeded` when it is not waiting to be.
pub async fn resubmit(
    svc: &Services,
    actor: Actor,
    public_id: String,
) -> ServiceResult<Resubmitted> {
    let loaded = load(svc, public_id).await?;
    let current = loaded.current_or_not_found()?;
    let outcome = submit_to_provider(svc, &actor, current.id).await?;
    Ok(Resubmitted {
        version: current.number,
        channel: loaded.channel,
        outcome,
    })
}

/// What "sync now" heard.
pub struct SyncedTemplate {
    pub channel: Channel,
    /// Per version asked about (its number); none when no version was submitted yet.
    pub versions: Vec<(i32, Synced)>,
}

/// "Sync now": asks the provider about the template's versions and records its verdicts.
pub async fn sync(
    svc: &Services,
    actor: Actor,
    public_id: String,
) -> ServiceResult<SyncedTemplate> {
    let loaded = load(svc, public_id).await?;
    let versions =
        provider::sync_template(&svc.db, &svc.hub, &svc.channels, loaded.template.id, &actor)
            .await?;
    Ok(SyncedTemplate {
        channel: loaded.channel,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::channel::ChannelKind;
    use crate::domain::role::Role;
    use crate::service::{failpoint, testing, write};
    use crate::storage::audit;

    fn sms_draft(name: &str) -> TemplateDraft {
        TemplateDraft {
            name: name.into(),
            language: "en".into(),
            body: "Your order {{1}} shipped.".into(),
            samples: [("1".to_owned(), "#1".to_owned())].into(),
            ..TemplateDraft::default()
        }
    }

    #[test]
    fn a_draft_and_its_review_are_written_with_their_audit_entries_or_not_at_all() {
        let (_dir, db) = testing::sqlite_db();
        let mut conn = db.get().expect("connection");
        let sms = channels::seed_sandbox(&mut conn)
            .expect("sandbox channels")
            .into_iter()
            .find(|c| c.kind == ChannelKind::Sms)
            .expect("an SMS sandbox");
        let actor = Actor::system("templates unit test");
        let template = write(&mut conn, &actor, |change| {
            create_in(change, &sms, &sms_draft("order_shipped"))
        })
        .expect("drafted");

        // The same name again is refused at the name field; a broken draft at its fields.
        let again = write(&mut conn, &actor, |change| {
            create_in(change, &sms, &sms_draft("order_shipped"))
        })
        .unwrap_err();
        assert!(
            again.fields().and_then(|f| f.get("name")).is_some(),
            "{again:?}"
        );
        let broken = write(&mut conn, &actor, |change| {
            create_in(change, &sms, &sms_draft("Not A Name"))
        })
        .unwrap_err();
        assert!(
            matches!(&broken, ServiceError::Invalid { code: INVALID, .. }),
            "{broken:?}"
        );

        let by = Reviewer {
            user_id: 1,
            role: Role::Admin,
        };
        let submitted = write(&mut conn, &actor, |change| {
            review_in(
                change,
                &template.public_id,
                1,
                ReviewAction::Submit,
                None,
                &by,
            )
        })
        .expect("submitted");
        assert_eq!(submitted.version.stage, TemplateStage::InReview);

        // A fault after the audit entry takes the change with it.
        let failing = Actor::system("templates unit test: failing");
        failpoint::fail_after_audit(&failing.label);
        write(&mut conn, &failing, |change| {
            review_in(
                change,
                &template.public_id,
                1,
                ReviewAction::Withdraw,
                None,
                &by,
            )
        })
        .unwrap_err();
        let loaded = load_in(&mut conn, &template.public_id).expect("loaded");
        assert_eq!(
            loaded.current().map(|v| v.stage),
            Some(TemplateStage::InReview)
        );

        let actions: Vec<String> = audit::page(&mut conn, None, 100)
            .expect("audit")
            .into_iter()
            .filter(|e| e.actor_label.starts_with("templates unit test"))
            .map(|e| e.action)
            .collect();
        assert_eq!(actions.len(), 2, "{actions:?}");
        for action in ["template.drafted", "template.submitted"] {
            assert!(actions.iter().any(|a| a == action), "{actions:?}");
        }
    }
}
