//! Templates and their versions: drafting and editing, Herald's review, the provider's verdicts,
//! and the sendable version a send uses. Every state change is a conditional update, so two
//! reviewers clicking at once cannot both win. Drafting, editing and Herald's review run
//! inside the caller's transaction (`service::templates`, which writes their audit entries);
//! the provider's side writes its own, in its own transaction.
//!
//! A template is a name in a language on one channel (unique there). Its content lives in
//! numbered versions. A version that was approved in Herald is never changed again: editing it
//! makes a new draft version, and the template's *live* version (the last one that became
//! sendable) keeps sending until a newer one becomes sendable and replaces it.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::audit::{self, AuditEntry};
use super::channels::{self, Channel};
use super::schema::{audit_log, template_versions, templates};
use super::{DbConnection, is_unique_violation, new_public_id, now};
use crate::channels::{ProviderTemplateStatus, TemplateStatusEvent};
use crate::domain::audit::{Actor, ActorKind};
use crate::domain::channel::ChannelKind;
use crate::domain::content::MessageContent;
use crate::domain::fields::FieldProblems;
use crate::domain::template::{
    Language, PlaceholderInfo, ProviderApproval, RenderError, RenderedTemplate, ReviewAction,
    ReviewError, ReviewStatus, Reviewer, TemplateDraft, TemplateStage, TemplateState,
    ValidTemplate, Variables, placeholders, render, validate,
};

/// The subject kind of a template's audit entries (the subject id is its public id).
pub const AUDIT_SUBJECT: &str = "template";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = templates)]
pub struct Template {
    pub id: i64,
    pub public_id: String,
    pub channel_id: i64,
    pub name: String,
    pub language: String,
    pub category: String,
    pub current_version_id: Option<i64>,
    pub live_version_id: Option<i64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = template_versions)]
struct VersionRow {
    id: i64,
    template_id: i64,
    number: i32,
    content: String,
    stage: String,
    author_id: Option<i64>,
    author_label: String,
    editor_id: Option<i64>,
    editor_label: String,
    review_status: String,
    review_note: Option<String>,
    reviewer_id: Option<i64>,
    reviewer_label: Option<String>,
    submitted_at: Option<NaiveDateTime>,
    reviewed_at: Option<NaiveDateTime>,
    provider_status: String,
    provider_reason: Option<String>,
    provider_note: Option<String>,
    provider_template_id: Option<String>,
    provider_error: Option<String>,
    provider_submitted_at: Option<NaiveDateTime>,
    provider_updated_at: Option<NaiveDateTime>,
    provider_checked_at: Option<NaiveDateTime>,
    superseded_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

/// One version of a template, as stored.
#[derive(Debug, Clone)]
pub struct Version {
    pub id: i64,
    pub template_id: i64,
    pub number: i32,
    /// The form's contents, as validated when saved.
    pub draft: TemplateDraft,
    pub stage: TemplateStage,
    pub state: TemplateState,
    pub author_id: Option<i64>,
    pub author_label: String,
    pub editor_id: Option<i64>,
    pub editor_label: String,
    /// The reviewer's note (the reason of a rejection, or a remark with an approval).
    pub review_note: Option<String>,
    pub reviewer_id: Option<i64>,
    pub reviewer_label: Option<String>,
    pub submitted_at: Option<NaiveDateTime>,
    pub reviewed_at: Option<NaiveDateTime>,
    /// Other words the provider used about it (IN_APPEAL, FLAGGED, a pause's title), verbatim.
    pub provider_note: Option<String>,
    pub provider_template_id: Option<String>,
    /// Why the last submission to the provider failed, verbatim.
    pub provider_error: Option<String>,
    pub provider_submitted_at: Option<NaiveDateTime>,
    pub provider_updated_at: Option<NaiveDateTime>,
    pub provider_checked_at: Option<NaiveDateTime>,
    pub superseded_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Version {
    /// The valid template this version holds on a `kind` channel; an error only when the
    /// channel's rules became stricter since it was saved.
    pub fn valid(&self, kind: ChannelKind) -> Result<ValidTemplate, FieldProblems> {
        validate(kind, &self.draft)
    }

    /// Someone who wrote this version's content (its author or its last editor), who may
    /// therefore not review it.
    pub fn is_written_by(&self, user_id: i64) -> bool {
        self.author_id == Some(user_id) || self.editor_id == Some(user_id)
    }

    /// A submission to the provider is running (claimed, neither answered nor failed).
    pub fn is_submitting(&self) -> bool {
        self.state.provider == ProviderApproval::NotSubmitted
            && self.provider_submitted_at.is_some()
            && self.provider_error.is_none()
    }
}

impl TryFrom<VersionRow> for Version {
    type Error = diesel::result::Error;

