//! The review workflow's buttons: submit and withdraw (the author's), approve and reject (a
//! reviewer's), resubmit to the provider and sync now.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::channels::Channel;
use crate::web::chrome::Chrome;
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::render_with_status;
use crate::web::session::TypedSession;

use super::page::show_page;
use super::*;
use crate::service::ServiceError;
use crate::service::templates::{self as service, Submitted, Synced};

// ---------------------------------------------------------------------------------------------
// The workflow's buttons

#[derive(Debug, Default, Deserialize)]
pub struct ReviewForm {
    /// The version number the person saw.
    #[serde(default)]
    version: i32,
    #[serde(default)]
    note: String,
}

fn back(req: &HttpRequest, public_id: &str) -> HttpResponse {
    redirect_response(req, &format!("{PATH}/{public_id}"))
}

/// Submitting for review (`/templates/{id}/submit`) and withdrawing from it (`/withdraw`): the
/// author's side of the workflow.
pub async fn author_action(
    req: HttpRequest,
    auth: Auth<perm::DraftTemplates>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<(String, String)>,
    form: web::Form<ReviewForm>,
) -> Result<HttpResponse, AppError> {
    let (id, word) = path.into_inner();
    let submitting = match word.as_str() {
        "submit" => true,
        "withdraw" => false,
        _ => {
            return Err(AppError::NotFound(
                "There is no page at this address.".into(),
            ));
        }
    };
    let user = person(&auth)?;
    let (actor, by) = (auth.actor(), reviewer(user));
    let done = if submitting {
        service::submit_for_review(&state, actor, by, id.clone(), form.version).await?
    } else {
        service::withdraw(&state, actor, by, id.clone(), form.version).await?
    };
    let n = done.version.number;
    session.success(if submitting {
        format!(
            "Version {n} is in review: a support lead or an admin who did not write it approves or rejects it."
        )
    } else {
        format!("Version {n} is a draft again.")
    });
    Ok(back(&req, &id))
}

/// Tells the person what the provider said to a submission.
fn submission_flash(session: &TypedSession, channel: &Channel, outcome: &Submitted) {
    let who = reviewer_name(channel);
    match outcome {
        Submitted::Accepted(crate::channels::ProviderTemplateStatus::Approved) => {
            session.success(format!("{who} approved it at once: it is sendable."))
        }
        Submitted::Accepted(_) => session.success(format!(
            "Submitted to {who}; it becomes sendable when {who} approves it. {}",
            review_time(channel)
        )),
        Submitted::Failed(text) => session.error(format!("{who} refused the submission: {text}")),
        Submitted::InFlight => session.success(format!("It is being submitted to {who}.")),
        Submitted::NotNeeded => {}
    }
}

pub async fn approve(
    req: HttpRequest,
    auth: Auth<perm::ReviewTemplates>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<ReviewForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let user = person(&auth)?;
    let form = form.into_inner();
    let approved = service::approve(
        &state,
        auth.actor(),
        reviewer(user),
        id.clone(),
        form.version,
        form.note,
    )
    .await?;
    let number = approved.reviewed.version.number;
    match approved.submission {
        Some(submission) => {
            session.success(format!("Version {number} approved in Herald."));
            let outcome = submission?;
            submission_flash(&session, &approved.reviewed.channel, &outcome);
        }
        None => session.success(format!("Version {number} approved: it is sendable.")),
    }
    Ok(back(&req, &id))
}

pub async fn reject(
    req: HttpRequest,
    auth: Auth<perm::ReviewTemplates>,
    state: web::Data<AppState>,
    chrome: Chrome,
    session: TypedSession,
    path: web::Path<String>,
    form: web::Form<ReviewForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let user = person(&auth)?;
    let form = form.into_inner();
    let result = service::reject(
        &state,
        auth.actor(),
        reviewer(user),
        id.clone(),
        form.version,
        form.note.clone(),
    )
    .await;
    match result {
        Ok(done) => {
            session.success(format!(
                "Version {} rejected; its author sees your note.",
                done.version.number
            ));
            Ok(back(&req, &id))
        }
        // The note is the one field here: say so beside it, and keep what was typed.
        Err(ServiceError::Invalid { message, .. }) => {
            let page = show_page(&state, chrome, user, id, form.note, Some(message)).await?;
            render_with_status(&page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(e) => Err(e.into()),
    }
}

/// Submits the newest version to the provider again (after the provider refused it, or a
/// submission that never got an answer).
pub async fn resubmit(
    req: HttpRequest,
    auth: Auth<perm::ReviewTemplates>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let done = service::resubmit(&state, auth.actor(), id.clone()).await?;
    if done.outcome == Submitted::NotNeeded {
        session.error(format!(
            "Version {} is not waiting to be submitted.",
            done.version
        ));
    }
    submission_flash(&session, &done.channel, &done.outcome);
    Ok(back(&req, &id))
}

/// "Sync now": asks the provider about the template's versions.
pub async fn sync(
    req: HttpRequest,
    auth: Auth<perm::DraftTemplates>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let synced = service::sync(&state, auth.actor(), id.clone()).await?;
    let who = reviewer_name(&synced.channel);
    let results = synced.versions;
    if results.is_empty() {
        session.error(format!(
            "There is nothing to ask {who} yet: no version of this template was submitted."
        ));
    }
    for (number, synced) in results {
        match synced {
            Synced::Changed => {
                session.success(format!("Version {number}: {who} has a new verdict."))
            }
            Synced::Unchanged => session.success(format!("Version {number}: no change at {who}.")),
            Synced::Failed(text) => session.error(format!(
                "{who} did not answer about version {number}: {text}"
            )),
        }
    }
    Ok(back(&req, &id))
}
