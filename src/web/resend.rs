//! Resending by hand: an admin sends a `failed` or `unknown` message again, as a new message
//! linked to the old one (which keeps its outcome). Nothing is resent automatically once it may
//! have reached the provider; this is the deliberate way. From the contact's timeline
//! (`POST /messages/{id}/resend`) and the API (`POST /api/v1/messages/{id}/resend`).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::domain::audit::Actor;
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::messages::{self, MessageRow};
use crate::storage::outbox::{self, ResendRefusal};
use crate::storage::{audit, contacts};
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;

/// What a resend did, and whose timeline it belongs on.
pub struct Resend {
    /// The contact's public id.
    pub contact: String,
    pub original: MessageRow,
    /// The new message, or why there is none (for a person: 409).
    pub result: Result<MessageRow, String>,
}

/// Queues the new message, records who asked, and wakes the dispatcher. The outer error is
/// the server's (or 404); a refusal is in [`Resend::result`].
pub async fn resend(state: &AppState, actor: Actor, public_id: String) -> Result<Resend, AppError> {
    let done = state
        .db
        .run(move |conn| {
            let original = messages::find_by_public_id(conn, &public_id)?.ok_or_else(|| {
                AppError::NotFound(format!("There is no message with id \"{public_id}\"."))
            })?;
            let contact = contacts::find(conn, original.contact_id)?
                .map(|c| c.public_id)
                .unwrap_or_default();
            let result = match outbox::resend(conn, &original, &actor.label)? {
                Ok(message) => {
                    audit::record(
                        conn,
                        &actor,
                        "message.resent",
                        "message",
                        Some(&original.public_id),
                        json!({"as": message.public_id, "was": original.status}),
                    )?;
                    Ok(message)
                }
                Err(ResendRefusal::Status(status)) => Err(format!(
                    "Only failed or unknown messages can be resent; this one is {}.",
                    status.label().to_lowercase()
                )),
                Err(ResendRefusal::AlreadyResent { public_id }) => Err(format!(
                    "This message was resent already, as message {public_id}; resend that one if it failed too."
                )),
            };
            Ok::<_, AppError>(Resend {
                contact,
                original,
                result,
            })
        })
        .await?;
    if let Ok(message) = &done.result {
        state.announce_queued(message);
    }
    Ok(done)
}

/// The button on a contact's timeline: back to the timeline with what happened.
pub async fn from_timeline(
    req: HttpRequest,
    auth: Auth<perm::ResendMessages>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let done = resend(&state, auth.actor(), path.into_inner()).await?;
    match done.result {
        Ok(_) => session.success("Queued again as a new message; the old one keeps its outcome."),
        Err(why) => session.error(why),
    }
    let back = if done.contact.is_empty() {
        "/contacts".to_owned()
    } else {
        format!("/contacts/{}", done.contact)
    };
    Ok(redirect_response(&req, &back))
}

/// `POST /api/v1/messages/{id}/resend`: 202 with the new message.
pub async fn api(
    auth: Auth<perm::ResendMessages>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let done = resend(&state, auth.actor(), path.into_inner()).await?;
    let message = done.result.map_err(AppError::conflict)?;
    Ok(HttpResponse::Accepted().json(json!({
        "id": message.public_id,
        "status": message.status,
        "resend_of": done.original.public_id,
    })))
}