    fn try_from(r: VersionRow) -> Result<Self, Self::Error> {
        let bad = |e: String| diesel::result::Error::DeserializationError(e.into());
        let draft: TemplateDraft = serde_json::from_str(&r.content)
            .map_err(|e| bad(format!("template version {}: content: {e}", r.id)))?;
        let review = ReviewStatus::from_parts(&r.review_status, r.review_note.as_deref())
            .map_err(|e| bad(format!("template version {}: {e}", r.id)))?;
        let provider =
            ProviderApproval::from_parts(&r.provider_status, r.provider_reason.as_deref())
                .map_err(|e| bad(format!("template version {}: {e}", r.id)))?;
        let stage = TemplateStage::parse(&r.stage)
            .ok_or_else(|| bad(format!("template version {}: stage \"{}\"", r.id, r.stage)))?;
        Ok(Version {
            id: r.id,
            template_id: r.template_id,
            number: r.number,
            draft,
            stage,
            state: TemplateState { review, provider },
            author_id: r.author_id,
            author_label: r.author_label,
            editor_id: r.editor_id,
            editor_label: r.editor_label,
            review_note: r.review_note,
            reviewer_id: r.reviewer_id,
            reviewer_label: r.reviewer_label,
            submitted_at: r.submitted_at,
            reviewed_at: r.reviewed_at,
            provider_note: r.provider_note,
            provider_template_id: r.provider_template_id,
            provider_error: r.provider_error,
            provider_submitted_at: r.provider_submitted_at,
            provider_updated_at: r.provider_updated_at,
            provider_checked_at: r.provider_checked_at,
            superseded_at: r.superseded_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Why a change to a template was refused.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error(
        "There is already a template \"{name}\" in {language} on this channel: open it, or choose another name or language."
    )]
    Duplicate { name: String, language: String },
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// Someone changed the template meanwhile; the message says what to do.
    #[error("{0}")]
    Conflict(String),
    /// The change is not allowed in the template's state.
    #[error("{0}")]
    Locked(String),
}

/// The user id to store for an actor (API keys and Herald itself are not people).
fn person_id(actor: &Actor) -> Option<i64> {
    (actor.kind == ActorKind::User)
        .then_some(actor.id)
        .flatten()
}

fn channel_of(conn: &mut DbConnection, template: &Template) -> QueryResult<Channel> {
    channels::find(conn, template.channel_id)?.ok_or(diesel::result::Error::NotFound)
}

fn record(
    conn: &mut DbConnection,
    actor: &Actor,
    action: &str,
    template: &Template,
    details: serde_json::Value,
) -> QueryResult<()> {
    audit::record(
        conn,
        actor,
        action,
        AUDIT_SUBJECT,
        Some(&template.public_id),
        details,
    )
    .map(drop)
}

fn content_json(draft: &TemplateDraft) -> QueryResult<String> {
    serde_json::to_string(draft).map_err(|e| diesel::result::Error::SerializationError(e.into()))
}

fn category_of(valid: &ValidTemplate) -> &'static str {
    valid.category().map(|c| c.as_str()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Reading

pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Template>> {
    templates::table
        .find(id)
        .select(Template::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_public_id(
    conn: &mut DbConnection,
    public_id: &str,
) -> QueryResult<Option<Template>> {
    templates::table
        .filter(templates::public_id.eq(public_id))
        .select(Template::as_select())
        .first(conn)
        .optional()
}

pub fn find_version(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Version>> {
    template_versions::table
        .find(id)
        .select(VersionRow::as_select())
        .first(conn)
        .optional()?
        .map(Version::try_from)
        .transpose()
}

/// Per placeholder name: how the send page fills it, as posted there (`source`, contact
/// field, fixed or fallback text).
pub type VariableSources = std::collections::BTreeMap<String, (String, String, String)>;

/// The variable sources last used to send this template from the send page (empty if none, or
/// if what was stored cannot be read).
pub fn variable_sources(conn: &mut DbConnection, template_id: i64) -> QueryResult<VariableSources> {
    let stored: Option<Option<String>> = templates::table
        .find(template_id)
        .select(templates::variable_sources)
        .first(conn)
        .optional()?;
    Ok(stored
        .flatten()
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default())
}

/// Remembers how the send page filled this template's variables, to offer it next time.
pub fn remember_variable_sources(
    conn: &mut DbConnection,
    template_id: i64,
    sources: &VariableSources,
) -> QueryResult<usize> {
    let json = serde_json::to_string(sources).unwrap_or_else(|_| "{}".into());
    diesel::update(templates::table.find(template_id))
        .set(templates::variable_sources.eq(json))
        .execute(conn)
}

/// The provider's id of the template a new version replaces: the latest earlier version of
/// the same template that the provider took (approved, rejected or paused there, it is still
/// that template at the provider).
pub fn provider_id_to_replace(
    conn: &mut DbConnection,
    version: &Version,
) -> QueryResult<Option<String>> {
    template_versions::table
        .filter(template_versions::template_id.eq(version.template_id))
        .filter(template_versions::number.lt(version.number))
        .filter(template_versions::provider_template_id.is_not_null())
        .order(template_versions::number.desc())
        .select(template_versions::provider_template_id)
        .first::<Option<String>>(conn)
        .optional()
        .map(Option::flatten)
}

fn version_required(conn: &mut DbConnection, id: Option<i64>) -> QueryResult<Version> {
    let id = id.ok_or(diesel::result::Error::NotFound)?;
    find_version(conn, id)?.ok_or(diesel::result::Error::NotFound)
}

/// The newest version: what the page shows and an edit changes.
pub fn current_version(conn: &mut DbConnection, template: &Template) -> QueryResult<Version> {
    version_required(conn, template.current_version_id)
}

/// Every version, newest first.
pub fn versions(conn: &mut DbConnection, template_id: i64) -> QueryResult<Vec<Version>> {
    template_versions::table
        .filter(template_versions::template_id.eq(template_id))
        .select(VersionRow::as_select())
        .order(template_versions::number.desc())
        .load(conn)?
        .into_iter()
        .map(Version::try_from)
        .collect()
}

/// Which templates a list shows, by the state of their versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// The newest version is at this stage.
    Current(TemplateStage),
    /// A version may be sent now (whatever the newest version is doing).
    Sendable,
}

#[derive(Debug, Clone, Default)]
pub struct TemplateFilter {
    pub channel_id: Option<i64>,
    pub status: Option<StatusFilter>,
    pub category: Option<String>,
    pub language: Option<String>,
    pub name: Option<String>,
}

/// A template with its channel, its newest version and its live version (when another).
#[derive(Debug, Clone)]
pub struct Listed {
    pub template: Template,
    pub channel: Channel,
    pub current: Version,
    /// The version sends use, when it is not the newest one.
    pub live: Option<Version>,
}

impl Listed {
    /// The version a send would use and whether it may be sent now.
    pub fn sendable_version(&self) -> Option<&Version> {
        let live = match self.template.live_version_id {
            Some(id) if id == self.current.id => Some(&self.current),
            Some(_) => self.live.as_ref(),
            None => None,
        };
        live.filter(|v| v.stage == TemplateStage::Sendable)
    }
}

/// Templates matching the filter, most recently changed first. A workspace has at most a few
/// thousand (Meta allows 6,000 per account), so the list is not paged.
pub fn list(conn: &mut DbConnection, filter: &TemplateFilter) -> QueryResult<Vec<Listed>> {
    let mut query = templates::table
        .select(Template::as_select())
        .order((templates::updated_at.desc(), templates::id.desc()))
        .into_boxed();
    if let Some(id) = filter.channel_id {
        query = query.filter(templates::channel_id.eq(id));
    }
    if let Some(category) = &filter.category {
        query = query.filter(templates::category.eq(category.clone()));
    }
    if let Some(language) = &filter.language {
        query = query.filter(templates::language.eq(language.clone()));
    }
    if let Some(name) = &filter.name {
        query = query.filter(templates::name.eq(name.clone()));
    }
    match filter.status {
        Some(StatusFilter::Current(stage)) => {
            let ids = template_versions::table
                .filter(template_versions::stage.eq(stage.as_str()))
                .select(template_versions::id.nullable());
            query = query.filter(templates::current_version_id.eq_any(ids));
        }
        Some(StatusFilter::Sendable) => {
            let ids = template_versions::table
                .filter(template_versions::stage.eq(TemplateStage::Sendable.as_str()))
                .select(template_versions::id.nullable());
            query = query.filter(templates::live_version_id.eq_any(ids));
        }
        None => {}
    }
    let found: Vec<Template> = query.load(conn)?;
    let version_ids: Vec<i64> = found
        .iter()
        .flat_map(|t| [t.current_version_id, t.live_version_id])
        .flatten()
        .collect();
    let mut versions: HashMap<i64, Version> = HashMap::new();
    for chunk in version_ids.chunks(500) {
        let rows: Vec<VersionRow> = template_versions::table
            .filter(template_versions::id.eq_any(chunk))
            .select(VersionRow::as_select())
            .load(conn)?;
        for row in rows {
            let v = Version::try_from(row)?;
            versions.insert(v.id, v);
        }
    }
    let channels: HashMap<i64, Channel> = channels::list(conn)?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let mut out = Vec::with_capacity(found.len());
    for template in found {
        let (Some(channel), Some(current)) = (
            channels.get(&template.channel_id).cloned(),
            template
                .current_version_id
                .and_then(|id| versions.get(&id).cloned()),
        ) else {
            continue;
        };
        let live = template
            .live_version_id
            .filter(|id| *id != current.id)
            .and_then(|id| versions.get(&id).cloned());
        out.push(Listed {
            template,
            channel,
            current,
            live,
        });
    }
    Ok(out)
}

/// How many templates there are at all (for the empty states).
pub fn count(conn: &mut DbConnection) -> QueryResult<i64> {
    templates::table.count().get_result(conn)
}

/// The languages in use, for the filter.
pub fn languages(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    templates::table
        .select(templates::language)
        .distinct()
        .order(templates::language)
        .load(conn)
}

/// The template's audit entries, newest first: who drafted, edited, submitted, approved or
/// rejected it, and what the provider said.
pub fn history(conn: &mut DbConnection, template: &Template) -> QueryResult<Vec<AuditEntry>> {
    audit_log::table
        .filter(audit_log::subject_kind.eq(AUDIT_SUBJECT))
        .filter(audit_log::subject_id.eq(&template.public_id))
        .select(AuditEntry::as_select())
        .order(audit_log::id.desc())
        .load(conn)
}

fn exists(
    conn: &mut DbConnection,
    channel_id: i64,
    name: &str,
    language: &str,
    except: Option<i64>,
) -> QueryResult<bool> {
    let mut query = templates::table
        .filter(templates::channel_id.eq(channel_id))
        .filter(templates::name.eq(name))
        .filter(templates::language.eq(language))
        .select(templates::id)
        .into_boxed();
    if let Some(id) = except {
        query = query.filter(templates::id.ne(id));
    }
    Ok(query.first::<i64>(conn).optional()?.is_some())
}

// ---------------------------------------------------------------------------------------------
// Drafting and editing

fn duplicate(valid: &ValidTemplate) -> TemplateError {
    TemplateError::Duplicate {
        name: valid.name().to_string(),
        language: valid.language().to_string(),
    }
}

fn insert_version(
    conn: &mut DbConnection,
    template_id: i64,
    number: i32,
    valid: &ValidTemplate,
    author: &Actor,
) -> QueryResult<i64> {
    let at = now();
    let state = TemplateState::new();
    diesel::insert_into(template_versions::table)
        .values((
            template_versions::template_id.eq(template_id),
            template_versions::number.eq(number),
            template_versions::content.eq(content_json(&valid.to_draft())?),
            template_versions::stage.eq(TemplateStage::Draft.as_str()),
            template_versions::author_id.eq(person_id(author)),
            template_versions::author_label.eq(&author.label),
            template_versions::editor_id.eq(person_id(author)),
            template_versions::editor_label.eq(&author.label),
            template_versions::review_status.eq(state.review.as_str()),
            template_versions::provider_status.eq(state.provider.as_str()),
            template_versions::created_at.eq(at),
            template_versions::updated_at.eq(at),
        ))
        .returning(template_versions::id)
        .get_result(conn)
}

/// Saves a new template (version 1, a draft) on `channel`. A template with the same name and
/// language on the channel is refused as [`TemplateError::Duplicate`]. Several writes: run it
/// inside a transaction (the service's unit of work, which also records `template.drafted`).
pub fn create(
    conn: &mut DbConnection,
    channel: &Channel,
    valid: &ValidTemplate,
    author: &Actor,
) -> Result<Template, TemplateError> {
    let (name, language) = (valid.name().as_str(), valid.language().as_str());
    if exists(conn, channel.id, name, language, None)? {
        return Err(duplicate(valid));
    }
    let mut write = || {
        let at = now();
        let template_id: i64 = diesel::insert_into(templates::table)
            .values((
                templates::public_id.eq(new_public_id()),
                templates::channel_id.eq(channel.id),
                templates::name.eq(name),
                templates::language.eq(language),
                templates::category.eq(category_of(valid)),
                templates::created_at.eq(at),
                templates::updated_at.eq(at),
            ))
            .returning(templates::id)
            .get_result(conn)?;
        let template = find(conn, template_id)?.ok_or(diesel::result::Error::NotFound)?;
        let version_id = insert_version(conn, template.id, 1, valid, author)?;
        diesel::update(templates::table.find(template.id))
            .set(templates::current_version_id.eq(version_id))
            .execute(conn)?;
        Ok::<_, diesel::result::Error>(Template {
            current_version_id: Some(version_id),
            ..template
        })
    };
    write().map_err(|e| {
        if is_unique_violation(&e) {
            duplicate(valid)
        } else {
            e.into()
        }
    })
}

/// What an edit did.
#[derive(Debug, Clone)]
pub enum Edited {
    /// The draft (or the version in review, or the rejected one) changed in place and is a
    /// draft again.
    InPlace(Version),
    /// The newest version had been approved, so the edit is a new draft version; the approved
    /// one keeps sending.
    NewVersion(Version),
}

impl Edited {
    pub fn version(&self) -> &Version {
        match self {
            Edited::InPlace(v) | Edited::NewVersion(v) => v,
        }
    }
}

/// Saves new content for a template. `editing` is the version number the form was opened on:
/// if a newer version appeared meanwhile, nothing is saved. The name and language can change
/// only while no version was ever approved (they are the template's identity at the provider).
/// Run it inside a transaction (the service's unit of work, which records `template.edited`).
pub fn edit(
    conn: &mut DbConnection,
    template: &Template,
    editing: i32,
    valid: &ValidTemplate,
    editor: &Actor,
    reviewer: &Reviewer,
) -> Result<Edited, TemplateError> {
    let (name, language) = (valid.name().as_str(), valid.language().as_str());
    let renamed = name != template.name || language != template.language;
    let mut write = || {
        let current = current_version(conn, template)?;
        if current.number != editing {
            return Err(TemplateError::Conflict(format!(
                "Someone saved version {} of this template while you were editing version {editing}. Your text is kept below: compare it with the template's page and save again.",
                current.number
            )));
        }
        if renamed {
            let ever_approved = template_versions::table
                .filter(template_versions::template_id.eq(template.id))
                .filter(template_versions::review_status.eq(ReviewStatus::Approved.as_str()))
                .count()
                .get_result::<i64>(conn)?
                > 0;
            if ever_approved {
                return Err(TemplateError::Locked(format!(
                    "A version of this template was approved as {} in {}, so its name and language stay: create a new template for another name or language.",
                    template.name, template.language
                )));
            }
            if exists(conn, template.channel_id, name, language, Some(template.id))? {
                return Err(duplicate(valid));
            }
        }
        let next =
            current
                .state
                .apply(ReviewAction::Edit, reviewer, current.author_id.unwrap_or(0))?;
        let at = now();
        let content = content_json(&valid.to_draft())?;
        let edited = if current.stage.is_editable_in_place() {
            // Only if nobody reviewed it meanwhile: approved content never changes.
            let unchanged = template_versions::table
                .filter(template_versions::id.eq(current.id))
                .filter(template_versions::review_status.eq(current.state.review.as_str()))
                .filter(template_versions::updated_at.eq(current.updated_at));
            let saved = diesel::update(unchanged)
                .set((
                    template_versions::content.eq(content),
                    template_versions::stage.eq(TemplateStage::Draft.as_str()),
                    template_versions::review_status.eq(next.review.as_str()),
                    template_versions::review_note.eq(None::<String>),
                    template_versions::reviewer_id.eq(None::<i64>),
                    template_versions::reviewer_label.eq(None::<String>),
                    template_versions::reviewed_at.eq(None::<NaiveDateTime>),
                    template_versions::submitted_at.eq(None::<NaiveDateTime>),
                    template_versions::editor_id.eq(person_id(editor)),
                    template_versions::editor_label.eq(&editor.label),
                    template_versions::updated_at.eq(at),
                ))
                .execute(conn)?;
            if saved == 0 {
                return Err(TemplateError::Conflict(format!(
                    "Version {} changed while you were editing it (reviewed or saved by someone else). Your text is kept below: check the template's page and save again.",
                    current.number
                )));
            }
            Edited::InPlace(version_required(conn, Some(current.id))?)
        } else {
            let id = insert_version(conn, template.id, current.number + 1, valid, editor)?;
            Edited::NewVersion(version_required(conn, Some(id))?)
        };
        diesel::update(templates::table.find(template.id))
            .set((
                templates::name.eq(name),
                templates::language.eq(language),
                templates::category.eq(category_of(valid)),
                templates::current_version_id.eq(edited.version().id),
                templates::updated_at.eq(at),
            ))
            .execute(conn)?;
        Ok(edited)
    };
    write().map_err(|e| match e {
        TemplateError::Db(db) if is_unique_violation(&db) && renamed => duplicate(valid),
        // Two people saving a new version at the same moment: one of them wins.
        TemplateError::Db(db) if is_unique_violation(&db) => TemplateError::Conflict(
            "Someone saved a new version of this template at the same moment. Your text is kept below: check the template's page and save again.".into(),
        ),
        other => other,
    })
}

// ---------------------------------------------------------------------------------------------
// Herald's review

/// What a review action did to the newest version.
#[derive(Debug, Clone)]
pub struct Reviewed {
    pub template: Template,
    pub channel: Channel,
    pub version: Version,
}

impl Reviewed {
    /// Approved in Herald and due at the provider (WhatsApp and Viber).
    pub fn awaits_provider(&self) -> bool {
        self.version
            .state
            .awaits_provider_submission(self.channel.kind)
    }
}

/// Applies a review action to the newest version (`expected` is the version number the person
/// saw). Approving or rejecting takes someone who neither created nor last edited it. `note`
/// is the reason of a rejection (in the action) or an optional remark with an approval; it is
/// kept as the version's `review_note`. Run it inside a transaction (the service's unit of
/// work, which records the action's audit entry).
pub fn review(
    conn: &mut DbConnection,
    template: &Template,
    expected: i32,
    action: ReviewAction,
    approval_note: Option<&str>,
    reviewer: &Reviewer,
    actor: &Actor,
) -> Result<Reviewed, TemplateError> {
    let channel = channel_of(conn, template)?;
    let version = current_version(conn, template)?;
    if version.number != expected {
        return Err(TemplateError::Conflict(format!(
            "Version {} of this template was saved after the one you looked at: review that one.",
            version.number
        )));
    }
    let next = version
        .state
        .apply(action.clone(), reviewer, version.author_id.unwrap_or(0))?;
    let judging = matches!(action, ReviewAction::Approve | ReviewAction::Reject { .. });
    if judging && version.is_written_by(reviewer.user_id) {
        return Err(ReviewError::OwnTemplate.into());
    }
    let stage = TemplateStage::of(channel.kind, &next);
    let at = now();
    let note = match &action {
        ReviewAction::Reject { .. } => next.review.note().map(str::to_owned),
        ReviewAction::Approve => approval_note
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        _ => version.review_note.clone(),
    };
    let changed = diesel::update(
        template_versions::table
            .filter(template_versions::id.eq(version.id))
            .filter(template_versions::review_status.eq(version.state.review.as_str()))
            .filter(template_versions::updated_at.eq(version.updated_at)),
    )
    .set((
        template_versions::review_status.eq(next.review.as_str()),
        template_versions::review_note.eq(&note),
        template_versions::stage.eq(stage.as_str()),
        template_versions::updated_at.eq(at),
    ))
    .execute(conn)?;
    if changed == 0 {
        return Err(TemplateError::Conflict(
            "Someone changed this template at the same moment: reload the page and try again."
                .into(),
        ));
    }
    match &action {
        ReviewAction::Submit => {
            diesel::update(template_versions::table.find(version.id))
                .set(template_versions::submitted_at.eq(at))
                .execute(conn)?;
        }
        ReviewAction::Approve | ReviewAction::Reject { .. } => {
            diesel::update(template_versions::table.find(version.id))
                .set((
                    template_versions::reviewer_id.eq(reviewer.user_id),
                    template_versions::reviewer_label.eq(&actor.label),
                    template_versions::reviewed_at.eq(at),
                ))
                .execute(conn)?;
        }
        _ => {}
    }
    diesel::update(templates::table.find(template.id))
        .set(templates::updated_at.eq(at))
        .execute(conn)?;
    let version = version_required(conn, Some(version.id))?;
    let template = if stage == TemplateStage::Sendable {
        make_live(conn, template, &version)?
    } else {
        find(conn, template.id)?.ok_or(diesel::result::Error::NotFound)?
    };
    let version = version_required(conn, Some(version.id))?;
    Ok(Reviewed {
        template,
        channel,
        version,
    })
}

/// `version` became sendable: it becomes the one sends use and the previous one is replaced —
/// unless a newer version is already live (the provider approved them out of order), in which
/// case this one is replaced at once.
fn make_live(
    conn: &mut DbConnection,
    template: &Template,
    version: &Version,
) -> QueryResult<Template> {
    let template = find(conn, template.id)?.ok_or(diesel::result::Error::NotFound)?;
    let at = now();
    let supersede = |conn: &mut DbConnection, id: i64| {
        diesel::update(template_versions::table.find(id))
            .set((
                template_versions::stage.eq(TemplateStage::Superseded.as_str()),
                template_versions::superseded_at.eq(at),
                template_versions::updated_at.eq(at),
            ))
            .execute(conn)
    };
    if let Some(live_id) = template.live_version_id.filter(|id| *id != version.id) {
        let live = version_required(conn, Some(live_id))?;
        if live.number > version.number {
            supersede(conn, version.id)?;
            return Ok(template);
        }
        supersede(conn, live_id)?;
    }
    diesel::update(templates::table.find(template.id))
        .set((
            templates::live_version_id.eq(version.id),
            templates::updated_at.eq(at),
        ))
        .execute(conn)?;
    find(conn, template.id)?.ok_or(diesel::result::Error::NotFound)
}

// ---------------------------------------------------------------------------------------------
// The provider's side

/// Starts a submission to the provider: only one at a time per version (a double click, two
/// instances), and only while the version waits for one. A claim older than `stale_before`
/// with no answer recorded (the process died mid-call) may be taken again.
pub fn claim_submission(
    conn: &mut DbConnection,
    version_id: i64,
    stale_before: NaiveDateTime,
) -> QueryResult<bool> {
    let free = template_versions::provider_submitted_at
        .is_null()
        .or(template_versions::provider_error.is_not_null())
        .or(template_versions::provider_submitted_at.lt(stale_before));
    let claimed = diesel::update(
        template_versions::table
            .filter(template_versions::id.eq(version_id))
            .filter(template_versions::review_status.eq(ReviewStatus::Approved.as_str()))
            .filter(template_versions::provider_status.eq(ProviderApproval::NotSubmitted.as_str()))
            .filter(free),
    )
    .set((
        template_versions::provider_submitted_at.eq(now()),
        template_versions::provider_error.eq(None::<String>),
    ))
    .execute(conn)?;
    Ok(claimed == 1)
}

/// What the provider answered to a submission.
#[derive(Debug, Clone)]
pub enum SubmissionResult {
    Accepted {
        provider_template_id: String,
        status: ProviderTemplateStatus,
    },
    /// The provider's (or the adapter's) words, verbatim.
    Failed(String),
}

/// Records the answer to a submission. A status webhook may have arrived before this answer
/// (the sandbox answers fast): the status it set is kept.
pub fn record_submission(
    conn: &mut DbConnection,
    version_id: i64,
    result: &SubmissionResult,
    actor: &Actor,
) -> QueryResult<Option<Version>> {
    crate::storage::write_transaction(conn, |conn| {
        let Some(version) = find_version(conn, version_id)? else {
            return Ok(None);
        };
        let template = find(conn, version.template_id)?.ok_or(diesel::result::Error::NotFound)?;
        let at = now();
        let mut details = match result {
            SubmissionResult::Failed(text) => {
                diesel::update(template_versions::table.find(version.id))
                    .set((
                        template_versions::provider_error.eq(text),
                        template_versions::provider_updated_at.eq(at),
                        template_versions::updated_at.eq(at),
                    ))
                    .execute(conn)?;
                serde_json::json!({"status": "submission_failed", "error": text})
            }
            SubmissionResult::Accepted {
                provider_template_id,
                ..
            } => {
                diesel::update(template_versions::table.find(version.id))
                    .set((
                        template_versions::provider_template_id.eq(provider_template_id),
                        template_versions::provider_error.eq(None::<String>),
                    ))
                    .execute(conn)?;
                serde_json::json!({"status": "submitted", "provider_template_id": provider_template_id})
            }
        };
        details["version"] = serde_json::json!(version.number);
        record(conn, actor, "template.provider_status", &template, details)?;
        if let SubmissionResult::Accepted { status, .. } = result {
            // Read again: the first read may predate a verdict that committed before the
            // update above took the row (PostgreSQL), and "pending" must not undo it.
            let version = version_required(conn, Some(version.id))?;
            if version.state.provider == ProviderApproval::NotSubmitted {
                apply_status(conn, &template, &version, status, None, actor)?;
            }
        }
        find_version(conn, version_id)
    })
}

/// What a provider's status word does to a version: a new verdict, a note beside it, or both.
fn verdict(
    status: &ProviderTemplateStatus,
    reason: Option<&str>,
) -> (Option<ProviderApproval>, Option<String>) {
    let given = |r: &Option<String>| {
        r.as_deref()
            .or(reason)
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
    };
    match status {
        ProviderTemplateStatus::Pending => (Some(ProviderApproval::Pending), None),
        ProviderTemplateStatus::Approved => (Some(ProviderApproval::Approved), None),
        ProviderTemplateStatus::Rejected { reason: r } => (
            Some(ProviderApproval::Rejected {
                reason: given(r).unwrap_or_else(|| "The provider gave no reason.".into()),
            }),
            None,
        ),
        ProviderTemplateStatus::Paused { reason: r } => (Some(ProviderApproval::Paused), given(r)),
        ProviderTemplateStatus::Disabled { reason: r } => {
            (Some(ProviderApproval::Disabled), given(r))
        }
        ProviderTemplateStatus::Other(word) => {
            let upper = word.trim().to_ascii_uppercase();
            let note = Some(match reason {
                Some(r) if !r.trim().is_empty() => format!("{word}: {}", r.trim()),
                _ => word.clone(),
            });
            match upper.as_str() {
                // Gone at the provider: nothing can be sent with it any more.
                "ARCHIVED" | "DELETED" | "PENDING_DELETION" => {
                    (Some(ProviderApproval::Disabled), note)
                }
                // Meta reinstated a paused or disabled template: it sends again.
                "REINSTATED" => (Some(ProviderApproval::Approved), note),
                // IN_APPEAL, FLAGGED, LOCKED, LIMIT_EXCEEDED…: the verdict stands; say so.
                _ => (None, note),
            }
        }
    }
}

/// Applies a provider status to a version; returns whether anything changed.
fn apply_status(
    conn: &mut DbConnection,
    template: &Template,
    version: &Version,
    status: &ProviderTemplateStatus,
    reason: Option<&str>,
    actor: &Actor,
) -> QueryResult<bool> {
    let channel = channel_of(conn, template)?;
    let (approval, note) = verdict(status, reason);
    let at = now();
    let unchanged_approval = approval
        .as_ref()
        .is_none_or(|a| *a == version.state.provider);
    let unchanged_note = note.is_none() || note == version.provider_note;
    if unchanged_approval && unchanged_note {
        diesel::update(template_versions::table.find(version.id))
            .set(template_versions::provider_checked_at.eq(at))
            .execute(conn)?;
        return Ok(false);
    }
    let next = match &approval {
        Some(a) => version.state.with_provider(a.clone()),
        None => version.state.clone(),
    };
    // A new verdict replaces the old note; a bare note (IN_APPEAL…) joins the standing verdict.
    let stored_note = if unchanged_approval {
        note.clone().or_else(|| version.provider_note.clone())
    } else {
        note.clone()
    };
    let stage = if version.stage == TemplateStage::Superseded {
        TemplateStage::Superseded
    } else {
        TemplateStage::of(channel.kind, &next)
    };
    diesel::update(template_versions::table.find(version.id))
        .set((
            template_versions::provider_status.eq(next.provider.as_str()),
            template_versions::provider_reason.eq(next.provider.reason()),
            template_versions::provider_note.eq(&stored_note),
            template_versions::stage.eq(stage.as_str()),
            template_versions::provider_updated_at.eq(at),
            template_versions::provider_checked_at.eq(at),
            template_versions::updated_at.eq(at),
        ))
        .execute(conn)?;
    let mut details = serde_json::json!({
        "version": version.number,
        "status": next.provider.as_str(),
    });
    if let Some(reason) = next.provider.reason() {
        details["reason"] = serde_json::json!(reason);
    }
    if let Some(note) = &note {
        details["note"] = serde_json::json!(note);
    }
    if let Some(id) = &version.provider_template_id {
        details["provider_template_id"] = serde_json::json!(id);
    }
    record(conn, actor, "template.provider_status", template, details)?;
    if stage == TemplateStage::Sendable {
        make_live(conn, template, version)?;
    } else {
        diesel::update(templates::table.find(template.id))
            .set(templates::updated_at.eq(at))
            .execute(conn)?;
    }
    Ok(true)
}

/// Records a status the provider gave when asked ("sync now", the periodic sync). Returns
/// whether the version changed.
pub fn record_provider_status(
    conn: &mut DbConnection,
    version_id: i64,
    status: &ProviderTemplateStatus,
    actor: &Actor,
) -> QueryResult<bool> {
    crate::storage::write_transaction(conn, |conn| {
        let Some(version) = find_version(conn, version_id)? else {
            return Ok(false);
        };
        let template = find(conn, version.template_id)?.ok_or(diesel::result::Error::NotFound)?;
        apply_status(conn, &template, &version, status, None, actor)
    })
}

/// The version a provider's event is about: the newest one with its template id; or, when the
/// event came before the submission's answer was stored, the version of that name and language
/// still waiting for the provider.
fn version_for_event(
    conn: &mut DbConnection,
    channel: &Channel,
    event: &TemplateStatusEvent,
) -> QueryResult<Option<(Template, Version)>> {
    let by_id = |conn: &mut DbConnection| -> QueryResult<Option<VersionRow>> {
        template_versions::table
            .inner_join(templates::table)
            .filter(templates::channel_id.eq(channel.id))
            .filter(template_versions::provider_template_id.eq(&event.provider_template_id))
            .select(VersionRow::as_select())
            .order(template_versions::number.desc())
            .first(conn)
            .optional()
    };
    let row = match by_id(conn)? {
        Some(row) => Some(row),
        None => {
            let (Some(name), Some(language)) = (&event.name, &event.language) else {
                return Ok(None);
            };
            let waiting: Option<VersionRow> = template_versions::table
                .inner_join(templates::table)
                .filter(templates::channel_id.eq(channel.id))
                .filter(templates::name.eq(name))
                .filter(templates::language.eq(language))
                .filter(template_versions::review_status.eq(ReviewStatus::Approved.as_str()))
                .filter(template_versions::provider_template_id.is_null())
                .filter(
                    template_versions::provider_status.eq(ProviderApproval::NotSubmitted.as_str()),
                )
                .select(VersionRow::as_select())
                .order(template_versions::number.desc())
                .first(conn)
                .optional()?;
            match waiting {
                Some(row) => {
                    diesel::update(template_versions::table.find(row.id))
                        .set(
                            template_versions::provider_template_id.eq(&event.provider_template_id),
                        )
                        .execute(conn)?;
                    Some(row)
                }
                // The answer was stored between the two look-ups (PostgreSQL reads each
                // statement afresh): the version has the id now.
                None => by_id(conn)?,
            }
        }
    };
    let Some(row) = row else {
        return Ok(None);
    };
    let version = Version::try_from(row)?;
    let template = find(conn, version.template_id)?.ok_or(diesel::result::Error::NotFound)?;
    let version = version_required(conn, Some(version.id))?;
    Ok(Some((template, version)))
}

/// Applies a template status the provider reported (webhook, or the sandbox's simulated one).
/// Returns the template's id when the event was about one of this channel's templates.
/// The caller holds the transaction that records the event as applied.
pub fn apply_provider_status(
    conn: &mut DbConnection,
    channel: &Channel,
    event: &TemplateStatusEvent,
) -> QueryResult<Option<i64>> {
    let Some((template, version)) = version_for_event(conn, channel, event)? else {
        return Ok(None);
    };
    let actor = Actor::system(&format!("{} (webhook)", channel.provider.label()));
    apply_status(
        conn,
        &template,
        &version,
        &event.status,
        event.reason.as_deref(),
        &actor,
    )?;
    Ok(Some(template.id))
}

/// A version waiting for the provider's verdict, with what a status query needs.
#[derive(Debug, Clone)]
pub struct AwaitingVerdict {
    pub version_id: i64,
    pub template_id: i64,
    pub channel_id: i64,
    pub provider_template_id: String,
    /// The template's name and language, to check the provider's answer is about it.
    pub name: String,
    pub language: String,
    pub checked_at: Option<NaiveDateTime>,
}

#[derive(Queryable)]
struct AwaitingRow {
    version_id: i64,
    template_id: i64,
    channel_id: i64,
    provider_template_id: Option<String>,
    name: String,
    language: String,
    checked_at: Option<NaiveDateTime>,
}

/// Versions pending at the provider that nobody asked about since `checked_before`, the
/// longest-unchecked first.
pub fn awaiting_verdict(
    conn: &mut DbConnection,
    checked_before: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<AwaitingVerdict>> {
    let rows: Vec<AwaitingRow> = template_versions::table
        .inner_join(templates::table)
        .filter(template_versions::stage.eq(TemplateStage::Pending.as_str()))
        .filter(template_versions::provider_template_id.is_not_null())
        .filter(
            template_versions::provider_checked_at
                .is_null()
                .or(template_versions::provider_checked_at.lt(checked_before)),
        )
        .select((
            template_versions::id,
            templates::id,
            templates::channel_id,
            template_versions::provider_template_id,
            templates::name,
            templates::language,
            template_versions::provider_checked_at,
        ))
        .order((
            template_versions::provider_checked_at.is_not_null(),
            template_versions::provider_checked_at.asc(),
            template_versions::id,
        ))
        .limit(limit)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(AwaitingVerdict {
                version_id: r.version_id,
                template_id: r.template_id,
                channel_id: r.channel_id,
                provider_template_id: r.provider_template_id?,
                name: r.name,
                language: r.language,
                checked_at: r.checked_at,
            })
        })
        .collect())
}

/// Takes a version for a status query: false when another process just did (so several
/// instances never spend Meta's budget twice on the same template).
pub fn claim_check(conn: &mut DbConnection, item: &AwaitingVerdict) -> QueryResult<bool> {
    let target = template_versions::table.filter(template_versions::id.eq(item.version_id));
    let changed = match item.checked_at {
        Some(at) => diesel::update(target.filter(template_versions::provider_checked_at.eq(at)))
            .set(template_versions::provider_checked_at.eq(now()))
            .execute(conn)?,
        None => diesel::update(target.filter(template_versions::provider_checked_at.is_null()))
            .set(template_versions::provider_checked_at.eq(now()))
            .execute(conn)?,
    };
    Ok(changed == 1)
}

// ---------------------------------------------------------------------------------------------
// Sending

/// A template version that may be sent now, with everything a send needs to render it.
#[derive(Debug, Clone)]
pub struct SendableTemplate {
    pub template_id: i64,
    pub public_id: String,
    pub channel_id: i64,
    pub version_id: i64,
    pub version: i32,
    pub template: ValidTemplate,
    /// The provider's id for it (Infobip sends Viber templates by id; WhatsApp by name).
    pub provider_template_id: Option<String>,
}

impl SendableTemplate {
    /// What a send must fill, with the samples.
    pub fn placeholders(&self) -> Vec<PlaceholderInfo> {
        placeholders(&self.template)
    }

    /// Fills the template for one recipient, with the provider's template id set where the
    /// provider sends by id.
    pub fn render(&self, variables: &Variables) -> Result<RenderedTemplate, RenderError> {
        let mut rendered = render(&self.template, variables)?;
        if let MessageContent::Template(content) = &mut rendered.content {
            content.provider_template_id = self.provider_template_id.clone();
        }
        Ok(rendered)
    }
}

/// The answer to "may this template be sent, and with what?".
#[derive(Debug, Clone)]
pub enum TemplateLookup {
    Sendable(Box<SendableTemplate>),
    /// It exists but may not be sent now; `reason` says why, for a person (the API's
    /// `template_not_approved`).
    NotSendable {
        template_id: i64,
        reason: String,
    },
    NotFound,
}

fn lookup(conn: &mut DbConnection, template: Template) -> QueryResult<TemplateLookup> {
    let channel = channel_of(conn, &template)?;
    let not_sendable = |reason: String| TemplateLookup::NotSendable {
        template_id: template.id,
        reason,
    };
    let version = match template.live_version_id {
        Some(id) => version_required(conn, Some(id))?,
        None => current_version(conn, &template)?,
    };
    if version.stage != TemplateStage::Sendable || !version.state.is_sendable(channel.kind) {
        let reason = version
            .state
            .why_not_sendable(channel.kind)
            .unwrap_or_else(|| "The template was replaced by a newer version.".into());
        return Ok(not_sendable(reason));
    }
    match version.valid(channel.kind) {
        Ok(valid) => Ok(TemplateLookup::Sendable(Box::new(SendableTemplate {
            template_id: template.id,
            public_id: template.public_id,
            channel_id: template.channel_id,
            version_id: version.id,
            version: version.number,
            template: valid,
            provider_template_id: version.provider_template_id,
        }))),
        Err(errors) => Ok(not_sendable(format!(
            "The approved version no longer meets {}'s rules ({errors}): edit the template and have it approved again.",
            channel.kind.label()
        ))),
    }
}

/// The sendable version of a template, by its id (what a message row stores).
pub fn sendable(conn: &mut DbConnection, template_id: i64) -> QueryResult<TemplateLookup> {
    match find(conn, template_id)? {
        Some(t) => lookup(conn, t),
        None => Ok(TemplateLookup::NotFound),
    }
}

/// The sendable version of the template called `name` in `language` on `channel` (the API's
/// `"template": {"name", "language"}`); the language is read as the channel writes it
/// (`en-us` finds `en_US`).
pub fn sendable_by_name(
    conn: &mut DbConnection,
    channel: &Channel,
    name: &str,
    language: &str,
) -> QueryResult<TemplateLookup> {
    let language = Language::parse(channel.kind, language)
        .map(|l| l.as_str().to_owned())
        .unwrap_or_else(|_| language.trim().to_owned());
    let found = templates::table
        .filter(templates::channel_id.eq(channel.id))
        .filter(templates::name.eq(name.trim()))
        .filter(templates::language.eq(language))
        .select(Template::as_select())
        .first(conn)
        .optional()?;
    match found {
        Some(t) => lookup(conn, t),
        None => Ok(TemplateLookup::NotFound),
    }
}

/// Every template that may be sent now, matching `filter` (its status is ignored), with its
/// channel: what `GET /api/v1/templates` lists.
pub fn sendable_list(
    conn: &mut DbConnection,
    filter: &TemplateFilter,
) -> QueryResult<Vec<(Channel, SendableTemplate)>> {
    let filter = TemplateFilter {
        status: Some(StatusFilter::Sendable),
        ..filter.clone()
    };
    let mut out = Vec::new();
    for listed in list(conn, &filter)? {
        if let TemplateLookup::Sendable(s) = lookup(conn, listed.template)? {
            out.push((listed.channel, *s));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_words_become_verdicts_and_notes() {
        let rejected = ProviderTemplateStatus::Rejected { reason: None };
        assert_eq!(
            verdict(&rejected, Some("INVALID_FORMAT: the body is unclear")),
            (
                Some(ProviderApproval::Rejected {
                    reason: "INVALID_FORMAT: the body is unclear".into()
                }),
                None
            )
        );
        assert_eq!(
            verdict(&rejected, None).0,
            Some(ProviderApproval::Rejected {
                reason: "The provider gave no reason.".into()
            })
        );
        let paused = ProviderTemplateStatus::Paused {
            reason: Some("FIRST_PAUSE".into()),
        };
        assert_eq!(
            verdict(&paused, None),
            (Some(ProviderApproval::Paused), Some("FIRST_PAUSE".into()))
        );
        assert_eq!(
            verdict(&ProviderTemplateStatus::Other("IN_APPEAL".into()), None),
            (None, Some("IN_APPEAL".into()))
        );
        assert_eq!(
            verdict(&ProviderTemplateStatus::Other("ARCHIVED".into()), None).0,
            Some(ProviderApproval::Disabled)
        );
        assert_eq!(
            verdict(&ProviderTemplateStatus::Other("REINSTATED".into()), None).0,
            Some(ProviderApproval::Approved)
        );
    }
}
