//! Resending by hand: an admin sends a `failed` or `unknown` message again, as a new message
//! linked to the old one (which keeps its outcome). Nothing is resent automatically once it may
//! have reached the provider; this is the deliberate way. From the contact's timeline
//! (`POST /messages/{id}/resend`) and the API (`POST /api/v1/messages/{id}/resend`).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::dispatch::hub::HubEvent;
use crate::domain::audit::Actor;
use crate::error::AppError;
use crate::startup::AppState;
use crate::storage::messages::{self, MessageRow};
use crate::storage::outbox::{self, ResendRefusal};
use crate::storage::{audit, contacts};
use crate::web::identity::{Auth, perm, redirect_response};
use crate::web::session::TypedSession;

/// What a resend produced.
pub struct Resent {
    pub original: MessageRow,
    pub message: MessageRow,
    /// The contact's public id (where the timeline is).
    pub contact: String,
}

/// Queues the new message, records who asked, and wakes the dispatcher.
pub async fn resend(state: &AppState, actor: Actor, public_id: String) -> Result<Resent, AppError> {
    let resent = state
        .db
        .run(move |conn| {
            let original = messages::find_by_public_id(conn, &public_id)?.ok_or_else(|| {
                AppError::NotFound(format!("There is no message with id \"{public_id}\"."))
            })?;
            let message = match outbox::resend(conn, &original, &actor.label)? {
                Ok(m) => m,
                Err(ResendRefusal::Status(status)) => {
                    return Err(AppError::Conflict(format!(
                        "Only failed or unknown messages can be resent; this one is {}.",
                        status.label().to_lowercase()
                    )));
                }
                Err(ResendRefusal::AlreadyResent { public_id }) => {
                    return Err(AppError::Conflict(format!(
                        "This message was resent already, as message {public_id}; resend that one if it failed too."
                    )));
                }
            };
            audit::record(
                conn,
                &actor,
                "message.resent",
                "message",
                Some(&original.public_id),
                json!({"as": message.public_id, "was": original.status}),
            )?;
            let contact = contacts::find(conn, original.contact_id)?
                .map(|c| c.public_id)
                .unwrap_or_default();
            Ok::<_, AppError>(Resent {
                original,
                message,
                contact,
            })
        })
        .await?;
    state.hub.publish(HubEvent::MessageStatus {
        message_id: resent.message.public_id.clone(),
        contact_id: resent.message.contact_id,
        channel_id: resent.message.channel_id,
        status: resent.message.status.clone(),
    });
    state.dispatcher.wake();
    Ok(resent)
}

/// The button on a contact's timeline.
pub async fn from_timeline(
    req: HttpRequest,
    auth: Auth<perm::ResendMessages>,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let back = |contact: &str| {
        if contact.is_empty() {
            "/contacts".to_owned()
        } else {
            format!("/contacts/{contact}")
        }
    };
    match resend(&state, auth.actor(), public_id.clone()).await {
        Ok(r) => {
            session.success("Queued again as a new message; the old one keeps its outcome.");
            Ok(redirect_response(&req, &back(&r.contact)))
        }
        Err(AppError::Conflict(why)) => {
            session.error(why);
            let contact = state
                .db
                .run(move |conn| {
                    let m = messages::find_by_public_id(conn, &public_id)?;
                    let c = match m {
                        Some(m) => contacts::find(conn, m.contact_id)?.map(|c| c.public_id),
                        None => None,
                    };
                    Ok::<_, AppError>(c.unwrap_or_default())
                })
                .await?;
            Ok(redirect_response(&req, &back(&contact)))
        }
        Err(e) => Err(e),
    }
}

/// `POST /api/v1/messages/{id}/resend`: 202 with the new message.
pub async fn api(
    auth: Auth<perm::ResendMessages>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let r = resend(&state, auth.actor(), path.into_inner()).await?;
    Ok(HttpResponse::Accepted().json(json!({
        "id": r.message.public_id,
        "status": r.message.status,
        "resend_of": r.original.public_id,
    })))
}
